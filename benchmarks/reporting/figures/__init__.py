"""Paper figures from a stored run: ROC/PR curves, metric bars, latency Pareto, heatmaps, known vs
unseen designs, scores,
each method's declared ablation (e.g. LTFM's), k-shot curves and an anomaly-map gallery.

Every figure is drawn from `runs.jsonl`, the per-image score files and the stored maps alone (no
model is run; the gallery also reads the test images and masks under each cell's
`dataset_root`), saved as PNG (dpi 200) and PDF, named `<kind>_<dataset slug>`. A figure whose
data is absent (no latency, no breakdowns, no maps, a single-class test split) is skipped with a
log line.

One module per figure family; this one lists the kinds in report order and draws them all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from benchmarks.reporting.figures.ablation import (
    draw_ablation,
    draw_ablation_cross_generation,
    draw_ablations,
)
from benchmarks.reporting.figures.bars import BAR_METRICS, draw_bars
from benchmarks.reporting.figures.common import HEATMAP_KINDS, DatasetView
from benchmarks.reporting.figures.curves import MAX_INSIDE_LEGEND, draw_pr, draw_roc
from benchmarks.reporting.figures.distributions import draw_scores
from benchmarks.reporting.figures.gallery import GALLERY_MAX_MAPS, GALLERY_ROWS, draw_gallery
from benchmarks.reporting.figures.gallery import _gallery_picks as _gallery_picks
from benchmarks.reporting.figures.gallery_canvas import (
    GALLERY_CMAP,
    GALLERY_GAP,
    GALLERY_PANEL,
    GROUND_TRUTH_COLOR,
)
from benchmarks.reporting.figures.heatmap import draw_heatmap
from benchmarks.reporting.figures.known_unseen import draw_known_vs_unseen
from benchmarks.reporting.figures.kshot import KSHOT_VARIANT, draw_kshot
from benchmarks.reporting.figures.pareto import _pareto_front as _pareto_front
from benchmarks.reporting.figures.pareto import draw_pareto
from benchmarks.reporting.plot_style import figure_style, method_colors, save_figure
from benchmarks.reporting.published import declarations
from benchmarks.results.reader import RunResults, dataset_slugs, load_run

# `_gallery_picks` and `_pareto_front` (imported `as` themselves above) stay reachable for the tests.
__all__ = [
    "BAR_METRICS",
    "FIGURE_CAPTIONS",
    "GALLERY_CMAP",
    "GALLERY_GAP",
    "GALLERY_MAX_MAPS",
    "GALLERY_PANEL",
    "GALLERY_ROWS",
    "GROUND_TRUTH_COLOR",
    "HEATMAP_KINDS",
    "KSHOT_VARIANT",
    "MAX_INSIDE_LEGEND",
    "draw_ablation",
    "draw_ablation_cross_generation",
    "draw_ablations",
    "draw_bars",
    "draw_gallery",
    "draw_heatmap",
    "draw_known_vs_unseen",
    "draw_kshot",
    "draw_pareto",
    "draw_pr",
    "draw_roc",
    "draw_scores",
    "figure_captions",
    "render_figures",
    "save_figure",
    "write_figures",
]

log = logging.getLogger(__name__)

FIGURE_CAPTIONS = {
    "roc": "ROC curves on the test split (AUROC in the legend)",
    "pr": "Precision-recall curves on the test split (average precision in the legend)",
    "bars_image_auroc": "Image AUROC with 95 % CI whiskers; dashed: chance",
    "bars_f1": "F1 at the validation threshold with 95 % CI whiskers; dashed: flag-everything F1",
    "pareto": "Image AUROC vs batch-1 p50 latency (log scale) with the Pareto front",
    "heatmap_cross_generation": "Test AUROC per release year and device group",
    "known_vs_unseen": "Image AUROC on the validation split (held-out images of the designs seen in training)"
    " beside the test split (unseen designs), 95 % CIs: what the generation shift costs each method",
    "scores": "Test score distributions (min-max scaled per cell) with the validation threshold",
    "kshot": "Image AUROC vs number of normal shots k (mean over seeds; band: 95 % CI)",
    "gallery": "Anomaly maps on the same test images for every method (each method's maps min-max scaled"
    " over the shown images); cyan outline: ground-truth mask",
}


def figure_captions(results: RunResults) -> dict[str, str]:
    """Figure kind -> caption for this run: the fixed kinds, then each declared ablation's two kinds."""
    captions = dict(FIGURE_CAPTIONS)
    for method, (_, ablation) in sorted(declarations(results.cells).items()):
        if ablation is not None:
            captions[f"ablation_{method}"] = (
                f"{ablation.subject} ablation: F1 at the validation threshold (95 % CI whiskers) and F1-max on the"
                f" test split, beside the published F1 of the same variants ({ablation.reference_label})")
            captions[f"ablation_{method}_cross_generation"] = (
                f"{ablation.subject} variants: F1 at the validation threshold per test release year and device group")
    roi = [c.roi for c in results.cells if c.ok and c.roi is not None]
    if roi:  # every number a figure shows from image scores follows the run's ROI protocol: say so
        used = sum(bool(r.used) for r in roi)
        note = (f"; image scores ROI-guided (--roi {roi[0].mode}) in {used} of {len(roi)} cells with a region of "
                "interest, the method's own score elsewhere (the report's ROI table)")
        captions = {kind: text + note if kind not in ("gallery", "pareto") else text for kind, text in captions.items()}
    return captions


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
            view = DatasetView(results, dataset, slugs[dataset], colors, labels, out_dir, save_figure)
            if not view.cells:
                log.info("%s: no ok cells, no figures", dataset)
            written[dataset] = [path for draw in _DRAWERS for path in draw(view)] if view.cells else []
    return written


_DRAWERS: tuple[Callable[[DatasetView], list[Path]], ...] = (
    draw_roc,
    draw_pr,
    draw_bars,
    draw_pareto,
    draw_heatmap,
    draw_known_vs_unseen,
    draw_scores,
    draw_ablations,
    draw_kshot,
    draw_gallery,
)
