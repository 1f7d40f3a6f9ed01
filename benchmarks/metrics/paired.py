"""Paired comparison of two methods' AUROCs on the same test images (DeLong et al., 1988).

Uses the fast O(N log N) algorithm of Sun & Xu (IEEE SPL 2014): midranks within each class
and over both give the structural components (placements) of every image, whose covariance
gives the covariance of the two AUROCs; z = delta / sd(delta), two-sided normal p-value.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import norm, rankdata

from benchmarks.metrics._checks import scores_and_labels

METHOD = "delong"


@dataclass(frozen=True)
class PairedComparison:
    """AUROC(a) - AUROC(b) on the same images, with DeLong's two-sided p-value.

    delta and p_value are None (with `undefined_reason`) when the labels lack a class or a
    class has a single image (the covariance needs two of each).
    """

    delta: float | None
    p_value: float | None
    method: str
    auroc_a: float | None
    auroc_b: float | None
    z: float | None
    undefined_reason: str | None

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def delong_covariance(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUROCs and their DeLong covariance: `(K, N) scores, (N,) 0/1 labels -> (K,), (K, K)`."""
    positive = scores[:, labels == 1]
    negative = scores[:, labels == 0]
    m, n = positive.shape[1], negative.shape[1]
    within_positive = rankdata(positive, axis=1)
    within_negative = rankdata(negative, axis=1)
    overall = rankdata(np.concatenate([positive, negative], axis=1), axis=1)
    aurocs = (overall[:, :m].sum(axis=1) - m * (m + 1) / 2) / (m * n)
    # Placements: the share of negatives below each positive, of positives above each negative.
    v_positive = (overall[:, :m] - within_positive) / n
    v_negative = 1.0 - (overall[:, m:] - within_negative) / m
    covariance = np.atleast_2d(np.cov(v_positive)) / m + np.atleast_2d(np.cov(v_negative)) / n
    return aurocs, covariance


def paired_auroc_test(scores_a: ArrayLike, scores_b: ArrayLike, labels: ArrayLike) -> PairedComparison:
    """DeLong test of AUROC(a) = AUROC(b) for two methods scored on the same images `(N,)`.

    A zero variance of the difference (e.g. identical scores) gives p = 1 when delta is 0.
    """
    a, y = scores_and_labels(scores_a, labels, what="method A")
    b, _ = scores_and_labels(scores_b, labels, what="method B")
    n_anomalous = int(y.sum())
    n_normal = int(y.size - n_anomalous)
    if min(n_normal, n_anomalous) < 2:
        reason = (
            f"DeLong needs at least 2 images per class, got {n_normal} normal and {n_anomalous} anomalous"
        )
        return PairedComparison(None, None, METHOD, None, None, None, reason)
    aurocs, covariance = delong_covariance(np.stack([a, b]), y)
    delta = float(aurocs[0] - aurocs[1])
    variance = float(covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1])
    if variance <= 1e-15:
        z = 0.0 if abs(delta) < 1e-12 else float(np.copysign(np.inf, delta))
    else:
        z = delta / np.sqrt(variance)
    p_value = float(2 * norm.sf(abs(z)))
    return PairedComparison(delta, p_value, METHOD, float(aurocs[0]), float(aurocs[1]), float(z), None)
