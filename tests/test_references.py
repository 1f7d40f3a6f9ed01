"""End-to-end equality of built-in methods with independent reference computations.

Each test feeds the same tiny random backbone weights (written to a file, loaded by both sides)
and the same images to the plugin and to a reference that shares none of the plugin's objects:
anomalib's own model path for PatchCore, and a from-definition AnomalyDINO (the reference code's
steps, written here with PIL, timm's `forward_features`, numpy and OpenCV) plus anomalib's
`AnomalyDINOModel` for dino-knn. Tolerances are stated per comparison; docs/faithfulness.md's
faithfulness table lists them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import timm
import torch
from anomalib.models.image.patchcore.lightning_model import Patchcore
from anomalib.models.image.patchcore.torch_model import PatchcoreModel
from PIL import Image
from safetensors.torch import load_file, save_file
from scipy import ndimage
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score
from timm.models import vision_transformer
from torchvision import tv_tensors

from baselines.dino_knn import DinoKnn
from baselines.patchcore import PatchCore
from benchmarks.plugins.contract import MethodContext, Sample
from benchmarks.plugins.weights import WeightsResolver
from benchmarks.running.presets import get_preset

pytestmark = pytest.mark.usefixtures("one_thread")


def _context(tmp_path: Path, weights_dir: Path, variant: str, **options: object) -> MethodContext:
    return MethodContext(
        variant=variant, seed=0, device="cpu", weights=WeightsResolver(mode="pretrained", weights_dir=weights_dir),
        preset=get_preset("smoke"), class_name="toy texture", work_dir=tmp_path, options=options,
    )


def _as_tensor(image: np.ndarray) -> tv_tensors.Image:
    return tv_tensors.Image(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0)


# The published normalisation constants (ImageNet; OpenAI CLIP), as the reference code writes them.
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
CLIP = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))


def _normalised(images: list[np.ndarray], constants: tuple[tuple[float, ...], tuple[float, ...]]) -> torch.Tensor:
    """Images at their own size -> `(B, 3, H, W)` floats in [0, 1], normalised by `constants` (mean, std)."""
    mean, std = (torch.tensor(c)[:, None, None] for c in constants)
    return torch.stack([(_as_tensor(image) - mean) / std for image in images])


# --- PatchCore against anomalib's own Patchcore path -------------------------------------------

PATCHCORE_SIZE, PATCHCORE_CROP = 48, 40  # the 64 px toy images are downsampled (antialiased), then cropped


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("weights")
    torch.manual_seed(11)
    save_file(timm.create_model("resnet18", pretrained=False).state_dict(), str(root / "resnet18.safetensors"))
    return root


def _anomalib_patchcore(weights_dir: Path, train: list[np.ndarray], num_neighbors: int) -> tuple:
    """anomalib's pipeline: its pre-processor, its timm feature extractor, its memory bank (coreset
    ratio 1: every patch kept, so both sides search the same bank), its forward."""
    transform = Patchcore.configure_pre_processor(
        image_size=(PATCHCORE_SIZE, PATCHCORE_SIZE), center_crop_size=(PATCHCORE_CROP, PATCHCORE_CROP)
    ).transform
    model = PatchcoreModel(layers=["layer2", "layer3"], backbone="resnet18", pre_trained=False,
                           num_neighbors=num_neighbors)
    missing, unexpected = model.feature_extractor.feature_extractor.load_state_dict(
        load_file(str(weights_dir / "resnet18.safetensors")), strict=False)
    # features_only up to layer3 drops layer4 and the classifier; everything it keeps is loaded
    assert not missing and all(key.startswith(("layer4.", "fc.")) for key in unexpected)
    model.train()
    with torch.no_grad():
        model(torch.stack([transform(_as_tensor(image)) for image in train]))
    model.subsample_embedding(sampling_ratio=1.0)
    model.eval()

    def forward(images: list[np.ndarray]) -> tuple:
        """anomalib's forward (scores, its own map) and its patch distances `(B, h, w)`."""
        x = torch.stack([transform(_as_tensor(image)) for image in images])
        with torch.no_grad():
            out = model(x)
            features = {k: model.feature_pooler(v) for k, v in model.feature_extractor(x).items()}
            embedding = model.generate_embedding(features)
            b, _, h, w = embedding.shape
            patch, _ = model.nearest_neighbors(model.reshape_embedding(embedding), n_neighbors=1)
        return out, patch.reshape(b, h, w)

    return forward


def _original_patchcore_map(patch: torch.Tensor, size: int) -> np.ndarray:
    """The PatchCore reference code's map: bilinear upsampling of the patch distances to the input
    (align_corners False), then `scipy.ndimage.gaussian_filter(sigma=4)`."""
    up = torch.nn.functional.interpolate(patch[:, None], size=(size, size), mode="bilinear", align_corners=False)
    return np.stack([ndimage.gaussian_filter(m.astype(np.float64), sigma=4) for m in up[:, 0].numpy()])


@pytest.mark.parametrize("reweight", [False, True], ids=["max", "reweighted"])
def test_patchcore_equals_anomalibs_own_patchcore_path(
    reweight: bool, resnet18_file: Path, tmp_path: Path, toy_task: dict[str, list[Sample]]
) -> None:
    """Scores (max patch distance, or anomalib's `compute_anomaly_score` reweighting) and maps.

    Compared: image scores with anomalib's forward, rtol 1e-4. Maps inside the centre crop (the
    plugin pads the crop back to the resized frame by edge replication) with the PatchCore
    reference code's map built on anomalib's patch distances, atol 1e-4 of the map's range.
    anomalib's own map upsamples with nearest neighbours instead of bilinear: it differs by several
    % of the range (asserted, so the deviation stays known).
    """
    train = [s.image for s in toy_task["train"]]
    test = [s.image for s in toy_task["test"]]
    plugin = PatchCore(_context(tmp_path, resnet18_file, "default", backbone="resnet18", image_size=PATCHCORE_SIZE,
                                crop_size=PATCHCORE_CROP, coreset_ratio=1.0, reweight=reweight))
    plugin.fit(toy_task["train"])
    ours = plugin.predict(test)
    theirs, patch = _anomalib_patchcore(resnet18_file, train, num_neighbors=9 if reweight else 1)(test)
    np.testing.assert_allclose(ours.scores, theirs.pred_score.flatten().numpy(), rtol=1e-4, atol=1e-6)
    assert ours.maps is not None
    top = (PATCHCORE_SIZE - PATCHCORE_CROP) // 2
    ours_crop = ours.maps[:, top : top + PATCHCORE_CROP, top : top + PATCHCORE_CROP]
    original = _original_patchcore_map(patch, PATCHCORE_CROP)
    spread = float(original.max() - original.min())
    np.testing.assert_allclose(ours_crop, original, atol=1e-4 * spread)
    anomalib_map = theirs.anomaly_map[:, 0].numpy()
    assert np.abs(anomalib_map - original).max() > 0.01 * spread  # nearest vs bilinear upsampling
    if reweight:  # the reweighting really changed something (it is not the max)
        assert not np.allclose(ours.scores, patch.reshape(len(test), -1).amax(dim=1).numpy(), rtol=1e-3)


# --- dino-knn against AnomalyDINO written from its definition, and anomalib's AnomalyDINOModel -------

DINO_ARCH = {"depth": 2, "embed_dim": 48, "num_heads": 3}
DINO_EDGE = 112  # the toy images' short side becomes 112 px (8 x 8 patches of 14 px)


def _write_dinov2(root: Path, seed: int, img_size: int | tuple[int, int]) -> Path:
    """The tiny random ViT's weights under DINOv2's file name, in `root`."""
    torch.manual_seed(seed)
    model = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=img_size, **DINO_ARCH)
    save_file(model.state_dict(), str(root / "dinov2_vits14.safetensors"))
    return root


@pytest.fixture(scope="module")
def dinov2_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_dinov2(tmp_path_factory.mktemp("dino"), 5, DINO_EDGE)


def _reference_tokens(model: torch.nn.Module, image: np.ndarray, edge: int = DINO_EDGE) -> tuple[np.ndarray, tuple[int, int]]:
    """AnomalyDINO's `prepare_image` + `extract_features`: PIL bicubic resize of the shorter side,
    ToTensor, ImageNet normalisation, crop at the bottom/right to whole patches, last-block tokens
    after the final norm (DINOv2's `get_intermediate_layers` = timm's `forward_features` minus prefix tokens)."""
    h, w = image.shape[:2]
    size = (int(edge * w / h), edge) if h <= w else (edge, int(edge * h / w))  # PIL: (w, h)
    resized = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BICUBIC), dtype=np.float32) / 255.0
    x = (resized - np.array(IMAGENET[0])) / np.array(IMAGENET[1])
    x = torch.from_numpy(x.astype(np.float32)).permute(2, 0, 1)[None]
    x = x[..., : x.shape[-2] // 14 * 14, : x.shape[-1] // 14 * 14]
    with torch.no_grad():
        tokens = model.forward_features(x)[0, model.num_prefix_tokens :]
    return tokens.numpy().astype(np.float64), (x.shape[-2] // 14, x.shape[-1] // 14)


def _reference_mask(tokens: np.ndarray, grid: tuple[int, int], threshold: float = 10.0) -> np.ndarray:
    """AnomalyDINO's background mask: sklearn PCA, threshold 10, flip test on the central crop,
    OpenCV 3x3 dilation then closing."""
    pc = PCA(n_components=1).fit_transform(tokens)[:, 0].reshape(grid)
    mask = pc > threshold
    h, w = grid
    if mask[int(h * 0.2) : int(h * 0.8), int(w * 0.2) : int(w * 0.8)].sum() <= mask[
        int(h * 0.2) : int(h * 0.8), int(w * 0.2) : int(w * 0.8)].size * 0.35:
        mask = -pc > threshold
    kernel = np.ones((3, 3), np.uint8)
    mask = cv2.dilate(mask.astype(np.uint8), kernel)
    return cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel).astype(bool)


def _reference_distances(model: torch.nn.Module, train: list[np.ndarray], test: list[np.ndarray],
                         masking: bool, edge: int = DINO_EDGE, threshold: float = 10.0) -> list[np.ndarray]:
    """Bank of L2-normalised reference tokens; per test patch 1 - max cosine (exact); masked-out
    patches score 0. One `(gh, gw)` grid per test image."""
    bank = np.concatenate([_reference_tokens(model, image, edge)[0] for image in train])
    bank /= np.linalg.norm(bank, axis=1, keepdims=True)
    grids = []
    for image in test:
        tokens, grid = _reference_tokens(model, image, edge)
        unit = tokens / np.linalg.norm(tokens, axis=1, keepdims=True)
        distances = 1.0 - (unit @ bank.T).max(axis=1)
        if masking:
            distances = distances * _reference_mask(tokens, grid, threshold).reshape(-1)
        grids.append(distances.reshape(grid))
    return grids


def _reference_scores(model: torch.nn.Module, train: list[np.ndarray], test: list[np.ndarray],
                      masking: bool, edge: int = DINO_EDGE, threshold: float = 10.0) -> np.ndarray:
    """Image score = mean of the top int(1 %) patch distances (at least one)."""
    scores = []
    for grid in _reference_distances(model, train, test, masking, edge, threshold):
        top = max(1, int(grid.size * 0.01))
        scores.append(np.sort(grid.ravel())[-top:].mean())
    return np.asarray(scores)


def _reference_map(grid: np.ndarray, resized: tuple[int, int], canvas: tuple[int, int], sigma: float) -> np.ndarray:
    """The plugin's documented map rule with OpenCV and scipy: the patch grid bilinearly onto the
    cropped input, the crop remainder filled with edge values, bilinearly to the image, then
    `scipy.ndimage.gaussian_filter(sigma)` (the reference code's smoothing)."""
    h, w = resized
    ch, cw = h - h % 14, w - w % 14
    m = cv2.resize(grid.astype(np.float64), (cw, ch), interpolation=cv2.INTER_LINEAR)
    m = np.pad(m, ((0, h - ch), (0, w - cw)), mode="edge")
    m = cv2.resize(m, (canvas[1], canvas[0]), interpolation=cv2.INTER_LINEAR)
    return ndimage.gaussian_filter(m, sigma)


def _to_112(image: np.ndarray) -> np.ndarray:
    """A 64 px toy image as a 112 px one by pixel repetition (x7, then every 4th): no interpolation."""
    return np.ascontiguousarray(np.kron(image, np.ones((7, 7, 1), np.uint8))[::4, ::4])


def _dino_reference_model(weights_dir: Path, img_size: int | tuple[int, int] = DINO_EDGE) -> torch.nn.Module:
    model = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=img_size, **DINO_ARCH)
    model.load_state_dict(load_file(str(weights_dir / "dinov2_vits14.safetensors")))
    return model.eval()


def _dino_plugin(tmp_path: Path, weights_dir: Path, train: list[Sample], **options: object) -> DinoKnn:
    plugin = DinoKnn(_context(tmp_path, weights_dir, "full", smaller_edge=DINO_EDGE,
                              backbone_kwargs={**DINO_ARCH, "img_size": DINO_EDGE}, exact_search=True, **options))
    plugin.fit(train)
    return plugin


@pytest.mark.parametrize("masking", [False, True], ids=["no-mask", "masked"])
def test_dino_knn_equals_anomalydino_from_its_definition(
    masking: bool, dinov2_file: Path, tmp_path: Path, toy_task: dict[str, list[Sample]]
) -> None:
    """Inputs whose short side is already 112 px (no resize), then 64 px inputs resized to 112 px:
    scores within rtol 1e-4 both times (the plugin resizes with PIL's bicubic, as the reference)."""
    train = toy_task["train"][:4]
    reference = _dino_reference_model(dinov2_file)
    big_test = [_to_112(s.image) for s in toy_task["test"]]
    big_train = [Sample(s.record, _to_112(s.image)) for s in train]
    plugin = _dino_plugin(tmp_path, dinov2_file, big_train, masking=masking)
    theirs = _reference_scores(reference, [s.image for s in big_train], big_test, masking)
    np.testing.assert_allclose(plugin.predict(big_test).scores, theirs, rtol=1e-4, atol=1e-6)

    plugin = _dino_plugin(tmp_path, dinov2_file, train, masking=masking)
    test = [s.image for s in toy_task["test"]]
    labels = [s.label for s in toy_task["test"]]
    ours = plugin.predict(test).scores
    theirs = _reference_scores(reference, [s.image for s in train], test, masking)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6)
    assert roc_auc_score(labels, ours) == roc_auc_score(labels, theirs)


# Real sizes: 64 x 96 inputs whose short side becomes 300 px (not a multiple of 14): 300 x 450 is
# cropped at the bottom/right to 294 x 448, 21 x 32 = 672 patches, so "top 1 %" is the mean of 6.
REAL_EDGE, REAL_INPUT = 300, (294, 448)


@pytest.fixture(scope="module")
def dinov2_real_size_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny ViT at the cropped input size (no position-embedding resampling on either side)."""
    return _write_dinov2(tmp_path_factory.mktemp("dino-real"), 6, REAL_INPUT)


def _wide(image: np.ndarray) -> np.ndarray:
    """A 64 x 64 toy image widened to 64 x 96 (its left half repeated on the right)."""
    return np.ascontiguousarray(np.concatenate([image, image[:, :32]], axis=1))


@pytest.mark.parametrize("masking", [False, True], ids=["no-mask", "masked"])
def test_dino_knn_equals_anomalydino_at_real_sizes(
    masking: bool, dinov2_real_size_file: Path, tmp_path: Path, toy_task: dict[str, list[Sample]]
) -> None:
    """The pieces the 112 px test cannot reach: hundreds of patches (the top-1 % mean is not the
    max), a crop (300 px is not a multiple of 14) and, masked, a threshold at which every test
    image keeps some patches and drops others. Scores rtol 1e-4."""
    reference = _dino_reference_model(dinov2_real_size_file, REAL_INPUT)
    train = [Sample(s.record, _wide(s.image)) for s in toy_task["train"][:3]]
    test = [_wide(s.image) for s in toy_task["test"]]
    threshold = 10.0
    if masking:  # the median |first PC| of the test patches: about half the patches on each side
        pcs = [PCA(n_components=1).fit_transform(_reference_tokens(reference, image, REAL_EDGE)[0])[:, 0]
               for image in test]
        threshold = float(np.median(np.abs(np.concatenate(pcs))))
        kept = [_reference_mask(*_reference_tokens(reference, image, REAL_EDGE), threshold).mean() for image in test]
        assert all(0.05 < k < 0.95 for k in kept), kept
    tokens, grid = _reference_tokens(reference, test[0], REAL_EDGE)
    assert grid == (21, 32) and tokens.shape[0] // 100 == 6
    plugin = DinoKnn(_context(tmp_path, dinov2_real_size_file, "full", smaller_edge=REAL_EDGE,
                              backbone_kwargs={**DINO_ARCH, "img_size": REAL_INPUT}, exact_search=True,
                              masking=masking, mask_threshold=threshold))
    plugin.fit(train)
    ours = plugin.predict(test)
    theirs = _reference_scores(reference, [s.image for s in train], test, masking, REAL_EDGE, threshold)
    np.testing.assert_allclose(ours.scores, theirs, rtol=1e-4, atol=1e-6)
    assert ours.maps is not None and ours.maps.shape == (len(test), 64, 96)
    grids = _reference_distances(reference, [s.image for s in train], test, masking, REAL_EDGE, threshold)
    for our_map, grid in zip(ours.maps, grids, strict=True):
        their_map = _reference_map(grid, (REAL_EDGE, 450), (64, 96), sigma=4.0)
        np.testing.assert_allclose(our_map, their_map, atol=1e-4 * np.ptp(their_map))


def test_dino_knn_equals_anomalibs_anomalydino_model(
    dinov2_file: Path, tmp_path: Path, toy_task: dict[str, list[Sample]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """anomalib 2.7's `AnomalyDINOModel` (masking off, no coreset), on 112 px inputs that need no
    crop (anomalib crops centrally, the reference code at the bottom/right): scores rtol 1e-4."""
    from anomalib.models.components.feature_extractors import timm as anomalib_timm
    from anomalib.models.image.anomaly_dino.torch_model import AnomalyDINOModel

    real_create = timm.create_model

    def offline_tiny(name: str, pretrained: bool = False, **kwargs: object) -> torch.nn.Module:
        model = real_create(name, pretrained=False, **{**kwargs, **DINO_ARCH, "img_size": DINO_EDGE})
        model.load_state_dict(load_file(str(dinov2_file / "dinov2_vits14.safetensors")))
        return model

    big = [_to_112(s.image) for s in toy_task["train"][:4]]
    test = [_to_112(s.image) for s in toy_task["test"]]
    plugin = _dino_plugin(tmp_path, dinov2_file, [Sample(s.record, b) for s, b in zip(toy_task["train"][:4], big,
                                                                                       strict=True)])
    ours = plugin.predict(test).scores
    # anomalib patches timm's ViT position-embedding resampling process-wide (antialias off); undo it afterwards
    monkeypatch.setattr(vision_transformer, "resample_abs_pos_embed", vision_transformer.resample_abs_pos_embed)
    monkeypatch.setattr(anomalib_timm.timm, "create_model", offline_tiny)
    monkeypatch.setattr(AnomalyDINOModel, "_last_block_index", staticmethod(lambda name: DINO_ARCH["depth"] - 1))
    theirs = AnomalyDINOModel(encoder_name="vit_small_patch14_dinov2")

    theirs.train()
    with torch.no_grad():
        theirs(_normalised(big, IMAGENET))
    theirs.fit()
    theirs.eval()
    with torch.no_grad():
        their_scores = theirs(_normalised(test, IMAGENET)).pred_score.flatten().numpy()
    np.testing.assert_allclose(ours, their_scores, rtol=1e-4, atol=1e-6)


# --- WinCLIP zero-shot from its definition (open_clip calls, no anomalib) -----------------------------

def test_winclip_zero_shot_score_equals_its_definition(tmp_path: Path, toy_task: dict[str, list[Sample]]) -> None:
    """WinCLIP's zero-shot image score: softmax over the cosine similarities of the image embedding
    with the normal and anomalous text prototypes, temperature 0.07, anomalous class. Prototypes:
    the mean text embedding of the compositional prompt ensemble (state x template, anomalib's
    lists of the paper's prompts); computed here with open_clip's tokenizer and encoders on a fresh
    model holding the same weights. Scores rtol 1e-5."""
    import open_clip
    from anomalib.models.image.winclip.prompting import ANOMALOUS_STATES, NORMAL_STATES, TEMPLATES

    from baselines.winclip import WINCLIP_WEIGHTS, WinClip

    tiny = WinClip.meta.tiny
    assert tiny is not None
    config = tiny.options["model_overrides"]
    torch.manual_seed(9)
    source = open_clip.create_model("ViT-B-16-plus-240", pretrained=None, **config)
    torch.save(source.state_dict(), tmp_path / f"{WINCLIP_WEIGHTS.key}.bin")
    plugin = WinClip(_context(tmp_path, tmp_path, "k0", model_overrides=config))
    plugin.fit([])
    images = [s.image for s in toy_task["test"]]  # 64 px, the tiny model's input: no resize on either side
    ours = plugin.predict(images).scores

    model = open_clip.create_model("ViT-B-16-plus-240", pretrained=None, **config).eval()
    model.load_state_dict(torch.load(tmp_path / f"{WINCLIP_WEIGHTS.key}.bin", weights_only=True))
    tokenizer = open_clip.get_tokenizer("ViT-B-16-plus-240")
    with torch.no_grad():
        prototypes = []
        for states in (NORMAL_STATES, ANOMALOUS_STATES):
            prompts = [template.format(state.format("toy texture")) for state in states for template in TEMPLATES]
            prototypes.append(model.encode_text(tokenizer(prompts)).mean(dim=0))
        text = torch.nn.functional.normalize(torch.stack(prototypes), dim=-1)
        image = torch.nn.functional.normalize(model.encode_image(_normalised(images, CLIP)), dim=-1)
        theirs = ((image @ text.T) / 0.07).softmax(dim=-1)[:, 1].numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-7)


# --- AnomalyGPT's image decoder and few-shot map from their definition -------------------------------

def _hooked_tokens(model: torch.nn.Module, pixels: torch.Tensor, depths: list[int]) -> list[torch.Tensor]:
    """Raw outputs of the chosen transformer blocks, class token dropped: `(B, N, width)` each (forward hooks)."""
    caught: dict[int, torch.Tensor] = {}
    blocks = model.visual.transformer.resblocks
    hooks = [blocks[d].register_forward_hook(lambda _m, _i, out, d=d: caught.__setitem__(d, out)) for d in depths]
    try:
        with torch.no_grad():
            model.encode_image(pixels)
    finally:
        for hook in hooks:
            hook.remove()
    batch_first = getattr(model.visual.transformer, "batch_first", True)
    return [(caught[d] if batch_first else caught[d].permute(1, 0, 2))[:, 1:] for d in depths]


@pytest.mark.parametrize("variant", ["unsupervised", "k1"])
def test_anomalygpt_maps_equal_their_definition(
    variant: str, make_context: Callable[..., MethodContext], toy_task: dict[str, list[Sample]]
) -> None:
    """AnomalyGPT's maps (its reference code's steps), on the plugin's own trained decoder weights:

    - text map, per depth: the projected tokens L2-normalised, times 100 the cosine with the
      normal / abnormal prototypes (mean of L2-normalised prompt embeddings, normalised), upsampled
      bilinearly (align_corners) to the input, softmax over the two classes; mean over depths;
    - few-shot map, per depth: 1 - max cosine of a test token to the shot's tokens, upsampled the
      same way; mean over depths;
    - image score: the map's maximum.
    Tokens come from forward hooks on a fresh open_clip model holding the same weights (the plugin
    uses `forward_intermediates`). Maps atol 1e-5, scores rtol 1e-5."""
    import open_clip

    from baselines.anomalygpt import ABNORMAL_STATES, NORMAL_STATES, TEMPLATES, AnomalyGPT, depth_indices

    tiny = AnomalyGPT.meta.tiny
    assert tiny is not None
    config = tiny.options["model_overrides"]
    options = {"model_overrides": config, "epochs": 2, "anomalous_images": 6, "calibration_images": 4}
    plugin = AnomalyGPT(make_context(variant, **options))
    plugin.fit(toy_task["train"][:4])
    images = [s.image for s in toy_task["test"]]  # 64 px: the tiny model's input, no resize
    ours = plugin.predict(images)

    model = open_clip.create_model("ViT-B-16", pretrained=None, **config).eval()
    model.visual.load_state_dict(plugin.visual.state_dict())  # the same image tower weights
    depths = depth_indices(len(model.visual.transformer.resblocks))
    tokens = _hooked_tokens(model, _normalised(images, CLIP), depths)
    side = int(round(tokens[0].shape[1] ** 0.5))

    def upsample(per_patch: torch.Tensor) -> torch.Tensor:  # (B, N, C) -> (B, C, 64, 64)
        grid = per_patch.permute(0, 2, 1).reshape(per_patch.shape[0], -1, side, side)
        return torch.nn.functional.interpolate(grid, size=(64, 64), mode="bilinear", align_corners=True)

    with torch.no_grad():
        if variant == "unsupervised":
            torch.manual_seed(0)  # the plugin's text tower: the same seeded random init
            text_model = open_clip.create_model("ViT-B-16", pretrained=None, **config).eval()
            tokenizer = open_clip.get_tokenizer("ViT-B-16")
            prototypes = []
            for states in (NORMAL_STATES, ABNORMAL_STATES):
                prompts = [t.format(s.format("toy texture")) for s in states for t in TEMPLATES]
                embedded = torch.nn.functional.normalize(text_model.encode_text(tokenizer(prompts)), dim=-1)
                prototypes.append(torch.nn.functional.normalize(embedded.mean(dim=0), dim=0))
            text = torch.stack(prototypes)
            np.testing.assert_allclose(plugin.prototypes.numpy(), text.numpy(), atol=1e-6)
            maps = []
            for head, depth_tokens in zip(plugin.decoder.heads, tokens, strict=True):
                logits = 100.0 * torch.nn.functional.normalize(head(depth_tokens), dim=-1) @ text.T
                maps.append(upsample(logits).softmax(dim=1)[:, 1])
            expected = torch.stack(maps).mean(dim=0)
        else:
            shot = _hooked_tokens(model, _normalised([toy_task["train"][0].image], CLIP), depths)
            maps = []
            for query, memory in zip(tokens, shot, strict=True):
                similarity = torch.nn.functional.normalize(query, dim=-1) @ torch.nn.functional.normalize(
                    memory[0], dim=-1).T
                maps.append(upsample((1.0 - similarity.max(dim=-1).values)[..., None])[:, 0])
            expected = torch.stack(maps).mean(dim=0)
    np.testing.assert_allclose(ours.maps, expected.numpy(), atol=1e-5)
    np.testing.assert_allclose(ours.scores, expected.flatten(1).amax(dim=1).numpy(), rtol=1e-5, atol=1e-7)


# --- LTFM from the paper's equations, in float64 numpy ------------------------------------------------

def _gelu(x: np.ndarray) -> np.ndarray:
    from scipy.special import erf

    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _adaptive_bins(size: int, parts: int) -> list[tuple[int, int]]:
    """Adaptive average pooling's bins: [floor(i * size / parts), ceil((i + 1) * size / parts))."""
    return [(i * size // parts, -((-(i + 1) * size) // parts)) for i in range(parts)]


def _ltfm_reference(state: dict[str, np.ndarray], config, features: np.ndarray) -> tuple[float, np.ndarray]:  # noqa: ANN001
    """One image's LTFM: `(C, L, N, W)` tokens -> (anomaly score, `(C, gh, gw)` significance maps).

    Look-back class embedding from the global crop's base tokens (token pooling, MLP); per level the
    normal / abnormal descriptions from [e+; c] and [e-; c]; level map = softmax over 100 x cosine;
    significance = mean of the levels; 2 x 2 significance-weighted token pooling; attention of those
    tokens over all base tokens (values = the tokens); weighted mean over tokens and crops; MLP; sigmoid.
    """
    def linear(name: str, x: np.ndarray) -> np.ndarray:
        return x @ state[f"{name}.weight"].T + state[f"{name}.bias"]

    crops, levels, n, _ = features.shape
    width, (gh, gw), p = config.width, config.grid, config.pooled_grid
    base = features[:, -1, :, :width]
    pooled = linear("token_pool", base[0].T)[:, 0]
    c = linear("class_mlp.2", _gelu(linear("class_mlp.0", pooled)))
    level_maps = np.zeros((crops, levels, n))
    for level in range(levels):
        t_pos = _unit(linear(f"prompt_adapters.{level}", np.concatenate([state["pos_embedding"][0], c])))
        t_neg = _unit(linear(f"prompt_adapters.{level}", np.concatenate([state["neg_embedding"][0], c])))
        v = _unit(linear(f"token_adapters.{level}", features[:, level, :, : config.widths[level]]))
        logits = config.logit_scale * np.stack([v @ t_pos, v @ t_neg], axis=-1)
        level_maps[:, level] = np.exp(logits[..., 1] - np.logaddexp(logits[..., 0], logits[..., 1]))
    significance = level_maps.mean(axis=1)
    attended, weights = [], []
    for crop in range(crops):
        m = significance[crop].reshape(gh, gw)
        tokens = base[crop].reshape(gh, gw, width)
        queries, pooled_m = [], []
        for y0, y1 in _adaptive_bins(gh, p):
            for x0, x1 in _adaptive_bins(gw, p):
                mass = m[y0:y1, x0:x1].mean()
                queries.append((tokens[y0:y1, x0:x1] * m[y0:y1, x0:x1, None]).mean(axis=(0, 1)) / max(mass, 1e-6))
                pooled_m.append(mass)
        q = linear("attention.query", np.stack(queries))
        k = linear("attention.key", base[crop])
        scores = q @ k.T / np.sqrt(k.shape[-1])
        attention = np.exp(scores - scores.max(axis=-1, keepdims=True))
        attention /= attention.sum(axis=-1, keepdims=True)
        attended.append(attention @ base[crop])
        weights.append(np.asarray(pooled_m) * significance[crop].mean())
    attended_all, weights_all = np.concatenate(attended), np.concatenate(weights)[:, None]
    pooled_tokens = (attended_all * weights_all).mean(axis=0) / max(weights_all.mean(), 1e-6)
    logit = linear("head.2", _gelu(linear("head.0", pooled_tokens)))[0]
    return 1.0 / (1.0 + np.exp(-logit)), significance.reshape(crops, gh, gw)


def test_ltfm_module_equals_its_equations() -> None:
    """Five crops (global + 2 x 2 local, as with AnyRes), an odd 5 x 7 token grid (overlapping
    adaptive-pooling bins), levels of unequal width: score and significance maps atol 1e-5."""
    from ltfm.module import LTFM, LTFMConfig

    torch.manual_seed(3)
    config = LTFMConfig(width=24, grid=(5, 7), embedding_dim=16, class_dim=12, attention_dim=8, head_dim=10,
                        level_widths=(8, 16, 24, 24), logit_scale=10.0)
    model = LTFM(config).eval()
    features = torch.randn(3, 5, 4, 35, 24)
    for level, real in enumerate(config.widths):
        features[:, :, level, :, real:] = 0.0  # narrower levels are zero-padded, as towers deliver them
    with torch.no_grad():
        out = model(features)
    state = {k: v.double().numpy() for k, v in model.state_dict().items()}
    for b in range(3):
        score, maps = _ltfm_reference(state, config, features[b].double().numpy())
        assert out.score[b].item() == pytest.approx(score, abs=1e-5)
        np.testing.assert_allclose(out.significance_map[b].numpy(), maps, atol=1e-5)


def test_ltfm_plugin_scores_and_maps_equal_the_equations_on_hooked_tower_tokens(
    make_context: Callable[..., MethodContext], toy_task: dict[str, list[Sample]]
) -> None:
    """End to end: the fitted plugin's scores and maps against the equations above, fed with tokens
    from forward hooks on a fresh copy of its tower (DINOv2 blocks at 1/4, 1/2, 3/4 and the end,
    the final norm applied, prefix tokens dropped); maps upsampled bilinearly to the tower input;
    scores are the maximum of the map (`score=auto` with masked training anomalies). Scores atol 1e-5, maps atol 1e-5."""
    from baselines.ltfm_plugin import LTFMBaseline
    from ltfm.towers import level_depths

    tiny = LTFMBaseline.meta.tiny
    assert tiny is not None
    plugin = LTFMBaseline(make_context(tiny.variant, **tiny.options))
    plugin.fit(toy_task["train"][:4] + toy_task["test"][-2:], toy_task["val"])
    images = [s.image for s in toy_task["test"]]
    ours = plugin.predict(images)

    source = plugin.tower.model
    vit = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=64, num_classes=0,
                            patch_size=8, embed_dim=32, depth=4, num_heads=2)
    vit.load_state_dict(source.state_dict())
    vit.eval()
    depths = [d - 1 for d in level_depths(len(vit.blocks))]
    caught: dict[int, torch.Tensor] = {}
    hooks = [vit.blocks[d].register_forward_hook(lambda _m, _i, out, d=d: caught.__setitem__(d, out)) for d in depths]
    with torch.no_grad():
        vit.forward_features(_normalised(images, IMAGENET))
        levels = [vit.norm(caught[d])[:, vit.num_prefix_tokens :] for d in depths]
    for hook in hooks:
        hook.remove()
    features = torch.stack(levels, dim=1)[:, None].double().numpy()  # (B, 1 crop, L, N, W)
    assert plugin.model is not None
    state = {k: v.double().numpy() for k, v in plugin.model.state_dict().items()}
    for b, image_features in enumerate(features):
        head, cells = _ltfm_reference(state, plugin.model.config, image_features)
        assert plugin.score == "map"  # auto: its training anomalies have masks, so the peak of M
        assert ours.scores[b] == pytest.approx(cells.max(), abs=1e-5)
        assert head != pytest.approx(cells.max(), abs=1e-3)  # the two scores differ: this checks which one
        up = torch.nn.functional.interpolate(torch.from_numpy(cells[None]), size=(64, 64), mode="bilinear",
                                             align_corners=False)[0, 0].numpy()
        np.testing.assert_allclose(ours.maps[b], up, atol=1e-5)


# --- the shared map smoothing against scipy -----------------------------------------------------------

@pytest.mark.parametrize(("sigma", "shape"), [(0.5, (40, 56)), (1.0, (40, 56)), (4.0, (40, 56)), (0.5, (3, 30))])
def test_gaussian_blur_maps_equals_scipy(sigma: float, shape: tuple[int, int]) -> None:
    """`gaussian_blur_maps` is `scipy.ndimage.gaussian_filter` (radius int(4 sigma + 0.5), half-sample
    reflection) wherever a map is at least the radius wide (3 px rows at sigma 0.5: radius 2). Narrower
    maps are extended by their own width only, as its docstring says; scipy reflects again."""
    from baselines.common import gaussian_blur_maps

    maps = np.random.default_rng(0).random((2, *shape))
    ours = gaussian_blur_maps(torch.from_numpy(maps), sigma).numpy()
    for got, m in zip(ours, maps, strict=True):
        np.testing.assert_allclose(got, ndimage.gaussian_filter(m, sigma), rtol=0, atol=1e-12)
