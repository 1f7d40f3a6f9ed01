"""Choosing the decision threshold for F1 / precision / recall from validation data only."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import precision_recall_curve

from benchmarks.metrics._checks import scores_and_labels

SOURCE_VAL = "val"
SOURCE_NONE = "none"


@dataclass(frozen=True)
class Threshold:
    """A decision threshold and where it came from; an image is anomalous iff `score >= value`.

    source: "val" (F1-optimal on a two-class validation split), "val-normal-p99" (quantile of
    an all-normal validation split; the number is the percentile) or "none" (no usable
    validation data: `value` is None and threshold metrics are null).
    """

    value: float | None
    source: str

    def __post_init__(self) -> None:
        if (self.value is None) != (self.source == SOURCE_NONE):
            raise ValueError(f"threshold value {self.value!r} does not fit source {self.source!r}")

    def predict(self, scores: np.ndarray) -> np.ndarray:
        """Boolean decisions `(N,) -> (N,)`; raises if there is no threshold."""
        if self.value is None:
            raise ValueError("no threshold: the validation split gave none (source 'none')")
        return np.asarray(scores) >= self.value


NO_THRESHOLD = Threshold(None, SOURCE_NONE)


def choose_threshold(
    val_scores: ArrayLike | None, val_labels: ArrayLike | None, *, normal_quantile: float = 0.99
) -> Threshold:
    """Pick the F1 threshold on the validation split; the test split is never an argument.

    - Both classes in validation: the validation score that maximises F1 over sklearn's
      precision-recall curve (source "val"); ties go to the lowest such score (higher recall).
    - Only normals: the `normal_quantile` quantile of their scores (linear interpolation),
      source "val-normal-p99" for the default, i.e. about 1 % of normals flagged.
      This avoids anomalib's trap: its F1AdaptiveThreshold maximises F1 on whatever it is
      given, which for MVTec/VisA datamodules is the test set itself, and on an all-normal
      split every threshold has F1 = 0, so it returns the minimum score and flags everything.
    - Only anomalies, or no validation data: `Threshold(None, "none")`. An anomalies-only split
      has the same trap (the minimum score gives F1 = 1) and says nothing about false alarms.
    """
    if not 0.0 < normal_quantile < 1.0:
        raise ValueError(f"normal_quantile must lie in (0, 1), got {normal_quantile}")
    if val_scores is None or val_labels is None:
        return NO_THRESHOLD
    scores, labels = scores_and_labels(val_scores, val_labels, what="validation")
    n_anomalous = int(labels.sum())
    if scores.size == 0 or n_anomalous == scores.size:
        return NO_THRESHOLD
    if n_anomalous == 0:
        value = float(np.quantile(scores, normal_quantile))
        return Threshold(value, f"val-normal-p{100 * normal_quantile:g}")
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    # The last curve point (precision 1, recall 0) has no threshold.
    precision, recall = precision[:-1], recall[:-1]
    return Threshold(float(thresholds[int(np.argmax(f1_values(precision, recall)))]), SOURCE_VAL)


def f1_values(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    """F1 at each point of a precision-recall curve; 0 where precision = recall = 0 (not 0 / 0)."""
    return 2 * precision * recall / np.maximum(precision + recall, np.finfo(np.float64).tiny)
