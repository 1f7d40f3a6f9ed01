"""ROC and precision-recall curves of every ok cell on the test split."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

from benchmarks.reporting.figures.common import DatasetView, set_title
from benchmarks.reporting.plot_style import DOUBLE_COLUMN_IN, SINGLE_COLUMN_IN
from benchmarks.results.record import CellResult

MAX_INSIDE_LEGEND = 6


def _curve_figure(view: DatasetView, shown: Sequence[CellResult]) -> Figure:
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
        # beside the axes, top-aligned with them: below a weights banner, never on it
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, ncols=1 if n_entries < 21 else 2,
                  title=title, handlelength=1.8)


def draw_roc(view: DatasetView) -> list[Path]:
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
    set_title(ax, "ROC, test split", view.dataset)
    _curve_legend(fig, ax, "method/variant (AUROC)", len(curves) + 1, "lower right")
    return view.save(fig, "roc")


def draw_pr(view: DatasetView) -> list[Path]:
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
    set_title(ax, "Precision-recall, test split", view.dataset)
    _curve_legend(fig, ax, "method/variant (AP)", len(curves) + 1, "lower left")
    return view.save(fig, "pr")
