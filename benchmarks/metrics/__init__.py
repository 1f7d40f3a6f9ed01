"""Metrics protocol (SPEC 7): image and pixel metrics, bootstrap CIs, breakdowns, paired tests.

The F1 threshold is chosen on validation data only (`choose_threshold`); everything else is
measured on test. Metrics that do not apply are None with a reason, never 0 or 0.5.
"""

from benchmarks.metrics.breakdown import HardNegativeFPR, as_bool, breakdown, hard_negative_fpr
from benchmarks.metrics.image import ImageMetrics, auroc_or_none, f1_max_score, image_metrics
from benchmarks.metrics.paired import PairedComparison, paired_auroc_test
from benchmarks.metrics.pixel import PixelMetrics, aupro_score, pixel_metrics, resize_map
from benchmarks.metrics.threshold import NO_THRESHOLD, Threshold, choose_threshold

__all__ = [
    "NO_THRESHOLD",
    "HardNegativeFPR",
    "ImageMetrics",
    "PairedComparison",
    "PixelMetrics",
    "Threshold",
    "as_bool",
    "aupro_score",
    "auroc_or_none",
    "breakdown",
    "choose_threshold",
    "f1_max_score",
    "hard_negative_fpr",
    "image_metrics",
    "paired_auroc_test",
    "pixel_metrics",
    "resize_map",
]
