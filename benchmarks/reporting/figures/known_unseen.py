"""Known vs unseen designs: each cell's image AUROC on the validation split beside the test split.

In the suite's cross-generation protocol the validation split holds held-out images of the
designs seen in training and the test split only later, unseen designs, so the distance between
the two markers is what the generation shift costs each method. Where the dataset's manifest
does not show that (no years, or test years not all later than val years) the splits are named
as such, without the claim.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from benchmarks.data.manifest import read_table
from benchmarks.metrics.bootstrap import stratified_bootstrap
from benchmarks.reporting.figures.common import DatasetView, set_title
from benchmarks.reporting.plot_style import SINGLE_COLUMN_IN
from benchmarks.results.record import CellResult, Interval

log = logging.getLogger(__name__)

VAL_BOOTSTRAP = 1000
"""Resamples of the validation CI, computed here from the stored val scores (cells store the val
AUROC but not its CI); the test CI is the cell's own."""


def draw_known_vs_unseen(view: DatasetView) -> list[Path]:
    """`known_vs_unseen_<dataset>`: val and test image AUROC per cell with 95 % CIs, sorted by test."""
    kind = "known_vs_unseen"
    rows = [row for cell in view.cells if (row := _row(view, cell)) is not None]
    if not rows:
        return view.skip(kind, "no cell has both a val AUROC (two-class val split) and a test AUROC")
    rows.sort(key=lambda r: r[3])  # drawn bottom-up: the best test AUROC ends on top
    known, unseen = _split_names(view)
    fig = view.figure([r[0] for r in rows], SINGLE_COLUMN_IN, 1.2 + 0.3 * len(rows))
    ax = fig.add_subplot()
    y = np.arange(len(rows), dtype=float)
    for yi, (cell, val, val_ci, test, test_ci) in zip(y, rows, strict=True):
        color = view.style(cell)[0]
        ax.plot([val, test], [yi, yi], color="0.6", lw=0.8, zorder=1)
        for value, ci, face, offset in ((val, val_ci, "white", 0.12), (test, test_ci, color, -0.12)):
            ax.errorbar([value], [yi + offset], xerr=[[max(value - ci.lo, 0.0)], [max(ci.hi - value, 0.0)]],
                        fmt="o", color=color, markerfacecolor=face, markeredgecolor=color, markersize=4.5,
                        elinewidth=0.8, capsize=1.5, zorder=3)
    lows = [min(r[2].lo, r[4].lo) for r in rows]
    lo = max(0.0, min(0.5, np.floor(10 * min(lows)) / 10 - 0.02))
    ax.axvline(0.5, color="0.3", ls="--", lw=0.8, zorder=0)
    ax.set_yticks(y, [view.label(r[0]) for r in rows])
    ax.set(xlim=(lo, 1.0), ylim=(-0.6, len(rows) - 0.4), xlabel="Image AUROC, 95 % CI")
    ax.grid(axis="y", visible=False)
    set_title(ax, "Known vs unseen designs", view.dataset)
    handles = [
        Line2D([], [], marker="o", ls="none", color="0.2", markerfacecolor="white", markersize=4.5, label=known),
        Line2D([], [], marker="o", ls="none", color="0.2", markersize=4.5, label=unseen),
        Line2D([], [], ls="--", color="0.3", lw=0.8, label="chance (0.5)"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=1, fontsize=6)
    return view.save(fig, kind)


def _row(view: DatasetView, cell: CellResult) -> tuple[CellResult, float, Interval, float, Interval] | None:
    metrics = cell.metrics
    if metrics is None or metrics.val_image_auroc is None or metrics.image_auroc is None:
        return None
    try:
        scores = view.results.scores(cell)
    except (OSError, ValueError) as err:
        log.warning("%s: no known-vs-unseen row for %s: %s", view.dataset, cell.cell_key, err)
        return None
    val = scores[scores["split"] == "val"]
    if val["label"].nunique() != 2:
        return None
    ci = stratified_bootstrap(val["score"].to_numpy(float), val["label"].to_numpy(int), None,
                              n_bootstrap=VAL_BOOTSTRAP, seed=cell.seed or 0).image_auroc
    test_ci = metrics.image_auroc_ci or Interval(metrics.image_auroc, metrics.image_auroc)
    return cell, float(metrics.val_image_auroc), ci, float(metrics.image_auroc), test_ci


def _split_names(view: DatasetView) -> tuple[str, str]:
    """Legend words for val and test: with their design years when the manifest shows that every
    test year is later than every val year, else the plain split names."""
    years = _split_years(view)
    val, test = years.get("val", []), years.get("test", [])
    if val and test and min(test) > max(val):
        return (f"val: held-out images of known designs ({_span(val)})",
                f"test: unseen designs ({_span(test)})")
    return "validation split", "test split"


def _split_years(view: DatasetView) -> dict[str, list[int]]:
    root = next((c.dataset_root for c in view.cells if c.dataset_root), None)
    if root is None:
        return {}
    tables = sorted(Path(root).glob("manifest.*"))
    if not tables:
        return {}
    try:
        table = read_table(tables[0])
    except (OSError, ValueError) as err:
        log.info("%s: no split years (%s)", view.dataset, err)
        return {}
    if "year" not in table.columns or "split" not in table.columns:
        return {}
    years = pd.to_numeric(table["year"], errors="coerce")
    return {str(split): sorted({int(y) for y in group.dropna()})
            for split, group in years.groupby(table["split"].astype(str).str.lower())}


def _span(years: list[int]) -> str:
    return f"{years[0]}-{years[-1]}" if len(years) > 1 else str(years[0])
