"""Anomaly-map gallery: the same test images, their ground truth and every method's maps."""

from __future__ import annotations

import logging
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize

from benchmarks.reporting.figures.common import DatasetView, short_name
from benchmarks.reporting.figures.gallery_canvas import (
    GALLERY_CMAP,
    GALLERY_PANEL,
    GalleryRow,
    compose_canvas,
    row_height,
)
from benchmarks.reporting.figures.gallery_files import gallery_pixels, ground_truth_masks
from benchmarks.reporting.plot_style import DOUBLE_COLUMN_IN, SINGLE_COLUMN_IN, plain
from benchmarks.results.record import CellResult

log = logging.getLogger(__name__)

GALLERY_ROWS = 6
GALLERY_MAX_MAPS = 8


def draw_gallery(view: DatasetView) -> list[Path]:
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
    masks = ground_truth_masks(view.dataset, root, test)
    by_id = test.set_index("image_id")
    rows = [
        GalleryRow(image_id, label, *gallery_pixels(root, by_id.loc[image_id], masks.get(image_id)))
        for image_id, label in _gallery_picks(test, set(masks))
    ]
    if all(r.image is None for r in rows):
        log.info("%s: gallery without images: none found under %s", view.dataset, root)
    scaled = {c.cell_key: _min_max(np.stack([maps[c.cell_key][r.image_id] for r in rows])) for c in cells}
    grid, tops, lefts, notes = compose_canvas(rows, [scaled[c.cell_key] for c in cells])
    # Row labels and column titles go on white margins of the raster itself, so that no layout
    # engine can push them off the figure: size the figure first, then the margins in pixels.
    label_in, title_in, below_in = 0.6, 0.3, 0.75 + (0.2 if any(c.random_weights or c.substitute_weights for c in cells) else 0.0)
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
    titles = ["image", "ground truth"] + [_column_title(view.label(c)) for c in cells]
    for x, text in zip(lefts, titles, strict=True):
        ax.text(left + x + GALLERY_PANEL / 2, top - 4, text, ha="center", va="bottom", fontsize=6)
    for y, row in zip(tops, rows, strict=True):
        name, *rest = row.label.split("\n")
        label = "\n".join(textwrap.wrap(name, 10, break_long_words=False) + rest)
        ax.text(left - 5, top + y + row_height(row) / 2, plain(label), ha="right", va="center", fontsize=6.5)
    for x, y, text in notes:
        ax.text(
            left + x,
            top + y,
            text,
            ha="center",
            va="bottom",
            fontsize=6,
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
        f"anomaly map, min-max scaled per method\nover these images ({plain(short_name(view.dataset))});"
        " cyan: ground truth",
        fontsize=6,
    )
    bar.ax.tick_params(labelsize=6)
    return view.save(fig, kind)


def _gallery_cells(view: DatasetView) -> list[CellResult]:
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


def _min_max(stack: np.ndarray) -> np.ndarray:
    """`(N, H, W)` maps scaled to [0, 1] by their joint minimum and maximum (all 0 when constant)."""
    lo, hi = float(np.nanmin(stack)), float(np.nanmax(stack))
    return np.nan_to_num((stack - lo) / (hi - lo)) if hi > lo else np.zeros_like(stack)


def _column_title(label: str) -> str:
    """`method/variant (origin)` over a map column: the method on one line, the rest wrapped to the
    panel's width (about 14 characters at 6 pt)."""
    method, _, rest = label.partition("/")
    lines = textwrap.wrap(rest, 14, break_long_words=False) if rest else []
    return "\n".join([f"{method}/" if rest else method, *lines])
