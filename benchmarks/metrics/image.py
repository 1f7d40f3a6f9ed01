"""Image-level metrics of one cell: AUROC, AUPR, F1-max (threshold-free) and F1 at a val threshold."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import (
    average_precision_score,
    f1_score,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
)

from benchmarks.metrics._checks import scores_and_labels
from benchmarks.metrics.bootstrap import stratified_bootstrap
from benchmarks.metrics.threshold import Threshold, f1_values
from benchmarks.results.record import Interval


@dataclass(frozen=True)
class ImageMetrics:
    """Image-level metrics on the test split, named as in the result store (SPEC 9).

    `*_ci` are 95 % stratified-bootstrap percentile intervals. A metric that does
    not apply is None and `undefined_reason` says why: AUROC, AUPR and F1-max (and their CIs)
    need both classes in test; F1 / precision / recall need a validation threshold; precision
    also needs at least one image flagged and recall at least one anomaly. AUPR is average
    precision (sklearn), F1-max the best F1 over every threshold of the PR curve.
    """

    image_auroc: float | None
    image_auroc_ci: Interval | None
    aupr: float | None
    aupr_ci: Interval | None
    f1: float | None
    f1_ci: Interval | None
    precision: float | None
    recall: float | None
    threshold: float | None
    threshold_source: str
    f1_max: float | None
    f1_max_ci: Interval | None
    n_normal: int
    n_anomalous: int
    n_bootstrap: int
    undefined_reason: str | None


def f1_max_score(labels: np.ndarray, scores: np.ndarray) -> float:
    """Best F1 over every threshold of sklearn's precision-recall curve (both classes required)."""
    precision, recall, _ = precision_recall_curve(labels, scores)
    return float(f1_values(precision, recall).max())


def auroc_or_none(scores: ArrayLike, labels: ArrayLike, *, what: str) -> float | None:
    """Image AUROC of one split (e.g. val), or None when it lacks a class."""
    s, y = scores_and_labels(scores, labels, what=what)
    return float(roc_auc_score(y, s)) if 0 < int(y.sum()) < y.size else None


def _one_class_reason(n_normal: int, n_anomalous: int) -> str | None:
    if n_normal and n_anomalous:
        return None
    only, count = ("normal", n_normal) if n_anomalous == 0 else ("anomalous", n_anomalous)
    return f"test split has only {only} images (n={count}): AUROC, AUPR, F1-max and F1 need both classes"


def _or_none(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def image_metrics(
    scores: ArrayLike, labels: ArrayLike, threshold: Threshold, *, n_bootstrap: int, seed: int
) -> ImageMetrics:
    """Compute every image-level metric of one cell on its test scores.

    scores `(N,)` (higher = more anomalous), labels `(N,)` 0/1 or bool. `threshold` must come
    from `choose_threshold` on validation data. `n_bootstrap=0` skips the CIs. Raises
    ValueError for an empty split, NaN / infinite scores (naming how many) or bad labels; a
    one-class split is not an error: the metrics that need both classes are None.
    """
    s, y = scores_and_labels(scores, labels, what="test")
    if s.size == 0:
        raise ValueError("test split is empty: no scores to evaluate")
    n_anomalous = int(y.sum())
    n_normal = int(s.size - n_anomalous)
    one_class = _one_class_reason(n_normal, n_anomalous)
    reasons = [one_class] if one_class else []
    both_classes = one_class is None

    auroc = aupr = f1_max = f1 = precision = recall = None
    if both_classes:
        auroc = float(roc_auc_score(y, s))
        aupr = float(average_precision_score(y, s))
        f1_max = f1_max_score(y, s)
    if threshold.value is None:
        reasons.append("no validation threshold (source 'none'): F1, precision and recall not computed")
    else:
        predicted = threshold.predict(s).astype(np.int8)
        precision = _or_none(precision_score(y, predicted, zero_division=np.nan))
        recall = _or_none(recall_score(y, predicted, zero_division=np.nan))
        if both_classes:
            f1 = float(f1_score(y, predicted))
        if precision is None:
            reasons.append("no test image reaches the threshold: precision undefined")

    cis = None
    if both_classes and n_bootstrap > 0:
        cis = stratified_bootstrap(s, y, threshold.value, n_bootstrap=n_bootstrap, seed=seed)
    return ImageMetrics(
        image_auroc=auroc,
        image_auroc_ci=cis.image_auroc if cis else None,
        aupr=aupr,
        aupr_ci=cis.aupr if cis else None,
        f1=f1,
        f1_ci=cis.f1 if cis else None,
        precision=precision,
        recall=recall,
        threshold=threshold.value,
        threshold_source=threshold.source,
        f1_max=f1_max,
        f1_max_ci=cis.f1_max if cis else None,
        n_normal=n_normal,
        n_anomalous=n_anomalous,
        n_bootstrap=n_bootstrap if cis else 0,
        undefined_reason="; ".join(reasons) or None,
    )
