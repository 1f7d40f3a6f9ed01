"""ROI-guided image scores (SPEC 7, `--roi`): a method's map pooled inside each image's region of
interest, the protocol choice made on validation, and the side-by-side measurement on test.

The harness never names a method: it reads the method's `MapPooling` (how its image score pools its
map) and applies the same pooling to the map cells inside the ROI. Three scorings are compared on
the same images: the method's own score, its map pooled over the whole image (the ROI score's
like-for-like reference, since some methods pool another grid than the map they return) and its map
pooled inside the ROI. `--roi auto` uses the ROI scores when they beat the method's own score on the
validation split; `on` and `off` force the choice. Test never chooses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks import metrics
from benchmarks.data.images import load_mask
from benchmarks.plugins.contract import MapPooling
from benchmarks.results.record import RoiScoring

ROI_MODES = ("auto", "on", "off")


def roi_on_map(roi: np.ndarray, map_shape: tuple[int, int]) -> np.ndarray:
    """(H, W) bool ROI -> (h, w) bool on the map's grid: a map cell is in when its centre is (nearest)."""
    if roi.shape == map_shape:
        return roi.astype(bool)
    image = Image.fromarray(roi.astype(np.uint8) * 255)
    return np.asarray(image.resize((map_shape[1], map_shape[0]), Image.Resampling.NEAREST)) > 127


@dataclass
class RoiPooler:
    """Pools each map over the whole image and inside its ROI, batch by batch (val, then test)."""

    pooling: MapPooling
    whole: list[float] = field(default_factory=list)
    inside: list[float] = field(default_factory=list)
    peak_outside: list[bool] = field(default_factory=list)
    n_empty: int = 0
    _last: tuple[Path, tuple[int, int], np.ndarray] | None = field(default=None, repr=False)
    """The last ROI read, on its map grid: a set whose images share one mask (`data import --roi MASK`)
    reads and resizes it once, and memory does not grow with the images."""

    def _region(self, roi_path: Path, map_shape: tuple[int, int]) -> np.ndarray:
        if self._last is None or self._last[:2] != (roi_path, map_shape):
            self._last = (roi_path, map_shape, roi_on_map(load_mask(roi_path) > 0, map_shape))
        return self._last[2]

    def add(self, maps: Sequence[np.ndarray], rois: Sequence[Path | None]) -> None:
        for anomaly_map, roi_path in zip(maps, rois, strict=True):
            values = np.asarray(anomaly_map, dtype=np.float64)
            whole = self.pooling.pool(values)
            self.whole.append(whole)
            if roi_path is None:
                raise ValueError("ROI scoring needs an roi for every val and test image")
            region = self._region(roi_path, (values.shape[0], values.shape[1]))
            if not region.any():  # an ROI smaller than one map cell: pool the whole map, and count it
                self.n_empty += 1
                self.inside.append(whole)
                self.peak_outside.append(False)
                continue
            self.inside.append(self.pooling.pool(values[region]))
            self.peak_outside.append(not bool(region.flat[int(np.argmax(values))]))


@dataclass(frozen=True)
class ScoringResult:
    """One scoring's test numbers at its own validation threshold."""

    val_auroc: float | None
    auroc: float | None
    f1: float | None
    fpr: float | None


def _evaluate(val_scores: np.ndarray, val_labels: np.ndarray, test_scores: np.ndarray,
              test_labels: np.ndarray) -> ScoringResult:
    threshold = metrics.choose_threshold(val_scores, val_labels)
    image = metrics.image_metrics(test_scores, test_labels, threshold, n_bootstrap=0, seed=0)
    normals = test_scores[test_labels == 0]
    fpr = (float(np.mean(normals >= threshold.value)) if threshold.value is not None and normals.size else None)
    return ScoringResult(metrics.auroc_or_none(val_scores, val_labels, what="val"), image.image_auroc, image.f1, fpr)


def compare(mode: str, pooling: MapPooling, val: RoiPooler, test: RoiPooler, val_own: np.ndarray,
            val_labels: np.ndarray, test_own: np.ndarray, test_labels: np.ndarray, n_bootstrap: int,
            seed: int) -> RoiScoring:
    """The three scorings measured side by side, and whether the cell's metrics use the ROI scores."""
    own = _evaluate(val_own, val_labels, test_own, test_labels)
    whole = _evaluate(np.asarray(val.whole), val_labels, np.asarray(test.whole), test_labels)
    val_roi, test_roi = np.asarray(val.inside), np.asarray(test.inside)
    roi = _evaluate(val_roi, val_labels, test_roi, test_labels)
    if mode == "on":
        used, reason = True, "--roi on"
    elif mode == "off":
        used, reason = False, "--roi off"
    elif roi.val_auroc is None or own.val_auroc is None:
        used, reason = False, "auto: validation lacks a class, so nothing could be chosen; the method's own score"
    else:
        used = roi.val_auroc > own.val_auroc
        reason = (f"auto: validation AUROC {roi.val_auroc:.3f} inside the ROI vs {own.val_auroc:.3f} for the "
                  f"method's own score")
    ci = metrics.image_metrics(test_roi, test_labels, metrics.NO_THRESHOLD, n_bootstrap=n_bootstrap,
                               seed=seed).image_auroc_ci
    paired = metrics.paired_auroc_test(test_own, test_roi, test_labels)
    normals = test_labels == 0
    outside = np.asarray(test.peak_outside, dtype=bool)[normals]
    return RoiScoring(
        mode=mode, used=used, reason=reason, pooling=pooling.describe(),
        val_auroc_own=own.val_auroc, val_auroc_map=whole.val_auroc, val_auroc_roi=roi.val_auroc,
        own_auroc=own.auroc, own_f1=own.f1, own_fpr=own.fpr,
        map_auroc=whole.auroc, map_f1=whole.f1, map_fpr=whole.fpr,
        roi_auroc=roi.auroc, roi_auroc_ci=ci, roi_f1=roi.f1, roi_fpr=roi.fpr,
        delong_p=paired.p_value, normal_peaks_outside=float(outside.mean()) if outside.size else None,
        n_empty_roi=val.n_empty + test.n_empty,
    )


def not_applicable(mode: str, reason: str) -> RoiScoring:
    """The record of a cell whose image score cannot be formed inside an ROI (says why)."""
    return RoiScoring(mode=mode, used=False, reason=reason)
