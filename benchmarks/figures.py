"""Paper figures from a stored run: ROC/PR curves, metric bars, latency Pareto, heatmap, scores.

Every figure is drawn from `runs.jsonl` and the per-image score files alone (no model is run),
saved as PNG (dpi 200) and PDF, named `<kind>_<dataset slug>`. A figure whose data is absent
(no latency, no breakdowns, a single-class test split) is skipped with a log line.
"""

from __future__ import annotations

import itertools
import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter
from matplotlib.transforms import Bbox
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

from benchmarks.plot_style import (
    CATEGORY_COLORS,
    DOUBLE_COLUMN_IN,
    LINESTYLES,
    MARKERS,
    SINGLE_COLUMN_IN,
    LineStyle,
    figure_style,
    method_colors,
    new_figure,
    plain,
    save_figure,
    stamp_random_weights,
)
from benchmarks.results_table import CellResult, RunResults, dataset_slugs, load_run, strata_order

log = logging.getLogger(__name__)

BAR_METRICS = {
    "image_auroc": ("Image AUROC (test)", "image_auroc_ci"),
    "f1": ("F1 at validation threshold (test)", "f1_ci"),
}
HEATMAP_KINDS = {"year": "release year", "group": "device group"}
# Figure kinds in report order (file name `<kind>_<dataset slug>`) and their captions.
FIGURE_CAPTIONS = {
    "roc": "ROC curves on the test split (AUROC in the legend)",
    "pr": "Precision-recall curves on the test split (average precision in the legend)",
    "bars_image_auroc": "Image AUROC with 95 % CI whiskers; dashed: chance",
    "bars_f1": "F1 at the validation threshold with 95 % CI whiskers; dashed: flag-everything F1",
    "pareto": "Image AUROC vs batch-1 p50 latency (log scale) with the Pareto front",
    "heatmap_cross_generation": "Test AUROC per release year and device group",
    "scores": "Test score distributions (min-max scaled per cell) with the validation threshold",
}


def write_figures(run_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Draw every figure of the run in `run_dir` into `out_dir` (default `<run_dir>/figures`).

    Returns the written PNG and PDF paths.
    """
    results = load_run(run_dir)
    target = Path(out_dir) if out_dir is not None else Path(run_dir) / "figures"
    return [path for paths in render_figures(results, target).values() for path in paths]


def render_figures(results: RunResults, out_dir: Path) -> dict[str, list[Path]]:
    """Draw every figure of `results` into `out_dir`; returns dataset -> written paths."""
    slugs = dataset_slugs(results.datasets)
    colors = method_colors(c.method for c in results.cells)
    labels = results.labels()
    written: dict[str, list[Path]] = {}
    with figure_style():
        for dataset in results.datasets:
            view = _DatasetView(results, dataset, slugs[dataset], colors, labels, out_dir)
            if not view.cells:
                log.info("%s: no ok cells, no figures", dataset)
            written[dataset] = [path for draw in _DRAWERS for path in draw(view)] if view.cells else []
    return written


@dataclass
class _DatasetView:
    """The ok cells of one dataset plus what every figure needs: colours, labels, test scores."""

    results: RunResults
    dataset: str
    slug: str
    colors: dict[str, tuple[float, float, float]]
    labels: dict[str, str]
    out_dir: Path
    _scores: dict[str, pd.DataFrame | None] = field(default_factory=dict)

    @property
    def cells(self) -> tuple[CellResult, ...]:
        return self.results.for_dataset(self.dataset, ok_only=True)

    def label(self, cell: CellResult) -> str:
        return plain(self.labels[cell.cell_key])

    def style(self, cell: CellResult) -> tuple[tuple[float, float, float], LineStyle, str]:
        """(colour, line style, marker): colour per method; line style per variant and seed, marker
        per variant, within the method."""
        siblings = [c for c in self.cells if c.method == cell.method]
        runs = sorted({(c.variant, c.seed if c.seed is not None else -1) for c in siblings})
        variants = sorted({c.variant for c in siblings})
        i = runs.index((cell.variant, cell.seed if cell.seed is not None else -1))
        j = variants.index(cell.variant)
        return self.colors[cell.method], LINESTYLES[i % len(LINESTYLES)], MARKERS[j % len(MARKERS)]

    def test_scores(self, cell: CellResult) -> pd.DataFrame | None:
        """The cell's test rows, or None (logged) when its score file is missing or unusable."""
        if cell.cell_key not in self._scores:
            try:
                scores = self.results.scores(cell)
            except (OSError, ValueError) as err:
                log.warning("%s: skipping cell %s in figures: %s", self.dataset, cell.cell_key, err)
                self._scores[cell.cell_key] = None
            else:
                self._scores[cell.cell_key] = scores[scores["split"] == "test"].reset_index(drop=True)
        return self._scores[cell.cell_key]

    def two_class_scores(self) -> list[tuple[CellResult, pd.DataFrame]]:
        usable = []
        for cell in self.cells:
            scores = self.test_scores(cell)
            if scores is not None and scores["label"].nunique() == 2:
                usable.append((cell, scores))
            elif scores is not None:
                log.info("%s: %s has a single-class test split; no curve", self.dataset, cell.cell_key)
        return usable

    def figure(self, shown: Sequence[CellResult], width_in: float, height_in: float) -> Figure:
        """A new figure, stamped "RANDOM WEIGHTS" when any of the `shown` cells used random weights."""
        fig = new_figure(width_in, height_in)
        random = [c for c in shown if c.random_weights]
        if random:
            stamp_random_weights(fig, (c.method for c in random), all_random=len(random) == len(shown))
        return fig

    def save(self, fig: Figure, kind: str) -> list[Path]:
        return save_figure(fig, self.out_dir, f"{kind}_{self.slug}")

    def skip(self, kind: str, why: str) -> list[Path]:
        log.info("%s: skipping figure %s_%s: %s", self.dataset, kind, self.slug, why)
        return []


def _title(ax: Axes, what: str, dataset: str) -> None:
    name = dataset if len(dataset) <= 32 else "…" + dataset[-31:]
    ax.set_title(f"{what}: {plain(name)}")


MAX_INSIDE_LEGEND = 6


def _curve_figure(view: _DatasetView, shown: Sequence[CellResult]) -> Figure:
    """Single column while the legend fits inside the axes; wider, legend on the right, beyond."""
    if len(shown) + 1 <= MAX_INSIDE_LEGEND:
        return view.figure(shown, SINGLE_COLUMN_IN, 3.0)
    columns = 1 if len(shown) < 20 else 2
    return view.figure(shown, min(DOUBLE_COLUMN_IN, SINGLE_COLUMN_IN + 2.3 * columns), 3.0)


def _curve_legend(
    fig: Figure, ax: Axes, title: str, n_entries: int, inside: Literal["lower right", "lower left"]
) -> None:
    if n_entries <= MAX_INSIDE_LEGEND:
        ax.legend(loc=inside, title=title, handlelength=1.8)
    else:
        fig.legend(loc="outside right upper", ncols=1 if n_entries < 21 else 2, title=title, handlelength=1.8)


def draw_roc(view: _DatasetView) -> list[Path]:
    """`roc_<dataset>`: ROC curve per ok cell on the test split, AUROC in the legend."""
    usable = view.two_class_scores()
    if not usable:
        return view.skip("roc", "no cell with scores on a two-class test split")
    curves = []
    for cell, scores in usable:
        fpr, tpr, _ = roc_curve(scores["label"], scores["score"])
        curves.append((auc(fpr, tpr), cell, fpr, tpr))
    curves.sort(key=lambda c: -c[0])
    fig = _curve_figure(view, [c for _, c, _, _ in curves])
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="0.6", ls=":", lw=0.8, label="chance (0.500)")
    for value, cell, fpr, tpr in curves:
        color, ls, _ = view.style(cell)
        ax.plot(
            fpr, tpr, color=color, ls=ls, label=f"{view.label(cell)} ({value:.3f})", drawstyle="steps-post"
        )
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="False positive rate", ylabel="True positive rate")
    ax.set_aspect("equal")
    _title(ax, "ROC, test split", view.dataset)
    _curve_legend(fig, ax, "method/variant (AUROC)", len(curves) + 1, "lower right")
    return view.save(fig, "roc")


def draw_pr(view: _DatasetView) -> list[Path]:
    """`pr_<dataset>`: precision-recall curve per ok cell on the test split, AP in the legend."""
    usable = view.two_class_scores()
    if not usable:
        return view.skip("pr", "no cell with scores on a two-class test split")
    curves = []
    for cell, scores in usable:
        precision, recall, _ = precision_recall_curve(scores["label"], scores["score"])
        ap = average_precision_score(scores["label"], scores["score"])
        curves.append((ap, cell, recall, precision, float(scores["label"].mean())))
    curves.sort(key=lambda c: -c[0])
    fig = _curve_figure(view, [c for _, c, _, _, _ in curves])
    ax = fig.add_subplot()
    prevalence = curves[0][4]
    ax.axhline(prevalence, color="0.6", ls=":", lw=0.8, label=f"chance ({prevalence:.3f})")
    for value, cell, recall, precision, _ in curves:
        color, ls, _ = view.style(cell)
        ax.plot(
            recall,
            precision,
            color=color,
            ls=ls,
            label=f"{view.label(cell)} ({value:.3f})",
            drawstyle="steps-post",
        )
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="Recall", ylabel="Precision")
    ax.set_aspect("equal")
    _title(ax, "Precision-recall, test split", view.dataset)
    _curve_legend(fig, ax, "method/variant (AP)", len(curves) + 1, "lower left")
    return view.save(fig, "pr")


def draw_bars(view: _DatasetView) -> list[Path]:
    """`bars_<metric>_<dataset>`: image AUROC and F1@val per cell, CI whiskers, chance line."""
    paths = []
    for metric, (axis_label, ci_name) in BAR_METRICS.items():
        kind = f"bars_{metric}"
        rows = []
        for cell in view.cells:
            value = getattr(cell.metrics, metric, None)
            if value is not None:
                ci = getattr(cell.metrics, ci_name)
                rows.append((value, cell, _whiskers(value, ci.lo, ci.hi) if ci else (0.0, 0.0)))
        if not rows:
            paths += view.skip(kind, f"no cell has {metric}")
            continue
        rows.sort(key=lambda r: r[0])  # barh draws bottom-up: best ends on top
        fig = view.figure([r[1] for r in rows], SINGLE_COLUMN_IN, 1.1 + 0.28 * len(rows))
        ax = fig.add_subplot()
        y = np.arange(len(rows))
        values = [r[0] for r in rows]
        ax.barh(y, values, color=[view.style(r[1])[0] for r in rows], height=0.65, zorder=2)
        errors = np.array([r[2] for r in rows]).T
        ax.errorbar(
            values,
            y,
            xerr=errors,
            fmt="none",
            ecolor="black",
            elinewidth=0.8,
            capsize=2,
            zorder=3,
            label="95 % CI",
        )
        for yi, value in zip(y, values, strict=True):
            ax.text(
                0.015,
                float(yi),
                f"{value:.3f}",
                va="center",
                ha="left",
                fontsize=6.5,
                zorder=4,
                bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8},
            )
        chance, chance_label = _chance(metric, [r[1] for r in rows])
        if chance is not None:
            ax.axvline(chance, color="0.3", ls="--", lw=0.8, zorder=4, label=chance_label)
        fig.legend(loc="outside lower center", ncols=2, fontsize=6)
        ax.set_yticks(y, [view.label(r[1]) for r in rows])
        ax.set(xlim=(0, 1), xlabel=axis_label)
        ax.grid(axis="y", visible=False)
        _title(ax, axis_label.split(" (")[0], view.dataset)
        paths += view.save(fig, kind)
    return paths


def _whiskers(value: float, lo: float, hi: float) -> tuple[float, float]:
    """Error-bar lengths; a percentile-bootstrap CI may exclude its point estimate, so clip at 0."""
    return max(value - lo, 0.0), max(hi - value, 0.0)


def _chance(metric: str, cells: Sequence[CellResult]) -> tuple[float | None, str]:
    if metric == "image_auroc":
        return 0.5, "chance (0.500)"
    m = cells[0].metrics
    if m is None or not m.n_normal or not m.n_anomalous:
        return None, ""
    prevalence = m.n_anomalous / (m.n_normal + m.n_anomalous)
    chance = 2 * prevalence / (1 + prevalence)
    return chance, f"chance: flag all ({chance:.3f})"


@dataclass(frozen=True)
class _ParetoPoint:
    """One method/variant: median p50 latency and mean AUROC over its seeds, CI envelope."""

    latency_ms: float
    auroc: float
    lo: float
    hi: float
    cells: tuple[CellResult, ...]


def _pareto_points(view: _DatasetView) -> list[_ParetoPoint]:
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


def draw_pareto(view: _DatasetView) -> list[Path]:
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
        names.append(plain(f"{p.cells[0].method}/{p.cells[0].variant}"))
        ax.errorbar(
            [p.latency_ms],
            [p.auroc],
            yerr=np.reshape(_whiskers(p.auroc, p.lo, p.hi), (2, 1)),
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
    if x_max / xs.min() < 300:  # label 2x, 3x, 5x minor ticks when there are few decades
        ax.xaxis.set_minor_formatter(FuncFormatter(_minor_log_label))
    ax.set(xlabel="Batch-1 latency, p50 (ms, log scale)", ylabel="Image AUROC (test), 95 % CI")
    _title(ax, "Accuracy vs latency", view.dataset)
    seeds = max(len(p.cells) for p in points)
    note = f"mean of up to {seeds} seeds; bars: CI envelope" if seeds > 1 else None
    if direct:
        ax.legend(handles=[front_line], loc="lower left", fontsize=6, title=note, title_fontsize=6)
        labelled = [(p.latency_ms, p.auroc, p.lo, p.hi, name) for p, name in zip(points, names, strict=True)]
        _place_labels(fig, ax, labelled, front)
    else:
        fig.legend(loc="outside right upper", fontsize=6, title=note, title_fontsize=6)
    return view.save(fig, "pareto")


def _minor_log_label(value: float, _: object) -> str:
    mantissa = round(value / 10 ** np.floor(np.log10(value)))
    return f"{value:g}" if mantissa in (2, 3, 5) else ""


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


def draw_heatmap(view: _DatasetView) -> list[Path]:
    """`heatmap_cross_generation_<dataset>`: test AUROC per cell x release year, then device group.

    Both kinds share one colour scale; a white gap separates the blocks, named on the top axis.
    """
    kind = "heatmap_cross_generation"
    blocks = []
    for key, name in HEATMAP_KINDS.items():
        table = pd.DataFrame(
            {view.label(c): {s: m.auroc for s, m in c.breakdowns.get(key, {}).items()} for c in view.cells}
        ).T
        if table.size and table.notna().any().any():
            blocks.append((name, table[strata_order(list(table.columns))].astype(float)))
    if not blocks:
        return view.skip(kind, "no year or group breakdowns in runs.jsonl")
    rows = [view.label(c) for c in view.cells]
    gap = pd.DataFrame(np.nan, index=rows, columns=[""])
    parts = [part for i, (_, t) in enumerate(blocks) for part in ([gap] if i else []) + [t.reindex(rows)]]
    values = np.concatenate([p.to_numpy() for p in parts], axis=1)
    columns = [plain(str(c)) for p in parts for c in p.columns]
    long = max(len(c) for c in columns) > 5
    fig = view.figure(
        view.cells,
        min(DOUBLE_COLUMN_IN, max(SINGLE_COLUMN_IN, 2.0 + 0.42 * len(columns))),
        1.3 + 0.28 * len(rows) + (min(0.055 * max(len(c) for c in columns), 1.2) if long else 0.1),
    )
    ax = fig.add_subplot()
    sns.heatmap(
        values,
        ax=ax,
        vmin=0.5,
        vmax=1.0,
        cmap="cividis",
        annot=True,
        fmt=".2f",
        annot_kws={"fontsize": 6.5},
        linewidths=0.5,
        linecolor="white",
        cbar_kws={"label": "Test AUROC (below 0.5 clipped)", "shrink": 0.9},
    )
    start = 0
    centers = []
    for i, (_, table) in enumerate(blocks):
        start += 1 if i else 0
        for (r, c), value in np.ndenumerate(table.reindex(rows).to_numpy()):
            if np.isnan(value):
                ax.text(start + c + 0.5, r + 0.5, "n/a", ha="center", va="center", fontsize=6, color="0.4")
        centers.append(start + table.shape[1] / 2)
        start += table.shape[1]
    ax.set_xticks(
        np.arange(len(columns)) + 0.5,
        columns,
        rotation=40 if long else 0,
        ha="right" if long else "center",
        rotation_mode="anchor",
    )
    ax.set_yticks(np.arange(len(rows)) + 0.5, rows, rotation=0)
    ax.grid(False)
    top = ax.secondary_xaxis("top")
    top.set_xticks(centers, [f"test {name}" for name, _ in blocks])
    top.tick_params(length=0)
    _title(ax, "Cross-generation AUROC", view.dataset)
    return view.save(fig, kind)


def draw_scores(view: _DatasetView) -> list[Path]:
    """`scores_<dataset>`: test score distributions (normal, hard negative, defect) per cell.

    Scores are min-max scaled per cell (methods score on different scales); the dashed tick is
    the cell's validation threshold on the same scale.
    """
    frames, thresholds, shown = [], [], []
    for cell in view.cells:
        scores = view.test_scores(cell)
        if scores is None or scores.empty:
            continue
        lo, hi = float(scores["score"].min()), float(scores["score"].max())
        span = hi - lo if hi > lo else 1.0
        hard = scores["hard_negative"].fillna(False).astype(bool) if "hard_negative" in scores else False
        category = np.where(scores["label"] == 1, "defect", np.where(hard, "hard negative", "normal"))
        frames.append(
            pd.DataFrame(
                {"cell": view.label(cell), "score": (scores["score"] - lo) / span, "category": category}
            )
        )
        threshold = cell.metrics.threshold if cell.metrics else None
        thresholds.append(None if threshold is None else float(np.clip((threshold - lo) / span, 0, 1)))
        shown.append(cell)
    if not frames:
        return view.skip("scores", "no cell has a score file")
    data = pd.concat(frames, ignore_index=True)
    hue_order = [c for c in CATEGORY_COLORS if c in set(data["category"])]
    fig = view.figure(shown, SINGLE_COLUMN_IN, 1.3 + 0.45 * len(shown))
    ax = fig.add_subplot()
    with warnings.catch_warnings():  # seaborn 0.13 still passes matplotlib's deprecated `vert`
        warnings.filterwarnings("ignore", "vert: bool", category=DeprecationWarning)
        sns.boxplot(
            data=data,
            x="score",
            y="cell",
            hue="category",
            hue_order=hue_order,
            order=[view.label(c) for c in shown],
            palette=CATEGORY_COLORS,
            orient="h",
            ax=ax,
            fliersize=1.5,
            linewidth=0.6,
            width=0.8,
        )
    for i, threshold in enumerate(thresholds):
        if threshold is not None:
            ax.plot([threshold, threshold], [i - 0.45, i + 0.45], color="black", ls="--", lw=0.9)
    handles, names = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], color="black", ls="--", lw=0.9))
    names.append("val threshold")
    legend = ax.get_legend()
    if legend is not None:
        legend.remove()
    fig.legend(
        handles,
        names,
        loc="outside lower center",
        ncols=len(names),
        fontsize=6,
        handlelength=1.2,
        columnspacing=0.8,
    )
    ax.set(xlabel="Test score, min-max scaled per cell", ylabel="", xlim=(-0.02, 1.02))
    _title(ax, "Score distributions", view.dataset)
    return view.save(fig, "scores")


_DRAWERS: tuple[Callable[[_DatasetView], list[Path]], ...] = (
    draw_roc,
    draw_pr,
    draw_bars,
    draw_pareto,
    draw_heatmap,
    draw_scores,
)
