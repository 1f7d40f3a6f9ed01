"""Cross-generation heatmap: test AUROC per cell and release year / device group."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns

from benchmarks.reporting.figures.common import HEATMAP_KINDS, DatasetView, set_title
from benchmarks.reporting.plot_style import DOUBLE_COLUMN_IN, SINGLE_COLUMN_IN, plain
from benchmarks.results.reader import strata_order


def draw_heatmap(view: DatasetView) -> list[Path]:
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
    set_title(ax, "Cross-generation AUROC", view.dataset)
    return view.save(fig, kind)
