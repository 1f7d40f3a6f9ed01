"""The table printed at the end of a run."""

from __future__ import annotations

from benchmarks.results.record import CellLatency, CellMetrics
from benchmarks.results.stamp import STAMP_SENTENCE
from benchmarks.running.runner import RunSummary


def _fmt(value: object, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


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
    if any(r.random_weights for r in summary.ran):
        lines.append("!! RANDOM WEIGHTS: some cells ran with random-init backbones; their numbers are not "
                     "comparable with published results (see `python -m benchmarks weights`).")
    if any(r.substitute_weights for r in summary.ran):
        lines.append(f"!! SUBSTITUTE WEIGHTS: {STAMP_SENTENCE}")
    return "\n".join(lines)
