"""Paper figures from a stored run: ROC/PR curves, metric bars, latency Pareto, heatmaps, scores,
the LTFM ablation, k-shot curves and an anomaly-map gallery.

Every figure is drawn from `runs.jsonl`, the per-image score files and the stored maps alone (no
model is run; the gallery also reads the test images and masks under each cell's
`dataset_root`), saved as PNG (dpi 200) and PDF, named `<kind>_<dataset slug>`. A figure whose
data is absent (no latency, no breakdowns, no maps, a single-class test split) is skipped with a
log line.
"""

from __future__ import annotations

import itertools
import logging
import re
import textwrap
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize, to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter
from matplotlib.transforms import Bbox
from PIL import Image
from scipy import ndimage
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

from benchmarks.data.images import ImageDecodeError, load_image, load_mask
from benchmarks.data.manifest import read_table
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
from benchmarks.published import DATASET_KIND_NAMES, dataset_kind, lookup
from benchmarks.results_table import (
    CellResult,
    RunResults,
    aggregate_seeds,
    dataset_slugs,
    load_run,
    strata_order,
)

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
    "ablation_ltfm": "LTFM ablation: F1 at the validation threshold (95 % CI whiskers) and F1-max on the test"
    " split, beside the smartphone study's published F1",
    "ablation_ltfm_cross_generation": "LTFM variants: F1 at the validation threshold per test release year"
    " and device group",
    "kshot": "Image AUROC vs number of normal shots k (mean over seeds; band: 95 % CI)",
    "gallery": "Anomaly maps on the same test images for every method (each method's maps min-max scaled"
    " over the shown images); cyan outline: ground-truth mask",
}
LTFM_VARIANTS = ("base", "ft-real", "ft-real-gen")
LTFM_VARIANT_NOTES = {"base": "pretrained", "ft-real": "real", "ft-real-gen": "real + generated"}
STUDY_LABEL = "published (study, real smartphone set)"
KSHOT_VARIANT = re.compile(r"k(\d+)")
GALLERY_ROWS = 6
GALLERY_MAX_MAPS = 8
GALLERY_PANEL = 128  # panel width in pixels of the composed gallery raster
GALLERY_GAP = 6
GALLERY_CMAP = "inferno"
GROUND_TRUTH_COLOR = "#00e5ff"


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
    _summary: pd.DataFrame | None = None

    @property
    def cells(self) -> tuple[CellResult, ...]:
        return self.results.for_dataset(self.dataset, ok_only=True)

    def label(self, cell: CellResult) -> str:
        return plain(self.labels[cell.cell_key])

    @property
    def summary(self) -> pd.DataFrame:
        """`aggregate_seeds` of the dataset: one row per method/variant, means over seeds."""
        if self._summary is None:
            frame = self.results.frame()
            self._summary = aggregate_seeds(frame[frame["dataset"] == self.dataset])
        return self._summary

    @property
    def kind(self) -> str | None:
        """The published dataset kind this dataset matches (`benchmarks.published.dataset_kind`)."""
        root = next((c.dataset_root for c in self.cells if c.dataset_root), None)
        return dataset_kind(self.dataset, root)

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
    ax.set_title(f"{what}: {plain(_short_name(dataset))}")


def _short_name(dataset: str) -> str:
    return dataset if len(dataset) <= 32 else "…" + dataset[-31:]


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


def _lighter(color: tuple[float, float, float], amount: float) -> tuple[float, float, float]:
    """`color` blended towards white by `amount` (0 = unchanged, 1 = white)."""
    r, g, b = to_rgb(color)
    return (r + (1 - r) * amount, g + (1 - g) * amount, b + (1 - b) * amount)


def _seed_note(seeds: int) -> str | None:
    return f"mean of up to {seeds} seeds; whiskers: envelope of their CIs" if seeds > 1 else None


def draw_ablation_ltfm(view: _DatasetView) -> list[Path]:
    """`ablation_ltfm_<dataset>`: F1@val (95 % CI) and F1-max of ltfm base / ft-real / ft-real-gen, in %.

    The smartphone study's published F1 stands beside each variant; unless this dataset is flagged
    as the study's own data (`benchmarks.published.dataset_kind`), the legend says it is another
    dataset. With several seeds, bars are means and whiskers the envelope of the seeds' CIs.
    """
    kind = "ablation_ltfm"
    summary = view.summary
    rows = summary[(summary["method"] == "ltfm") & summary["variant"].isin(LTFM_VARIANTS)].set_index(
        "variant"
    )
    if rows.empty:
        return view.skip(kind, "no ltfm base / ft-real / ft-real-gen cell")
    shown = [c for c in view.cells if c.method == "ltfm" and c.variant in LTFM_VARIANTS]
    published = {e.variants[0]: e.value for e in lookup("ltfm", dataset_kind="smartphone-study", metric="f1")}
    color = view.colors["ltfm"]
    fig = view.figure(shown, SINGLE_COLUMN_IN, 3.9)
    ax = fig.add_subplot()
    x = np.arange(len(LTFM_VARIANTS), dtype=float)
    width = 0.27
    series = (
        ("F1 at the validation threshold", "f1", {"color": color, "edgecolor": "black"}),
        (
            "F1-max (best threshold on test)",
            "f1_max",
            {"color": _lighter(color, 0.6), "edgecolor": color, "hatch": "////"},
        ),
    )
    for offset, (label, metric, style) in zip((-width, 0.0), series, strict=True):
        values, errors = [], []
        for variant in LTFM_VARIANTS:
            row = rows.loc[variant] if variant in rows.index else None
            value = np.nan if row is None or pd.isna(row[metric]) else 100 * float(row[metric])
            lo, hi = (
                (np.nan, np.nan) if row is None else (100 * row[f"{metric}_lo"], 100 * row[f"{metric}_hi"])
            )
            values.append(value)
            errors.append(_whiskers(value, lo, hi) if np.isfinite([value, lo, hi]).all() else (0.0, 0.0))
        ax.bar(x + offset, values, width, label=label, linewidth=0.6, zorder=2, **style)
        ax.errorbar(
            x + offset,
            values,
            yerr=np.array(errors).T,
            fmt="none",
            ecolor="black",
            elinewidth=0.8,
            capsize=2,
            zorder=3,
        )
        for xi, value, (_, up) in zip(x + offset, values, errors, strict=True):
            if np.isfinite(value):
                ax.text(
                    xi, value + up + 1.0, f"{value:.1f}", ha="center", va="bottom", fontsize=5.5, zorder=4
                )
            else:
                ax.text(xi, 2, "not run", ha="center", va="bottom", rotation=90, fontsize=5.5, color="0.4")
    study = [published.get(v, np.nan) for v in LTFM_VARIANTS]
    ax.bar(
        x + width,
        study,
        width,
        color="0.85",
        edgecolor="0.35",
        hatch="....",
        linewidth=0.6,
        zorder=2,
        label=STUDY_LABEL,
    )
    for xi, value in zip(x + width, study, strict=True):
        ax.text(
            xi, value + 1.0, f"{value:.2f}", ha="center", va="bottom", fontsize=5.5, color="0.25", zorder=4
        )
    chance, _ = _chance("f1", shown)
    if chance is not None:
        label = f"chance: flag all ({100 * chance:.1f})"
        ax.axhline(100 * chance, color="0.3", ls="--", lw=0.8, zorder=1, label=label)
    notes = [_seed_note(int(rows["seeds"].max()))]
    if view.kind != "smartphone-study":
        name = plain(_short_name(view.dataset))
        notes.append(
            "Published bars were measured on the study's real smartphone set,\n"
            f"a different dataset from {name}: not comparable"
        )
    title = "\n".join(n for n in notes if n) or None
    fig.legend(loc="outside lower center", ncols=1, fontsize=6, title=title, title_fontsize=6)
    ax.set_xticks(x, [f"{v}\n({LTFM_VARIANT_NOTES[v]})" for v in LTFM_VARIANTS])
    ax.set(ylim=(0, 109), ylabel="F1 on the test split (%)")
    ax.grid(axis="x", visible=False)
    _title(ax, "LTFM ablation", view.dataset)
    return view.save(fig, kind)


def draw_ltfm_cross_generation(view: _DatasetView) -> list[Path]:
    """`ablation_ltfm_cross_generation_<dataset>`: F1@val of each ltfm variant per test year and group.

    One panel per breakdown kind; bars are means over seeds, whiskers their range.
    """
    kind = "ablation_ltfm_cross_generation"
    cells = [c for c in view.cells if c.method == "ltfm" and c.variant in LTFM_VARIANTS]
    panels = [(key, name) for key, name in HEATMAP_KINDS.items() if any(c.breakdowns.get(key) for c in cells)]
    if not cells or not panels:
        return view.skip(kind, "no ltfm variant has year or group breakdowns")
    variants = [v for v in LTFM_VARIANTS if any(c.variant == v for c in cells)]
    strata = {
        key: strata_order(list({s for c in cells for s in c.breakdowns.get(key, {})})) for key, _ in panels
    }
    widest = max(len(s) for s in strata.values())
    fig = view.figure(
        cells,
        min(DOUBLE_COLUMN_IN, max(SINGLE_COLUMN_IN, 1.0 + 0.22 * len(variants) * widest)),
        0.9 + 1.6 * len(panels),
    )
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    color = view.colors["ltfm"]
    width = 0.8 / len(variants)
    for ax, (key, name) in zip(axes, panels, strict=True):
        names = strata[key]
        x = np.arange(len(names), dtype=float)
        for j, variant in enumerate(variants):
            shade = LTFM_VARIANTS.index(variant)
            means, errors = [], []
            for stratum in names:
                found = [c.breakdowns.get(key, {}).get(stratum) for c in cells if c.variant == variant]
                values = [100 * m.f1 for m in found if m is not None and m.f1 is not None]
                mean = float(np.mean(values)) if values else np.nan
                means.append(mean)
                errors.append((mean - min(values), max(values) - mean) if len(values) > 1 else (0.0, 0.0))
            offset = (j - (len(variants) - 1) / 2) * width
            ax.bar(
                x + offset,
                means,
                width,
                color=_lighter(color, (0.65, 0.3, 0.0)[shade]),
                edgecolor=color,
                hatch=("....", "////", "")[shade],
                linewidth=0.6,
                zorder=2,
                label=variant,
            )
            if np.any(errors):
                ax.errorbar(
                    x + offset,
                    means,
                    yerr=np.array(errors).T,
                    fmt="none",
                    ecolor="black",
                    elinewidth=0.7,
                    capsize=1.5,
                    zorder=3,
                )
            for xi, mean in zip(x + offset, means, strict=True):
                if not np.isfinite(mean):
                    ax.text(xi, 2, "n/a", ha="center", va="bottom", rotation=90, fontsize=5.5, color="0.4")
        sizes = [
            next((m.n for c in cells if (m := c.breakdowns.get(key, {}).get(s)) and m.n), None) for s in names
        ]
        labels = [plain(s) + (f"\n(n={n})" if n else "") for s, n in zip(names, sizes, strict=True)]
        long = max(len(s) for s in names) > 8
        ax.set_xticks(
            x,
            labels,
            rotation=25 if long else 0,
            ha="right" if long else "center",
            rotation_mode="anchor",
            fontsize=6,
        )
        ax.set(ylim=(0, 105), ylabel="F1@val (%)")
        ax.grid(axis="x", visible=False)
        ax.set_title(f"by test {name}", fontsize=7)
    _title(axes[0], f"LTFM F1 by test {panels[0][1]}", view.dataset)
    seeds = max(sum(c.variant == v for c in cells) for v in variants)
    fig.legend(
        *axes[0].get_legend_handles_labels(),
        loc="outside lower center",
        ncols=len(variants),
        fontsize=6,
        title="whiskers: range over seeds" if seeds > 1 else None,
        title_fontsize=6,
    )
    return view.save(fig, kind)


def _shot_position(k: int) -> float:
    """x position on the "log2-ish" k axis: 0 shots at 0, then 1, 2, 4, ... one unit apart."""
    return 0.0 if k == 0 else float(np.log2(k)) + 1.0


def draw_kshot(view: _DatasetView) -> list[Path]:
    """`kshot_<dataset>`: image AUROC vs k for methods with two or more `k<N>` variants.

    Mean over seeds with the CI band (with several seeds, the envelope of their CIs); hollow
    markers are the papers' published numbers when this dataset is of the published kind.
    """
    kind = "kshot"
    summary = view.summary
    rows = summary[summary["variant"].str.fullmatch(KSHOT_VARIANT.pattern) & summary["image_auroc"].notna()]
    rows = rows.assign(k=rows["variant"].str[1:].astype(int))
    methods = sorted(m for m, group in rows.groupby("method") if group["k"].nunique() >= 2)
    if not methods:
        return view.skip(kind, "no method has two or more k<N> few-shot variants")
    rows = rows[rows["method"].isin(methods)]
    shown = [c for c in view.cells if c.method in methods and KSHOT_VARIANT.fullmatch(c.variant)]
    fig = view.figure(shown, SINGLE_COLUMN_IN, 3.1)
    ax = fig.add_subplot()
    reference = view.kind if view.kind in ("mvtec", "visa") else None
    handles: list[Line2D | Patch] = []
    for i, method in enumerate(methods):
        group = rows[rows["method"] == method].sort_values("k")
        x = group["k"].map(_shot_position).to_numpy()
        color, marker = view.colors[method], MARKERS[i % len(MARKERS)]
        ax.fill_between(
            x,
            group["image_auroc_lo"].to_numpy(float),
            group["image_auroc_hi"].to_numpy(float),
            color=color,
            alpha=0.18,
            linewidth=0,
            zorder=1,
        )
        handles.append(
            ax.plot(x, group["image_auroc"], marker=marker, color=color, label=plain(method), zorder=3)[0]
        )
        for entry in lookup(method, dataset_kind=reference, metric="image_auroc") if reference else []:
            shots = [int(m.group(1)) for v in entry.variants if (m := KSHOT_VARIANT.fullmatch(v))]
            if shots:
                ax.plot(
                    [_shot_position(shots[0])],
                    [entry.value / 100],
                    marker=marker,
                    color=color,
                    markerfacecolor="white",
                    markersize=5,
                    linestyle="none",
                    zorder=4,
                )
    handles.append(Patch(color="0.5", alpha=0.3, label="95 % CI"))
    handles.append(ax.axhline(0.5, color="0.6", ls=":", lw=0.8, zorder=0, label="chance (0.500)"))
    if reference:
        handles.append(
            Line2D(
                [],
                [],
                marker="o",
                color="0.3",
                markerfacecolor="white",
                linestyle="none",
                label=f"published ({DATASET_KIND_NAMES[reference]})",
            )
        )
    ticks = sorted(set(rows["k"]))
    ax.set_xticks([_shot_position(k) for k in ticks], [str(k) for k in ticks])
    ax.set_xlim(_shot_position(ticks[0]) - 0.3, _shot_position(ticks[-1]) + 0.3)
    low = float(np.nanmin(rows[["image_auroc", "image_auroc_lo"]].to_numpy(float)))
    ax.set_ylim(min(0.45, low - 0.03), 1.0)
    ax.set(xlabel="Normal shots k (log2 scale; 0 = zero-shot)", ylabel="Image AUROC (test)")
    _title(ax, "Few-shot AUROC", view.dataset)
    seeds = int(rows["seeds"].max())
    note = f"mean of up to {seeds} seeds; band: envelope of their CIs" if seeds > 1 else None
    fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=6, title=note, title_fontsize=6)
    return view.save(fig, kind)


@dataclass(frozen=True)
class _GalleryRow:
    """One test image of the gallery: RGB `(H, W, 3)` uint8 and bool mask `(H, W)`, None when unreadable."""

    image_id: str
    label: str
    image: np.ndarray | None
    mask: np.ndarray | None


def draw_gallery(view: _DatasetView) -> list[Path]:
    """`gallery_<dataset>`: image, ground truth, then each method/variant's map on the same test images.

    One cell per method/variant (its lowest seed), at most `GALLERY_MAX_MAPS` (the best by AUROC).
    Rows (`_gallery_picks`) are test images every shown cell has a map for. A method's maps are
    min-max scaled over the shown images, so colours compare images, not methods. The panels are
    composed into one raster (an axes per panel is slow to lay out and to save).
    """
    kind = "gallery"
    maps: dict[str, dict[str, np.ndarray]] = {}
    candidates = _gallery_cells(view)
    for cell in candidates:
        try:
            ids, stack = view.results.maps(cell)
        except (OSError, ValueError) as err:
            log.warning("%s: no maps of cell %s in the gallery: %s", view.dataset, cell.cell_key, err)
            continue
        maps[cell.cell_key] = dict(zip(ids.tolist(), stack, strict=True))
    cells = [c for c in candidates if c.cell_key in maps]
    if not cells:
        return view.skip(kind, "no cell stored anomaly maps")
    test = view.test_scores(cells[0])
    shared = set.intersection(*(set(maps[c.cell_key]) for c in cells))
    if test is None or not test["image_id"].isin(shared).any():
        return view.skip(kind, "no test image has a map from every method")
    test = test[test["image_id"].isin(shared)]
    root = Path(cells[0].dataset_root) if cells[0].dataset_root else None
    masks = _ground_truth_masks(view.dataset, root, test)
    by_id = test.set_index("image_id")
    rows = [
        _GalleryRow(image_id, label, *_gallery_pixels(root, by_id.loc[image_id], masks.get(image_id)))
        for image_id, label in _gallery_picks(test, set(masks))
    ]
    if all(r.image is None for r in rows):
        log.info("%s: gallery without images: none found under %s", view.dataset, root)
    scaled = {c.cell_key: _min_max(np.stack([maps[c.cell_key][r.image_id] for r in rows])) for c in cells}
    grid, tops, lefts, notes = _gallery_canvas(rows, [scaled[c.cell_key] for c in cells])
    # Row labels and column titles go on white margins of the raster itself, so that no layout
    # engine can push them off the figure: size the figure first, then the margins in pixels.
    label_in, title_in, below_in = 0.6, 0.3, 0.75 + (0.2 if any(c.random_weights for c in cells) else 0.0)
    width = min(DOUBLE_COLUMN_IN, max(SINGLE_COLUMN_IN, 0.7 + 0.85 * (2 + len(cells))))
    per_inch = grid.shape[1] / (width - 0.1 - label_in)
    per_inch = max(per_inch, grid.shape[0] / (8.5 - title_in - below_in))  # at most ~8.5 in tall
    left, top = round(label_in * per_inch), round(title_in * per_inch)
    canvas = np.ones((grid.shape[0] + top, grid.shape[1] + left, 3))
    canvas[top:, left:] = grid
    fig = view.figure(cells, 0.1 + canvas.shape[1] / per_inch, below_in + canvas.shape[0] / per_inch)
    ax = fig.add_subplot()
    ax.imshow(np.round(canvas * 255).astype(np.uint8), interpolation="none")
    ax.set_axis_off()
    titles = ["image", "ground truth"] + [view.label(c).replace("/", "/\n", 1) for c in cells]
    for x, text in zip(lefts, titles, strict=True):
        ax.text(left + x + GALLERY_PANEL / 2, top - 4, text, ha="center", va="bottom", fontsize=6)
    for y, row in zip(tops, rows, strict=True):
        name, *rest = row.label.split("\n")
        label = "\n".join(textwrap.wrap(name, 10, break_long_words=False) + rest)
        ax.text(left - 5, top + y + _row_height(row) / 2, plain(label), ha="right", va="center", fontsize=6.5)
    for x, y, text in notes:
        ax.text(
            left + x,
            top + y,
            text,
            ha="center",
            va="bottom",
            fontsize=5,
            color="white",
            bbox={"boxstyle": "square,pad=0.15", "fc": "black", "ec": "none", "alpha": 0.55},
        )
    bar = fig.colorbar(
        ScalarMappable(Normalize(0, 1), GALLERY_CMAP),
        ax=ax,
        location="bottom",
        shrink=0.6,
        aspect=45,
        pad=0.02,
    )
    bar.set_label(
        f"anomaly map, min-max scaled per method\nover these images ({plain(_short_name(view.dataset))});"
        " cyan: ground truth",
        fontsize=6,
    )
    bar.ax.tick_params(labelsize=6)
    return view.save(fig, kind)


def _row_height(row: _GalleryRow) -> int:
    """Canvas pixels of a row: the image's aspect at `GALLERY_PANEL` wide (clipped to 1:2..3:1), square without one."""
    if row.image is None:
        return GALLERY_PANEL
    aspect = float(np.clip(row.image.shape[0] / row.image.shape[1], 0.5, 3.0))
    return round(GALLERY_PANEL * aspect)


def _gallery_canvas(
    rows: Sequence[_GalleryRow], scaled_maps: Sequence[np.ndarray]
) -> tuple[np.ndarray, list[int], list[int], list[tuple[float, float, str]]]:
    """Compose every panel into one white RGB canvas: `(H, W, 3)` float, the rows' top and the
    columns' left pixel, and (x, y, text) notes to write at the bottom of panels."""
    heights = [_row_height(r) for r in rows]
    columns = 2 + len(scaled_maps)
    lefts = [c * (GALLERY_PANEL + GALLERY_GAP) for c in range(columns)]
    tops = [sum(heights[:i]) + i * GALLERY_GAP for i in range(len(rows))]
    canvas = np.ones((tops[-1] + heights[-1], lefts[-1] + GALLERY_PANEL, 3))
    cmap = mpl.colormaps[GALLERY_CMAP]
    notes: list[tuple[float, float, str]] = []
    for i, (row, top, height) in enumerate(zip(rows, tops, heights, strict=True)):
        size = (GALLERY_PANEL, height)
        image = _resized(row.image, size, Image.Resampling.LANCZOS) / 255 if row.image is not None else None
        mask = (
            _resized(row.mask.astype(np.uint8) * 255, size, Image.Resampling.NEAREST) > 127
            if row.mask is not None
            else None
        )
        ring = (ndimage.binary_dilation(mask, iterations=2) & ~mask) if mask is not None else None
        panels = [image if image is not None else np.full((height, GALLERY_PANEL, 3), 0.85)]
        truth = panels[0].copy()
        if mask is not None:
            truth[mask] = 0.45 * truth[mask] + 0.55 * np.array(to_rgb(GROUND_TRUTH_COLOR))
            truth[ring] = to_rgb(GROUND_TRUTH_COLOR)
            if 0 < mask.sum() < 0.005 * mask.size:  # a tiny defect also gets a box around it
                ys, xs = np.nonzero(mask)
                y0, y1 = max(ys.min() - 8, 0), min(ys.max() + 8, height - 1)
                x0, x1 = max(xs.min() - 8, 0), min(xs.max() + 8, GALLERY_PANEL - 1)
                box = np.zeros_like(mask)
                box[y0 : y1 + 1, [x0, x1]] = box[[y0, y1], x0 : x1 + 1] = True
                truth[box] = to_rgb(GROUND_TRUTH_COLOR)
        panels.append(truth)
        gray = np.repeat(image.mean(axis=2, keepdims=True), 3, axis=2) if image is not None else None
        for scaled in scaled_maps:
            heat = np.clip(_resized(scaled[i].astype(np.float32), size, Image.Resampling.BILINEAR), 0, 1)
            colored = cmap(heat)[..., :3]
            alpha = (0.15 + 0.75 * heat)[..., None]
            panel = colored if gray is None else gray * (1 - alpha) + colored * alpha
            if ring is not None:
                panel[ring] = to_rgb(GROUND_TRUTH_COLOR)
            panels.append(panel)
        for left, panel in zip(lefts, panels, strict=True):
            canvas[top : top + height, left : left + GALLERY_PANEL] = panel
        bottom = top + height - 3
        if image is None:
            notes.append((lefts[0] + GALLERY_PANEL / 2, top + height / 2, "image not found"))
        if mask is None or not mask.any():
            normal = row.label.startswith(("normal", "hard negative"))
            notes.append((lefts[1] + GALLERY_PANEL / 2, bottom, "no defect" if normal else "no mask"))
    return canvas, tops, lefts, notes


def _resized(array: np.ndarray, size: tuple[int, int], resample: Image.Resampling) -> np.ndarray:
    """`array` (uint8 image or float32 2-D map) resized to `size` = (width, height)."""
    picture = Image.fromarray(array)
    return np.asarray(picture if picture.size == size else picture.resize(size, resample), dtype=np.float64)


def _gallery_cells(view: _DatasetView) -> list[CellResult]:
    """One cell per method/variant with maps (its lowest seed); the best `GALLERY_MAX_MAPS` by AUROC."""
    first: dict[tuple[str, str], CellResult] = {}
    for cell in view.cells:  # sorted by method, variant, seed
        if cell.maps_file:
            first.setdefault((cell.method, cell.variant), cell)
    cells = list(first.values())
    if len(cells) > GALLERY_MAX_MAPS:
        auroc = view.summary.set_index(["method", "variant"])["image_auroc"].fillna(0.0)
        keep = sorted(cells, key=lambda c: -auroc.get((c.method, c.variant), 0.0))[:GALLERY_MAX_MAPS]
        log.info("%s: gallery shows the %d best of %d method/variants", view.dataset, len(keep), len(cells))
        cells = [c for c in cells if c in keep]
    return cells


def _gallery_picks(test: pd.DataFrame, with_mask: set[str]) -> list[tuple[str, str]]:
    """Up to `GALLERY_ROWS` (image_id, row label): a normal, a hard negative, one image per defect kind
    (one with a mask where possible), a second normal; chosen by a hash of the id, so every run
    of the same dataset shows the same images. Returned normals first, then hard negative, defects."""

    def ordered(frame: pd.DataFrame) -> list[str]:
        ids = sorted(frame["image_id"].astype(str), key=lambda i: (zlib.crc32(i.encode()), i))
        return sorted(ids, key=lambda i: i not in with_mask)  # stable: masked anomalies first

    hard = test["hard_negative"].fillna(False).astype(bool) if "hard_negative" in test else test["label"] < 0
    normals = ordered(test[(test["label"] == 0) & ~hard])
    hards = ordered(test[(test["label"] == 0) & hard])
    anomalous = test[test["label"] == 1]
    defect = (
        anomalous["defect"].astype(str) if "defect" in anomalous else pd.Series("anomalous", anomalous.index)
    )
    picks = [(normals[0], "normal")] if normals else []
    picks += [(hards[0], "hard negative")] if hards else []
    picks += [(ordered(anomalous[defect == d])[0], d) for d in sorted(set(defect))]
    picks += [(normals[1], "normal")] if len(normals) > 1 else []
    picks = picks[:GALLERY_ROWS]
    rank = {"normal": 0, "hard negative": 1}
    years = test.set_index("image_id")["year"] if "year" in test else None
    shown = sorted(picks, key=lambda p: (rank.get(p[1], 2), p[1]))
    return [
        (i, label + ("" if years is None or pd.isna(years.get(i)) else f"\n{years.get(i)}"))
        for i, label in shown
    ]


def _ground_truth_masks(dataset: str, root: Path | None, test: pd.DataFrame) -> dict[str, Path]:
    """image_id -> mask file: from a `mask` column of the scores, else the manifest in `root`, else
    the MVTec / folder layout `root/ground_truth/<defect>/<stem>*`."""
    if root is None:
        return {}
    images = test["image"] if "image" in test else test["image_id"]
    if "mask" in test:
        found = dict(zip(test["image_id"], test["mask"], strict=True))
    else:
        table = _manifest_table(dataset, root)
        if table is not None and {"image", "mask"} <= set(table.columns):
            by_image = dict(zip(table["image"].astype(str), table["mask"], strict=True))
            found = {i: by_image.get(str(image)) for i, image in zip(test["image_id"], images, strict=True)}
        elif "defect" in test:
            folders = {
                i: root / "ground_truth" / str(d)
                for i, d in zip(test["image_id"], test["defect"], strict=True)
            }
            found = {
                i: next(iter(sorted(folder.glob(f"{Path(i).stem}*"))), None)
                for i, folder in folders.items()
                if folder.is_dir()
            }
        else:
            found = {}
    masks = {}
    for image_id, relative in found.items():
        if isinstance(relative, str | Path) and str(relative).strip():
            path = (root / relative).resolve()
            if path.is_relative_to(root.resolve()) and path.is_file():
                masks[str(image_id)] = path
    return masks


def _manifest_table(dataset: str, root: Path) -> pd.DataFrame | None:
    kind, _, argument = dataset.partition(":")
    names = ([Path(argument).name] if kind == "manifest" and argument else []) + [
        "manifest.csv",
        "manifest.parquet",
    ]
    for name in names:
        if (root / name).is_file():
            try:
                return read_table(root / name)
            except (OSError, ValueError) as err:
                log.info("%s: cannot read %s for gallery masks: %s", dataset, root / name, err)
    return None


def _gallery_pixels(
    root: Path | None, row: pd.Series, mask_path: Path | None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The image (RGB uint8) and its mask at the image's size; None where unreadable."""
    relative = row.get("image", row.name)
    image = mask = None
    if root is not None and isinstance(relative, str):
        path = (root / relative).resolve()
        try:
            if path.is_relative_to(root.resolve()):
                image = load_image(path)
            if mask_path is not None:
                mask = load_mask(mask_path)
        except (ImageDecodeError, OSError) as err:
            log.info("gallery: %s", err)
    return image, mask


def _min_max(stack: np.ndarray) -> np.ndarray:
    """`(N, H, W)` maps scaled to [0, 1] by their joint minimum and maximum (all 0 when constant)."""
    lo, hi = float(np.nanmin(stack)), float(np.nanmax(stack))
    return np.nan_to_num((stack - lo) / (hi - lo)) if hi > lo else np.zeros_like(stack)


_DRAWERS: tuple[Callable[[_DatasetView], list[Path]], ...] = (
    draw_roc,
    draw_pr,
    draw_bars,
    draw_pareto,
    draw_heatmap,
    draw_scores,
    draw_ablation_ltfm,
    draw_ltfm_cross_generation,
    draw_kshot,
    draw_gallery,
)
