"""Tests of benchmarks.metrics against scikit-learn, brute force and hand-computed cases."""

from __future__ import annotations

import dataclasses
import inspect
import json
import time

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import (
    average_precision_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from benchmarks.metrics import (
    NO_THRESHOLD,
    PairedComparison,
    Threshold,
    as_bool,
    aupro_score,
    auroc_or_none,
    breakdown,
    cell_metrics,
    choose_threshold,
    f1_max_score,
    hard_negative_fpr,
    image_metrics,
    paired_auroc_test,
    pixel_metrics,
    resize_map,
)
from benchmarks.metrics.bootstrap import ap_and_f1max_rows, auroc_rows, f1_at_rows, stratified_bootstrap
from benchmarks.metrics.paired import delong_covariance
from benchmarks.metrics.pixel import PixelAccumulator, PixelMetrics, _area_to_limit
from benchmarks.results.record import CellMetrics, HardNegativeRate, Interval

SPEC_IMAGE_KEYS = {
    "image_auroc", "image_auroc_ci", "aupr", "f1", "precision", "recall",
    "threshold", "threshold_source", "f1_max",
}  # fmt: skip


def _scores(
    n_normal: int, n_anomalous: int, seed: int = 0, shift: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping Gaussian classes, rounded to 1 decimal so ties occur."""
    rng = np.random.default_rng(seed)
    scores = np.concatenate([rng.normal(0, 1, n_normal), rng.normal(shift, 1, n_anomalous)]).round(1)
    return scores, np.r_[np.zeros(n_normal, int), np.ones(n_anomalous, int)]


def _brute_force_f1(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """(best F1, lowest threshold reaching it) over every distinct score, rule score >= t."""
    best, best_t = -1.0, 0.0
    for t in np.unique(scores):
        f1 = f1_score(labels, scores >= t)
        if f1 > best:
            best, best_t = f1, float(t)
    return best, best_t


# --- threshold -----------------------------------------------------------------------------


def test_threshold_signature_takes_validation_data_only() -> None:
    parameters = list(inspect.signature(choose_threshold).parameters)
    assert parameters == ["val_scores", "val_labels", "normal_quantile"]


def test_threshold_is_f1_optimal_on_validation() -> None:
    scores, labels = _scores(60, 40, seed=3)
    threshold = choose_threshold(scores, labels)
    best_f1, best_t = _brute_force_f1(labels, scores)
    assert threshold.source == "val"
    assert threshold.value == pytest.approx(best_t)
    assert f1_score(labels, threshold.predict(scores)) == pytest.approx(best_f1)


def test_all_normal_validation_uses_p99_not_the_minimum() -> None:
    threshold = choose_threshold(np.arange(100.0), np.zeros(100, int))
    # anomalib's F1 threshold would return the minimum, 0.0, and flag every image.
    assert (threshold.value, threshold.source) == (pytest.approx(98.01), "val-normal-p99")
    p95 = choose_threshold(np.arange(100.0), np.zeros(100, int), normal_quantile=0.95)
    assert p95.source == "val-normal-p95"


def test_missing_or_anomalous_only_validation_gives_no_threshold() -> None:
    assert choose_threshold(None, None) == NO_THRESHOLD
    assert choose_threshold([], []) == Threshold(None, "none")
    assert choose_threshold([0.2, 0.9], [1, 1]) == Threshold(None, "none")
    with pytest.raises(ValueError, match="does not fit"):
        Threshold(None, "val")


def test_threshold_edge_cases_and_messages() -> None:
    """Kills what the cases above leave alive (mutation testing, docs/mutation-testing.md)."""
    # the top-scored validation image is normal: precision = recall = 0 there, F1 0 (not 0 / 0)
    assert choose_threshold([0.9, 0.1, 0.5], [0, 0, 1]) == Threshold(0.5, "val")
    # the best F1 has precision + recall <= 1: precision 1/3 at recall 1/2 and below
    scores, labels = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2], [0, 1, 0, 0, 0, 0, 0, 1]
    best_f1, best_t = _brute_force_f1(np.array(labels), np.array(scores))
    assert best_f1 <= 0.5 and choose_threshold(scores, labels).value == pytest.approx(best_t)
    # one normal validation image is enough for the quantile rule
    assert choose_threshold([0.3], [0]) == Threshold(0.3, "val-normal-p99")
    # either argument missing gives no threshold
    assert choose_threshold([0.1, 0.2], None) == NO_THRESHOLD == choose_threshold(None, [0, 1])
    for bad in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"normal_quantile must lie in \(0, 1\), got"):
            choose_threshold([0.1], [0], normal_quantile=bad)
    with pytest.raises(ValueError, match=r"^no threshold: the validation split gave none \(source 'none'\)$"):
        NO_THRESHOLD.predict(np.array([0.5]))
    np.testing.assert_array_equal(Threshold(0.5, "val").predict(np.array([0.4, 0.5, 0.6])), [False, True, True])


def test_input_check_messages_name_what_is_wrong() -> None:
    with pytest.raises(ValueError, match=r"^test scores must be 1-D, got shape \(2, 2\)$"):
        image_metrics(np.zeros((2, 2)), [0, 1], NO_THRESHOLD, n_bootstrap=0, seed=0)
    with pytest.raises(ValueError, match=r"^test: 3 scores but 2 labels \(shape \(2,\)\)$"):
        image_metrics([0.1, 0.2, 0.3], [0, 1], NO_THRESHOLD, n_bootstrap=0, seed=0)
    with pytest.raises(ValueError, match=r"labels must be 0 \(normal\) or 1 \(anomalous\); 2 are not: \['2', '7'\]$"):
        image_metrics([0.1, 0.2, 0.3], [0, 2, 7], NO_THRESHOLD, n_bootstrap=0, seed=0)
    with pytest.raises(ValueError, match=r"out of 4 \(first at flat positions \[1, 3\]\)"):
        image_metrics(["0.1", np.nan, 0.3, np.inf], [0, 1, 0, 1], NO_THRESHOLD, n_bootstrap=0, seed=0)


def test_nan_validation_scores_are_rejected_with_a_count() -> None:
    with pytest.raises(ValueError, match="^validation scores: 2 NaN and 1 infinite"):
        choose_threshold([0.1, np.nan, np.nan, np.inf, 0.5], [0, 0, 1, 1, 0])


# --- image metrics -------------------------------------------------------------------------


def test_image_metrics_match_sklearn() -> None:
    scores, labels = _scores(120, 80, seed=1)
    threshold = Threshold(0.5, "val")
    m = image_metrics(scores, labels, threshold, n_bootstrap=200, seed=0)
    predicted = scores >= 0.5
    assert m.image_auroc == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert m.aupr == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
    assert m.f1 == pytest.approx(f1_score(labels, predicted), abs=1e-12)
    assert m.precision == pytest.approx(precision_score(labels, predicted), abs=1e-12)
    assert m.recall == pytest.approx(recall_score(labels, predicted), abs=1e-12)
    assert m.f1_max == pytest.approx(_brute_force_f1(labels, scores)[0], abs=1e-12)
    assert (m.n_normal, m.n_anomalous, m.threshold, m.threshold_source) == (120, 80, 0.5, "val")
    assert m.undefined_reason is None
    assert 0.7 < (m.image_auroc or 0) < 0.85  # shift 1 sd: true AUROC = Phi(1/sqrt 2) = 0.76


def test_image_metrics_fixed_small_case() -> None:
    # Hand count: thresholds 0.5 flags 0.5, 0.7, 0.9 -> tp 2, fp 1, fn 1.
    m = image_metrics(
        [0.1, 0.5, 0.3, 0.9, 0.7, 0.2], [0, 0, 1, 1, 1, 0], Threshold(0.5, "val"), n_bootstrap=0, seed=0
    )
    assert m.image_auroc == pytest.approx(8 / 9)
    assert (m.precision, m.recall, m.f1) == (pytest.approx(2 / 3), pytest.approx(2 / 3), pytest.approx(2 / 3))
    assert m.f1_max == pytest.approx(6 / 7)  # t = 0.3: tp 3, fp 1
    assert m.image_auroc_ci is None and m.n_bootstrap == 0


def test_vectorised_bootstrap_rows_match_sklearn() -> None:
    rng = np.random.default_rng(7)
    n0, n1 = 30, 20
    rows = rng.integers(0, 6, size=(25, n0 + n1)).astype(float)  # heavy ties
    labels = np.r_[np.zeros(n0, int), np.ones(n1, int)]
    ap, f1_max = ap_and_f1max_rows(rows, n0)
    auroc = auroc_rows(rows[:, :n0], rows[:, n0:])
    f1 = f1_at_rows(rows, n0, 3.0)
    for i, row in enumerate(rows):
        assert auroc[i] == pytest.approx(roc_auc_score(labels, row), abs=1e-12)
        assert ap[i] == pytest.approx(average_precision_score(labels, row), abs=1e-12)
        assert f1_max[i] == pytest.approx(_brute_force_f1(labels, row)[0], abs=1e-12)
        assert f1[i] == pytest.approx(f1_score(labels, row >= 3.0), abs=1e-12)


def test_bootstrap_cis_contain_estimate_are_seeded_and_shrink_with_data() -> None:
    threshold = Threshold(0.5, "val")
    scores, labels = _scores(100, 100, seed=2)
    m = image_metrics(scores, labels, threshold, n_bootstrap=500, seed=11)
    for name in ("image_auroc", "aupr", "f1", "f1_max"):
        ci = getattr(m, f"{name}_ci")
        assert ci.lo < getattr(m, name) < ci.hi, name
    assert image_metrics(scores, labels, threshold, n_bootstrap=500, seed=11) == m
    other_seed = image_metrics(scores, labels, threshold, n_bootstrap=500, seed=12)
    assert other_seed.image_auroc_ci != m.image_auroc_ci
    big_scores, big_labels = _scores(2000, 2000, seed=2)
    big = image_metrics(big_scores, big_labels, threshold, n_bootstrap=200, seed=11)
    assert m.image_auroc_ci is not None and big.image_auroc_ci is not None
    width = m.image_auroc_ci.hi - m.image_auroc_ci.lo
    big_width = big.image_auroc_ci.hi - big.image_auroc_ci.lo
    assert big_width < width / 3  # sqrt(20) ~ 4.5 times narrower in theory
    assert 0.08 < width < 0.2


def test_bootstrap_is_fast() -> None:
    scores, labels = _scores(150, 50, seed=4)
    start = time.perf_counter()
    image_metrics(scores, labels, Threshold(0.5, "val"), n_bootstrap=1000, seed=0)
    assert time.perf_counter() - start < 1.5  # ~0.1 s alone; slack for shared CPUs


@pytest.mark.parametrize(("labels", "only"), [([0, 0, 0, 0], "normal"), ([1, 1, 1, 1], "anomalous")])
def test_one_class_test_split_gives_none_with_reason(labels: list[int], only: str) -> None:
    m = image_metrics([0.1, 0.4, 0.6, 0.9], labels, Threshold(0.5, "val"), n_bootstrap=100, seed=0)
    for name in ("image_auroc", "image_auroc_ci", "aupr", "aupr_ci", "f1", "f1_ci", "f1_max", "f1_max_ci"):
        assert getattr(m, name) is None, name
    assert f"only {only} images (n=4)" in str(m.undefined_reason)
    if only == "normal":
        assert (m.precision, m.recall) == (0.0, None)  # 2 false alarms, no anomaly to recall
    else:
        assert (m.precision, m.recall) == (1.0, 0.5)


def test_no_threshold_gives_null_threshold_metrics() -> None:
    m = image_metrics([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1], NO_THRESHOLD, n_bootstrap=50, seed=0)
    assert (m.f1, m.f1_ci, m.precision, m.recall, m.threshold) == (None, None, None, None, None)
    assert m.threshold_source == "none" and "no validation threshold" in str(m.undefined_reason)
    assert m.image_auroc == 1.0 and m.image_auroc_ci == Interval(1.0, 1.0)


def test_threshold_above_every_score_leaves_precision_undefined() -> None:
    m = image_metrics([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1], Threshold(5.0, "val"), n_bootstrap=20, seed=0)
    assert (m.precision, m.recall, m.f1, m.f1_ci) == (None, 0.0, 0.0, Interval(0.0, 0.0))
    assert m.undefined_reason == "no test image reaches the threshold: precision undefined"


def test_bad_test_scores_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="3 NaN and 0 infinite values out of 5"):
        image_metrics(
            [np.nan, 0.1, np.nan, np.nan, 0.3], [0, 1, 0, 1, 0], NO_THRESHOLD, n_bootstrap=0, seed=0
        )
    with pytest.raises(ValueError, match=r"^test split is empty: no scores to evaluate$"):
        image_metrics([], [], NO_THRESHOLD, n_bootstrap=0, seed=0)
    with pytest.raises(ValueError, match=r"^test scores: 1 NaN"):
        image_metrics([np.nan, 0.2], [0, 1], NO_THRESHOLD, n_bootstrap=0, seed=0)
    reason = image_metrics([0.1, 0.2], [0, 1], NO_THRESHOLD, n_bootstrap=0, seed=0).undefined_reason
    assert reason == "no validation threshold (source 'none'): F1, precision and recall not computed"


def test_image_metrics_reports_the_resamples_it_used_and_every_reason() -> None:
    one = image_metrics([0.2, 0.7], [0, 1], Threshold(0.5, "val"), n_bootstrap=1, seed=0)
    assert one.image_auroc_ci is not None and one.n_bootstrap == 1  # a single resample still gives a CI
    both = image_metrics([0.2, 0.7, 0.4], [0, 1, 1], Threshold(0.5, "val"), n_bootstrap=50, seed=0)
    assert both.n_bootstrap == 50
    normals_only = image_metrics([0.2, 0.3], [0, 0], NO_THRESHOLD, n_bootstrap=50, seed=0)
    assert normals_only.n_bootstrap == 0 and normals_only.image_auroc_ci is None  # nothing was resampled
    assert normals_only.undefined_reason == (
        "test split has only normal images (n=2): AUROC, AUPR, F1-max and F1 need both classes; "
        "no validation threshold (source 'none'): F1, precision and recall not computed")


def test_f1_max_reads_points_with_zero_precision_and_low_f1() -> None:
    # top-scored image normal (precision = recall = 0 there); the best F1 (0.5) has precision + recall = 1
    labels, scores = np.array([0, 1, 0, 0, 0, 0, 0, 1]), np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    assert f1_max_score(labels, scores) == pytest.approx(_brute_force_f1(labels, scores)[0]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="0 \\(normal\\) or 1"):
        image_metrics([0.1, 0.2], [0, 2], NO_THRESHOLD, n_bootstrap=0, seed=0)


def test_cell_metrics_json_is_plain_has_spec_keys_and_reads_back() -> None:
    scores, labels = _scores(20, 20)
    image = image_metrics(scores, labels, Threshold(0.5, "val"), n_bootstrap=50, seed=0)
    combined = cell_metrics(image, pixel_metrics([], []), 0.75)
    payload = combined.to_json()
    assert SPEC_IMAGE_KEYS <= payload.keys() and payload["val_image_auroc"] == 0.75
    assert payload["pixel_auroc"] is None and payload["pixel_undefined_reason"]
    assert payload["image_auroc_ci"] == [image.image_auroc_ci.lo, image.image_auroc_ci.hi]
    assert json.loads(json.dumps(payload)) == payload
    assert CellMetrics.from_json(json.loads(json.dumps(payload))) == combined


def test_cell_metrics_carries_every_image_and_pixel_value() -> None:
    """Each record field is the value it names (a swapped or dropped field fails), pixel metrics defined."""
    scores, labels = _scores(20, 20)
    image = image_metrics(scores, labels, Threshold(0.5, "val"), n_bootstrap=50, seed=0)
    pixel = pixel_metrics(*_hand_case())
    assert pixel.pixel_auroc is not None and pixel.n_regions > 0
    record = cell_metrics(image, pixel, 0.75)
    renamed = {"n_images": "pixel_n_images", "n_regions": "pixel_n_regions", "undefined_reason": "pixel_undefined_reason"}
    for source in (image, pixel):
        for name, value in dataclasses.asdict(source).items():
            field_name = renamed.get(name, name) if source is pixel else name
            assert getattr(record, field_name) == getattr(source, name), field_name
            assert value is not None or name.endswith("reason"), name
    assert record.val_image_auroc == 0.75
    one_class = image_metrics([0.1, 0.2], [0, 0], Threshold(0.5, "val"), n_bootstrap=0, seed=0)
    assert one_class.undefined_reason and cell_metrics(one_class, pixel, None).undefined_reason == one_class.undefined_reason


# --- pixel metrics -------------------------------------------------------------------------


def _hand_case() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Two images, 10 background pixels, region R1 (2 px, scores 0.95 / 0.5), R2 (1 px, 0.85).

    Descending: 0.95 R1 -> (fpr 0, pro .25); 0.9 bg -> (.1, .25); 0.85 R2 -> (.1, .75);
    0.8, 0.7 bg -> (.3, .75); 0.6 bg -> (.4, .75); 0.5 R1 -> (.4, 1); the rest bg -> (1, 1).
    Area to 0.3 = .1 * .25 + .2 * .75 = .175 -> AUPRO .175 / .3; area to 1 = .85.
    """
    mask_1 = np.zeros((2, 5), bool)
    mask_1[0, :2] = True
    map_1 = np.array([[0.95, 0.5, 0.9, 0.8, 0.7], [0.6, 0.4, 0.3, 0.2, 0.1]])
    mask_2 = np.array([[False, True, False]])
    map_2 = np.array([[0.05, 0.85, 0.0]])
    return [map_1, map_2], [mask_1, mask_2]


def test_aupro_hand_computed() -> None:
    maps, masks = _hand_case()
    result = pixel_metrics(maps, masks)
    assert result.aupro == pytest.approx(0.175 / 0.3)
    assert pixel_metrics(maps, masks, fpr_limit=1.0).aupro == pytest.approx(0.85)
    assert result.n_regions == 2 and result.n_images == 2 and result.pixel_fraction == 1.0
    scores = np.concatenate([m.ravel() for m in maps])
    truth = np.concatenate([m.ravel() for m in masks])
    assert result.pixel_auroc == pytest.approx(roc_auc_score(truth, scores))


def test_pixel_auroc_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(3)
    masks = rng.random((5, 20, 30)) < 0.1
    maps = (rng.random((5, 20, 30)) + 0.3 * masks).round(1)  # many ties across classes
    expected = roc_auc_score(masks.ravel(), maps.ravel())
    assert pixel_metrics(list(maps), list(masks)).pixel_auroc == pytest.approx(expected, abs=1e-12)


def test_aupro_tied_scores_interpolate_at_the_limit() -> None:
    # One tie group holds the region pixel and one of 3 background pixels: the curve goes
    # (0, 0) -> (1/3, 1) in one diagonal step; at FPR .3, PRO = .9; area .135 / .3 = .45.
    scores = np.array([0.5, 0.5, 0.2, 0.1], np.float32)
    assert aupro_score(scores, np.array([1, 0, 0, 0])) == pytest.approx(0.45)


def test_aupro_regions_are_eight_connected() -> None:
    # (0,0), (0,1) and (1,2) form one region (diagonal neighbours); only (0,0) scores above
    # the background, so PRO = 1/3 until FPR 1 (two 4-connected regions would give 0.25).
    mask = np.zeros((3, 3), bool)
    mask[0, 0] = mask[0, 1] = mask[1, 2] = True
    anomaly_map = np.arange(1, 10, dtype=float).reshape(3, 3) / 10
    anomaly_map[mask] = [0.95, 0.0, 0.0]
    assert pixel_metrics([anomaly_map], [mask]).aupro == pytest.approx(1 / 3)


@pytest.mark.slow
def test_aupro_agrees_with_anomalib() -> None:
    aupro_module = pytest.importorskip("anomalib.metrics.aupro")
    rng = np.random.default_rng(0)
    masks = np.zeros((4, 32, 32), bool)
    masks[0, 3:9, 4:12] = masks[1, 20:30, 2:5] = masks[1, 5, 5] = masks[2, 10:14, 10:25] = True
    maps = rng.random((4, 32, 32)) + 0.6 * masks
    expected = aupro_module._AUPRO(fpr_limit=0.3)
    expected.update(torch.from_numpy(maps).float(), torch.from_numpy(masks).float())
    assert pixel_metrics(list(maps), list(masks)).aupro == pytest.approx(float(expected.compute()), abs=1e-4)


def test_pixel_metrics_none_cases_and_errors() -> None:
    anomaly_map = np.zeros((4, 4))
    assert pixel_metrics([anomaly_map], None).aupro is None
    none = pixel_metrics([anomaly_map], [None])
    assert (none.pixel_auroc, none.aupro, none.undefined_reason) == (None, None, "no ground-truth masks")
    empty = pixel_metrics([anomaly_map], [np.zeros((4, 4), bool)])
    assert empty.pixel_auroc is None and "no mask has an anomalous pixel" in str(empty.undefined_reason)
    with pytest.raises(ValueError, match="image 1 has shape \\(4, 4\\) but its mask \\(5, 5\\)"):
        pixel_metrics([anomaly_map, anomaly_map], [None, np.zeros((5, 5), bool)])
    with pytest.raises(ValueError, match="image 0: 1 NaN"):
        pixel_metrics([np.array([[0.1, np.nan], [0.2, 0.3]])], [np.eye(2, dtype=bool)])


def test_pixel_metrics_undefined_cases_say_why_and_count_images() -> None:
    """Every undefined case, in full (reason, image count, no regions, fraction 1)."""
    m = np.zeros((4, 4))
    assert pixel_metrics(None, [None]) == PixelMetrics(None, None, 0, 0, 1.0, "no anomaly maps")
    assert pixel_metrics([m], None) == PixelMetrics(None, None, 0, 0, 1.0, "no ground-truth masks")
    assert pixel_metrics([m, m], [np.zeros((4, 4), bool)] * 2) == PixelMetrics(
        None, None, 2, 0, 1.0, "no mask has an anomalous pixel")
    # masks as 0 / 255 images: every pixel anomalous is still "no background"
    full = pixel_metrics([m], [np.full((4, 4), 255, np.uint8)])
    assert full == PixelMetrics(None, None, 1, 0, 1.0,
                                "every mask pixel is anomalous: no background to measure false positives")
    # one anomalous pixel in 10,000, 10 pixels sampled: the sample has no anomalous pixel
    one = np.zeros((100, 100), bool)
    one[50, 50] = True
    sparse = pixel_metrics([np.random.default_rng(0).random((100, 100))], [one], max_pixels=10)
    assert sparse == PixelMetrics(None, None, 1, 0, 1.0, "the pixel sample lacks one class; raise max_pixels")
    with pytest.raises(ValueError, match=r"^2 anomaly maps but 1 masks$"):
        pixel_metrics([m, m], [None])
    for bad in (0.0, 1.5, -0.2):
        with pytest.raises(ValueError, match=r"^fpr_limit must lie in \(0, 1\], got"):
            pixel_metrics([m], [one[:4, :4]], fpr_limit=bad)
    with pytest.raises(ValueError, match=r"its mask \(5, 5\); resize maps to image size first \(resize_map\)$"):
        pixel_metrics([m], [np.zeros((5, 5), bool)])
    with pytest.raises(ValueError, match=r"^an anomaly map must be \(h, w\), got shape \(1, 2, 2\)$"):
        resize_map(np.zeros((1, 2, 2)), (4, 4))


def test_aupro_interpolates_at_the_fpr_limit() -> None:
    """A limit between two curve points: y at the limit on the straight line between them."""
    fpr, y = np.array([0.0, 0.2, 0.6, 1.0]), np.array([0.0, 0.4, 0.8, 1.0])
    # (0, 0) -> (.2, .4) -> (.4, .6): area .04 + .1 = .14, over the limit .4
    assert _area_to_limit(fpr, y, 0.4) == pytest.approx(0.35)
    assert _area_to_limit(fpr, y, 0.2) == pytest.approx(0.2)  # on a point: no interpolation


def test_regions_emptied_by_subsampling_are_not_counted() -> None:
    """A one-pixel region the pixel sample misses is not a region of the PRO curve."""
    mask = np.zeros((100, 100), bool)
    mask[5, 5] = True  # region 1 in raster order: an empty id before a kept one
    mask[10:60, 10:60] = True
    rng = np.random.default_rng(1)
    anomaly_map = rng.random((100, 100)) + mask
    sampled = pixel_metrics([anomaly_map], [mask], max_pixels=500)
    assert pixel_metrics([anomaly_map], [mask]).n_regions == 2 and sampled.n_regions == 1
    accumulator = PixelAccumulator(mask.size, 500)
    accumulator.add(anomaly_map, mask, 0)
    scores, regions = accumulator.sample()
    kept = regions[regions > 0]
    expected = _area_to_limit(*_manual_pro(scores, regions), 0.3)
    assert sampled.aupro == pytest.approx(expected) and set(np.unique(kept)) == {2}


def _manual_pro(scores: np.ndarray, regions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PRO curve by thresholding at every distinct score (slow, obvious): (fpr, pro) from (0, 0)."""
    present = [r for r in np.unique(regions) if r > 0]
    fprs, pros = [0.0], [0.0]
    for t in np.unique(scores)[::-1]:
        flagged = scores >= t
        fprs.append(float(flagged[regions == 0].mean()))
        pros.append(float(np.mean([flagged[regions == r].mean() for r in present])))
    return np.array(fprs), np.array(pros)


def test_resize_map_takes_float64_tensors_to_float32() -> None:
    out = resize_map(torch.arange(4.0, dtype=torch.float64).reshape(2, 2), (3, 3))
    assert out.dtype == np.float32 and out.shape == (3, 3)


def test_pixel_subsampling_is_deterministic_and_close() -> None:
    rng = np.random.default_rng(5)
    masks = np.zeros((3, 64, 64), bool)
    masks[:, 10:30, 20:40] = True
    maps = list(rng.random((3, 64, 64)) + 0.5 * masks)
    full = pixel_metrics(maps, list(masks))
    sampled = pixel_metrics(maps, list(masks), max_pixels=4000)
    assert sampled == pixel_metrics(maps, list(masks), max_pixels=4000)
    assert 0.3 < sampled.pixel_fraction < 0.35
    assert sampled.pixel_auroc == pytest.approx(full.pixel_auroc, abs=0.03)
    assert sampled.aupro == pytest.approx(full.aupro, abs=0.05)


def test_resize_map_is_bilinear() -> None:
    resized = resize_map(np.array([[0.0, 1.0], [2.0, 3.0]]), (4, 4))
    assert resized.dtype == np.float32 and resized.shape == (4, 4)
    np.testing.assert_allclose(resized[0], [0.0, 0.25, 0.75, 1.0])
    np.testing.assert_allclose(resized[:, 0], [0.0, 0.5, 1.5, 2.0])
    assert resize_map(np.ones((7, 3)), (2, 9)).tolist() == np.ones((2, 9)).tolist()
    np.testing.assert_array_equal(resize_map(torch.arange(4.0).reshape(2, 2), (4, 4)), resized)


# --- breakdowns ----------------------------------------------------------------------------


@pytest.fixture
def score_frame() -> pd.DataFrame:
    rows = [
        # image_id, label, split, year, group, defect, hard_negative, score
        ("n1", 0, "test", 2024, "a", "none", False, 0.1),
        ("n2", 0, "test", 2024, "a", "none", True, 0.6),
        ("n3", 0, "test", 2025, "b", "none", False, 0.3),
        ("n4", 0, "test", 2025, "b", "none", True, 0.2),
        ("s1", 1, "test", 2024, "a", "scratch", False, 0.7),
        ("s2", 1, "test", 2025, "b", "scratch", False, 0.4),
        ("c1", 1, "test", 2025, "b", "crack", False, 0.9),
        ("v1", 1, "val", 2020, "z", "crack", False, 0.0),  # never counted: not test
    ]
    frame = pd.DataFrame(
        rows, columns=["image_id", "label", "split", "year", "group", "defect", "hard_negative", "score"]
    )
    return frame.assign(source="real")


def test_breakdown_by_year_uses_each_years_own_images(score_frame: pd.DataFrame) -> None:
    result = breakdown(score_frame, "year", 0.5)
    assert list(result) == ["2024", "2025"]
    y24, y25 = result["2024"], result["2025"]
    # 2024: normals .1, .6; anomaly .7 -> AUROC 1; flagged .6 (fp), .7 (tp).
    assert (y24.n, y24.n_anomalous, y24.auroc) == (3, 1, 1.0)
    assert (y24.precision, y24.recall, y24.f1, y24.fpr) == (0.5, 1.0, pytest.approx(2 / 3), 0.5)
    # 2025: normals .3, .2; anomalies .4, .9 -> AUROC 1; flagged .9 only.
    assert (y25.auroc, y25.precision, y25.recall, y25.f1) == (1.0, 1.0, 0.5, pytest.approx(2 / 3))
    assert breakdown(score_frame, "source", None)["real"].f1 is None


def test_breakdown_by_defect_compares_each_kind_with_all_normals(score_frame: pd.DataFrame) -> None:
    result = breakdown(score_frame, "defect", 0.5)
    assert list(result) == ["crack", "none", "scratch"]
    scratch, crack, normals = result["scratch"], result["crack"], result["none"]
    # scratch (.7, .4) vs normals (.1, .6, .3, .2): 7 of 8 pairs ranked right.
    assert (scratch.n, scratch.n_normal, scratch.n_anomalous) == (6, 4, 2)
    assert scratch.auroc == pytest.approx(
        roc_auc_score([0, 0, 0, 0, 1, 1], [0.1, 0.6, 0.3, 0.2, 0.7, 0.4])
    )
    assert scratch.auroc == pytest.approx(7 / 8) and scratch.recall == 0.5
    assert (crack.auroc, crack.recall, crack.n) == (1.0, 1.0, 5)
    assert (normals.n_anomalous, normals.auroc, normals.recall) == (0, None, None)
    assert normals.fpr == 0.25  # .6 of the four normals


def test_breakdown_edge_cases(score_frame: pd.DataFrame) -> None:
    """What the cases above leave open (mutation testing, docs/mutation-testing.md): a score equal
    to the threshold is flagged; one-class strata have no F1; two true positives; missing keys;
    `split=None` reads every row and needs no split column; a bad stratum is named."""
    frame = pd.DataFrame({"label": [0, 1, 1, 0, 0], "score": [0.5, 0.5, 0.8, 0.1, 0.2],
                          "year": [2024.0, 2024.0, 2024.0, None, np.nan], "split": "test"})
    result = breakdown(frame, "year", 0.5)
    assert sorted(result) == ["2024", "unknown"]
    y = result["2024"]  # flagged: .5 (normal, fp), .5 and .8 (tp, tp): f1 = 4 / (2 + 1 + 2)
    assert (y.precision, y.recall, y.fpr, y.f1) == (pytest.approx(2 / 3), 1.0, 1.0, pytest.approx(0.8))
    assert (result["unknown"].n, result["unknown"].f1, result["unknown"].auroc) == (2, None, None)
    keys = pd.DataFrame({"label": [0, 1, 0, 1, 0, 1], "score": [0.1, 0.9, 0.2, 0.8, 0.3, 0.7],
                         "year": [pd.NA, np.float64(2025.0), None, float("nan"), 2024.0, "x"]})
    assert sorted(breakdown(keys, "year", 0.5, split=None)) == ["2024", "2025", "unknown", "x"]
    both = pd.concat([frame, frame.assign(split="val")])
    assert breakdown(both, "year", 0.5, split=None)["2024"].n == 6
    assert breakdown(both, "year", 0.5)["2024"].n == 3
    with pytest.raises(ValueError, match=r"lacks columns \['split'\]"):
        breakdown(frame.drop(columns="split"), "year", 0.5)
    with pytest.raises(ValueError, match=r"^year=2024 scores: 1 NaN"):
        breakdown(frame.assign(score=[np.nan, 0.5, 0.8, 0.1, 0.2]), "year", 0.5)
    with pytest.raises(ValueError, match=r"^hard-negative rows scores: 1 NaN"):
        hard_negative_fpr(frame.assign(score=[np.nan, 0.5, 0.8, 0.1, 0.2], hard_negative=False), 0.5)


def test_as_bool_reads_text_flags_and_missing_values() -> None:
    text = pd.Series(["True", " yes ", "1", "t", "T", "false", None, "0", "no"], dtype=object)
    assert as_bool(text).tolist() == [True, True, True, True, True, False, False, False, False]
    assert as_bool(pd.Series([1.0, np.nan, 0.0])).tolist() == [True, False, False]
    assert as_bool(pd.Series([True, False])).tolist() == [True, False]


def test_hard_negative_fpr_reads_test_rows_at_the_threshold(score_frame: pd.DataFrame) -> None:
    rows = score_frame.copy()
    rows.loc[rows["image_id"] == "n4", "score"] = 0.5  # equal to the threshold: flagged
    extra = pd.DataFrame([("v2", 0, "val", 2020, "z", "none", True, 0.95, "real")], columns=rows.columns)
    rate = hard_negative_fpr(pd.concat([rows, extra]), 0.5)
    assert (rate.fpr, rate.n_hard_negative, rate.threshold) == (1.0, 2, 0.5)  # n2 .6 and n4 .5, not v2
    assert hard_negative_fpr(pd.concat([rows, extra]), 0.5, split=None).n_hard_negative == 3


def test_breakdown_missing_column_is_named(score_frame: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="lacks columns \\['device'\\]"):
        breakdown(score_frame, "device", 0.5)


def test_hard_negative_fpr(score_frame: pd.DataFrame) -> None:
    rate = hard_negative_fpr(score_frame, 0.5)
    # hard negatives .6 (flagged) and .2; plain normals .1, .3 (none flagged).
    assert (rate.fpr, rate.normal_fpr, rate.n_hard_negative, rate.n_normal) == (0.5, 0.0, 2, 2)
    assert HardNegativeRate.from_json(rate.to_json()) == rate
    assert hard_negative_fpr(score_frame, None).fpr is None
    assert hard_negative_fpr(score_frame.assign(hard_negative=False), 0.5).fpr is None


# --- paired comparison ---------------------------------------------------------------------


def _slow_delong(a: np.ndarray, b: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """DeLong (1988) straight from its definition with the O(m n) kernel: (delta, var of delta)."""
    components = []
    for s in (a, b):
        pos, neg = s[labels == 1], s[labels == 0]
        kernel = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        components.append((kernel.mean(), kernel.mean(axis=1), kernel.mean(axis=0)))
    (auc_a, v10_a, v01_a), (auc_b, v10_b, v01_b) = components
    s10 = np.cov(np.stack([v10_a, v10_b]))
    s01 = np.cov(np.stack([v01_a, v01_b]))
    cov = s10 / len(v10_a) + s01 / len(v01_a)
    return auc_a - auc_b, cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]


def test_bootstrap_boundaries_counts_and_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    """One image per class and one resample are enough; every resample is counted once when the
    resamples are split into chunks; the interval is the central 95 % (mutation testing)."""
    from benchmarks.metrics import bootstrap

    ci = bootstrap._interval(np.arange(1001.0))
    assert (ci.lo, ci.hi) == (pytest.approx(25.0), pytest.approx(975.0))
    one_each = stratified_bootstrap(np.array([0.2, 0.7]), np.array([0, 1]), 0.5, n_bootstrap=1, seed=0)
    assert one_each.image_auroc == Interval(1.0, 1.0) and one_each.f1 == Interval(1.0, 1.0)
    with pytest.raises(ValueError, match=r"^a stratified bootstrap needs both classes$"):
        stratified_bootstrap(np.array([0.2, 0.7]), np.array([0, 0]), None, n_bootstrap=5, seed=0)
    with pytest.raises(ValueError, match=r"^n_bootstrap must be >= 1, got 0$"):
        stratified_bootstrap(np.array([0.2, 0.7]), np.array([0, 1]), None, n_bootstrap=0, seed=0)
    counted: list[int] = []
    real_interval = bootstrap._interval
    monkeypatch.setattr(bootstrap, "_interval", lambda values: (counted.append(values.size), real_interval(values))[1])
    monkeypatch.setattr(bootstrap, "_CHUNK_ELEMENTS", 15)  # 5 images: chunks of 3 resamples
    stratified_bootstrap(np.array([0.1, 0.4, 0.3, 0.8, 0.9]), np.array([0, 0, 0, 1, 1]), 0.5, n_bootstrap=10, seed=0)
    assert counted == [10, 10, 10, 10]


def test_auroc_or_none() -> None:
    assert auroc_or_none([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], what="val") == 0.75
    assert auroc_or_none([0.1, 0.4, 0.3], [0, 0, 1], what="val") == 0.5  # one anomaly is enough
    assert auroc_or_none([0.1, 0.4], [0, 0], what="val") is None
    assert auroc_or_none([0.1, 0.4], [1, 1], what="val") is None
    with pytest.raises(ValueError, match=r"^val scores: 1 NaN"):
        auroc_or_none([np.nan, 0.4], [0, 1], what="val")


def test_delong_edge_cases_and_messages() -> None:
    labels = [0, 0, 1, 1]
    two_each = paired_auroc_test([0.1, 0.4, 0.35, 0.8], [0.2, 0.1, 0.3, 0.4], labels)
    assert two_each.delta == pytest.approx(-0.25) and (two_each.auroc_a, two_each.auroc_b) == (0.75, 1.0)
    assert two_each.to_json() == dataclasses.asdict(two_each) and two_each.method == "delong"
    # both AUROCs have zero variance (perfect and reversed) but differ: z is infinite, p 0
    split = paired_auroc_test([0.1, 0.2, 0.8, 0.9], [0.9, 0.8, 0.2, 0.1], labels)
    assert (split.delta, split.z, split.p_value) == (1.0, np.inf, 0.0)
    reversed_split = paired_auroc_test([0.9, 0.8, 0.2, 0.1], [0.1, 0.2, 0.8, 0.9], labels)
    assert (reversed_split.z, reversed_split.p_value) == (-np.inf, 0.0)
    few = paired_auroc_test([0.1, 0.5, 0.9], [0.2, 0.3, 0.4], [0, 1, 1])
    assert few == PairedComparison(None, None, "delong", None, None, None,
                                   "DeLong needs at least 2 images per class, got 1 normal and 2 anomalous")
    with pytest.raises(ValueError, match=r"^method A scores: 1 NaN"):
        paired_auroc_test([np.nan, 0.4, 0.3, 0.2], [0.1, 0.2, 0.3, 0.4], labels)
    with pytest.raises(ValueError, match=r"^method B scores: 1 NaN"):
        paired_auroc_test([0.1, 0.2, 0.3, 0.4], [np.nan, 0.4, 0.3, 0.2], labels)


def test_delong_identical_scores() -> None:
    scores, labels = _scores(50, 30)
    result = paired_auroc_test(scores, scores, labels)
    assert (result.delta, result.p_value, result.method) == (0.0, 1.0, "delong")


def test_delong_clearly_different_scores() -> None:
    scores, labels = _scores(100, 100, seed=1, shift=2.0)
    noise = np.random.default_rng(9).normal(0, 3, scores.size)
    result = paired_auroc_test(scores, scores + noise, labels)
    assert result.delta is not None and result.p_value is not None
    assert result.delta > 0.15 and result.p_value < 1e-4
    assert result.auroc_a == pytest.approx(roc_auc_score(labels, scores))


def test_delong_matches_definition_and_paired_bootstrap() -> None:
    scores, labels = _scores(150, 150, seed=6)
    other = scores + np.random.default_rng(1).normal(0, 1, scores.size)
    result = paired_auroc_test(scores, other, labels)
    delta, variance = _slow_delong(scores, other, labels)
    assert result.delta == pytest.approx(delta, abs=1e-12)
    assert result.z == pytest.approx(delta / np.sqrt(variance), rel=1e-9)
    # Paired stratified bootstrap of the AUROC difference: same images for both methods.
    rng = np.random.default_rng(0)
    normal, anomalous = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    i0 = rng.choice(normal, size=(2000, normal.size))
    i1 = rng.choice(anomalous, size=(2000, anomalous.size))
    diffs = auroc_rows(scores[i0], scores[i1]) - auroc_rows(other[i0], other[i1])
    assert np.sqrt(variance) == pytest.approx(diffs.std(), rel=0.15)


def test_delong_covariance_diagonal_is_auc_variance() -> None:
    scores, labels = _scores(40, 40, seed=8)
    aurocs, covariance = delong_covariance(scores[None, :], labels)
    assert aurocs[0] == pytest.approx(roc_auc_score(labels, scores))
    assert covariance.shape == (1, 1) and 0.0005 < covariance[0, 0] < 0.01


def test_delong_undefined_with_one_class() -> None:
    result = paired_auroc_test([0.1, 0.2, 0.3], [0.3, 0.2, 0.1], [0, 0, 1])
    assert result.delta is None and result.p_value is None and "at least 2" in str(result.undefined_reason)


@pytest.mark.parametrize(("n_normal", "n_anomalous"), [(23, 6), (5, 19)])
def test_bootstrap_resamples_each_class_from_itself_with_unbalanced_classes(n_normal: int, n_anomalous: int) -> None:
    """The stratified bootstrap against a plain reference on classes of different sizes: each
    resample draws n0 of the normals and n1 of the anomalies (with balanced classes an index drawn
    from the wrong class's range goes unseen)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(11)
    scores = np.concatenate([rng.normal(0, 1, n_normal), rng.normal(1.2, 1, n_anomalous)])
    labels = np.array([0] * n_normal + [1] * n_anomalous)
    result = stratified_bootstrap(scores, labels, 0.6, n_bootstrap=200, seed=5)
    draws = np.random.default_rng(5)
    normal_idx = draws.integers(0, n_normal, size=(200, n_normal))
    anomalous_idx = draws.integers(0, n_anomalous, size=(200, n_anomalous))
    aurocs, aps, f1s = [], [], []
    for i in range(200):
        s = np.concatenate([scores[:n_normal][normal_idx[i]], scores[n_normal:][anomalous_idx[i]]])
        aurocs.append(roc_auc_score(labels, s))
        aps.append(average_precision_score(labels, s))
        flagged = s >= 0.6
        tp = int((flagged & (labels == 1)).sum())
        f1s.append(2 * tp / (flagged.sum() + n_anomalous))
    expected = [np.percentile(v, [2.5, 97.5]) for v in (aurocs, aps, f1s)]
    for got, want in zip((result.image_auroc, result.aupr, result.f1), expected, strict=True):
        assert got is not None
        assert (got.lo, got.hi) == pytest.approx(tuple(want), abs=1e-12)


def test_pixel_accumulator_rate_sample_and_refusal() -> None:
    from benchmarks.metrics.pixel import PixelAccumulator

    empty = PixelAccumulator(100, max_pixels=1000)
    assert (empty.total_pixels, empty.keep_rate) == (100, 1.0)  # room for every pixel: keep all
    scores, regions = empty.sample()
    assert (scores.shape, scores.dtype, regions.shape, regions.dtype) == ((0,), np.float32, (0,), np.int32)
    assert PixelAccumulator(0).keep_rate == 1.0 and PixelAccumulator(400, max_pixels=100).keep_rate == 0.25
    with pytest.raises(ValueError, match=r"^total_pixels must be at least 0, got -1$"):
        PixelAccumulator(-1)
    acc = PixelAccumulator(8, max_pixels=100)
    acc.add(np.arange(8, dtype=np.float64).reshape(2, 4), np.eye(2, 4, dtype=bool), "a")
    scores, regions = acc.sample()
    assert scores.dtype == np.float32 and list(scores) == list(range(8))  # every pixel, in order
    assert list(regions) == [1, 0, 0, 0, 0, 1, 0, 0]  # the diagonal pair touches: one 8-connected region
