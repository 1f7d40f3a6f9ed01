"""The 3x3 image-grid location words AnomalyGPT answers with, shared by methods and metrics."""

from __future__ import annotations

import numpy as np

GRID = (("top left", "top", "top right"), ("left", "center", "right"), ("bottom left", "bottom", "bottom right"))
GRID_WORDS = tuple(word for row in GRID for word in row)


def grid_word(x: float, y: float) -> str:
    """Location word of a point given as fractions of width and height (0..1): "top left" ... "bottom right"."""
    return GRID[min(2, max(0, int(3 * y)))][min(2, max(0, int(3 * x)))]


def grid_location(anomaly_map: np.ndarray) -> str:
    """The grid word of the maximum of a `(h, w)` map (pixel centres)."""
    values = np.asarray(anomaly_map)
    if values.ndim != 2 or values.size == 0:
        raise ValueError(f"expected a non-empty (h, w) map, got shape {values.shape}")
    y, x = np.unravel_index(int(np.argmax(values)), values.shape)
    return grid_word((x + 0.5) / values.shape[1], (y + 0.5) / values.shape[0])


def grid_location_of_mask(mask: np.ndarray) -> str:
    """The grid word of the centroid of a `(h, w)` bool or soft mask; ValueError when empty."""
    weights = np.clip(np.asarray(mask, dtype=np.float64), 0.0, None)
    if weights.ndim != 2 or weights.sum() <= 0:
        raise ValueError("an empty mask has no location")
    ys, xs = np.mgrid[0 : weights.shape[0], 0 : weights.shape[1]]
    total = weights.sum()
    y = (weights * ys).sum() / total + 0.5
    x = (weights * xs).sum() / total + 0.5
    return grid_word(x / weights.shape[1], y / weights.shape[0])
