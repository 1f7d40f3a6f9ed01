"""The gallery raster: image, ground-truth and map panels of every row composed into one RGB canvas."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib as mpl
import numpy as np
from matplotlib.colors import to_rgb
from PIL import Image
from scipy import ndimage

GALLERY_PANEL = 128  # panel width in pixels of the composed gallery raster
GALLERY_GAP = 6
GALLERY_CMAP = "inferno"
GROUND_TRUTH_COLOR = "#00e5ff"


@dataclass(frozen=True)
class GalleryRow:
    """One test image of the gallery: RGB `(H, W, 3)` uint8 and bool mask `(H, W)`, None when unreadable."""

    image_id: str
    label: str
    image: np.ndarray | None
    mask: np.ndarray | None


def row_height(row: GalleryRow) -> int:
    """Canvas pixels of a row: the image's aspect at `GALLERY_PANEL` wide (clipped to 1:2..3:1), square without one."""
    if row.image is None:
        return GALLERY_PANEL
    aspect = float(np.clip(row.image.shape[0] / row.image.shape[1], 0.5, 3.0))
    return round(GALLERY_PANEL * aspect)


def compose_canvas(
    rows: Sequence[GalleryRow], scaled_maps: Sequence[np.ndarray]
) -> tuple[np.ndarray, list[int], list[int], list[tuple[float, float, str]]]:
    """Compose every panel into one white RGB canvas: `(H, W, 3)` float, the rows' top and the
    columns' left pixel, and (x, y, text) notes to write at the bottom of panels."""
    heights = [row_height(r) for r in rows]
    columns = 2 + len(scaled_maps)
    lefts = [c * (GALLERY_PANEL + GALLERY_GAP) for c in range(columns)]
    tops = [sum(heights[:i]) + i * GALLERY_GAP for i in range(len(rows))]
    canvas = np.ones((tops[-1] + heights[-1], lefts[-1] + GALLERY_PANEL, 3))
    cmap = mpl.colormaps[GALLERY_CMAP]
    notes: list[tuple[float, float, str]] = []
    for i, (row, top, height) in enumerate(zip(rows, tops, heights, strict=True)):
        size = (GALLERY_PANEL, height)
        image = _resized(row.image, size, Image.Resampling.LANCZOS) / 255 if row.image is not None else None
        mask = (
            _resized(row.mask.astype(np.uint8) * 255, size, Image.Resampling.NEAREST) > 127
            if row.mask is not None
            else None
        )
        ring = (ndimage.binary_dilation(mask, iterations=2) & ~mask) if mask is not None else None
        panels = [image if image is not None else np.full((height, GALLERY_PANEL, 3), 0.85)]
        truth = panels[0].copy()
        if mask is not None:
            truth[mask] = 0.45 * truth[mask] + 0.55 * np.array(to_rgb(GROUND_TRUTH_COLOR))
            truth[ring] = to_rgb(GROUND_TRUTH_COLOR)
            if 0 < mask.sum() < 0.005 * mask.size:  # a tiny defect also gets a box around it
                ys, xs = np.nonzero(mask)
                y0, y1 = max(ys.min() - 8, 0), min(ys.max() + 8, height - 1)
                x0, x1 = max(xs.min() - 8, 0), min(xs.max() + 8, GALLERY_PANEL - 1)
                box = np.zeros_like(mask)
                box[y0 : y1 + 1, [x0, x1]] = box[[y0, y1], x0 : x1 + 1] = True
                truth[box] = to_rgb(GROUND_TRUTH_COLOR)
        panels.append(truth)
        gray = np.repeat(image.mean(axis=2, keepdims=True), 3, axis=2) if image is not None else None
        for scaled in scaled_maps:
            heat = np.clip(_resized(scaled[i].astype(np.float32), size, Image.Resampling.BILINEAR), 0, 1)
            colored = cmap(heat)[..., :3]
            alpha = (0.15 + 0.75 * heat)[..., None]
            panel = colored if gray is None else gray * (1 - alpha) + colored * alpha
            if ring is not None:
                panel[ring] = to_rgb(GROUND_TRUTH_COLOR)
            panels.append(panel)
        for left, panel in zip(lefts, panels, strict=True):
            canvas[top : top + height, left : left + GALLERY_PANEL] = panel
        bottom = top + height - 3
        if image is None:
            notes.append((lefts[0] + GALLERY_PANEL / 2, top + height / 2, "image not found"))
        if mask is None or not mask.any():
            normal = row.label.startswith(("normal", "hard negative"))
            notes.append((lefts[1] + GALLERY_PANEL / 2, bottom, "no defect" if normal else "no mask"))
    return canvas, tops, lefts, notes


def _resized(array: np.ndarray, size: tuple[int, int], resample: Image.Resampling) -> np.ndarray:
    """`array` (uint8 image or float32 2-D map) resized to `size` = (width, height)."""
    picture = Image.fromarray(array)
    return np.asarray(picture if picture.size == size else picture.resize(size, resample), dtype=np.float64)
