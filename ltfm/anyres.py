"""AnyRes: how Anomaly-OneVision (after LLaVA-OneVision) shows an image larger than its tower input.

The image is seen twice: a global view squashed to the tower's square input (the tower's own
`preprocess` does that), and a grid of `rows x cols` tower-sized tiles of the image at close to
its own resolution. The grid is LLaVA's `select_best_resolution`: among the candidate canvases
`(cols * tile, rows * tile)`, keep the one that shows the most of the image's pixels (an image
scaled up counts only its original pixel count), ties broken by the least padding. The image is
resized into that canvas with its aspect ratio kept, centred and padded with black, and cut into
tiles; a portrait phone of 384 x 768 at tile 256 gets 2 columns x 3 rows at scale 1.

Unlike LLaVA, one grid is chosen per dataset (`AnyResGrid.best_for` the training images' size)
and every image is fitted into it, so that all images have the same number of crops and batch
together; for a dataset of one image size (every capture of a QC station) this is LLaVA's grid.
Candidates are bounded by `max_tiles` (LLaVA-OneVision's grid pinpoints go to 6 x 6).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


@dataclass(frozen=True)
class AnyResGrid:
    """`rows x cols` tiles of `tile` px after the global view; `rows == cols == 0` is the global view alone."""

    rows: int
    cols: int
    tile: int

    @classmethod
    def global_only(cls, tile: int) -> AnyResGrid:
        return cls(0, 0, tile)

    @classmethod
    def best_for(cls, height: int, width: int, tile: int, max_tiles: int) -> AnyResGrid:
        """LLaVA's best-fit grid for an `height x width` image; the global view alone when it fits the tile."""
        if height <= tile and width <= tile or max_tiles < 1:
            return cls.global_only(tile)
        best: tuple[tuple[int, int], tuple[int, int]] | None = None
        for rows in range(1, max_tiles + 1):
            for cols in range(1, max_tiles // rows + 1):
                scale = min(cols * tile / width, rows * tile / height)
                shown = min(int(width * scale) * int(height * scale), width * height)
                key = (shown, -(cols * tile * rows * tile - shown))
                if best is None or key > best[0]:
                    best = (key, (rows, cols))
        assert best is not None
        return cls(*best[1], tile)

    @property
    def num_crops(self) -> int:
        """Crops per image: the global view plus the tiles."""
        return 1 + self.rows * self.cols

    def fit(self, height: int, width: int) -> tuple[int, int, int, int]:
        """Where an `height x width` image lands on the canvas: `(top, left, new_height, new_width)`."""
        canvas_h, canvas_w = self.rows * self.tile, self.cols * self.tile
        scale = min(canvas_w / width, canvas_h / height)
        new_h, new_w = max(1, min(canvas_h, round(height * scale))), max(1, min(canvas_w, round(width * scale)))
        return (canvas_h - new_h) // 2, (canvas_w - new_w) // 2, new_h, new_w

    def crops(self, image: np.ndarray) -> list[np.ndarray]:
        """`[image, tile_0, ..., tile_{rows*cols-1}]` (tiles row-major); a 2-D array (a mask) works too."""
        if self.rows == 0:
            return [image]
        top, left, new_h, new_w = self.fit(*image.shape[:2])
        canvas = np.zeros((self.rows * self.tile, self.cols * self.tile, *image.shape[2:]), dtype=image.dtype)
        canvas[top : top + new_h, left : left + new_w] = _resize(image, new_h, new_w)
        t = self.tile
        return [image] + [canvas[r * t : (r + 1) * t, c * t : (c + 1) * t]
                          for r in range(self.rows) for c in range(self.cols)]

    def stitch(self, maps: np.ndarray, height: int, width: int) -> np.ndarray:
        """`(C, gh, gw)` per-crop maps of one `height x width` image -> one `(h, w)` map of the image.

        The tiles are laid back on the canvas and the image's region cut out (at the tiles' token
        resolution); the global map is resampled to that size and the two are averaged. With the
        global view alone, its map is returned as it is.
        """
        if self.rows == 0:
            return maps[0]
        gh, gw = maps.shape[1:]
        tiles = maps[1:].reshape(self.rows, self.cols, gh, gw).transpose(0, 2, 1, 3).reshape(self.rows * gh,
                                                                                              self.cols * gw)
        top, left, new_h, new_w = self.fit(height, width)
        per_px_h, per_px_w = gh / self.tile, gw / self.tile
        y0, x0 = int(top * per_px_h), int(left * per_px_w)
        y1 = max(y0 + 1, round((top + new_h) * per_px_h))
        x1 = max(x0 + 1, round((left + new_w) * per_px_w))
        local = torch.from_numpy(np.ascontiguousarray(tiles[y0:y1, x0:x1]))
        glob = F.interpolate(torch.from_numpy(np.ascontiguousarray(maps[:1]))[None], size=local.shape,
                             mode="bilinear", align_corners=False)[0, 0]
        return ((glob + local) / 2).numpy()

    def describe(self) -> str:
        if self.rows == 0:
            return f"global {self.tile} px only"
        return f"global + {self.rows}x{self.cols} tiles of {self.tile} px"

    def to_json(self) -> dict[str, int]:
        return {"rows": self.rows, "cols": self.cols, "tile": self.tile}


def stitch_maps(grid: AnyResGrid, maps: np.ndarray, sizes: Sequence[tuple[int, int]]) -> list[np.ndarray]:
    """`(B, C, gh, gw)` crop maps and each image's `(height, width)` -> B stitched maps."""
    return [grid.stitch(m, h, w) for m, (h, w) in zip(maps, sizes, strict=True)]


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bicubic resize of a uint8 image (or bilinear of a float mask) to `height x width`; as is when equal."""
    if image.shape[:2] == (height, width):
        return image
    if image.dtype == np.uint8:
        return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BICUBIC))
    resized = Image.fromarray(image.astype(np.float32)).resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(resized).astype(image.dtype)
