"""End-to-end runner behaviour with small honest plugins in cell processes."""

from __future__ import annotations

import json
from pathlib import Path

import dummy_plugins  # noqa: F401  (registers the test plugins)
import pandas as pd
import pytest

from benchmarks.reporting.summary import format_summary
from benchmarks.results.record import CellResult
from benchmarks.results.store import RunStore
from benchmarks.running import compute
from benchmarks.running.config import CellSpec, RunConfig, shard_cells
from benchmarks.running.presets import get_preset
from benchmarks.running.runner import run

SPEC_KEYS = {"schema", "run_id", "method", "variant", "dataset", "seed", "status", "error", "weights",
             "metrics", "latency", "config_hash", "versions", "hardware"}
METRIC_KEYS = {"image_auroc", "image_auroc_ci", "aupr", "f1", "precision", "recall", "threshold",
               "threshold_source", "f1_max", "pixel_auroc", "aupro"}
LATENCY_KEYS = {"device", "batch1_p50_ms", "batch1_p95_ms", "throughput_ips", "fit_s", "peak_mem_mb"}


def _config(manifest: Path, out: Path, methods: tuple[str, ...], **kw: object) -> RunConfig:
    preset = get_preset("smoke").with_overrides(cell_timeout_s=kw.pop("timeout", 120.0), bootstrap_samples=50)
    return RunConfig(methods=methods, datasets=(f"manifest:{manifest}",), seeds=(0,), preset=preset,
                     weights="random", out=out, **kw)  # type: ignore[arg-type]


def test_run_writes_spec_keys_scores_and_maps(tiny_manifest: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    summary = run(_config(tiny_manifest, out, ("mean-brightness",)))
    assert [r.status for r in summary.ran] == ["ok"], summary.ran[0].error
    lines = (out / "runs.jsonl").read_text().splitlines()
    line = json.loads(lines[0])
    assert SPEC_KEYS <= set(line)
    assert METRIC_KEYS <= set(line["metrics"])
    assert LATENCY_KEYS <= set(line["latency"])
    record = summary.ran[0]
    assert CellResult.from_json(line) == record  # the line reads back as the record the runner built
    assert record.weights == "random"
    assert record.provenance == {}  # a plugin without provenance facts
    assert record.metrics.threshold_source == "val"
    assert record.metrics.image_auroc > 0.9  # the toy scratch is a bright line
    assert record.metrics.pixel_auroc is not None
    assert record.latency.batch1_p50_ms > 0
    # mean-brightness is numpy only: torch counts no FLOPs, so no rate; the machine's peak is recorded
    assert record.latency.gflop_per_image == 0.0 and record.latency.achieved_gflops is None
    assert record.latency.gemm_peak_gflops is not None and record.latency.gemm_peak_gflops > 0
    assert record.hardware["gemm_path"] == compute.gemm_path("cpu").to_json()  # the path its backbones got
    timing = record.timing  # every stage measured, all inside the cell's wall time
    assert timing is not None and record.duration_s is not None
    assert min(timing.data_s, timing.setup_s, timing.fitting_s, timing.predicting_s, timing.metrics_s,
               timing.latency_runs_s, timing.saving_s) > 0
    assert timing.stages_s < record.duration_s and timing.predict_floor_s is None  # no torch FLOPs, no floor
    assert "process start-up and hand-over" in format_summary(summary)
    scores = pd.read_parquet(out / record.scores_file)
    assert set(scores.split) == {"val", "test"}
    assert len(scores[scores.split == "test"]) == 12
    assert (out / record.maps_file).is_file()
    assert set(record.breakdowns["year"]) == {"2024", "2025"}


def test_typed_answers_of_any_plugin_are_scored(tiny_manifest: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    summary = run(_config(tiny_manifest, out, ("answering", "mean-brightness")))
    records = {r.method: r for r in summary.ran}
    assert records["mean-brightness"].text_metrics is None  # no answers, nothing to score
    answers = records["answering"].text_metrics
    scores = pd.read_parquet(out / records["answering"].scores_file)
    test = scores[scores.split == "test"]
    unanswered = int(test["decision"].isna().sum())
    assert unanswered >= 1 and answers.n_failed_answers == unanswered  # every third image of a batch
    assert set(test["decision"].dropna()) <= {0, 1} and test["grid_location"].notna().all()
    answered = test.dropna(subset=["decision"])
    tp = int(((answered["decision"] == 1) & (answered["label"] == 1)).sum())
    wrong = int((answered["decision"] != answered["label"]).sum())
    assert answers.decision_f1 == pytest.approx(2 * tp / (2 * tp + wrong))
    assert answers.location_accuracy is not None and answers.n_located >= 1


def test_failures_fail_their_cell_only(tiny_manifest: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    config = _config(tiny_manifest, out, ("crashing", "nan-scores", "dying", "hanging", "mean-brightness"),
                     timeout=20.0)
    summary = run(config)
    status = {r.method: (r.status, r.error) for r in summary.ran}
    assert status["mean-brightness"][0] == "ok"
    assert status["crashing"] == ("failed", "RuntimeError: planted failure in fit")
    assert "NaN" in status["nan-scores"][1] and status["nan-scores"][0] == "failed"
    assert status["dying"][0] == "failed" and "died" in status["dying"][1]
    assert status["hanging"][0] == "failed" and "TimeoutError" in status["hanging"][1]


def test_resume_skips_finished_cells_and_force_recomputes(tiny_manifest: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    config = _config(tiny_manifest, out, ("mean-brightness", "crashing"))
    run(config)
    # Simulate an interrupted later write: a torn, newline-less last line.
    with open(out / "runs.jsonl", "a") as handle:
        handle.write('{"schema": 1, "cell_key": "torn')
    second = run(config)
    assert [r.method for r in second.ran] == ["crashing"]  # failed cells are retried
    assert len(second.resumed) == 1
    records = RunStore(out).records()
    assert len(records) == 3 and all(r.cell_key for r in records)
    forced = run(RunConfig(**{**config.__dict__, "force": True}))
    assert sorted(r.method for r in forced.ran) == ["crashing", "mean-brightness"]


def test_shards_partition_the_grid() -> None:
    cells = [CellSpec(m, "default", "d", s) for m in ("a", "b", "c") for s in range(3)]
    parts = [shard_cells(cells, (i, 3)) for i in (1, 2, 3)]
    keys = [c.key for part in parts for c in part]
    assert sorted(keys) == sorted(c.key for c in cells)
    assert len(set(keys)) == len(keys)


def test_second_writer_is_refused(tmp_path: Path) -> None:
    from benchmarks.results.store import RunLockedError

    store = RunStore(tmp_path / "run")
    with store.lock(), pytest.raises(RunLockedError, match="another run"), RunStore(tmp_path / "run").lock():
        pass


def test_two_shards_merge_into_the_same_cells_as_one_run(tiny_manifest: Path, tmp_path: Path) -> None:
    from benchmarks.cli import main

    base = _config(tiny_manifest, tmp_path / "whole", ("mean-brightness",))
    base = RunConfig(**{**base.__dict__, "seeds": (0, 1, 2)})
    whole = {r.cell_key: r.metrics for r in run(base).ran}
    for index in (1, 2):
        run(RunConfig(**{**base.__dict__, "out": tmp_path / f"shard{index}", "shard": (index, 2)}))
    merged = tmp_path / "merged"
    assert main(["merge", str(tmp_path / "shard1"), str(tmp_path / "shard2"), "--out", str(merged)]) == 0
    latest = RunStore(merged).latest()
    assert {k: r.metrics for k, r in latest.items()} == whole
    assert all((merged / r.scores_file).is_file() for r in latest.values())


def test_ray_executor_gives_the_same_cells_as_local(tiny_manifest: Path, tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    # Ray workers import torch/anomalib from scratch: allow for a slow start on a loaded machine.
    base = _config(tiny_manifest, tmp_path / "local", ("mean-brightness", "crashing"), timeout=900.0)
    local = {r.cell_key: (r.status, r.metrics) for r in run(base).ran}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).parent)}})
    try:
        remote = run(RunConfig(**{**base.__dict__, "out": tmp_path / "ray", "executor": "ray"}))
    finally:
        ray.shutdown()
    assert {r.cell_key: (r.status, r.metrics) for r in remote.ran} == local


def test_latency_is_timed_with_the_feature_cache_off(tiny_manifest: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    summary = run(_config(tiny_manifest, out, ("cache-probe",)))
    assert [r.status for r in summary.ran] == ["ok"], summary.ran[0].error
    (states_file,) = (out / "work").glob("*/cache-states")
    states = states_file.read_text().split()
    scored = [s for s in states if s.endswith(":on")]
    assert sum(int(s.split(":")[0]) for s in scored) == 8 + 12  # val + test, through the cache
    timed = states[len(scored):]
    assert timed and all(s.endswith(":off") for s in timed)  # warm-up, batch-1 and throughput calls
