"""Frozen vision towers that return patch tokens from four depths (1/4, 1/2, 3/4 and the end).

A tower is an `nn.Module` whose `forward` maps normalised pixels `(B, 3, S, S)` to
`TowerFeatures`: four `(B, N, width)` token tensors, `N = (S / patch)^2`, class/register tokens
dropped. The last level (the end of the tower) doubles as the "base" tokens that LTFM pools for
its look-back class embedding and aggregates for its score; for the global crop these are the
global-crop tokens. Input resolution is fixed per tower because LTFM's `Linear(tokens -> 1)`
look-back pooling needs a fixed token count.

Architectures by name in `ARCHITECTURES` (a builder `(weights_file, image_size) -> VisionTower`;
`weights_file` None keeps the random initialisation, so seed the global RNG before building):
- `siglip-so400m`: transformers `SiglipVisionModel`, the paper's tower (27 layers, width 1152,
  patch 14, 384 px -> 27x27 tokens). Raw block outputs, as LLaVA-OneVision feeds them on.
- `clip-vit-b16`: open_clip `ViT-B-16` (`laion2b_s34b_b88k`), 224 px -> 14x14 tokens, width 768.
- `dinov2-vit-s14`: timm `vit_small_patch14_dinov2.lvd142m`, 224 px -> 16x16 tokens, width 384.
  CLIP and DINOv2 levels pass through the tower's final LayerNorm (their usual patch features).
- `siglip-tiny`, `clip-tiny`, `dinov2-tiny`: 4-block, width-32 versions of the same code paths
  (64 px, patch 8) for tests; no published weights exist, but a file loads through the same code
  as the real ones.

`CnnStageTower` turns any CNN with four stages into a tower: each stage is resampled to one
stride-16 token grid (wider maps average-pooled, narrower ones bilinearly upsampled); the levels
differ in width (`level_widths`; `TowerFeatures.stack` zero-pads them to the widest). LTFM's
look-back pools tokens with its own `Linear(N -> 1)`, so no class token is needed.

This package stands alone: it imports nothing of the benchmark harness. Finding weight files
(caches, the bundled ImageNet backbone that stands in offline) is the caller's job; the suite's
is `baselines/ltfm_towers.py`.
"""

from __future__ import annotations

import contextlib
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

from ltfm.anyres import AnyResGrid
from ltfm.weight_files import read_weights

if TYPE_CHECKING:
    from transformers import SiglipVisionConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)
NUM_LEVELS = 4

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
        self, name: str, width: int, image_size: int, patch_size: int, mean: Sequence[float], std: Sequence[float],
    ) -> None:
        super().__init__()
        self.name = name
        self.width = width
        self.image_size = image_size
        self.patch_size = patch_size
        self.mean = tuple(mean)
        self.std = tuple(std)
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

    def __init__(self, name: str, config: SiglipVisionConfig, image_size: int, weights_file: Path | None) -> None:
        from transformers import SiglipVisionModel

        super().__init__(name, config.hidden_size, image_size, config.patch_size, SIGLIP_MEAN, SIGLIP_STD)
        # With a weight file the strict load below overwrites every parameter: skip the random
        # initialisation (about 10 s of the so400m build on 2 CPU cores).
        with _no_init_weights() if weights_file is not None else contextlib.nullcontext():
            self.model = SiglipVisionModel(config)
        self.native_size = config.image_size
        self.depths = level_depths(config.num_hidden_layers)
        if weights_file is not None:
            state = _siglip_vision_state(weights_file)
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

    def __init__(self, name: str, visual: nn.Module, image_size: int, weights_file: Path | None) -> None:
        width = visual.transformer.width  # type: ignore[union-attr]
        patch = visual.patch_size[0]  # type: ignore[index]
        super().__init__(name, int(width), image_size, int(patch), CLIP_MEAN, CLIP_STD)
        self.visual = visual
        if weights_file is not None:
            self.visual.load_state_dict(_open_clip_visual_state(weights_file, visual), strict=True)
        self.indices = [d - 1 for d in level_depths(len(visual.transformer.resblocks))]  # type: ignore[union-attr]
        self.freeze()

    def _levels(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        out = self.visual.forward_intermediates(  # type: ignore[operator]
            pixels, indices=self.indices, intermediates_only=True, normalize_intermediates=True, output_fmt="NLC"
        )
        return list(out["image_intermediates"])


class TimmTower(VisionTower):
    """A timm ViT (DINOv2); levels from `forward_intermediates(norm=True)`, prefix tokens dropped."""

    def __init__(self, name: str, model: nn.Module, image_size: int) -> None:
        patch = model.patch_embed.patch_size[0]  # type: ignore[index, union-attr]
        super().__init__(name, int(model.embed_dim), image_size, int(patch),  # type: ignore[arg-type]
                         IMAGENET_MEAN, IMAGENET_STD)
        self.model = model
        self.indices = [d - 1 for d in level_depths(len(model.blocks))]  # type: ignore[arg-type]
        self.freeze()

    def _levels(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        return list(self.model.forward_intermediates(  # type: ignore[operator]
            pixels, indices=self.indices, intermediates_only=True, norm=True, output_fmt="NLC"
        ))


class CnnStageTower(VisionTower):
    """A CNN's four stages as token levels on one stride-16 grid (see the module docstring).

    `stages(pixels)` returns the four feature maps `(B, C_l, H_l, W_l)`, shallow to deep, with the
    channel counts `widths`; `model` is the CNN (kept as a submodule so it moves and freezes with
    the tower).
    """

    def __init__(self, name: str, model: nn.Module, stages: Callable[[torch.Tensor], Sequence[torch.Tensor]],
                 widths: Sequence[int], image_size: int) -> None:
        if image_size % 16:
            raise ValueError(f"{name} needs an input size that is a multiple of 16, got {image_size}")
        super().__init__(name, max(widths), image_size, 16, IMAGENET_MEAN, IMAGENET_STD)
        self.model = model
        self.stages = stages
        self.level_widths = tuple(widths)
        self.freeze()

    def _levels(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        grid = self.grid
        levels = []
        for feature in self.stages(pixels):
            if tuple(feature.shape[-2:]) != grid:
                larger = feature.shape[-1] > grid[1]
                feature = (F.adaptive_avg_pool2d(feature, grid) if larger
                           else F.interpolate(feature, size=grid, mode="bilinear", align_corners=False))
            levels.append(feature.flatten(2).transpose(1, 2))
        return levels


def siglip_config(**overrides: object) -> SiglipVisionConfig:
    """A `SiglipVisionConfig` with so400m-patch14-384's shapes (no pooling head), fields overridable."""
    from transformers import SiglipVisionConfig

    shapes: dict[str, object] = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27,
                                     num_attention_heads=16, patch_size=14, image_size=384)
    return SiglipVisionConfig(**{**shapes, **overrides, "vision_use_head": False})


def siglip_so400m(weights_file: Path | None, image_size: int | None = None) -> VisionTower:
    return SiglipTower("siglip-so400m", siglip_config(), image_size or 384, weights_file)


def siglip_tiny(weights_file: Path | None, image_size: int | None = None) -> VisionTower:
    config = siglip_config(hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                           num_attention_heads=2, patch_size=8, image_size=64)
    return SiglipTower("siglip-tiny", config, image_size or 64, weights_file)


def clip_vit_b16(weights_file: Path | None, image_size: int | None = None) -> VisionTower:
    import open_clip

    size = image_size or 224
    model = open_clip.create_model("ViT-B-16", pretrained=None, force_image_size=size)
    return OpenClipTower("clip-vit-b16", model.visual, size, weights_file)


def clip_tiny(weights_file: Path | None, image_size: int | None = None) -> VisionTower:
    from open_clip.transformer import VisionTransformer

    size = image_size or 64
    visual = VisionTransformer(image_size=size, patch_size=8, width=32, layers=4, heads=2, mlp_ratio=2.0,
                               output_dim=16)
    return OpenClipTower("clip-tiny", visual, size, weights_file)


def dinov2_vit_s14(weights_file: Path | None, image_size: int | None = None) -> VisionTower:
    size = image_size or 224
    return TimmTower("dinov2-vit-s14", _timm_vit("vit_small_patch14_dinov2.lvd142m", weights_file, size), size)


def dinov2_tiny(weights_file: Path | None, image_size: int | None = None) -> VisionTower:
    size = image_size or 64
    model = _timm_vit("vit_small_patch14_dinov2", weights_file, size, patch_size=8, embed_dim=32, depth=4,
                      num_heads=2)
    return TimmTower("dinov2-tiny", model, size)


TowerBuilder = Callable[[Path | None, int | None], VisionTower]
ARCHITECTURES: dict[str, TowerBuilder] = {
    "siglip-so400m": siglip_so400m,
    "siglip-tiny": siglip_tiny,
    "clip-vit-b16": clip_vit_b16,
    "clip-tiny": clip_tiny,
    "dinov2-vit-s14": dinov2_vit_s14,
    "dinov2-tiny": dinov2_tiny,
}


def _timm_vit(model_id: str, weights_file: Path | None, size: int, **arch: object) -> nn.Module:
    """A timm ViT at `size` px; weights through timm's own pretrained path from the local file
    (its checkpoint filter resamples the position embeddings; `.bin` files load with weights_only)."""
    import timm

    overlay = {"file": str(weights_file)} if weights_file is not None else None
    return timm.create_model(model_id, pretrained=weights_file is not None, pretrained_cfg_overlay=overlay,
                             img_size=size, num_classes=0, **arch)


def _no_init_weights() -> contextlib.AbstractContextManager[object]:
    """transformers' own switch that skips weight initialisation (module moved in transformers 5)."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # transformers < 5
        from transformers.modeling_utils import no_init_weights
    return no_init_weights()


def _siglip_vision_state(path: Path) -> dict[str, torch.Tensor]:
    """The `vision_model.*` weights of a SigLIP file or snapshot folder, prefix and pooling head dropped."""
    files = sorted(Path(path).glob("*.safetensors")) if Path(path).is_dir() else [Path(path)]
    if not files:
        raise FileNotFoundError(f"{path}: no .safetensors weight file in this SigLIP snapshot folder")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update(read_weights(file))
    return {k.removeprefix("vision_model."): v for k, v in state.items()
            if k.startswith("vision_model.") and not k.startswith("vision_model.head.")}


def _open_clip_visual_state(path: Path, visual: nn.Module) -> dict[str, torch.Tensor]:
    """The `visual.*` weights of an open_clip CLIP checkpoint, position grid resampled to `visual`'s."""
    from open_clip.model import resize_pos_embed

    state = {k.removeprefix("module."): v for k, v in read_weights(path).items()}
    resize_pos_embed(state, SimpleNamespace(visual=visual))
    return {k.removeprefix("visual."): v for k, v in state.items() if k.startswith("visual.")}


def encode_images(
    tower: VisionTower, images: Sequence[np.ndarray], grid: AnyResGrid | None = None, device: str = "cpu",
    batch_size: int = 16,
) -> torch.Tensor:
    """RGB uint8 images -> float32 features `(B, C, L, N, width)` on CPU: C = `grid.num_crops` crops
    (the global view alone when `grid` is None)."""
    grid = grid or AnyResGrid.global_only(tower.image_size)
    flat = [crop for image in images for crop in grid.crops(image)]
    chunks = []
    for start in range(0, len(flat), batch_size):
        pixels = tower.preprocess(flat[start : start + batch_size]).to(device)
        chunks.append(tower(pixels).stack().cpu())
    feats = torch.cat(chunks)
    return feats.view(len(images), grid.num_crops, *feats.shape[1:])
