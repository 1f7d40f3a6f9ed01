"""Read a run folder (`runs.jsonl` + per-image score files) into typed records and pandas frames.

Also the two summaries every table and figure shares: the mean over seeds of each
method/variant (`aggregate_seeds`) and paired DeLong tests against a dataset's best method
(`compare_with_best`).

The store format is the runner's contract (SPEC 9): one JSON object per line, one cell per
line; the last line of a `cell_key` wins (a re-run with `--force` appends). A torn last line
(a crash mid-write) is ignored with a warning; so is any other line that is not a cell object.
Keys this reader does not know are kept in `CellResult.raw`, never an error.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.stamp import weights_tag

RUNS_FILE = "runs.jsonl"
SCHEMA_VERSION = 1
STATUSES = ("ok", "failed", "skipped")
SCORE_COLUMNS = ("image_id", "label", "split", "score")
# Metrics whose CI the store carries as `<name>_ci: [lo, hi]`.
CI_METRICS = ("image_auroc", "aupr", "f1", "f1_max")
_INT_FIELDS = {
    "n", "n_anomalous", "n_normal", "n_hard_negative", "throughput_batch_size", "n_timed", "n_failed_answers",
    "n_located",
}  # fmt: skip


class RunStoreWarning(UserWarning):
    """A line of `runs.jsonl` was unreadable and ignored."""


@dataclass(frozen=True)
class Interval:
    """A confidence interval `[lo, hi]` (95 % stratified bootstrap in the runner)."""

    lo: float
    hi: float

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2


@dataclass(frozen=True)
class CellMetrics:
    """Image- and pixel-level metrics of one cell; None where a metric does not apply.

    f1 / precision / recall are measured on test at `threshold`, chosen on `threshold_source`
    (the validation split); `f1_max` is the threshold-free best F1 on test.
    """

    image_auroc: float | None = None
    image_auroc_ci: Interval | None = None
    aupr: float | None = None
    aupr_ci: Interval | None = None
    f1: float | None = None
    f1_ci: Interval | None = None
    precision: float | None = None
    recall: float | None = None
    threshold: float | None = None
    threshold_source: str | None = None
    f1_max: float | None = None
    f1_max_ci: Interval | None = None
    pixel_auroc: float | None = None
    aupro: float | None = None
    val_image_auroc: float | None = None
    """AUROC on the validation split (known designs); val minus test is the cross-generation gap."""
    n_normal: int | None = None
    n_anomalous: int | None = None
    undefined_reason: str | None = None


@dataclass(frozen=True)
class CellLatency:
    """Latency of one cell: milliseconds per image at batch 1, images/s, seconds, MiB."""

    device: str | None = None
    batch1_p50_ms: float | None = None
    batch1_p95_ms: float | None = None
    batch1_mean_ms: float | None = None
    n_timed: int | None = None
    throughput_ips: float | None = None
    throughput_batch_size: int | None = None
    fit_s: float | None = None
    predict_s: float | None = None
    peak_mem_mb: float | None = None
    peak_mem_kind: str | None = None


@dataclass(frozen=True)
class StratumMetrics:
    """Metrics on one stratum of the test split (a release year, a device group, a defect type).

    A defect type is scored against all test normals; its "none" stratum holds the normals alone.
    """

    n: int | None = None
    n_normal: int | None = None
    n_anomalous: int | None = None
    auroc: float | None = None
    f1: float | None = None
    precision: float | None = None
    recall: float | None = None
    fpr: float | None = None


@dataclass(frozen=True)
class HardNegativeRate:
    """False-positive rate at the validation threshold on hard-negative and on ordinary normals."""

    fpr: float | None = None
    normal_fpr: float | None = None
    n_hard_negative: int | None = None
    n_normal: int | None = None


@dataclass(frozen=True)
class AnswerMetrics:
    """How well a prompting method's Yes/No answers and 3x3 locations match the test labels and masks."""

    decision_f1: float | None = None
    decision_accuracy: float | None = None
    n_failed_answers: int | None = None
    location_accuracy: float | None = None
    n_located: int | None = None


@dataclass(frozen=True)
class CellResult:
    """One cell (method x variant x dataset x seed) of a run, as last written to `runs.jsonl`.

    `breakdowns` maps a kind ("year", "group", "defect", ...) to stratum name -> metrics.
    `scores_file` / `maps_file` are relative to the run folder. `raw` is the whole JSON line.
    """

    cell_key: str
    method: str
    variant: str
    dataset: str
    seed: int | None
    status: str
    run_id: str | None = None
    error: str | None = None
    weights: str | None = None
    weights_tag: str | None = None
    """The short stamp for tables and figures: "pretrained", "subst. MobileNetV2-IN1k", "random"."""
    metrics: CellMetrics | None = None
    latency: CellLatency | None = None
    breakdowns: Mapping[str, Mapping[str, StratumMetrics]] = field(default_factory=dict)
    hard_negative: HardNegativeRate | None = None
    text_metrics: AnswerMetrics | None = None
    method_meta: Mapping[str, Any] = field(default_factory=dict)
    preset: str | None = None
    config_hash: str | None = None
    versions: Mapping[str, Any] = field(default_factory=dict)
    hardware: Mapping[str, Any] = field(default_factory=dict)
    scores_file: str | None = None
    maps_file: str | None = None
    dataset_root: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def random_weights(self) -> bool:
        return self.weights == "random"

    @property
    def substitute_weights(self) -> bool:
        return self.weights == "substitute"


@dataclass(frozen=True)
class RunResults:
    """All cells of one run folder, in file order of their winning line.

    `problems` lists what was ignored while reading (torn or invalid lines), for the report.
    """

    run_dir: Path
    cells: tuple[CellResult, ...]
    problems: tuple[str, ...] = ()

    @property
    def datasets(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c.dataset for c in self.cells))

    @property
    def any_random_weights(self) -> bool:
        return any(c.random_weights for c in self.cells)

    @property
    def all_pretrained(self) -> bool:
        """Every cell ran on its method's own pretrained weights (no weights column needed)."""
        return all(c.weights == "pretrained" for c in self.cells)

    def for_dataset(self, dataset: str, *, ok_only: bool = False) -> tuple[CellResult, ...]:
        """Cells of `dataset` sorted by method, variant, seed."""
        cells = [c for c in self.cells if c.dataset == dataset and (c.ok or not ok_only)]
        return tuple(sorted(cells, key=_cell_order))

    def labels(self) -> dict[str, str]:
        """cell_key -> display label "method/variant", with " s<seed>" only where seeds differ."""
        seeds = Counter((c.method, c.variant, c.dataset) for c in self.cells)
        return {
            c.cell_key: f"{c.method}/{c.variant}"
            + (f" s{c.seed}" if seeds[(c.method, c.variant, c.dataset)] > 1 else "")
            for c in self.cells
        }

    def frame(self) -> pd.DataFrame:
        """One row per cell with flat columns (metric, `<metric>_lo`/`_hi` CI bounds, latency, ...)."""
        rows = [_flat_row(c) for c in self.cells]
        frame = pd.DataFrame(rows, columns=FRAME_COLUMNS)
        for name in FRAME_COLUMNS:
            if name == "seed" or name in _INT_FIELDS:
                frame[name] = frame[name].astype("Int64")
        for name in _FLOAT_COLUMNS:
            frame[name] = frame[name].astype("float64")
        return frame

    def scores(self, cell: CellResult) -> pd.DataFrame:
        """Per-image scores of `cell` (val and test rows) from its Parquet file."""
        path = self._member(cell, cell.scores_file, "scores_file")
        scores = pd.read_parquet(path)
        missing = [c for c in SCORE_COLUMNS if c not in scores.columns]
        if missing:
            raise ValueError(f"{path}: scores of cell {cell.cell_key} lack columns {missing}")
        return scores

    def maps(self, cell: CellResult) -> tuple[np.ndarray, np.ndarray]:
        """Test anomaly maps of `cell` from its npz: `(N,)` image ids and `(N, H, W)` float32 maps."""
        path = self._member(cell, cell.maps_file, "maps_file")
        with np.load(path, allow_pickle=False) as stored:
            if "image_ids" not in stored or "maps" not in stored:
                raise ValueError(f"{path}: maps of cell {cell.cell_key} lack `image_ids` or `maps`")
            ids, maps = stored["image_ids"].astype(str), stored["maps"].astype(np.float32)
        if maps.ndim != 3 or len(ids) != len(maps):
            raise ValueError(f"{path}: {len(ids)} image ids for maps of shape {maps.shape}")
        return ids, maps

    def _member(self, cell: CellResult, relative: str | None, key: str) -> Path:
        if not relative:
            raise FileNotFoundError(f"cell {cell.cell_key} ({cell.status}) has no {key}")
        root = self.run_dir.resolve()
        path = (root / relative).resolve()
        if not path.is_relative_to(root):
            raise ValueError(f"cell {cell.cell_key}: {key} {relative!r} points outside the run folder")
        if not path.is_file():
            raise FileNotFoundError(f"cell {cell.cell_key}: {key} {path} does not exist")
        return path


def load_run(run_dir: str | Path) -> RunResults:
    """Read `<run_dir>/runs.jsonl`; the last line of each cell_key wins, unreadable lines warn."""
    run_dir = Path(run_dir)
    path = run_dir / RUNS_FILE
    if not path.is_file():
        where = "does not exist" if not run_dir.exists() else f"has no {RUNS_FILE}"
        raise FileNotFoundError(
            f"{run_dir} {where}; a run folder is what `python -m benchmarks run --out DIR` writes"
        )
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    torn_tail = not text.endswith("\n") and text != ""
    problems: list[str] = []
    cells: dict[str, CellResult] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        is_last = torn_tail and number == len(lines)
        try:
            cell = _parse_cell(json.loads(line))
        except (json.JSONDecodeError, ValueError, TypeError) as err:
            what = "torn last line" if is_last else "unreadable line"
            problems.append(f"{RUNS_FILE} line {number}: {what} ignored ({_short(str(err))})")
            warnings.warn(f"{path}: {problems[-1]}", RunStoreWarning, stacklevel=2)
            continue
        cells.pop(cell.cell_key, None)  # a re-written cell moves to its latest position
        cells[cell.cell_key] = cell
    return RunResults(run_dir=run_dir, cells=tuple(cells.values()), problems=tuple(problems))


def strata_order(names: Collection[str]) -> list[str]:
    """Stratum names in display order: numeric ones (years) numerically, then the rest alphabetically."""

    def key(name: str) -> tuple[int, float, str]:
        try:
            return (0, float(name), "")
        except ValueError:
            return (1, 0.0, name)

    return sorted(names, key=key)


def slugify(name: str) -> str:
    """A file-name-safe form of a dataset name (`manifest:/a/b.csv` -> `manifest-a-b.csv`)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "dataset"


def dataset_slugs(datasets: tuple[str, ...]) -> dict[str, str]:
    """Unique file-name slugs for `datasets`; colliding slugs get a numeric suffix."""
    slugs: dict[str, str] = {}
    for name in datasets:
        slug, n = slugify(name), 2
        while slug in slugs.values():
            slug, n = f"{slugify(name)}-{n}", n + 1
        slugs[name] = slug
    return slugs


# Metrics averaged over seeds by `aggregate_seeds` (latency columns take the median instead).
SEED_METRICS = (
    "image_auroc", "aupr", "f1", "f1_max", "precision", "recall", "pixel_auroc", "aupro", "val_image_auroc",
    "normal_fpr", "hard_negative_fpr", "decision_f1", "decision_accuracy", "location_accuracy",
)  # fmt: skip
SEED_LATENCY = ("batch1_p50_ms", "batch1_p95_ms", "throughput_ips", "peak_mem_mb")
SIGNIFICANCE_LEVEL = 0.05


def aggregate_seeds(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, method, variant) of the ok cells in `frame` (a `RunResults.frame()`).

    `<metric>` is the mean over seeds and `<metric>_sd` their standard deviation (NaN with one
    seed); `<metric>_lo` / `_hi` is the cell's bootstrap CI with one seed and the envelope of
    the seeds' CIs with several; latency columns are medians; `weights` (and `weights_tag`) is
    "random" when any seed ran with random weights; `seeds` counts the cells.
    """
    ok = frame[frame["status"] == "ok"]
    rows = []
    for (dataset, method, variant), group in ok.groupby(["dataset", "method", "variant"], sort=True):
        weights = sorted(set(group["weights"].dropna()))
        tags = sorted(set(group["weights_tag"].dropna()))
        row: dict[str, Any] = {
            "dataset": dataset,
            "method": method,
            "variant": variant,
            "seeds": len(group),
            "weights": "random" if "random" in weights else ", ".join(weights) or None,
            "weights_tag": "random" if "random" in weights else ", ".join(tags) or None,
            "device": ", ".join(sorted(set(group["device"].dropna()))) or None,
        }
        for name in SEED_METRICS:
            values = group[name].dropna()
            row[name] = values.mean() if len(values) else np.nan
            row[f"{name}_sd"] = values.std(ddof=1) if len(values) > 1 else np.nan
        for name in CI_METRICS:
            row[f"{name}_lo"] = group[f"{name}_lo"].min()
            row[f"{name}_hi"] = group[f"{name}_hi"].max()
        for name in SEED_LATENCY:
            row[name] = group[name].median()
        rows.append(row)
    columns = ["dataset", "method", "variant", "seeds", "weights", "weights_tag", "device"]
    columns += [f"{m}{suffix}" for m in SEED_METRICS for suffix in ("", "_sd")]
    columns += [f"{m}_{end}" for m in CI_METRICS for end in ("lo", "hi")]
    return pd.DataFrame(rows, columns=[*columns, *SEED_LATENCY])


@dataclass(frozen=True)
class BestComparison:
    """Image AUROC of one method/variant against the dataset's best, on the test images both scored.

    DeLong's paired test (`benchmarks.metrics.paired_auroc_test`) runs once per seed: each seed
    against the best's same seed, or its first seed when that seed did not run. `delta` (this
    minus best) is the mean over those pairs, `p_value` the largest of their two-sided p-values
    (a difference must hold in every seed), `p_holm` that p after Holm's correction over every
    comparison of the dataset. None with `undefined_reason` when no pair could be tested.
    """

    method: str
    variant: str
    best_method: str
    best_variant: str
    delta: float | None
    p_value: float | None
    p_holm: float | None
    n_images: int | None
    n_pairs: int
    undefined_reason: str | None = None

    @property
    def significantly_worse(self) -> bool:
        return (
            self.p_holm is not None
            and self.p_holm < SIGNIFICANCE_LEVEL
            and self.delta is not None
            and self.delta < 0
        )


def compare_with_best(results: RunResults, dataset: str) -> list[BestComparison]:
    """Paired DeLong tests of every method/variant of `dataset` against the one of highest mean AUROC.

    Empty when fewer than two method/variants have an image AUROC.
    """
    groups: dict[tuple[str, str], list[CellResult]] = {}
    for cell in results.for_dataset(dataset, ok_only=True):
        if cell.metrics is not None and cell.metrics.image_auroc is not None:
            groups.setdefault((cell.method, cell.variant), []).append(cell)
    if len(groups) < 2:
        return []
    mean_auroc = {
        key: float(np.mean([c.metrics.image_auroc for c in cells if c.metrics]))
        for key, cells in groups.items()
    }
    best = max(groups, key=lambda key: mean_auroc[key])
    best_by_seed = {c.seed: c for c in groups[best]}
    test_scores: dict[str, pd.DataFrame | str] = {}

    def scores(cell: CellResult) -> pd.DataFrame | str:
        if cell.cell_key not in test_scores:
            try:
                frame = results.scores(cell)
            except (OSError, ValueError) as err:
                test_scores[cell.cell_key] = _short(str(err))
            else:
                test_scores[cell.cell_key] = frame.loc[
                    frame["split"] == "test", ["image_id", "label", "score"]
                ]
        return test_scores[cell.cell_key]

    compared = []
    for key, cells in groups.items():
        if key == best:
            continue
        pairs = [(cell, best_by_seed.get(cell.seed, groups[best][0])) for cell in cells]
        deltas, p_values, sizes, reasons = [], [], [], []
        for cell, partner in pairs:
            outcome = _paired_test(scores(cell), scores(partner))
            if isinstance(outcome, str):
                reasons.append(f"{cell.cell_key}: {outcome}")
            else:
                deltas.append(outcome[0])
                p_values.append(outcome[1])
                sizes.append(outcome[2])
        tested = len(deltas) == len(pairs)
        compared.append(
            BestComparison(
                method=key[0],
                variant=key[1],
                best_method=best[0],
                best_variant=best[1],
                delta=float(np.mean(deltas)) if tested else None,
                p_value=max(p_values) if tested else None,
                p_holm=None,
                n_images=min(sizes) if tested else None,
                n_pairs=len(pairs),
                undefined_reason=None if tested else "; ".join(reasons),
            )
        )
    adjusted = holm([c.p_value for c in compared])
    return [replace(c, p_holm=p) for c, p in zip(compared, adjusted, strict=True)]


def _paired_test(a: pd.DataFrame | str, b: pd.DataFrame | str) -> tuple[float, float, int] | str:
    """(delta, p, shared images) of DeLong on the test images both frames scored, or why not."""
    from benchmarks.metrics import paired_auroc_test  # imports torch (pixel metrics): only when needed

    if isinstance(a, str) or isinstance(b, str):
        return a if isinstance(a, str) else str(b)
    shared = a.merge(b, on="image_id", suffixes=("_a", "_b"))
    if (shared["label_a"] != shared["label_b"]).any():
        return "the two score files disagree on the labels of shared test images"
    try:
        result = paired_auroc_test(shared["score_a"], shared["score_b"], shared["label_a"])
    except ValueError as err:
        return _short(str(err))
    if result.delta is None or result.p_value is None:
        return result.undefined_reason or "DeLong test undefined"
    return result.delta, result.p_value, len(shared)


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values (None stays None and does not count as a test)."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        adjusted[i] = running
    return adjusted


FRAME_COLUMNS = [
    "cell_key", "run_id", "dataset", "method", "variant", "seed", "status", "error", "weights",
    "weights_tag", "preset", "config_hash",
    "image_auroc", "image_auroc_lo", "image_auroc_hi", "aupr", "aupr_lo", "aupr_hi",
    "f1", "f1_lo", "f1_hi", "precision", "recall", "threshold", "threshold_source",
    "f1_max", "f1_max_lo", "f1_max_hi", "pixel_auroc", "aupro", "val_image_auroc", "n_normal", "n_anomalous",
    "undefined_reason",
    "device", "batch1_p50_ms", "batch1_p95_ms", "batch1_mean_ms", "n_timed", "throughput_ips",
    "throughput_batch_size", "fit_s", "predict_s", "peak_mem_mb", "peak_mem_kind",
    "hard_negative_fpr", "normal_fpr", "n_hard_negative",
    "decision_f1", "decision_accuracy", "location_accuracy", "n_failed_answers",
    "scores_file", "maps_file",
]  # fmt: skip
_FLOAT_COLUMNS = [
    "image_auroc", "image_auroc_lo", "image_auroc_hi", "aupr", "aupr_lo", "aupr_hi",
    "f1", "f1_lo", "f1_hi", "precision", "recall", "threshold", "f1_max", "f1_max_lo",
    "f1_max_hi", "pixel_auroc", "aupro", "val_image_auroc", "batch1_p50_ms", "batch1_p95_ms", "batch1_mean_ms",
    "throughput_ips", "fit_s", "predict_s", "peak_mem_mb", "hard_negative_fpr", "normal_fpr",
    "decision_f1", "decision_accuracy", "location_accuracy",
]  # fmt: skip


def _flat_row(cell: CellResult) -> dict[str, Any]:
    metrics = cell.metrics or CellMetrics()
    hard = cell.hard_negative or HardNegativeRate()
    row: dict[str, Any] = {
        "cell_key": cell.cell_key, "run_id": cell.run_id, "dataset": cell.dataset,
        "method": cell.method, "variant": cell.variant, "seed": cell.seed, "status": cell.status,
        "error": cell.error, "weights": cell.weights, "weights_tag": cell.weights_tag, "preset": cell.preset,
        "config_hash": cell.config_hash, "scores_file": cell.scores_file, "maps_file": cell.maps_file,
        "hard_negative_fpr": hard.fpr, "normal_fpr": hard.normal_fpr, "n_hard_negative": hard.n_hard_negative,
    }  # fmt: skip
    row |= {k: v for k, v in vars(metrics).items() if not k.endswith("_ci")}
    for name in CI_METRICS:
        ci: Interval | None = getattr(metrics, f"{name}_ci")
        row[f"{name}_lo"] = ci.lo if ci else None
        row[f"{name}_hi"] = ci.hi if ci else None
    row |= vars(cell.latency or CellLatency())
    row |= vars(cell.text_metrics or AnswerMetrics())
    return row


def _cell_order(cell: CellResult) -> tuple[str, str, int]:
    return (cell.method, cell.variant, cell.seed if cell.seed is not None else -1)


def _details(obj: Mapping[str, Any]) -> list[dict[str, object]]:
    detail = obj.get("weights_detail")
    return [d for d in detail if isinstance(d, dict)] if isinstance(detail, list) else []


def _parse_cell(obj: object) -> CellResult:
    if not isinstance(obj, dict):
        raise ValueError(f"a line must be a JSON object, not {type(obj).__name__}")
    missing = [k for k in ("cell_key", "method", "dataset", "status") if not obj.get(k)]
    if missing:
        raise ValueError(f"missing keys {missing}")
    if obj["status"] not in STATUSES:
        raise ValueError(f"status {obj['status']!r} is not one of {STATUSES}")
    return CellResult(
        cell_key=str(obj["cell_key"]),
        method=str(obj["method"]),
        variant=str(obj.get("variant") or "default"),
        dataset=str(obj["dataset"]),
        seed=_int(obj.get("seed")),
        status=obj["status"],
        run_id=_str(obj.get("run_id")),
        error=_str(obj.get("error")),
        weights=_str(obj.get("weights")),
        weights_tag=_str(obj.get("weights_tag")) or weights_tag(_str(obj.get("weights")), _details(obj)),
        metrics=_metrics(obj.get("metrics")),
        latency=_latency(obj.get("latency")),
        breakdowns=_breakdowns(obj.get("breakdowns")),
        hard_negative=_hard_negative(obj.get("hard_negative")),
        text_metrics=_answers(obj.get("text_metrics")),
        method_meta=_mapping(obj.get("method_meta")),
        preset=_str(obj.get("preset")),
        config_hash=_str(obj.get("config_hash")),
        versions=_mapping(obj.get("versions")),
        hardware=_mapping(obj.get("hardware")),
        scores_file=_str(obj.get("scores_file")),
        maps_file=_str(obj.get("maps_file")),
        dataset_root=_str(obj.get("dataset_root")),
        raw=obj,
    )


def _metrics(obj: object) -> CellMetrics | None:
    if not isinstance(obj, dict):
        return None
    cis: dict[str, Any] = {f"{name}_ci": _interval(obj.get(f"{name}_ci")) for name in CI_METRICS}
    values = _fields(CellMetrics, obj, strings={"threshold_source", "undefined_reason"}, skip=set(cis))
    return CellMetrics(**values, **cis)


def _fields(
    cls: type, obj: Mapping[str, object], strings: Collection[str] = (), skip: Collection[str] = ()
) -> dict[str, Any]:
    """The known keys of dataclass `cls` read from `obj`; wrong types and NaN become None."""
    values: dict[str, Any] = {}
    for spec in fields(cls):
        value = obj.get(spec.name)
        if spec.name in skip:
            continue
        if spec.name in strings:
            values[spec.name] = _str(value)
        elif spec.name in _INT_FIELDS:
            values[spec.name] = _int(value)
        else:
            values[spec.name] = _float(value)
    return values


def _latency(obj: object) -> CellLatency | None:
    return (
        CellLatency(**_fields(CellLatency, obj, strings={"device", "peak_mem_kind"}))
        if isinstance(obj, dict)
        else None
    )


def _answers(obj: object) -> AnswerMetrics | None:
    return AnswerMetrics(**_fields(AnswerMetrics, obj)) if isinstance(obj, dict) else None


def _hard_negative(obj: object) -> HardNegativeRate | None:
    return HardNegativeRate(**_fields(HardNegativeRate, obj)) if isinstance(obj, dict) else None


def _breakdowns(obj: object) -> dict[str, dict[str, StratumMetrics]]:
    if not isinstance(obj, dict):
        return {}
    return {
        str(kind): {
            str(name): StratumMetrics(**_fields(StratumMetrics, m if isinstance(m, dict) else {}))
            for name, m in strata.items()
        }
        for kind, strata in obj.items()
        if isinstance(strata, dict)
    }


def _interval(value: object) -> Interval | None:
    if isinstance(value, list | tuple) and len(value) == 2:
        lo, hi = _float(value[0]), _float(value[1])
        if lo is not None and hi is not None:
            return Interval(lo, hi)
    return None


def _float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _int(value: object) -> int | None:
    number = _float(value)
    return int(number) if number is not None else None


def _str(value: object) -> str | None:
    return None if value is None else str(value)


def _mapping(value: object) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {}


def _short(message: str, limit: int = 120) -> str:
    return message if len(message) <= limit else message[: limit - 1] + "…"
