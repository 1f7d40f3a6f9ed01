"""What kind of defect a flagged region likely is, and how big it is.

The kind is learnt from the labelled anomalies the run already has: every validation anomaly with a
mask gives a reference region (a square crop around its mask's bounding box), described by the
ImageNet MobileNetV2 bundled with the suite (global-average-pooled `conv_head` features,
L2-normalised, of the crop resized to 224 px). A flagged image's region (the crop around its peak
box) is described the same way and takes the kind of its nearest reference (cosine similarity).
This is not the method's own feature space: the harness does not see inside a method, and one
descriptor serves every method alike. Size: the box's longer side in pixels and, where the capture
records its scale (`mm_per_px`), in millimetres.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from benchmarks.plugins.bundled_backbone import INPUT_SIZE, MOBILENETV2_IN1K, build_mobilenetv2, stage_outputs
from benchmarks.plugins.weights import WeightsResolver

CONTEXT = 0.5
"""A reference or query crop is the region's box grown by this share of its longer side on each side."""
MIN_CROP = 24
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def crop_bounds(image_hw: tuple[int, int], box: tuple[int, int, int, int],
                context: float = CONTEXT) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the square around `box` = (x0, y0, x1, y1), grown by `context`,
    clipped to the image (at least one pixel each way)."""
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0, 1)
    half = max(MIN_CROP, side * (1 + 2 * context)) / 2
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    h, w = image_hw
    left, top = int(max(0, cx - half)), int(max(0, cy - half))
    right, bottom = int(min(w, cx + half)), int(min(h, cy + half))
    return top, max(bottom, top + 1), left, max(right, left + 1)


def square_crop(pixels: np.ndarray, box: tuple[int, int, int, int], context: float = CONTEXT) -> np.ndarray:
    """The full-resolution crop `crop_bounds` gives around `box`."""
    top, bottom, left, right = crop_bounds(pixels.shape[:2], box, context)
    return pixels[top:bottom, left:right]


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


class RegionDescriber:
    """MobileNetV2 (bundled ImageNet weights) descriptors of image regions: `(N, 1280)` unit vectors."""

    def __init__(self) -> None:
        resolved = WeightsResolver(mode="auto").resolve(MOBILENETV2_IN1K)
        self.weights = resolved.mode
        self.model = build_mobilenetv2(resolved)

    @torch.inference_mode()
    def describe(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        if not crops:
            return np.zeros((0, 1280), np.float32)
        batch = np.stack([np.asarray(Image.fromarray(c).convert("RGB").resize((INPUT_SIZE, INPUT_SIZE)),
                                     np.float32) / 255 for c in crops])
        x = (torch.from_numpy(batch) - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
        features = stage_outputs(self.model, x.permute(0, 3, 1, 2), ("conv_head",))["conv_head"].mean(dim=(2, 3))
        return torch.nn.functional.normalize(features, dim=1).numpy()


@dataclass(frozen=True)
class KindGuess:
    kind: str
    similarity: float
    reference: str  # the nearest reference image


@dataclass
class KindReferences:
    """The labelled regions a guess is read against (validation anomalies with masks)."""

    describer: RegionDescriber
    kinds: list[str]
    names: list[str]
    vectors: np.ndarray

    @classmethod
    def build(cls, describer: RegionDescriber, regions: Sequence[tuple[str, str, np.ndarray, np.ndarray]]
              ) -> KindReferences:
        """`regions`: (name, defect kind, image pixels, mask) of each labelled anomaly."""
        kinds, names, crops = [], [], []
        for name, kind, pixels, mask in regions:
            box = mask_box(mask)
            if box is None:
                continue
            kinds.append(kind)
            names.append(name)
            crops.append(square_crop(pixels, box))
        return cls(describer, kinds, names, describer.describe(crops))

    @property
    def empty(self) -> bool:
        return not self.kinds

    def guess(self, pixels: np.ndarray, box: tuple[int, int, int, int], name: str | None = None) -> KindGuess | None:
        """The nearest reference's kind; an image that is itself a reference (`name`) is not its own neighbour."""
        if self.empty or (len(self.kinds) == 1 and self.names[0] == name):
            return None
        vector = self.describer.describe([square_crop(pixels, box)])[0]
        similarity = self.vectors @ vector
        if name is not None:
            similarity = np.where(np.asarray(self.names) == name, -np.inf, similarity)
        best = int(np.argmax(similarity))
        return KindGuess(self.kinds[best], float(similarity[best]), self.names[best])


def region_size(box: tuple[int, int, int, int], mm_per_px: float | None) -> tuple[int, float | None]:
    """The box's longer side in pixels, and in mm where the capture's scale is known."""
    side = max(box[2] - box[0], box[3] - box[1])
    return side, (side * mm_per_px if mm_per_px else None)
