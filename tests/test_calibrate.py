"""`data calibrate`: the calibration numbers from stored scores, and the command end to end."""

from __future__ import annotations

import json
from pathlib import Path

import dummy_plugins  # noqa: F401  (registers the test plugins)
import numpy as np
import pandas as pd
import pytest

from benchmarks.cli import main
from benchmarks.reporting.calibration import (
    CalibrationTargets,
    attach_severity,
    calibrate_scores,
    format_calibration,
)


def _frame(rng: np.random.Generator, shift: float) -> pd.DataFrame:
    """Scores that grow with severity; hard negatives above plain normals; test normals shifted up."""
    rows = []
    for split, offset in (("val", 0.0), ("test", shift)):
        for i in range(60):
            hard = i < 12
            rows.append((f"{split}/n{i}", split, 0, "none", hard, rng.normal(offset + (1.5 if hard else 0), 1), np.nan))
        for i in range(60):
            severity = (i + 0.5) / 60
            kind = ("scratch", "dent")[i % 2]
            rows.append((f"{split}/a{i}", split, 1, kind, False, rng.normal(offset + 4 * severity, 1), severity))
    return pd.DataFrame(rows, columns=["image", "split", "label", "defect", "hard_negative", "score", "severity"])


def test_numbers_follow_the_scores() -> None:
    cal = calibrate_scores(_frame(np.random.default_rng(0), shift=0.5), "toy", "m", "random", CalibrationTargets())
    thirds = [auroc for _, _, _, auroc, _ in cal.by_severity]
    assert thirds == sorted(thirds) and thirds[0] < 0.75 < 0.9 < thirds[-1]
    assert [n for *_, n in cal.by_severity] == [20, 20, 20]
    assert cal.by_severity[0][1] == pytest.approx(0.5 / 60) and cal.by_severity[-1][2] == pytest.approx(59.5 / 60)
    assert set(cal.by_defect) == {"scratch", "dent"}
    assert cal.val_auroc is not None and cal.gap == pytest.approx(cal.val_auroc - cal.test_auroc)
    assert cal.gap > 0  # the test normals were shifted up, as unseen designs do
    assert cal.hard_negative_z is not None and 1.0 < cal.hard_negative_z < 2.0
    assert cal.hard_negative_fpr is not None and cal.plain_normal_fpr is not None
    assert cal.hard_negative_fpr > cal.plain_normal_fpr
    checks = {c.name: c.passed for c in cal.checks}
    assert checks["least severe third lower"] and checks["hard negatives score above plain normals"]
    assert checks["val AUROC not below test (cross-generation shift)"]
    text = format_calibration(cal, "random weights, preset smoke")
    assert "cross-generation gap" in text and "most severe third" in text and "random weights" in text


def test_checks_fail_when_the_targets_are_missed() -> None:
    easy = _frame(np.random.default_rng(1), shift=-1.0)
    easy.loc[(easy["label"] == 1) & (easy["split"] == "test"), "score"] += 20  # test anomalies far above all
    cal = calibrate_scores(easy, "toy", "m", "random", CalibrationTargets(test_auroc=(0.8, 0.95)))
    checks = {c.name: c.passed for c in cal.checks}
    assert cal.test_auroc == 1.0 and not checks["test AUROC in range"]
    assert not checks["val AUROC not below test (cross-generation shift)"]  # test is the easier split here
    assert "[FAIL] test AUROC in range" in format_calibration(cal, "x")


def test_one_class_test_split_is_refused() -> None:
    frame = _frame(np.random.default_rng(2), shift=0.0)
    frame = frame[~((frame["split"] == "test") & (frame["label"] == 1))]
    with pytest.raises(ValueError, match="normals and anomalies"):
        calibrate_scores(frame, "toy", "m", "random", CalibrationTargets())


def test_severity_comes_from_the_annotations_beside_the_manifest(tmp_path: Path) -> None:
    pd.DataFrame({"image": ["a.jpg", "b.jpg"], "severity": [0.2, None]}).to_csv(tmp_path / "annotations.csv", index=False)
    frame = pd.DataFrame({"image": ["a.jpg", "b.jpg", "c.jpg"], "score": [1.0, 2.0, 3.0]})
    out = attach_severity(frame, tmp_path)
    assert out["severity"].iloc[0] == 0.2 and out["severity"].iloc[1:].isna().all()
    assert attach_severity(frame, tmp_path / "nowhere")["severity"].isna().all()


def test_command_runs_the_reference_cell_then_reads_it_back(
    tiny_manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    anomalies = pd.read_csv(tiny_manifest).query("label == 1")["image"]
    pd.DataFrame({"image": anomalies, "severity": np.linspace(0.1, 0.9, len(anomalies))}).to_csv(
        tiny_manifest.parent / "annotations.csv", index=False
    )
    out = tmp_path / "cal"
    args = ["data", "calibrate", f"manifest:{tiny_manifest}", "--method", "mean-brightness",
            "--weights", "random", "--preset", "smoke", "--out", str(out)]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "against mean-brightness (random weights, preset smoke" in first
    assert "least severe third" in first and "cross-generation gap" in first
    written = sorted(out.glob("calibration-*.json"))
    assert len(written) == 1
    stored = json.loads(written[0].read_text())
    assert len(stored["by_severity"]) == 3 and stored["test_auroc"] is not None

    assert main(["data", "calibrate", f"manifest:{tiny_manifest}", "--method", "mean-brightness",
                 "--run-dir", str(out)]) == 0
    again = capsys.readouterr().out
    assert again.splitlines()[:-1] == first.splitlines()[:-1]  # the same table, without recomputing

    assert main(["data", "calibrate", f"manifest:{tiny_manifest}"]) == 2
    assert "name one with --method" in capsys.readouterr().err
