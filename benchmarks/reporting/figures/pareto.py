"""Accuracy vs latency: image AUROC against batch-1 p50 latency with the Pareto front."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter
from matplotlib.transforms import Bbox

from benchmarks.reporting.figures.common import DatasetView, set_title, whiskers
from benchmarks.reporting.plot_style import SINGLE_COLUMN_IN, plain
from benchmarks.results.record import CellResult


@dataclass(frozen=True)
class _ParetoPoint:
    """One method/variant: median p50 latency and mean AUROC over its seeds, CI envelope."""

    latency_ms: float
    auroc: float
    lo: float
    hi: float
    cells: tuple[CellResult, ...]


def _pareto_points(view: DatasetView) -> list[_ParetoPoint]:
    groups: dict[tuple[str, str], list[CellResult]] = {}
    for c in view.cells:
        if c.latency and c.latency.batch1_p50_ms and c.metrics and c.metrics.image_auroc is not None:
            groups.setdefault((c.method, c.variant), []).append(c)
    points = []
    for cells in groups.values():
        aurocs = [c.metrics.image_auroc for c in cells if c.metrics and c.metrics.image_auroc is not None]
        cis = [c.metrics.image_auroc_ci for c in cells if c.metrics and c.metrics.image_auroc_ci]
        mean = float(np.mean(aurocs))
        points.append(
            _ParetoPoint(
                latency_ms=float(np.median([c.latency.batch1_p50_ms for c in cells if c.latency])),
                auroc=mean,
                lo=min((ci.lo for ci in cis), default=mean),
                hi=max((ci.hi for ci in cis), default=mean),
                cells=tuple(cells),
            )
        )
    return points


def draw_pareto(view: DatasetView) -> list[Path]:
    """`pareto_<dataset>`: image AUROC vs batch-1 p50 latency (log x), CI bars, Pareto front.

    One point per method/variant: with several seeds, mean AUROC, median latency and the envelope
    of the seeds' CIs. Up to 8 points are labelled directly, more get a legend.
    """
    points = _pareto_points(view)
    if not points:
        return view.skip("pareto", "no cell has both batch-1 latency and image AUROC")
    direct = len(points) <= 8
    shown = [c for p in points for c in p.cells]
    fig = view.figure(shown, SINGLE_COLUMN_IN if direct else SINGLE_COLUMN_IN + 1.8, 2.8)
    ax = fig.add_subplot()
    names = []
    for p in points:
        color, _, marker = view.style(p.cells[0])
        method, variant = p.cells[0].method, p.cells[0].variant
        origin = view.origin(method, variant)  # what a base is, from the cells' provenance
        names.append(plain(f"{method}/{variant}" + (f" ({origin})" if origin else "")))
        ax.errorbar(
            [p.latency_ms],
            [p.auroc],
            yerr=np.reshape(whiskers(p.auroc, p.lo, p.hi), (2, 1)),
            fmt=marker,
            color=color,
            ecolor=color,
            elinewidth=0.8,
            capsize=2,
            markersize=5,
            markeredgecolor="black",
            markeredgewidth=0.4,
            zorder=3,
            label=names[-1],
        )
    xs = np.array([p.latency_ms for p in points])
    x_max = xs.max() * 1.8
    front = _pareto_front([(p.latency_ms, p.auroc) for p in points])
    front.append((x_max, front[-1][1]))  # the last front point dominates everything slower
    front_line = ax.step(
        *zip(*front, strict=True), where="post", color="0.35", ls="--", lw=0.9, zorder=2, label="Pareto front"
    )[0]
    ax.set_xscale("log")
    ax.set_xlim(xs.min() / 1.8, x_max)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.set(xlabel="Batch-1 latency, p50 (ms, log scale)", ylabel="Image AUROC (test), 95 % CI")
    set_title(ax, "Accuracy vs latency", view.dataset)
    seeds = max(len(p.cells) for p in points)
    note = f"mean of up to {seeds} seeds; bars: CI envelope" if seeds > 1 else None
    if direct:
        ax.legend(handles=[front_line], loc="lower left", fontsize=6, title=note, title_fontsize=6)
        _label_minor_ticks(fig, ax, xs.min() / 1.8, x_max)  # with the layout final but for the labels
        labelled = [(p.latency_ms, p.auroc, p.lo, p.hi, name) for p, name in zip(points, names, strict=True)]
        _place_labels(fig, ax, labelled, front)
    else:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=6, title=note,
                  title_fontsize=6)
        _label_minor_ticks(fig, ax, xs.min() / 1.8, x_max)
    return view.save(fig, "pareto")


def _label_minor_ticks(fig: Figure, ax: Axes, lo: float, hi: float) -> None:
    """Label the 2x, 3x, 5x minor ticks of the log x axis, or only 2x and 5x, or none: the most that
    leaves a gap between every two neighbouring tick labels, as drawn."""
    for mantissas in ((2, 3, 5), (2, 5)):
        ax.xaxis.set_minor_formatter(FuncFormatter(partial(_minor_log_label, mantissas=mantissas)))
        fig.draw_without_rendering()
        renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
        shown = [t for t in (*ax.xaxis.get_majorticklabels(), *ax.xaxis.get_minorticklabels())
                 if t.get_visible() and t.get_text() and lo <= t.get_position()[0] <= hi]
        boxes = sorted((t.get_window_extent(renderer) for t in shown), key=lambda b: b.x0)
        if all(b.x0 - a.x1 >= 3 for a, b in itertools.pairwise(boxes)):
            return
    ax.xaxis.set_minor_formatter(NullFormatter())


def _minor_log_label(value: float, _: object, mantissas: tuple[int, ...]) -> str:
    mantissa = round(value / 10 ** np.floor(np.log10(value)))
    return f"{value:g}" if mantissa in mantissas else ""


def _pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points not beaten by a faster-or-equal point with higher-or-equal AUROC, by latency."""
    front: list[tuple[float, float]] = []
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or y > front[-1][1]:
            front.append((x, y))
    return front


_ALIGN = {1: "left", 0: "center", -1: "right"}
_VALIGN = {1: "bottom", 0: "center", -1: "top"}


def _place_labels(
    fig: Figure,
    ax: Axes,
    points: list[tuple[float, float, float, float, str]],
    steps: list[tuple[float, float]],
) -> None:
    """Label (x, y, lo, hi, text) points, each at the first offset that overlaps nothing drawn.

    Markers, error bars, the `steps` line (drawn `where="post"`) and earlier labels are obstacles. The layout is computed first and then
    frozen, so the pixel positions used here are the ones saved.
    """
    offsets = [
        (
            r * np.cos(a),
            r * np.sin(a) * 0.8,
            _ALIGN[int(np.sign(round(np.cos(a), 3)))],
            _VALIGN[int(np.sign(round(np.sin(a), 3)))],
        )
        for r in (6, 16, 28)
        for a in np.deg2rad([30, -30, 150, -150, 0, 180, 90, -90])
    ]
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    fig.draw_without_rendering()
    fig.set_layout_engine("none")
    ax_box = ax.get_window_extent(renderer)
    taken = []
    for x, y, lo, hi, _ in points:
        (px, py), (_, py_lo), (_, py_hi) = ax.transData.transform([(x, y), (x, lo), (x, hi)])
        taken += [
            Bbox.from_extents(px - 5, py - 5, px + 5, py + 5),
            Bbox.from_extents(px - 3, py_lo, px + 3, py_hi),
        ]
    corners = ax.transData.transform(steps)
    for (x0, y0), (x1, y1) in itertools.pairwise(corners):
        taken += [
            Bbox.from_extents(x0, y0 - 1, x1, y0 + 1),
            Bbox.from_extents(x1 - 1, min(y0, y1), x1 + 1, max(y0, y1)),
        ]
    for x, y, _, _, text in sorted(points, key=lambda p: -p[1]):
        best = None
        for dx, dy, ha, va in offsets:
            far = np.hypot(dx, dy) > 10
            note = ax.annotate(
                text,
                (x, y),
                xytext=(dx, dy),
                textcoords="offset points",
                ha=ha,
                va=va,
                fontsize=6.5,
                zorder=5,
                arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "0.4"} if far else None,
            )
            box = note.get_window_extent(renderer).expanded(1.05, 1.1)
            overlap = sum(_overlap(box, other) for other in taken) + 4 * _outside(box, ax_box)
            if best is None or overlap < best[0]:
                if best is not None:
                    best[1].remove()
                best = (overlap, note, box)
            else:
                note.remove()
            if overlap == 0:
                break
        assert best is not None
        taken.append(best[2])


def _overlap(a: Bbox, b: Bbox) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(w, 0) * max(h, 0)


def _outside(box: Bbox, frame: Bbox) -> float:
    return box.width * box.height - _overlap(box, frame)
