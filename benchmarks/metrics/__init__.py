"""Metrics protocol (SPEC 7): image and pixel metrics, bootstrap CIs, breakdowns, paired tests.

The F1 threshold is chosen on validation data only (`choose_threshold`); everything else is
measured on test. Metrics that do not apply are None with a reason, never 0 or 0.5.
"""

from benchmarks.metrics.breakdown import as_bool, breakdown, hard_negative_fpr
from benchmarks.metrics.image import ImageMetrics, auroc_or_none, f1_max_score, image_metrics
from benchmarks.metrics.paired import PairedComparison, paired_auroc_test
from benchmarks.metrics.pixel import PixelAccumulator, PixelMetrics, aupro_score, pixel_metrics, resize_map
from benchmarks.metrics.threshold import NO_THRESHOLD, Threshold, choose_threshold
from benchmarks.results.record import CellMetrics


def cell_metrics(image: ImageMetrics, pixel: PixelMetrics, val_image_auroc: float | None) -> CellMetrics:
    """The record's metrics part from the image metrics on test, the pixel metrics and the val AUROC."""
    return CellMetrics(
        image_auroc=image.image_auroc,
        image_auroc_ci=image.image_auroc_ci,
        aupr=image.aupr,
        aupr_ci=image.aupr_ci,
        f1=image.f1,
        f1_ci=image.f1_ci,
        precision=image.precision,
        recall=image.recall,
        threshold=image.threshold,
        threshold_source=image.threshold_source,
        f1_max=image.f1_max,
        f1_max_ci=image.f1_max_ci,
        n_normal=image.n_normal,
        n_anomalous=image.n_anomalous,
        n_bootstrap=image.n_bootstrap,
        undefined_reason=image.undefined_reason,
        pixel_auroc=pixel.pixel_auroc,
        aupro=pixel.aupro,
        pixel_n_images=pixel.n_images,
        pixel_n_regions=pixel.n_regions,
        pixel_fraction=pixel.pixel_fraction,
        pixel_undefined_reason=pixel.undefined_reason,
        val_image_auroc=val_image_auroc,
    )


__all__ = [
    "NO_THRESHOLD",
    "ImageMetrics",
    "PairedComparison",
    "PixelMetrics",
    "Threshold",
    "as_bool",
    "aupro_score",
    "auroc_or_none",
    "breakdown",
    "cell_metrics",
    "choose_threshold",
    "f1_max_score",
    "hard_negative_fpr",
    "image_metrics",
    "paired_auroc_test",
    "PixelAccumulator",
    "pixel_metrics",
    "resize_map",
]
