"""Input checks shared by the metric functions: one clear message per bad input (SPEC 12)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

_SHOWN = 5  # how many offending positions a message lists


def scores_and_labels(scores: ArrayLike, labels: ArrayLike, *, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate `(N,)` scores and `(N,)` 0/1 labels; return float64 scores and int8 labels.

    Raises ValueError naming how many scores are NaN / infinite and where, a length mismatch,
    or labels other than 0/1. `what` names the data in messages ("test", "validation", ...).
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels)
    if s.ndim != 1:
        raise ValueError(f"{what} scores must be 1-D, got shape {s.shape}")
    if y.shape != s.shape:
        raise ValueError(f"{what}: {s.shape[0]} scores but {y.size} labels (shape {y.shape})")
    check_finite(s, what=f"{what} scores")
    if y.dtype == bool:
        return s, y.astype(np.int8)
    bad = ~np.isin(y, (0, 1))
    if bad.any():
        values = sorted({str(v) for v in y[bad][:_SHOWN].tolist()})
        raise ValueError(
            f"{what} labels must be 0 (normal) or 1 (anomalous); {int(bad.sum())} are not: {values}"
        )
    return s, y.astype(np.int8)


def check_finite(values: np.ndarray, *, what: str) -> None:
    """Raise ValueError naming how many entries of `values` are NaN / infinite and the first positions."""
    finite = np.isfinite(values)
    if finite.all():
        return
    n_nan = int(np.isnan(values).sum())
    n_inf = int((~finite).sum()) - n_nan
    where = np.flatnonzero(~finite.ravel())[:_SHOWN].tolist()
    raise ValueError(
        f"{what}: {n_nan} NaN and {n_inf} infinite values out of {values.size} "
        f"(first at flat positions {where}); the method produced invalid scores"
    )
