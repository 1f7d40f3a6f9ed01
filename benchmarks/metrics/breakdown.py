"""Per-stratum metrics (year, group, defect, source, ...) and hard-negative false-positive rates.

Both read a per-image score frame with columns image_id, label, split, source, year, group,
defect, hard_negative, score (the runner's Parquet file) and use only `split == "test"` rows
unless told otherwise. A threshold is the validation threshold's value (None: threshold
metrics are None).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from benchmarks.metrics._checks import scores_and_labels
from benchmarks.results.record import HardNegativeRate, StratumMetrics

NORMAL_DEFECT = "none"
MISSING = "unknown"


def _rate(hits: int, total: int) -> float | None:
    return hits / total if total else None


def _stratum(scores: np.ndarray, labels: np.ndarray, threshold: float | None) -> StratumMetrics:
    """n, n_normal, n_anomalous, auroc, f1, precision, recall, fpr of one stratum (None where undefined)."""
    n_anomalous = int(labels.sum())
    n_normal = int(labels.size - n_anomalous)
    auroc = float(roc_auc_score(labels, scores)) if n_normal and n_anomalous else None
    f1 = precision = recall = fpr = None
    if threshold is not None:
        flagged = scores >= threshold
        tp = int((flagged & (labels == 1)).sum())
        fp = int((flagged & (labels == 0)).sum())
        precision = _rate(tp, tp + fp)
        recall = _rate(tp, n_anomalous)
        fpr = _rate(fp, n_normal)
        f1 = 2 * tp / (tp + fp + n_anomalous) if n_normal and n_anomalous else None
    return StratumMetrics(
        n=int(labels.size),
        n_normal=n_normal,
        n_anomalous=n_anomalous,
        auroc=auroc,
        f1=f1,
        precision=precision,
        recall=recall,
        fpr=fpr,
    )


def _rows(frame: pd.DataFrame, split: str | None, needed: tuple[str, ...]) -> pd.DataFrame:
    """The rows of `split` (all rows when None), after checking the columns exist."""
    needed = (*needed, "label", "score", *(("split",) if split is not None else ()))
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"score frame lacks columns {missing}; it has {list(frame.columns)}")
    return frame[frame["split"] == split] if split is not None else frame


def _arrays(frame: pd.DataFrame, what: str) -> tuple[np.ndarray, np.ndarray]:
    return scores_and_labels(frame["score"].to_numpy(), frame["label"].to_numpy(), what=what)


def _key(value: object) -> str:
    """Stratum name: "unknown" for missing values, "2024" rather than "2024.0" for float years."""
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return MISSING
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def breakdown(
    frame: pd.DataFrame,
    by: str,
    threshold: float | None,
    *,
    against_all_normals: bool | None = None,
    split: str | None = "test",
) -> dict[str, StratumMetrics]:
    """Metrics per value of column `by`: {value: StratumMetrics (n, n_normal, n_anomalous, auroc, f1, precision, recall, fpr)}.

    Two semantics:
    - Own strata (default for every column but "defect", e.g. year, group, source): each
      value's rows are scored on their own, normals and anomalies of that year/group together;
      auroc is None when the stratum has one class.
    - Against all normals (default for `by="defect"`): normals carry defect "none", so a
      defect kind has no normals of its own. Each kind's anomalies are pooled with *all* test
      normals: auroc = that kind vs all normals, recall = the kind's detection rate at the
      threshold; precision / f1 then depend on how many normals there are, so compare them
      between kinds only. The "none" entry holds the normals alone (its fpr is the false
      alarm rate; auroc and recall None).
    fpr is the share of the stratum's normals at or above the threshold. Missing values of
    `by` are grouped under "unknown". Keys are strings (years as "2024").
    """
    rows = _rows(frame, split, (by,))
    if against_all_normals is None:
        against_all_normals = by == "defect"
    keys = rows[by].map(_key)
    normals = rows["label"].to_numpy() == 0
    result: dict[str, StratumMetrics] = {}
    for value in sorted(keys.unique()):
        in_stratum = (keys == value).to_numpy()
        if against_all_normals:
            in_stratum = in_stratum | normals
        scores, labels = _arrays(rows[in_stratum], what=f"{by}={value}")
        result[value] = _stratum(scores, labels, threshold)
    return result


def as_bool(column: pd.Series) -> np.ndarray:
    """Booleans from a bool / 0-1 / "true"-"false" column; missing counts as False."""
    if column.dtype == object:
        text = column.astype(str).str.strip().str.lower()
        return text.isin(("true", "1", "yes", "t")).to_numpy()
    return column.fillna(False).astype(bool).to_numpy()


def hard_negative_fpr(
    frame: pd.DataFrame, threshold: float | None, *, split: str | None = "test"
) -> HardNegativeRate:
    """FPR of hard-negative normals and of ordinary normals at `threshold` (score >= threshold)."""
    rows = _rows(frame, split, ("hard_negative",))
    scores, labels = _arrays(rows, what="hard-negative rows")
    normal = labels == 0
    hard = as_bool(rows["hard_negative"]) & normal
    plain = normal & ~hard
    fpr = normal_fpr = None
    if threshold is not None:
        flagged = scores >= threshold
        fpr = _rate(int((flagged & hard).sum()), int(hard.sum()))
        normal_fpr = _rate(int((flagged & plain).sum()), int(plain.sum()))
    return HardNegativeRate(fpr, normal_fpr, int(hard.sum()), int(plain.sum()), threshold)
