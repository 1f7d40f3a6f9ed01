"""Test score distributions per cell (normal, hard negative, defect) with the validation threshold."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D

from benchmarks.reporting.figures.common import DatasetView, set_title
from benchmarks.reporting.plot_style import CATEGORY_COLORS, SINGLE_COLUMN_IN


def draw_scores(view: DatasetView) -> list[Path]:
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
    set_title(ax, "Score distributions", view.dataset)
    return view.save(fig, "scores")
