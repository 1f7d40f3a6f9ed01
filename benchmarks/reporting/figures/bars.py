"""Metric bars: image AUROC and F1 at the validation threshold per cell, with CI whiskers."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.reporting.figures.common import DatasetView, chance_level, set_title, whiskers
from benchmarks.reporting.plot_style import SINGLE_COLUMN_IN

BAR_METRICS = {
    "image_auroc": ("Image AUROC (test)", "image_auroc_ci"),
    "f1": ("F1 at validation threshold (test)", "f1_ci"),
}


def draw_bars(view: DatasetView) -> list[Path]:
    """`bars_<metric>_<dataset>`: image AUROC and F1@val per cell, CI whiskers, chance line."""
    paths = []
    for metric, (axis_label, ci_name) in BAR_METRICS.items():
        kind = f"bars_{metric}"
        rows = []
        for cell in view.cells:
            value = getattr(cell.metrics, metric, None)
            if value is not None:
                ci = getattr(cell.metrics, ci_name)
                rows.append((value, cell, whiskers(value, ci.lo, ci.hi) if ci else (0.0, 0.0)))
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
        chance, chance_label = chance_level(metric, [r[1] for r in rows])
        if chance is not None:
            ax.axvline(chance, color="0.3", ls="--", lw=0.8, zorder=4, label=chance_label)
        fig.legend(loc="outside lower center", ncols=2, fontsize=6)
        ax.set_yticks(y, [view.label(r[1]) for r in rows])
        ax.set(xlim=(0, 1), xlabel=axis_label)
        ax.grid(axis="y", visible=False)
        set_title(ax, axis_label.split(" (")[0], view.dataset)
        paths += view.save(fig, kind)
    return paths
