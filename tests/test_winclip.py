"""winclip: the plugin adds nothing to anomalib's WinClipModel; weights come from our resolver."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import open_clip
import pytest
import torch
from anomalib.models.image.winclip import torch_model as anomalib_winclip
from anomalib.models.image.winclip.lightning_model import WinClip as AnomalibWinClip
from anomalib.models.image.winclip.utils import harmonic_aggregation, make_masks
from torchvision.transforms.v2.functional import normalize

from baselines.common import CLIP_MEAN, CLIP_STD, images_to_tensor
from baselines.winclip import WINCLIP_WEIGHTS, WinClip
from benchmarks.plugins.registry import BASELINES
from benchmarks.plugins.weights import WeightsResolver

# A 2-layer CLIP with the real tokenizer (context 77); 64 px / patch 16 = 4x4 grid, enough for windows 2 and 3.
TINY_CLIP = WinClip.meta.tiny.options["model_overrides"]  # type: ignore[union-attr]


def _fit(make_context, toy_task, variant: str, **options: object) -> WinClip:
    torch.manual_seed(0)
    plugin = WinClip(make_context(variant, model_overrides=TINY_CLIP, **options))
    plugin.fit(toy_task["train"])
    return plugin


def window_embeddings_by_definition(clip: torch.nn.Module, feature_map: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """WinCLIP's window embedding from its definition: for every image and window, the class token and
    the window's patch tokens alone go through the rest of the vision tower as a sequence of their own,
    one window per call. The blocks are written out here (pre-norm attention with the block's own
    projection weights, written with plain products and softmax, then the MLP), so neither anomalib's
    batching nor open_clip's tensor layout is involved. `(B, n_windows, D)`."""
    visual = clip.visual
    out = torch.empty(feature_map.shape[0], masks.shape[1], visual.output_dim)
    for b in range(feature_map.shape[0]):
        for w in range(masks.shape[1]):
            x = visual.ln_pre(torch.cat([feature_map[b, :1], feature_map[b, masks[:, w] + 1]]))  # (L, D)
            for block in visual.transformer.resblocks:
                attn, h = block.attn, block.ln_1(x)
                q, k, v = (h @ attn.in_proj_weight.T + attn.in_proj_bias).chunk(3, dim=-1)
                heads = attn.num_heads
                q, k, v = (t.reshape(len(x), heads, -1).transpose(0, 1) for t in (q, k, v))
                weights = (q @ k.transpose(1, 2) / q.shape[-1] ** 0.5).softmax(dim=-1)
                mixed = (weights @ v).transpose(0, 1).reshape(len(x), -1)
                x = x + block.ls_1(attn.out_proj(mixed))
                x = x + block.ls_2(block.mlp(block.ln_2(x)))
            out[b, w] = visual.ln_post(x)[0] @ visual.proj
    return out


def test_window_embeddings_equal_their_definition(make_context, toy_task):
    """Every window is encoded on its own tokens (anomalib 2.7 with open_clip 3 mixes the windows in
    attention and gives all windows one embedding: checked here too, so the fix stays needed)."""
    plugin = _fit(make_context, toy_task, "k0")
    model = plugin.model
    pixels = plugin._to_tensor([s.image for s in toy_task["test"][:2]])
    caught = {}
    hook = model.clip.visual.patch_dropout.register_forward_hook(lambda _m, args, _o: caught.update(tokens=args[0]))
    with torch.no_grad():
        model.clip.encode_image(pixels)
    hook.remove()
    for masks in model.masks:
        with torch.no_grad():
            ours = model._get_window_embeddings(caught["tokens"], masks)
            expected = window_embeddings_by_definition(model.clip, caught["tokens"], masks)
            anomalibs = anomalib_winclip.WinClipModel._get_window_embeddings(model, caught["tokens"], masks)
        np.testing.assert_allclose(ours.numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)
        assert float((expected[:, 1:] - expected[:, :1]).abs().max()) > 1e-3  # windows differ
        assert float((anomalibs[:, 1:] - anomalibs[:, :1]).abs().max()) < 1e-5  # anomalib's: all alike


@pytest.mark.parametrize("variant", ["k0", "k2"])
def test_scores_equal_anomalib_winclip_model(make_context, toy_task, monkeypatch, variant):
    """Scores and maps equal anomalib's `WinClipModel`, built by its own constructor, once its window
    embeddings are the definition's (`window_embeddings_by_definition`): the plugin's one deviation."""
    plugin = _fit(make_context, toy_task, variant)
    test_images = [s.image for s in toy_task["test"]]
    ours = plugin.predict(test_images)
    ours.check(len(test_images))

    # anomalib's own model, built by anomalib's constructor on a copy of the same random CLIP
    clip = copy.deepcopy(plugin.model.clip)
    monkeypatch.setattr(open_clip, "create_model_and_transforms", lambda *a, **k: (clip, None, None))
    monkeypatch.setattr(anomalib_winclip.WinClipModel, "_get_window_embeddings",
                        lambda self, feature_map, masks: window_embeddings_by_definition(self.clip, feature_map, masks))

    def tensor(images):  # 64x64 toy images at the model's 64 px input: no resize involved
        x = torch.stack([torch.from_numpy(i).permute(2, 0, 1).float() / 255 for i in images])
        return normalize(x, list(CLIP_MEAN), list(CLIP_STD))

    shots = plugin.variant.shots
    references = tensor([s.image for s in toy_task["train"][:shots]]) if shots else None
    reference = anomalib_winclip.WinClipModel(class_name="toy texture", reference_images=references)
    assert reference.k_shot == (shots or 0)
    expected = reference(tensor(test_images))

    np.testing.assert_allclose(ours.scores, expected.pred_score.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours.maps, expected.anomaly_map.numpy(), rtol=1e-5, atol=1e-6)
    assert ours.maps.shape == (len(test_images), 64, 64)


def test_preprocessing_matches_anomalib_pre_processor():
    """Same 240x240 tensor as anomalib's WinClip pre-processor (smooth image: no bicubic overshoot to clamp)."""
    yy, xx = np.mgrid[0:96, 0:64]
    image = np.stack([0.3 + 0.4 * yy / 96, 0.3 + 0.4 * xx / 64, np.full_like(yy, 0.5, dtype=float)], -1)
    image = (image * 255).round().astype(np.uint8)
    ours = images_to_tensor([image], 240, CLIP_MEAN, CLIP_STD)
    transform = AnomalibWinClip.configure_pre_processor().transform
    theirs = transform(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255)
    assert ours.shape == theirs.shape == (1, 3, 240, 240)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)


def test_harmonic_aggregation_by_hand():
    """Windows 2x2 on a 3x3 grid: a patch's score is the harmonic mean of the windows covering it."""
    masks = make_masks((3, 3), kernel_size=2, stride=1)  # 4 windows: top-left, top-right, bottom-left, bottom-right
    window_scores = torch.tensor([[1.0, 0.5, 0.25, 0.2]])
    h = lambda *s: len(s) / sum(1 / v for v in s)  # noqa: E731
    expected = torch.tensor([
        [h(1.0), h(1.0, 0.5), h(0.5)],
        [h(1.0, 0.25), h(1.0, 0.5, 0.25, 0.2), h(0.5, 0.2)],
        [h(0.25), h(0.25, 0.2), h(0.2)],
    ])
    torch.testing.assert_close(harmonic_aggregation(window_scores, (3, 3), masks)[0], expected)
    assert abs(expected[1, 1].item() - 1 / 3) < 1e-7  # 4 / (1 + 2 + 4 + 5)
    assert anomalib_winclip.harmonic_aggregation is harmonic_aggregation  # the function WinClipModel uses


def test_resolver_weights_are_loaded(make_context, toy_task, tmp_path):
    source = open_clip.create_model("ViT-B-16-plus-240", pretrained=None, **TINY_CLIP)
    torch.save(source.state_dict(), tmp_path / f"{WINCLIP_WEIGHTS.key}.bin")
    resolver = WeightsResolver(mode="pretrained", weights_dir=tmp_path, allow_download=False)
    context = dataclasses.replace(make_context("k0", model_overrides=TINY_CLIP), weights=resolver)
    plugin = WinClip(context)
    plugin.fit([])
    for name, value in source.state_dict().items():
        torch.testing.assert_close(plugin.model.clip.state_dict()[name], value, msg=name)
    assert resolver.summary()[0]["mode"] == "pretrained"
    assert anomalib_winclip.open_clip is open_clip  # the constructor hook is undone


def test_weight_spec_is_open_clips_registry_entry():
    cfg = open_clip.get_pretrained_cfg("ViT-B-16-plus-240", "laion400m_e31")
    assert WINCLIP_WEIGHTS.hf_repo == cfg["hf_hub"].strip("/")
    assert (WINCLIP_WEIGHTS.model_id, WINCLIP_WEIGHTS.tag) == (anomalib_winclip.BACKBONE, anomalib_winclip.PRETRAINED)


def test_meta_options_and_registration(make_context):
    assert BASELINES.get("winclip") is WinClip
    meta = WinClip.meta
    assert meta.default_variants == ("k0",) and meta.input_size == 240
    assert {k: v.shots for k, v in meta.variants.items()} == {"k0": None, "k1": 1, "k2": 2, "k4": 4}
    with pytest.raises(ValueError, match="unknown options"):
        WinClip(make_context("k0", backbone="x"))
    with pytest.raises(RuntimeError, match="fit"):
        WinClip(make_context("k0")).predict([np.zeros((8, 8, 3), np.uint8)])
