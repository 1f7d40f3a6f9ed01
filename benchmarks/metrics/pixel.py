"""Pixel-level metrics where ground-truth masks exist: pixel AUROC and AUPRO.

AUPRO follows the MVTec AD reference (Bergmann et al., IJCV 2021, `compute_pro`): connected
components of each ground-truth mask (8-connectivity) are the regions; at each threshold the
per-region overlap (PRO) is the mean over all regions of the fraction of the region's pixels
at or above it, and the FPR is the fraction of all background pixels at or above it. The PRO
curve is integrated over FPR in [0, 0.3] (trapezoids, linear interpolation at 0.3) and divided
by 0.3. anomalib 2.7's `_AUPRO` computes the same curve (the tests check agreement) but needs
every map the same size and `import anomalib.metrics` costs ~10 s, so it is re-done here in
NumPy for maps of any size. Pixel AUROC is read off the same sorted pixels (trapezoids over
the ROC points at distinct scores, as sklearn's `roc_auc_score`, which the tests compare
against) because a second sort of millions of pixels would double the cost.

Memory: the kept pixels are held at once (float32 score, int32 region id, sort index and float64
cumulative curves: about 60 bytes per pixel at peak, ~250 MB at the cap). Above `max_pixels`
pixels (default 2**22, about 4.2 M: e.g. 64 images at 256x256), a fixed-seed Bernoulli sample of
pixels is used for both metrics; regions are labelled at full resolution first and their sizes
counted within the sample, so PRO is estimated per region; a region with no sampled pixel drops
out (only regions of a few pixels can). The result records the fraction of pixels used.
`PixelAccumulator` takes the images one at a time (a run streams its test set through it, so
neither the maps nor the masks of the whole set are ever held: memory stays at the sample's,
whatever the test set's size); `pixel_metrics` is the same accumulator fed from lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from benchmarks.metrics._checks import check_finite

DEFAULT_FPR_LIMIT = 0.3
DEFAULT_MAX_PIXELS = 2**22
_SUBSAMPLE_SEED = 0
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class PixelMetrics:
    """Pixel AUROC and AUPRO over the images that have masks; None (with a reason) otherwise.

    `pixel_fraction` is the share of pixels used (1.0 unless subsampled, see module doc).
    """

    pixel_auroc: float | None
    aupro: float | None
    n_images: int
    n_regions: int
    pixel_fraction: float
    undefined_reason: str | None


def _undefined(reason: str, n_images: int = 0) -> PixelMetrics:
    return PixelMetrics(None, None, n_images, 0, 1.0, reason)


def resize_map(anomaly_map: np.ndarray | torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of one anomaly map `(h, w) -> (H, W)` float32 numpy (align_corners=False).

    `size` is (height, width), e.g. `image.shape[:2]`. Accepts numpy or torch (any device).
    """
    if isinstance(anomaly_map, torch.Tensor):
        tensor = anomaly_map.detach().to("cpu", torch.float32)
    else:
        tensor = torch.from_numpy(np.asarray(anomaly_map, dtype=np.float32))
    if tensor.ndim != 2:
        raise ValueError(f"an anomaly map must be (h, w), got shape {tuple(tensor.shape)}")
    if tuple(tensor.shape) == tuple(size):
        return tensor.numpy().copy()
    resized = F.interpolate(tensor[None, None], size=tuple(size), mode="bilinear", align_corners=False)
    return resized[0, 0].numpy()


class PixelAccumulator:
    """Pixel AUROC / AUPRO from images added one at a time (`add`), read once at the end (`result`).

    `total_pixels` is the number of pixels of every image that will be added (their masks' sizes):
    it fixes the sampling rate before the first image arrives, so the sample is the one
    `pixel_metrics` draws from the same images in the same order. A total that does not come true
    (an image whose size its header misstates) only changes how many pixels are kept; the result's
    `pixel_fraction` is what was kept of what was added.
    """

    def __init__(self, total_pixels: int, max_pixels: int | None = None) -> None:
        if total_pixels < 0:
            raise ValueError(f"total_pixels must be at least 0, got {total_pixels}")
        max_pixels = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
        self.total_pixels = total_pixels
        self.keep_rate = min(1.0, max_pixels / total_pixels) if total_pixels else 1.0
        self._rng = np.random.default_rng(_SUBSAMPLE_SEED)
        self._scores: list[np.ndarray] = []
        self._regions: list[np.ndarray] = []
        self._offset = 0
        self.n_images = 0
        self.n_pixels = 0
        self.n_positive = 0

    def add(self, anomaly_map: np.ndarray, mask: np.ndarray, name: object) -> None:
        """One image: its map at the mask's size and its bool mask (all False for a normal image).
        `name` names the image in errors."""
        anomaly_map, mask = np.asarray(anomaly_map), np.asarray(mask, dtype=bool)
        if anomaly_map.ndim != 2 or anomaly_map.shape != mask.shape:
            raise ValueError(
                f"anomaly map of image {name} has shape {anomaly_map.shape} but its mask {mask.shape}; "
                "resize maps to image size first (resize_map)"
            )
        check_finite(anomaly_map, what=f"anomaly map of image {name}")
        labelled, n_regions = ndimage.label(mask, structure=_EIGHT_CONNECTED)
        labelled = np.where(labelled > 0, labelled + self._offset, 0).astype(np.int32).ravel()
        self._offset += n_regions
        score = anomaly_map.astype(np.float32, copy=False).ravel()
        if self.keep_rate < 1.0:
            kept = self._rng.random(score.size) < self.keep_rate
            score, labelled = score[kept], labelled[kept]
        self._scores.append(score)
        self._regions.append(labelled)
        self.n_images += 1
        self.n_pixels += mask.size
        self.n_positive += int(mask.sum())

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        """The kept pixels: scores `(P,)` float32 and global region ids `(P,)` int32 (0 = background)."""
        if not self._scores:
            return np.zeros(0, np.float32), np.zeros(0, np.int32)
        return np.concatenate(self._scores), np.concatenate(self._regions)

    def result(self, fpr_limit: float = DEFAULT_FPR_LIMIT) -> PixelMetrics:
        if not 0.0 < fpr_limit <= 1.0:
            raise ValueError(f"fpr_limit must lie in (0, 1], got {fpr_limit}")
        if self.n_images == 0:
            return _undefined("no ground-truth masks")
        if self.n_positive == 0:
            return _undefined("no mask has an anomalous pixel", self.n_images)
        if self.n_positive == self.n_pixels:
            return _undefined("every mask pixel is anomalous: no background to measure false positives",
                              self.n_images)
        scores, regions = self.sample()
        anomalous = regions > 0
        if anomalous.all() or not anomalous.any():
            return _undefined("the pixel sample lacks one class; raise max_pixels", self.n_images)
        curves = _pixel_curves(scores, regions)
        return PixelMetrics(
            pixel_auroc=float(np.trapezoid(curves.tpr, curves.fpr)),
            aupro=_area_to_limit(curves.fpr, curves.pro, fpr_limit),
            n_images=self.n_images,
            n_regions=int((np.bincount(regions)[1:] > 0).sum()),
            pixel_fraction=scores.size / self.n_pixels,
            undefined_reason=None,
        )


@dataclass(frozen=True)
class _PixelCurves:
    """ROC and PRO curves over all pixels, one point per distinct score, from (0, 0) to (1, 1)."""

    fpr: np.ndarray
    tpr: np.ndarray
    pro: np.ndarray


def _pixel_curves(scores: np.ndarray, regions: np.ndarray) -> _PixelCurves:
    """One descending sort serves both curves (the sort dominates the cost at millions of pixels)."""
    order = np.argsort(-scores)
    sorted_scores = scores[order]
    sorted_regions = regions[order]
    background = sorted_regions == 0
    region_sizes = np.bincount(regions)
    n_regions = int((region_sizes[1:] > 0).sum())
    fpr = np.cumsum(background) / background.sum()
    tpr = np.cumsum(~background) / (~background).sum()
    region_share = np.zeros(sorted_regions.size)
    region_share[~background] = 1.0 / region_sizes[sorted_regions[~background]]
    pro = np.cumsum(region_share) / n_regions
    # A threshold sits at the last pixel of each tie group; the order inside a group is moot.
    group_end = np.append(sorted_scores[:-1] != sorted_scores[1:], True)
    start = np.zeros(1)
    return _PixelCurves(
        fpr=np.concatenate([start, np.minimum(fpr[group_end], 1.0)]),
        tpr=np.concatenate([start, np.minimum(tpr[group_end], 1.0)]),
        pro=np.concatenate([start, np.minimum(pro[group_end], 1.0)]),
    )


def _area_to_limit(fpr: np.ndarray, y: np.ndarray, fpr_limit: float) -> float:
    """Trapezoid area under y(fpr) on [0, fpr_limit], interpolating y at the limit, / fpr_limit."""
    last = int(np.searchsorted(fpr, fpr_limit, side="right")) - 1
    fpr_kept, y_kept = fpr[: last + 1], y[: last + 1]
    if fpr_kept[-1] < fpr_limit:  # the curve ends at FPR 1, so a next point exists
        slope = (y[last + 1] - y[last]) / (fpr[last + 1] - fpr[last])
        fpr_kept = np.append(fpr_kept, fpr_limit)
        y_kept = np.append(y_kept, y[last] + slope * (fpr_limit - fpr[last]))
    return float(np.trapezoid(y_kept, fpr_kept) / fpr_limit)


def aupro_score(scores: np.ndarray, regions: np.ndarray, fpr_limit: float = DEFAULT_FPR_LIMIT) -> float:
    """Normalised area under the PRO curve up to `fpr_limit`: `(P,) scores, (P,) region ids -> float`.

    `regions` holds 0 for background and a positive id per ground-truth region (unique across
    images); both background and at least one region pixel are required.
    """
    curves = _pixel_curves(scores, regions)
    return _area_to_limit(curves.fpr, curves.pro, fpr_limit)


def pixel_metrics(
    maps: Sequence[np.ndarray] | None,
    masks: Sequence[np.ndarray | None] | None,
    *,
    fpr_limit: float = DEFAULT_FPR_LIMIT,
    max_pixels: int | None = None,
) -> PixelMetrics:
    """Pixel AUROC and AUPRO from per-image anomaly maps and boolean ground-truth masks.

    maps[i] `(H_i, W_i)` float (larger = more anomalous, already at image size, see
    `resize_map`); masks[i] `(H_i, W_i)` bool, or None for an image without ground truth,
    which is left out. Pass an all-False mask for a normal image: its pixels are background.
    Sizes may differ between images. Both metrics are None, with a reason, when no mask is
    given, no mask has a positive pixel, or no pixel is background. Raises ValueError for a
    count or shape mismatch or NaN / infinite map values (naming the image).
    """
    if maps is None or masks is None:
        return _undefined("no anomaly maps" if maps is None else "no ground-truth masks")
    if len(maps) != len(masks):
        raise ValueError(f"{len(maps)} anomaly maps but {len(masks)} masks")
    kept = [i for i, m in enumerate(masks) if m is not None]
    accumulator = PixelAccumulator(sum(int(np.asarray(masks[i]).size) for i in kept), max_pixels)
    for i in kept:
        accumulator.add(maps[i], masks[i], i)
    return accumulator.result(fpr_limit)
