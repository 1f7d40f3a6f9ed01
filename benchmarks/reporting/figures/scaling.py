"""Scaling curves of `bench scaling`: one log-log panel per quantity, one line per method/variant,
the fitted exponent in the legend, per axis (training images, input side)."""

from __future__ import annotations

from pathlib import Path

from matplotlib.ticker import FuncFormatter, NullFormatter

from benchmarks.reporting.plot_style import (
    DOUBLE_COLUMN_IN,
    LINESTYLES,
    MARKERS,
    figure_style,
    method_colors,
    new_figure,
    plain,
    save_figure,
)
from benchmarks.running.cell import PREDICT_BATCH
from benchmarks.running.scaling import QUANTITIES, ScalingResult

AXES = {"train": "training images", "resolution": "input side (px)"}
PANEL_TITLES = {"fit_s": "fit (s)", "predict_ms": "predict per image, batch 1 (ms)",
                "predict_batch_ms": f"predict per image, batch {PREDICT_BATCH} (ms)",
                "predict_cached_ms": f"predict per image, batch {PREDICT_BATCH}, cached (ms)",
                "rss_growth_mb": "peak memory growth (MB)", "state_mb": "memory bank (MB)",
                "cache_mb": "feature cache written (MB)"}


def draw_scaling(result: ScalingResult, out_dir: Path) -> list[Path]:
    """`scaling_train` and `scaling_resolution` (when any method has a resolution curve)."""
    paths: list[Path] = []
    labels = sorted({p.label for p in result.points})
    colors = method_colors(label.split("/")[0].split(" ")[0] for label in labels)
    with figure_style():
        for axis, axis_name in AXES.items():
            curves = {label: result.curve(label, axis) for label in labels}
            curves = {label: points for label, points in curves.items() if len(points) >= 2}
            if not curves:
                continue
            fig = new_figure(DOUBLE_COLUMN_IN, 9.0)
            panels = fig.subplots(4, 2)
            for ax in panels.flat[len(QUANTITIES):]:
                ax.set_axis_off()
            for ax, quantity in zip(panels.flat, QUANTITIES, strict=False):
                name = PANEL_TITLES[quantity]
                for i, (label, points) in enumerate(curves.items()):
                    xs = [p.size for p in points if (getattr(p, quantity) or 0) > 0]
                    ys = [getattr(p, quantity) for p in points if (getattr(p, quantity) or 0) > 0]
                    if len(xs) < 2:
                        continue
                    law = result.laws.get(label, {}).get(axis, {}).get(quantity)
                    exponent = f" (b={law.exponent:.2f})" if law is not None else ""
                    ax.plot(xs, ys, color=colors[label.split("/")[0].split(" ")[0]],
                            ls=LINESTYLES[i % len(LINESTYLES)], marker=MARKERS[i % len(MARKERS)], markersize=3,
                            label=plain(label) + exponent)
                ax.set(xscale="log", yscale="log", xlabel=axis_name, title=name)
                for which in (ax.xaxis, ax.yaxis):  # plain numbers at the decades, no crowded minor labels
                    which.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
                    which.set_minor_formatter(NullFormatter())
                if ax.get_lines():
                    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0), borderaxespad=0.2)
                else:
                    ax.text(0.5, 0.5, "not measured", transform=ax.transAxes, ha="center", va="center")
            threads = result.settings.get("threads")
            cpu = result.hardware.get("cpu") or "CPU"
            fig.suptitle(plain(f"How cost grows with {axis_name}: value = a * size^b, b in the legend; "
                               f"{cpu}, {threads} threads"), fontsize=7, wrap=True)
            paths += save_figure(fig, out_dir, f"scaling_{axis}")
    return paths


def ratio_table(result: ScalingResult, ours: str, theirs: str) -> list[tuple[int, float | None, float | None,
                                                                              float | None]]:
    """(training images, our fit s, their fit s, their / ours) at every size either side measured."""
    mine = {p.size: p.fit_s for p in result.curve(ours, "train")}
    other = {p.size: p.fit_s for p in result.curve(theirs, "train")}
    rows = []
    for size in sorted(set(mine) | set(other)):
        a, b = mine.get(size), other.get(size)
        rows.append((size, a, b, b / a if a and b else None))
    return rows



def format_scaling(result: ScalingResult) -> str:
    """Exponents per curve and quantity, then anomalib's PatchCore beside ours at every size."""
    lines = [f"{'curve':44s} {'axis':10s} " + " ".join(f"{q:>14s}" for q in QUANTITIES)]
    for label, axes in sorted(result.laws.items()):
        for axis, laws in axes.items():
            if not any(laws.values()):
                continue
            cells = [f"b={law.exponent:5.2f} ({law.points})" if law else "-" for law in laws.values()]
            lines.append(f"{label[:44]:44s} {axis:10s} " + " ".join(f"{c:>14s}" for c in cells))
    for ours, theirs in result.settings.get("pairs", []):
        lines.append(f"fit time on the same work: {ours} vs {theirs}")
        for size, mine, other, ratio in ratio_table(result, ours, theirs):
            def num(value: float | None) -> str:
                return f"{value:8.1f}" if value is not None else "       -"

            lines.append(f"  {size:6d} images: ours {num(mine)} s, theirs {num(other)} s"
                         + (f", theirs / ours {ratio:.1f}x" if ratio else ""))
    return "\n".join(lines)
