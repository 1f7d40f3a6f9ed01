"""The cell record (`benchmarks.results.record`): one definition, read back exactly, old lines still load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.results.record import (
    AnswerMetrics,
    CellCounts,
    CellLatency,
    CellMetrics,
    CellResult,
    HardNegativeRate,
    Interval,
    StratumMetrics,
)
from benchmarks.results.store import RunStore

OLD_LINES = Path(__file__).parent / "data" / "runs-written-before-record.jsonl"
"""Two lines of a default `run --all` written by the suite before `CellResult` existed (ltfm ft-real, patchcore)."""


def _full_record() -> CellResult:
    return CellResult(
        cell_key="m__v__d__s3", method="m", variant="v", dataset="d", seed=3, status="ok", run_id="r1",
        weights="substitute", weights_tag="subst. MobileNetV2-IN1k",
        metrics=CellMetrics(image_auroc=0.8, image_auroc_ci=Interval(0.7, 0.9), f1=0.5, threshold=0.25,
                            threshold_source="val", n_normal=10, n_anomalous=12, pixel_undefined_reason="no masks"),
        latency=CellLatency(device="cpu", batch1_p50_ms=12.5, n_timed=20, peak_mem_kind="max_rss"),
        config_hash="abc", versions={"torch": "2"}, hardware={"cpu": "x"},
        breakdowns={"year": {"2024": StratumMetrics(n=4, auroc=0.5)}},
        hard_negative=HardNegativeRate(fpr=0.1, n_hard_negative=3),
        text_metrics=AnswerMetrics(decision_f1=0.7, n_located=2),
        counts=CellCounts(1, 2, 3), weights_detail=({"role": "backbone"},), method_meta={"name": "m"},
        options={"k": 1}, preset="smoke", scores_file="scores/x.parquet", provenance={"tower": "t"},
        started_at="2026-01-01T00:00:00", finished_at="2026-01-01T00:01:00", duration_s=60.0,
    )  # fmt: skip


def test_record_round_trips_through_json_text() -> None:
    record = _full_record()
    line = json.loads(json.dumps(record.to_json(), allow_nan=False))
    assert CellResult.from_json(line) == record
    assert line["schema"] == 1 and line["metrics"]["image_auroc_ci"] == [0.7, 0.9]
    assert line["metrics"]["aupro"] is None  # metrics that do not apply are null, never omitted


def test_lines_written_before_the_record_existed_still_load_and_keep_their_values() -> None:
    for text in OLD_LINES.read_text().splitlines():
        line = json.loads(text)
        record = CellResult.from_json(line)
        written = record.to_json()
        _assert_kept(line, written)  # every key the old suite wrote comes back with its value
        assert record.provenance == line.get("provenance", {})
    ltfm = CellResult.from_json(json.loads(OLD_LINES.read_text().splitlines()[0]))
    assert "provenance" not in json.loads(OLD_LINES.read_text().splitlines()[0])  # really an older line
    assert ltfm.metrics is not None and ltfm.metrics.image_auroc_ci is not None
    assert ltfm.breakdowns["defect"]["none"].n_anomalous == 0


def _assert_kept(old: object, new: object, where: str = "line") -> None:
    """Every key of `old` is in `new` with the same value (new keys, written as null, may be added)."""
    if isinstance(old, dict):
        assert isinstance(new, dict), where
        for key, value in old.items():
            _assert_kept(value, new[key], f"{where}.{key}")
    else:
        assert new == old, where


def test_wrong_types_and_nan_become_none_and_unknown_keys_survive_a_rewrite(tmp_path: Path) -> None:
    line = _full_record().to_json() | {"added_by_a_newer_suite": {"x": 1}}
    line["metrics"] = {"image_auroc": "high", "f1": float("nan"), "n_normal": 4.0, "image_auroc_ci": [0.1]}
    record = CellResult.from_json(line)
    assert record.metrics == CellMetrics(n_normal=4)
    store = RunStore(tmp_path)
    store.prepare()
    store.append(record)
    (written,) = store.runs_path.read_text().splitlines()
    assert json.loads(written)["added_by_a_newer_suite"] == {"x": 1}


@pytest.mark.parametrize(
    ("bad", "message"),
    [([], "JSON object"), ({"method": "m"}, "missing keys"),
     ({"cell_key": "k", "method": "m", "dataset": "d", "status": "done"}, "status 'done'")],
)  # fmt: skip
def test_not_a_cell_is_refused_by_name(bad: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CellResult.from_json(bad)
