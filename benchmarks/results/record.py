"""The result record of one cell, defined once: what `runs.jsonl` holds, line by line (SPEC 9).

Frozen dataclasses with `to_json` / `from_json`. The cell process fills the metric parts, the
runner completes a `CellResult`, `benchmarks.results.store` alone writes and reads it; report, tables,
figures and calibration consume it. `from_json` is lenient, so files written by older versions
of the suite (schema 1 without the newer keys) still load: a key it does not know is kept in
`CellResult.raw`, a value of the wrong type or a NaN becomes None, a missing part stays None.

This module imports neither torch nor the metric code, so reading results stays light.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, SupportsFloat, TypeVar

SCHEMA_VERSION = 1
RUNS_FILE = "runs.jsonl"
STATUSES = ("ok", "failed", "skipped")


@dataclass(frozen=True)
class Interval:
    """A 95 % confidence interval `[lo, hi]` (stratified bootstrap in the cell)."""

    lo: float
    hi: float

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2

    def to_json(self) -> list[float]:
        return [self.lo, self.hi]

    @classmethod
    def from_json(cls, value: object) -> Interval | None:
        if isinstance(value, list | tuple) and len(value) == 2:
            lo, hi = _float(value[0]), _float(value[1])
            if lo is not None and hi is not None:
                return cls(lo, hi)
        return None


class _Flat:
    """`to_json` / `from_json` for a dataclass of scalars (float, int, str, bool, Interval; all optional)."""

    def to_json(self) -> dict[str, Any]:
        return {f.name: _scalar_json(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_json(cls: type[_F], obj: object) -> _F | None:
        """The known keys of `obj` read with their declared types; None when `obj` is not a mapping."""
        if not isinstance(obj, Mapping):
            return None
        hints = _hints(cls)
        return cls(**{f.name: _read(hints[f.name], obj.get(f.name)) for f in fields(cls)})  # type: ignore[arg-type]


_F = TypeVar("_F", bound=_Flat)


@dataclass(frozen=True)
class CellMetrics(_Flat):
    """Image- and pixel-level metrics of one cell on its test split; None where a metric does not apply.

    f1 / precision / recall are measured on test at `threshold`, chosen on `threshold_source`
    (the validation split, never test); `f1_max` is the threshold-free best F1 on test. `*_ci`
    are 95 % stratified-bootstrap intervals over `n_bootstrap` resamples. `undefined_reason` says
    why image metrics are None, `pixel_undefined_reason` why pixel metrics are.
    `val_image_auroc` is the AUROC on the validation split (known designs): val minus test is the
    cross-generation gap.
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
    n_normal: int | None = None
    n_anomalous: int | None = None
    n_bootstrap: int | None = None
    undefined_reason: str | None = None
    pixel_auroc: float | None = None
    aupro: float | None = None
    pixel_n_images: int | None = None
    pixel_n_regions: int | None = None
    pixel_fraction: float | None = None
    pixel_undefined_reason: str | None = None
    val_image_auroc: float | None = None


# Metrics whose CI the record carries as `<name>_ci`.
CI_METRICS = tuple(f.name[: -len("_ci")] for f in fields(CellMetrics) if f.name.endswith("_ci"))


@dataclass(frozen=True)
class CellLatency(_Flat):
    """Latency of one cell (SPEC 8): milliseconds per image at batch 1, images/s, seconds, MiB."""

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
    gflop_per_image: float | None = None
    """GFLOP torch performs in one batch-1 `predict` (work outside torch, e.g. faiss, not counted)."""
    achieved_gflops: float | None = None
    """gflop_per_image / batch-1 p50: the arithmetic rate the prediction reached."""
    gemm_peak_gflops: float | None = None
    """This machine's best sustained fp32 GEMM rate at transformer shapes (`running.compute`)."""
    gemm_efficiency: float | None = None
    """achieved_gflops / gemm_peak_gflops: how close the prediction runs to the machine's limit."""


@dataclass(frozen=True)
class StratumMetrics(_Flat):
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
class HardNegativeRate(_Flat):
    """False-positive rates at the validation threshold: hard-negative normals vs ordinary normals.

    fpr: share of hard-negative normals (smudge, dust, reflection, ...) scored >= threshold;
    normal_fpr: the same for the other normals. None without a threshold or without such images.
    """

    fpr: float | None = None
    normal_fpr: float | None = None
    n_hard_negative: int | None = None
    n_normal: int | None = None
    threshold: float | None = None


@dataclass(frozen=True)
class AnswerMetrics(_Flat):
    """How well a method's typed answers (Yes/No decision, 3x3 location) match the test labels and masks."""

    decision_f1: float | None = None
    decision_accuracy: float | None = None
    n_failed_answers: int | None = None
    location_accuracy: float | None = None
    n_located: int | None = None


@dataclass(frozen=True)
class RoiScoring(_Flat):
    """ROI-guided image scores of one cell (SPEC 7, `--roi`): the protocol choice and, side by side on
    the same test images, what each scoring gives.

    mode: the run's `--roi` (auto, on, off). used: whether the cell's `metrics` come from the ROI
    scores. reason: why (auto: the validation AUROCs), or why ROI scoring does not apply. pooling: how
    the method pools its map (`MapPooling.describe`). For each scoring, own (the method's score),
    map (its map pooled over the whole image, the ROI scores' like-for-like reference) and roi (the
    map pooled inside the region of interest): val_auroc_*, and on test auroc, f1 at that scoring's
    own validation threshold and fpr (share of test normals at or above it). roi_auroc_ci: bootstrap
    95 % CI. delong_p: paired DeLong test, own vs roi scores, on test. normal_peaks_outside: share of
    test normals whose whole-map peak lies outside their ROI (what the ROI removes).
    """

    mode: str | None = None
    used: bool | None = None
    reason: str | None = None
    pooling: str | None = None
    val_auroc_own: float | None = None
    val_auroc_map: float | None = None
    val_auroc_roi: float | None = None
    own_auroc: float | None = None
    own_f1: float | None = None
    own_fpr: float | None = None
    map_auroc: float | None = None
    map_f1: float | None = None
    map_fpr: float | None = None
    roi_auroc: float | None = None
    roi_auroc_ci: Interval | None = None
    roi_f1: float | None = None
    roi_fpr: float | None = None
    delong_p: float | None = None
    normal_peaks_outside: float | None = None
    n_empty_roi: int | None = None


@dataclass(frozen=True)
class CellTiming(_Flat):
    """Where a cell's seconds went, stage by stage, inside its process.

    `predict_floor_s` is the time the val + test predictions (`predicting_s`) would take at this machine's GEMM
    peak (`CellLatency.gflop_per_image` x images / `gemm_peak_gflops`): the floor `predicting_s` is
    measured against. The cell's `duration_s` minus the stages is process start-up and hand-over.
    """

    data_s: float | None = None
    setup_s: float | None = None
    fitting_s: float | None = None
    predicting_s: float | None = None
    metrics_s: float | None = None
    latency_runs_s: float | None = None
    flop_count_s: float | None = None
    saving_s: float | None = None
    predict_floor_s: float | None = None

    @property
    def stages_s(self) -> float:
        return sum(getattr(self, name) or 0.0 for name in STAGES)


STAGES = tuple(f.name for f in fields(CellTiming) if f.name != "predict_floor_s")
"""The `CellTiming` fields that are stages of the cell, in the order they run."""


@dataclass(frozen=True)
class CellCounts(_Flat):
    """How many images the cell fitted on and scored."""

    n_train: int | None = None
    n_val: int | None = None
    n_test: int | None = None


Breakdowns = Mapping[str, Mapping[str, StratumMetrics]]
"""kind ("year", "group", "defect", "source") -> stratum name -> metrics."""


@dataclass(frozen=True)
class CellResult:
    """One cell (method x variant x dataset x seed) of a run: one line of `runs.jsonl`.

    `scores_file` / `maps_file` are relative to the run folder. `weights_tag` is the short stamp
    for tables and figures ("pretrained", "subst. MobileNetV2-IN1k", "random"). `raw` is the
    whole line as read (empty for a record built in this process); it takes no part in equality.
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
    metrics: CellMetrics | None = None
    latency: CellLatency | None = None
    config_hash: str | None = None
    versions: Mapping[str, Any] = field(default_factory=dict)
    hardware: Mapping[str, Any] = field(default_factory=dict)
    breakdowns: Breakdowns = field(default_factory=dict)
    hard_negative: HardNegativeRate | None = None
    text_metrics: AnswerMetrics | None = None
    counts: CellCounts | None = None
    timing: CellTiming | None = None
    roi: RoiScoring | None = None
    weights_detail: tuple[Mapping[str, Any], ...] = ()
    method_meta: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    preset: str | None = None
    scores_file: str | None = None
    maps_file: str | None = None
    dataset_root: str | None = None
    provenance: Mapping[str, Any] = field(default_factory=dict)
    model_dir: str | None = None
    """The saved fitted model (`run --save-models`), relative to the run folder; None when not saved."""
    model_note: str | None = None
    """Why no model was saved although it was asked for (the method cannot save, or saving failed)."""
    started_at: str | None = None
    finished_at: str | None = None
    duration_s: float | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def random_weights(self) -> bool:
        return self.weights == "random"

    @property
    def substitute_weights(self) -> bool:
        return self.weights == "substitute"

    def to_json(self) -> dict[str, Any]:
        """The `runs.jsonl` line: SPEC 9's keys first (names are a contract), then the rest."""
        out: dict[str, Any] = {"schema": SCHEMA_VERSION}
        for spec in fields(self):
            if spec.name == "raw":
                continue
            value = getattr(self, spec.name)
            if isinstance(value, _Flat):
                value = value.to_json()
            elif spec.name == "breakdowns":
                value = {kind: {name: m.to_json() for name, m in strata.items()} for kind, strata in value.items()}
            elif isinstance(value, Mapping):
                value = dict(value)
            elif isinstance(value, tuple):
                value = [dict(v) for v in value]
            out[spec.name] = value
        return out

    @classmethod
    def from_json(cls, obj: object) -> CellResult:
        """Parse one line's object; raises ValueError when it is not a cell (missing keys, bad status)."""
        if not isinstance(obj, Mapping):
            raise ValueError(f"a line must be a JSON object, not {type(obj).__name__}")
        missing = [k for k in ("cell_key", "method", "dataset", "status") if not obj.get(k)]
        if missing:
            raise ValueError(f"missing keys {missing}")
        if obj["status"] not in STATUSES:
            raise ValueError(f"status {obj['status']!r} is not one of {STATUSES}")
        detail = obj.get("weights_detail")
        return cls(
            cell_key=str(obj["cell_key"]),
            method=str(obj["method"]),
            variant=str(obj.get("variant") or "default"),
            dataset=str(obj["dataset"]),
            seed=_int(obj.get("seed")),
            status=str(obj["status"]),
            run_id=_str(obj.get("run_id")),
            error=_str(obj.get("error")),
            weights=_str(obj.get("weights")),
            weights_tag=_str(obj.get("weights_tag")),
            metrics=CellMetrics.from_json(obj.get("metrics")),
            latency=CellLatency.from_json(obj.get("latency")),
            config_hash=_str(obj.get("config_hash")),
            versions=_mapping(obj.get("versions")),
            hardware=_mapping(obj.get("hardware")),
            breakdowns=_breakdowns(obj.get("breakdowns")),
            hard_negative=HardNegativeRate.from_json(obj.get("hard_negative")),
            text_metrics=AnswerMetrics.from_json(obj.get("text_metrics")),
            counts=CellCounts.from_json(obj.get("counts")),
            timing=CellTiming.from_json(obj.get("timing")),
            roi=RoiScoring.from_json(obj.get("roi")),
            weights_detail=tuple(dict(d) for d in detail if isinstance(d, Mapping)) if isinstance(detail, list) else (),
            method_meta=_mapping(obj.get("method_meta")),
            options=_mapping(obj.get("options")),
            preset=_str(obj.get("preset")),
            scores_file=_str(obj.get("scores_file")),
            maps_file=_str(obj.get("maps_file")),
            dataset_root=_str(obj.get("dataset_root")),
            provenance=_mapping(obj.get("provenance")),
            model_dir=_str(obj.get("model_dir")),
            model_note=_str(obj.get("model_note")),
            started_at=_str(obj.get("started_at")),
            finished_at=_str(obj.get("finished_at")),
            duration_s=_float(obj.get("duration_s")),
            raw=dict(obj),
        )


def _breakdowns(obj: object) -> dict[str, dict[str, StratumMetrics]]:
    if not isinstance(obj, Mapping):
        return {}
    return {
        str(kind): {str(name): StratumMetrics.from_json(m) or StratumMetrics() for name, m in strata.items()}
        for kind, strata in obj.items()
        if isinstance(strata, Mapping)
    }


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """The resolved field types of a record dataclass, worked out once per class (records are read by the thousand)."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls, globalns=globals())
    return _HINTS[cls]


def _read(hint: Any, value: object) -> object:
    """`value` as the declared optional type `hint`; anything else becomes None."""
    kinds = [a for a in typing.get_args(hint) if a is not type(None)] if isinstance(hint, types.UnionType) else [hint]
    kind = kinds[0]
    if kind is Interval:
        return Interval.from_json(value)
    if kind is int:
        return _int(value)
    if kind is float:
        return _float(value)
    if kind is str:
        return _str(value)
    if kind is bool:
        return value if isinstance(value, bool) else None
    raise TypeError(f"unsupported record field type {hint!r}")


def _scalar_json(value: object) -> object:
    if isinstance(value, Interval):
        return value.to_json()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, SupportsFloat):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _int(value: object) -> int | None:
    number = _float(value)
    return int(number) if number is not None else None


def _str(value: object) -> str | None:
    return None if value is None else str(value)


def _mapping(value: object) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}
