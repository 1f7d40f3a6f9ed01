"""Stratified bootstrap of image-level metrics, vectorised over resamples.

Each resample draws the normals and the anomalies separately, with replacement, keeping both
class counts, so every resample has both classes and AUROC stays defined. Rows of a resample
matrix are laid out normals first, then anomalies, so one label vector serves every row.
The metric functions below are row-wise re-implementations of scikit-learn's
(`roc_auc_score`, `average_precision_score`, max F1 over `precision_recall_curve`), checked
against it in the tests; calling sklearn 1000 times would cost seconds per cell.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from benchmarks.results.record import Interval

CI_LEVEL = 0.95
_CHUNK_ELEMENTS = 2_000_000  # bound on resample-matrix size, keeps memory ~100 MB for any N


@dataclass(frozen=True)
class BootstrapCIs:
    """95 % percentile intervals; `f1` is None without a threshold."""

    image_auroc: Interval
    aupr: Interval
    f1_max: Interval
    f1: Interval | None


def auroc_rows(normal: np.ndarray, anomalous: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUROC per row, ties counted 1/2: `(B, n0), (B, n1) -> (B,)`."""
    n0, n1 = normal.shape[1], anomalous.shape[1]
    ranks = rankdata(np.concatenate([normal, anomalous], axis=1), axis=1)
    return (ranks[:, n0:].sum(axis=1) - n1 * (n1 + 1) / 2) / (n0 * n1)


def _ranked(scores: np.ndarray, n0: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows sorted by decreasing score: (cumulative true positives, is-last-of-tie-group, labels)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    sorted_scores = np.take_along_axis(scores, order, axis=1)
    labels = (order >= n0).astype(np.float64)  # columns >= n0 hold the anomalies
    tp = np.cumsum(labels, axis=1)
    group_end = np.ones_like(sorted_scores, dtype=bool)
    group_end[:, :-1] = sorted_scores[:, :-1] != sorted_scores[:, 1:]
    return tp, group_end, labels


def ap_and_f1max_rows(scores: np.ndarray, n0: int) -> tuple[np.ndarray, np.ndarray]:
    """Average precision and max F1 per row: `(B, n0 + n1) -> (B,), (B,)`.

    A threshold exists only at the last element of each tie group (as in sklearn), so each
    anomaly is credited with the precision at the end of its tie group.
    """
    n = scores.shape[1]
    n1 = n - n0
    tp, group_end, labels = _ranked(scores, n0)
    predicted = np.arange(1, n + 1, dtype=np.float64)
    precision = tp / predicted
    positions = np.where(group_end, np.arange(n), n)
    end_of_group = np.minimum.accumulate(positions[:, ::-1], axis=1)[:, ::-1]
    ap = (labels * np.take_along_axis(precision, end_of_group, axis=1)).sum(axis=1) / n1
    f1 = np.where(group_end, 2 * tp / (predicted + n1), 0.0)
    return ap, f1.max(axis=1)


def f1_at_rows(scores: np.ndarray, n0: int, threshold: float) -> np.ndarray:
    """F1 per row at a fixed threshold (anomalous iff score >= threshold): `(B, n) -> (B,)`."""
    n1 = scores.shape[1] - n0
    predicted = scores >= threshold
    tp = predicted[:, n0:].sum(axis=1)
    return 2 * tp / (predicted.sum(axis=1) + n1)


def _interval(values: np.ndarray) -> Interval:
    tail = 100 * (1 - CI_LEVEL) / 2
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return Interval(float(lo), float(hi))


def stratified_bootstrap(
    scores: np.ndarray, labels: np.ndarray, threshold: float | None, *, n_bootstrap: int, seed: int
) -> BootstrapCIs:
    """Percentile CIs of AUROC, AP, F1-max and F1 at a fixed `threshold` over stratified resamples.

    `scores` `(N,)` and 0/1 `labels` `(N,)` must hold both classes. The threshold is held fixed
    (it comes from validation), so `f1`'s interval reflects test sampling only.
    Deterministic given (`seed`, data, `n_bootstrap`).
    """
    normal, anomalous = scores[labels == 0], scores[labels == 1]
    n0, n1 = normal.size, anomalous.size
    if n0 == 0 or n1 == 0:
        raise ValueError("a stratified bootstrap needs both classes")
    if n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be >= 1, got {n_bootstrap}")
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_ELEMENTS // (n0 + n1))
    auroc, ap, f1_max, f1 = [], [], [], []
    for start in range(0, n_bootstrap, chunk):
        b = min(chunk, n_bootstrap - start)
        resampled_normal = normal[rng.integers(0, n0, size=(b, n0))]
        resampled_anomalous = anomalous[rng.integers(0, n1, size=(b, n1))]
        both = np.concatenate([resampled_normal, resampled_anomalous], axis=1)
        auroc.append(auroc_rows(resampled_normal, resampled_anomalous))
        chunk_ap, chunk_f1_max = ap_and_f1max_rows(both, n0)
        ap.append(chunk_ap)
        f1_max.append(chunk_f1_max)
        if threshold is not None:
            f1.append(f1_at_rows(both, n0, threshold))
    return BootstrapCIs(
        image_auroc=_interval(np.concatenate(auroc)),
        aupr=_interval(np.concatenate(ap)),
        f1_max=_interval(np.concatenate(f1_max)),
        f1=_interval(np.concatenate(f1)) if threshold is not None else None,
    )
