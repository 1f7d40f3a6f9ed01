"""`bench scaling` and the run forecast: power laws, curve reading, the training rows a point gets,
the predict calls a cell makes, one tiny bench end to end (real processes) and `run --dry-run`."""

from __future__ import annotations

import json
from pathlib import Path

import dummy_plugins  # noqa: F401  (registers mean-brightness for the point processes)
import numpy as np
import pytest
from conftest import write_tiny_manifest

from benchmarks.cli import main
from benchmarks.data.manifest import load_manifest
from benchmarks.plugins.contract import Protocol
from benchmarks.reporting.figures.scaling import draw_scaling, format_scaling
from benchmarks.running.forecast import (
    curve_value,
    forecast_cells,
    per_image_seconds,
    predict_images_by_batch,
)
from benchmarks.running.presets import get_preset
from benchmarks.running.scaling import (
    ScalingPoint,
    ScalingResult,
    augmented,
    fit_power_law,
    load_scaling,
    plan_points,
    run_scaling,
    training_rows,
)


def test_power_law_recovers_the_exponent() -> None:
    sizes = [25, 50, 100, 200, 400]
    law = fit_power_law(sizes, [0.3 * n ** 1.4 for n in sizes])
    assert law is not None and law.exponent == pytest.approx(1.4) and law.coefficient == pytest.approx(0.3)
    assert law.r2 == pytest.approx(1.0) and law.points == 5 and law.at(800) == pytest.approx(0.3 * 800 ** 1.4)
    assert fit_power_law([25, 25], [1.0, 2.0]) is None  # one distinct size: no slope
    assert fit_power_law([25, 50], [1.0, 0.0]) is None  # non-positive values are left out


def _point(size: int, fit_s: float, predict_ms: float = 10.0, label: str = "m/default",
           predict_batch_ms: float | None = None, predict_cached_ms: float | None = None) -> ScalingPoint:
    return ScalingPoint(label, "m", "default", "train", size, size, "ok", fit_s=fit_s, predict_ms=predict_ms,
                        predict_batch_ms=predict_batch_ms, predict_cached_ms=predict_cached_ms, decode_ms=1.0,
                        setup_s=0.5)


def test_curves_are_read_in_log_log_space() -> None:
    points = [_point(100, 10.0), _point(400, 80.0)]  # exponent 1.5
    assert curve_value(points, "fit_s", 100)[0] == pytest.approx(10.0)
    middle, how = curve_value(points, "fit_s", 200)
    assert middle == pytest.approx(10.0 * 2 ** 1.5) and how == "interpolated"
    beyond, how = curve_value(points, "fit_s", 1600)
    assert beyond == pytest.approx(80.0 * 4 ** 1.5) and "beyond 100-400 (exponent 1.50)" in how
    below, how = curve_value(points, "fit_s", 25)
    assert below == pytest.approx(10.0 / 4 ** 1.5) and "below" in how
    assert curve_value([_point(25, 3.0)], "fit_s", 1600) == (3.0, "one point (does not grow with training images)")
    assert curve_value([], "fit_s", 10) == (None, "no curve")


def test_training_rows_follow_the_protocol_and_repeat_with_new_augmentations(tmp_path: Path) -> None:
    dataset = load_manifest(write_tiny_manifest(tmp_path, n_train=6))
    normals = {r.image_id for r in dataset.records if r.split == "train" and r.label == 0}
    rows = training_rows(dataset.records, Protocol.FULL_SHOT, ("real",), None, 14, seed=0)
    assert len(rows) == 14 and {r.image_id for r, _ in rows} == normals
    assert sorted(k for _, k in rows) == [0] * 6 + [1] * 6 + [2] * 2  # each repeat is a new augmentation
    assert len({(r.image_id, k) for r, k in rows}) == 14
    assert training_rows(dataset.records, Protocol.FEW_SHOT, ("real",), 2, 14, seed=0)[0][1] == 0
    assert len(training_rows(dataset.records, Protocol.FEW_SHOT, ("real",), 2, 14, seed=0)) == 2
    assert training_rows(dataset.records, Protocol.ZERO_SHOT, ("real",), None, 14, seed=0) == ()
    other = training_rows(dataset.records, Protocol.FULL_SHOT, ("real",), None, 6, seed=1)
    assert [r.image_id for r, _ in other] != [r.image_id for r, _ in rows[:6]]  # seeded order


def test_augmented_repeats_differ_from_the_image_and_each_other() -> None:
    image = np.random.default_rng(0).integers(0, 255, (8, 12, 3), dtype=np.uint8)
    assert augmented(image, 0) is image
    one, two = augmented(image, 1), augmented(image, 2)
    assert one.shape == two.shape == image.shape
    assert np.array_equal(one, np.roll(image[:, ::-1], 3, axis=1)) and np.array_equal(two, np.roll(image, 6, axis=1))


def test_predicted_images_are_counted_at_the_batch_size_they_go_in() -> None:
    preset = get_preset("default")  # 20 timed images after 2 warm-up calls, throughput at batch 8
    # 70 val + 160 test in evaluation batches of 8; 2 + 20 latency and 2 for the FLOP count at
    # batch 1; 8 warm-up + 16 throughput at batch 8
    counts = predict_images_by_batch(230, 160, preset.latency_images, preset.latency_warmup,
                                     preset.throughput_batch_sizes)
    assert counts == {8: 230 + 8 + 16, 1: 2 + 20 + 2}
    assert predict_images_by_batch(10, 5, 20, 2, (1, 4, 8)) == {8: 10, 1: 2 + 5 + 2 + (1 + 5), 4: 4 + 4}


def test_per_image_time_between_batch_sizes_is_read_in_log_log_space() -> None:
    assert per_image_seconds(80.0, 10.0, 1) == pytest.approx(0.080)
    assert per_image_seconds(80.0, 10.0, 8) == pytest.approx(0.010)
    assert per_image_seconds(80.0, 10.0, 32) == pytest.approx(0.010)  # held above the measured batch
    assert per_image_seconds(80.0, 10.0, 2) == pytest.approx(0.040)  # 80 * (10/80) ** (1/3)
    assert per_image_seconds(80.0, None, 8) == pytest.approx(0.080)  # curves without a batched time


def test_a_tiny_bench_end_to_end_and_the_dry_run_it_feeds(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    manifest = write_tiny_manifest(tmp_path / "data", n_train=6)
    specs = plan_points(["mean-brightness"], "random", [2, 4, 8], [], with_twins=False,
                        dataset_name=f"manifest:{manifest}")
    assert [(s.axis, s.size, len(s.train)) for s in specs] == [("train", 2, 2), ("train", 4, 4), ("train", 8, 8)]
    out = tmp_path / "scaling"
    result = run_scaling(specs, out, timeout_s=120)
    assert [p.status for p in result.points] == ["ok"] * 3, [p.error for p in result.points]
    assert all(p.fit_s is not None and p.fit_s > 0 and p.predict_ms is not None and p.predict_ms > 0
               and p.predict_batch_ms is not None and p.predict_batch_ms > 0
               and p.predict_cached_ms is not None and p.predict_cached_ms > 0 for p in result.points)
    assert all(p.preset == "default" for p in result.points) and result.settings["preset"] == "default"
    assert all(p.peak_rss_mb is not None and p.peak_rss_mb >= (p.base_rss_mb or 0) for p in result.points)
    assert result.points[0].weights == "random"
    assert result.laws["mean-brightness/default"]["train"]["fit_s"] is not None
    stored = load_scaling(out)
    assert [p.size for p in stored.curve("mean-brightness/default", "train")] == [2, 4, 8]
    assert json.loads((out / "scaling.json").read_text())["hardware"]["cpu"]
    assert "mean-brightness/default" in format_scaling(result)
    assert [p.name for p in draw_scaling(result, out)] == ["scaling_train.png", "scaling_train.pdf"]

    args = ["run", "--methods", "mean-brightness", "--datasets", f"manifest:{manifest}", "--out", str(tmp_path / "run"),
            "--scaling", str(out), "--dry-run"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "mean-brightness/default" in printed and "predicted wall time:" in printed
    assert not (tmp_path / "run" / "runs.jsonl").exists()  # nothing ran


def test_a_point_over_its_timeout_stops_its_curve(tmp_path: Path) -> None:
    manifest = write_tiny_manifest(tmp_path / "data", n_train=6)
    specs = plan_points(["hanging"], "random", [2, 4], [], with_twins=False, dataset_name=f"manifest:{manifest}")
    result = run_scaling(specs, tmp_path / "scaling", timeout_s=3)
    assert [(p.status, p.size) for p in result.points] == [("timeout", 2), ("skipped", 4)]
    assert "over the point timeout of 3 s" in (result.points[0].error or "")


def test_the_forecast_adds_up_the_measured_parts(tmp_path: Path) -> None:
    """fit + every predicted image at its batch's per-image time + decode + setup + bootstrap + overhead."""
    from benchmarks.running.config import RunConfig
    from benchmarks.running.forecast import CELL_OVERHEAD_S

    manifest = write_tiny_manifest(tmp_path / "data", n_train=6, n_val=4, n_test=6)
    points = [_point(2, 1.0, 20.0, "mean-brightness/default", predict_batch_ms=5.0),
              _point(8, 4.0, 20.0, "mean-brightness/default", predict_batch_ms=5.0)]
    scaling = ScalingResult(points, {}, {})
    config = RunConfig(methods=("mean-brightness",), datasets=(f"manifest:{manifest}",), seeds=(0,),
                       preset=get_preset("smoke"), out=tmp_path / "run")
    (cell,) = forecast_cells(config, scaling)
    assert cell.n_train == 6 and cell.n_eval == 8 + 12
    assert cell.fit_s == pytest.approx(3.0)  # linear between (2, 1 s) and (8, 4 s)
    preset = get_preset("smoke")  # 3 timed images after 1 warm-up; throughput at batch 4 (above 3: not run)
    assert cell.predict_s == pytest.approx(0.005 * 20 + 0.020 * (1 + 3 + 2))
    rest = cell.seconds - cell.fit_s - cell.predict_s - 0.001 * (6 + 20) - 0.5 - CELL_OVERHEAD_S
    assert 0 <= rest < 1.0  # the bootstrap, timed on the spot
    assert not cell.other_preset and preset.name == "smoke"


def test_curves_of_another_preset_flag_the_methods_whose_training_follows_it(tmp_path: Path) -> None:
    """Curves measured at default, a smoke run: a method that declares `preset_schedule` is flagged
    (cell basis and total), one that does not is read as it is."""
    from dataclasses import replace as dc_replace

    from benchmarks.plugins.registry import BASELINES
    from benchmarks.running.config import RunConfig
    from benchmarks.running.forecast import format_forecast

    manifest = write_tiny_manifest(tmp_path / "data", n_train=6, n_val=4, n_test=6)
    points = [_point(2, 1.0, 20.0, "mean-brightness/default"), _point(8, 4.0, 20.0, "mean-brightness/default")]
    scaling = ScalingResult(points, {}, {"preset": "default"})
    config = RunConfig(methods=("mean-brightness",), datasets=(f"manifest:{manifest}",), seeds=(0,),
                       preset=get_preset("smoke"), out=tmp_path / "run")
    (plain_cell,) = forecast_cells(config, scaling)
    assert not plain_cell.other_preset and "preset" not in plain_cell.basis
    method = BASELINES.get("mean-brightness")
    original = method.meta
    method.meta = dc_replace(original, preset_schedule=True)
    try:
        (cell,) = forecast_cells(config, scaling)
    finally:
        method.meta = original
    assert cell.other_preset and "curve measured at preset default" in cell.basis
    assert cell.seconds == pytest.approx(plain_cell.seconds, rel=0.2)  # read off the same curve
    assert "uncertain: 1 cell(s)" in format_forecast([cell], report=False, scaling_source="x")
    (same,) = forecast_cells(config, ScalingResult(points, {}, {"preset": "smoke"}))
    assert not same.other_preset


def test_a_later_cell_of_a_method_pays_the_cached_evaluation(tmp_path: Path) -> None:
    """Seeds 0 and 1 of one method on one dataset: the second cell's val/test features are in the
    cache, so its evaluation images cost `predict_cached_ms` instead of `predict_batch_ms`."""
    from benchmarks.running.config import RunConfig

    manifest = write_tiny_manifest(tmp_path / "data", n_train=6, n_val=4, n_test=6)
    points = [_point(n, 1.0, 20.0, "mean-brightness/default", predict_batch_ms=5.0, predict_cached_ms=1.0)
              for n in (2, 8)]
    config = RunConfig(methods=("mean-brightness",), datasets=(f"manifest:{manifest}",), seeds=(0, 1),
                       preset=get_preset("smoke"), out=tmp_path / "run")
    first, second = forecast_cells(config, ScalingResult(points, {}, {}))
    assert first.predict_s - second.predict_s == pytest.approx(20 * (5.0 - 1.0) / 1000)
    assert "cached by an earlier cell" in second.basis and "cached" not in first.basis
