"""How hard a dataset is for a reference detector: `python -m benchmarks data calibrate`.

The embedded smartphone sets are calibrated against a reference cell (`CALIBRATION_REFERENCES`:
the suite's own patchcore on the bundled ImageNet backbone); this module runs that one cell
through the ordinary runner (or reads it from an existing run folder) and measures, from its
stored per-image scores:

- test AUROC with its bootstrap CI, and the in-distribution val AUROC (known designs) beside it:
  their difference is the cross-generation gap;
- AUROC by severity third (anomalies of one third against every test normal), where the dataset
  records a severity (`annotations.csv` beside the manifest);
- AUROC per defect kind;
- mean score of hard-negative normals against plain normals (test and val pooled, each
  standardised by the plain normals of its split), and the false-positive rates of both at the
  val threshold.

Each number is checked against the dataset's targets (`CalibrationTargets`) and printed with
pass/fail, so anyone can re-check the calibration after changing the generator.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.metrics import (
    as_bool,
    auroc_or_none,
    breakdown,
    choose_threshold,
    hard_negative_fpr,
    image_metrics,
)
from benchmarks.results.record import CellResult, Interval

ANNOTATIONS_FILE = "annotations.csv"
SEVERITY_THIRDS = ("least severe third", "middle third", "most severe third")


@dataclass(frozen=True)
class CalibrationTargets:
    """What "calibrated" means for a dataset (issue: signal with headroom, cross-generation shift)."""

    test_auroc: tuple[float, float] = (0.80, 0.95)
    most_severe_third_min: float = 0.90


@dataclass(frozen=True)
class CalibrationReference:
    """The cell a dataset is calibrated against."""

    method: str
    weights: str
    targets: CalibrationTargets = field(default_factory=CalibrationTargets)


# the datasets' own definition of their difficulty; any other dataset names its method on the CLI
CALIBRATION_REFERENCES: dict[str, CalibrationReference] = {
    "smartphone-synth": CalibrationReference(method="patchcore", weights="substitute"),
    # the same targets: the wild variant is expected to miss them (see the data card)
    "smartphone-synth-wild": CalibrationReference(method="patchcore", weights="substitute"),
}


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Calibration:
    """The calibration numbers of one cell (see the module docstring)."""

    dataset: str
    method: str
    weights: str
    test_auroc: float
    test_auroc_ci: Interval | None
    val_auroc: float | None
    by_severity: list[tuple[str, float, float, float, int]]  # third, severity lo, hi, AUROC, n anomalies
    by_defect: dict[str, tuple[float, int]]  # defect -> AUROC, n anomalies
    hard_negative_z: float | None  # mean standardised score of hard negatives (plain normals: 0)
    hard_negative_fpr: float | None
    plain_normal_fpr: float | None
    checks: list[Check]

    @property
    def gap(self) -> float | None:
        return None if self.val_auroc is None else self.val_auroc - self.test_auroc

    def to_json(self) -> dict[str, object]:
        return {
            "dataset": self.dataset,
            "method": self.method,
            "weights": self.weights,
            "test_auroc": self.test_auroc,
            "test_auroc_ci": self.test_auroc_ci.to_json() if self.test_auroc_ci else None,
            "val_auroc": self.val_auroc,
            "cross_generation_gap": self.gap,
            "by_severity": [
                {"third": t, "severity": [lo, hi], "auroc": a, "n": n} for t, lo, hi, a, n in self.by_severity
            ],
            "by_defect": {k: {"auroc": a, "n": n} for k, (a, n) in self.by_defect.items()},
            "hard_negative_z": self.hard_negative_z,
            "hard_negative_fpr": self.hard_negative_fpr,
            "plain_normal_fpr": self.plain_normal_fpr,
            "checks": [{"name": c.name, "passed": c.passed, "detail": c.detail} for c in self.checks],
        }


def attach_severity(frame: pd.DataFrame, dataset_root: Path) -> pd.DataFrame:
    """Add a `severity` column from `annotations.csv` beside the manifest (NaN where there is none)."""
    path = Path(dataset_root) / ANNOTATIONS_FILE
    if not path.exists():
        return frame.assign(severity=np.nan)
    notes = pd.read_csv(path, usecols=["image", "severity"])
    return frame.merge(notes, on="image", how="left")


def calibrate_scores(
    frame: pd.DataFrame, dataset: str, method: str, weights: str, targets: CalibrationTargets, seed: int = 0
) -> Calibration:
    """Calibration numbers from a cell's per-image scores (val and test rows, as the store keeps them)."""
    test, val = frame[frame["split"] == "test"], frame[frame["split"] == "val"]
    if test["label"].nunique() < 2:
        raise ValueError(f"{dataset}: the test split needs normals and anomalies to calibrate")
    anomalies = test[test["label"] == 1]
    threshold = choose_threshold(val["score"].to_numpy(float), val["label"].to_numpy(int))
    overall = image_metrics(test["score"], test["label"], threshold, n_bootstrap=1000, seed=seed)
    assert overall.image_auroc is not None
    val_auroc = auroc_or_none(val["score"], val["label"], what="val") if len(val) else None

    # thirds and kinds are each scored against all test normals: the suite's defect breakdown
    by_severity = []
    rated = anomalies.dropna(subset=["severity"]) if "severity" in anomalies else anomalies.iloc[:0]
    if len(rated) >= 3:
        ordered = rated.sort_values("severity")
        parts = np.array_split(np.arange(len(ordered)), 3)
        thirds = pd.Series(np.nan, index=ordered.index, dtype=object)
        for name, part in zip(SEVERITY_THIRDS, parts, strict=True):
            thirds.iloc[part] = name
        strata = breakdown(pd.concat([test[test["label"] == 0], ordered.assign(third=thirds)]), "third", None,
                           against_all_normals=True)
        for name, part in zip(SEVERITY_THIRDS, parts, strict=True):
            severity = ordered["severity"].iloc[part]
            by_severity.append((name, float(severity.min()), float(severity.max()), strata[name].auroc, len(part)))
    by_defect = {
        kind: (stratum.auroc, stratum.n_anomalous)
        for kind, stratum in breakdown(test, "defect", None).items()
        if stratum.n_anomalous
    }

    z_scores = []
    for split_rows in (test, val):
        hard_flags = as_bool(split_rows["hard_negative"])
        plain = split_rows[(split_rows["label"] == 0) & ~hard_flags]
        hard = split_rows[(split_rows["label"] == 0) & hard_flags]
        if len(plain) > 1 and len(hard):
            spread = float(plain["score"].std()) or 1.0
            z_scores.append((hard["score"].to_numpy(float) - float(plain["score"].mean())) / spread)
    hard_z = float(np.concatenate(z_scores).mean()) if z_scores else None
    rates = hard_negative_fpr(test, threshold.value)

    lo, hi = targets.test_auroc
    checks = [Check("test AUROC in range", lo <= overall.image_auroc <= hi, f"{overall.image_auroc:.3f} in [{lo}, {hi}]")]
    if by_severity:
        least, most = by_severity[0][3], by_severity[-1][3]
        checks.append(Check("most severe third", most >= targets.most_severe_third_min,
                            f"{most:.3f} >= {targets.most_severe_third_min}"))
        checks.append(Check("least severe third lower", least < most, f"{least:.3f} < {most:.3f}"))
    if val_auroc is not None:
        checks.append(Check("val AUROC not below test (cross-generation shift)", val_auroc >= overall.image_auroc,
                            f"val {val_auroc:.3f} - test {overall.image_auroc:.3f} = {val_auroc - overall.image_auroc:+.3f}"))
    if hard_z is not None:
        checks.append(Check("hard negatives score above plain normals", hard_z > 0,
                            f"mean standardised score {hard_z:+.2f}"))
    return Calibration(
        dataset=dataset, method=method, weights=weights, test_auroc=overall.image_auroc,
        test_auroc_ci=overall.image_auroc_ci, val_auroc=val_auroc, by_severity=by_severity,
        by_defect=by_defect, hard_negative_z=hard_z, hard_negative_fpr=rates.fpr, plain_normal_fpr=rates.normal_fpr,
        checks=checks,
    )


def format_calibration(cal: Calibration, produced_by: str) -> str:
    """The printed table; `produced_by` says what made the numbers (weights, preset, hardware)."""
    ci = f" [{cal.test_auroc_ci.lo:.3f}, {cal.test_auroc_ci.hi:.3f}]" if cal.test_auroc_ci else ""
    lines = [f"calibration of {cal.dataset} against {cal.method} ({produced_by})",
             f"  test AUROC  {cal.test_auroc:.3f}{ci}"]
    if cal.val_auroc is not None and cal.gap is not None:
        # on the suite's phone splits val holds known designs and test unseen ones
        lines.append(f"  val AUROC   {cal.val_auroc:.3f}   cross-generation gap (val - test) {cal.gap:+.3f}")
    for name, lo, hi, auroc, n in cal.by_severity:
        lines.append(f"  {name:20s} severity {lo:.2f}-{hi:.2f}  AUROC {auroc:.3f}  (n={n})")
    for kind, (auroc, n) in cal.by_defect.items():
        lines.append(f"  defect {kind:14s} AUROC {auroc:.3f}  (n={n})")
    if cal.hard_negative_z is not None:
        lines.append(f"  hard negatives vs plain normals: mean standardised score {cal.hard_negative_z:+.2f}")
    if cal.hard_negative_fpr is not None and cal.plain_normal_fpr is not None:
        lines.append(f"  FPR at the val threshold: hard negatives {cal.hard_negative_fpr:.2f}, "
                     f"plain normals {cal.plain_normal_fpr:.2f}")
    for check in cal.checks:
        lines.append(f"  [{'pass' if check.passed else 'FAIL'}] {check.name}: {check.detail}")
    return "\n".join(lines)


def calibrate_cell(record: CellResult, run_dir: Path, targets: CalibrationTargets) -> Calibration:
    """Calibration of one stored cell of a run folder."""
    if not record.ok or not record.scores_file:
        raise ValueError(f"cell {record.method} on {record.dataset} did not finish: {record.error}")
    frame = pd.read_parquet(Path(run_dir) / record.scores_file)
    frame = attach_severity(frame, Path(record.dataset_root or ""))
    weights = str(record.weights_tag or record.weights)
    return calibrate_scores(frame, record.dataset, record.method, weights, targets, seed=record.seed or 0)


def write_calibration(cal: Calibration, path: Path) -> None:
    path.write_text(json.dumps(cal.to_json(), indent=2) + "\n", encoding="utf-8")
