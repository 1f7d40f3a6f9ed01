"""The table printed at the end of a run."""

from __future__ import annotations

from collections.abc import Sequence

from benchmarks.results.record import STAGES, CellLatency, CellMetrics, CellResult
from benchmarks.results.stamp import STAMP_SENTENCE
from benchmarks.running.runner import RunSummary


def _fmt(value: object, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def time_breakdown(cells: Sequence[CellResult]) -> list[str]:
    """Where the cells' wall time went, summed over cells, beside the prediction floor at the GEMM peak."""
    timed = [c for c in cells if c.timing is not None and c.duration_s is not None]
    if not timed:
        return []
    total = sum(c.duration_s or 0.0 for c in timed)
    stages = {field: sum(getattr(c.timing, field) or 0.0 for c in timed) for field in STAGES}
    floor = sum(c.timing.predict_floor_s or 0.0 for c in timed if c.timing)
    start_up = total - sum(stages.values())
    names = {"data_s": "data", "setup_s": "model setup", "fitting_s": "fit", "predicting_s": "predict (val + test)",
             "metrics_s": "metrics", "latency_runs_s": "latency timing", "flop_count_s": "FLOP count",
             "saving_s": "saving"}
    parts = ", ".join(f"{names[k]} {v:.0f} s" for k, v in stages.items())
    return [f"time in {len(timed)} cell(s): {total:.0f} s = {parts}, process start-up and hand-over {start_up:.0f} s; "
            f"predictions at this machine's GEMM peak would take {floor:.0f} s (torch FLOPs only)"]


def format_summary(summary: RunSummary) -> str:
    lines = [f"run folder: {summary.run_dir}"]
    if summary.resumed:
        lines.append(f"{len(summary.resumed)} cell(s) already finished, skipped (use --force to recompute)")
    header = f"{'cell':58s} {'status':8s} {'weights':24s} {'AUROC':>6s} {'F1':>6s} {'F1max':>6s} {'p50 ms':>8s}"
    lines += [header, "-" * len(header)]
    for record in summary.ran:
        m = record.metrics or CellMetrics()
        lat = record.latency or CellLatency()
        lines.append(
            f"{record.cell_key[:58]:58s} {record.status:8s} {record.weights_tag or record.weights or '-':24s} "
            f"{_fmt(m.image_auroc):>6s} {_fmt(m.f1):>6s} {_fmt(m.f1_max):>6s} "
            f"{_fmt(lat.batch1_p50_ms, 1):>8s}"
        )
    for record in summary.ran:
        if record.status != "ok":
            lines.append(f"{record.status.upper()}: {record.cell_key}: {record.error}")
    lines += time_breakdown(summary.ran)
    if any(r.random_weights for r in summary.ran):
        lines.append("!! RANDOM WEIGHTS: some cells ran with random-init backbones; their numbers are not "
                     "comparable with published results (see `python -m benchmarks weights`).")
    if any(r.substitute_weights for r in summary.ran):
        lines.append(f"!! SUBSTITUTE WEIGHTS: {STAMP_SENTENCE}")
    return "\n".join(lines)
