"""Synthetic anomalies for training AnomalyGPT's decoder: CutPaste with Poisson blending.

AnomalyGPT (following NSA) pastes patches of a normal image elsewhere in it and blends them
seamlessly, so the decoder must find anomalies that have no sharp seams. Here each of 1-2
patches (random size, position, flip, gradient gain, rectangle or ellipse) is cloned by solving
the Poisson equation on its support with scipy's sparse LU, then mixed in with a feathered
alpha that doubles as the soft ground-truth mask. Kept independent of
`benchmarks.data.augment` on purpose: the decoder's training data must not change when the
benchmark's dataset augmenters do.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse.linalg import splu

_NEIGHBOURS = ((-1, 0), (1, 0), (0, -1), (0, 1))


def poisson_clone(target: np.ndarray, source: np.ndarray, support: np.ndarray, gain: float = 1.0) -> np.ndarray:
    """Seamless clone: `(h, w, C)` target and source boxes, bool `(h, w)` support -> `(h, w, C)` float.

    Inside `support` the result has the Laplacian of `gain * source` and meets `target` on the
    support's outer boundary; outside it equals `target`. The support must not touch the box
    edge (every support pixel needs its 4 neighbours inside the box).
    """
    if support[0].any() or support[-1].any() or support[:, 0].any() or support[:, -1].any():
        raise ValueError("the support must leave a one-pixel ring inside the box")
    target = target.astype(np.float64)
    source = source.astype(np.float64)
    ys, xs = np.nonzero(support)
    n = ys.size
    index = np.full(support.shape, -1, dtype=np.int64)
    index[ys, xs] = np.arange(n)
    rows, cols = [np.arange(n)], [np.arange(n)]
    values = [np.full(n, 4.0)]
    rhs = 4.0 * gain * source[ys, xs]
    for dy, dx in _NEIGHBOURS:
        ny, nx = ys + dy, xs + dx
        rhs -= gain * source[ny, nx]
        inside = support[ny, nx]
        rows.append(np.flatnonzero(inside))
        cols.append(index[ny[inside], nx[inside]])
        values.append(np.full(int(inside.sum()), -1.0))
        rhs[~inside] += target[ny[~inside], nx[~inside]]
    matrix = sparse.csc_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    out = target.copy()
    out[ys, xs] = splu(matrix).solve(rhs.reshape(n, -1)).reshape(rhs.shape)
    return out


def cutpaste_poisson(
    image: np.ndarray,
    rng: np.random.Generator,
    max_patches: int = 2,
    size_range: tuple[float, float] = (0.08, 0.3),
) -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 `(H, W, 3)` -> (anomalous uint8 `(H, W, 3)`, soft mask float32 `(H, W)` in [0, 1]).

    The mask is the feathered blending alpha: 1 in a patch's core, ramping to 0 over its border.
    The image differs from the input only where the mask is > 0. Patch sides are drawn from
    `size_range` (fractions of the image side), at least 5 px.
    """
    height, width = image.shape[:2]
    out = image.astype(np.float64)
    mask = np.zeros((height, width), dtype=np.float64)
    for _ in range(int(rng.integers(1, max_patches + 1))):
        ph = int(np.clip(rng.uniform(*size_range) * height, 5, height - 2))
        pw = int(np.clip(rng.uniform(*size_range) * width, 5, width - 2))
        bh, bw = ph + 2, pw + 2  # one-pixel ring for the Poisson boundary
        sy, sx = int(rng.integers(0, height - bh + 1)), int(rng.integers(0, width - bw + 1))
        dy, dx = int(rng.integers(0, height - bh + 1)), int(rng.integers(0, width - bw + 1))
        source = image[sy : sy + bh, sx : sx + bw].astype(np.float64)
        if rng.random() < 0.5:
            source = source[:, ::-1]
        if rng.random() < 0.5:
            source = source[::-1]
        support = _patch_support(bh, bw, ellipse=bool(rng.random() < 0.5))
        target = out[dy : dy + bh, dx : dx + bw]
        cloned = poisson_clone(target, source, support, gain=float(rng.uniform(0.7, 1.6)))
        feather = max(1.0, 0.15 * min(ph, pw))
        alpha = np.clip(ndimage.distance_transform_edt(support) / feather, 0.0, 1.0)
        out[dy : dy + bh, dx : dx + bw] = alpha[..., None] * cloned + (1.0 - alpha[..., None]) * target
        mask[dy : dy + bh, dx : dx + bw] = np.maximum(mask[dy : dy + bh, dx : dx + bw], alpha)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8), mask.astype(np.float32)


def jitter(image: np.ndarray, rng: np.random.Generator, max_shift: float = 0.03) -> np.ndarray:
    """A nuisance-only view of a normal image: shift by up to `max_shift` of the side (edge
    padding) and scale brightness by 0.95-1.05. `(H, W, 3)` uint8 -> same."""
    height, width = image.shape[:2]
    shift_y = int(rng.integers(-int(max_shift * height), int(max_shift * height) + 1))
    shift_x = int(rng.integers(-int(max_shift * width), int(max_shift * width) + 1))
    padded = np.pad(image, ((abs(shift_y),) * 2, (abs(shift_x),) * 2, (0, 0)), mode="edge")
    y0, x0 = abs(shift_y) - shift_y, abs(shift_x) - shift_x
    shifted = padded[y0 : y0 + height, x0 : x0 + width].astype(np.float64)
    return np.clip(np.rint(shifted * rng.uniform(0.95, 1.05)), 0, 255).astype(np.uint8)


def _patch_support(height: int, width: int, ellipse: bool) -> np.ndarray:
    """Bool `(height, width)`: a rectangle or inscribed ellipse leaving a one-pixel ring."""
    support = np.zeros((height, width), dtype=bool)
    if not ellipse:
        support[1:-1, 1:-1] = True
        return support
    yy, xx = np.mgrid[0:height, 0:width]
    cy, cx = (height - 1) / 2, (width - 1) / 2
    ry, rx = max((height - 2) / 2, 1.0), max((width - 2) / 2, 1.0)
    support[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0] = True
    support[[0, -1]] = False
    support[:, [0, -1]] = False
    return support
