"""Faults: a killed run resumes with every cell exactly once; unusable output folders and
arguments fail clearly; the same config reproduces identical metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dummy_plugins  # noqa: F401
import pytest

from benchmarks import store as store_module
from benchmarks.cli import main
from benchmarks.config import RunConfig
from benchmarks.presets import get_preset
from benchmarks.runner import run
from benchmarks.store import RunStore

TESTS = Path(__file__).resolve().parent

RUN_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    import dummy_plugins
    from pathlib import Path
    from benchmarks.config import RunConfig
    from benchmarks.presets import get_preset
    from benchmarks.runner import run
    preset = get_preset("smoke").with_overrides(bootstrap_samples=20, latency_images=2)
    config = RunConfig(methods=("mean-brightness",), datasets=("manifest:{manifest}",), seeds=tuple(range(6)),
                       preset=preset, weights="random", out=Path({out!r}))
    run(config)
""")


def test_sigkill_then_resume_loses_and_duplicates_nothing(tiny_manifest: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    script = RUN_SCRIPT.format(tests=str(TESTS), manifest=tiny_manifest, out=str(out))
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.monotonic() + 240
    runs = out / "runs.jsonl"
    while time.monotonic() < deadline:
        if runs.is_file() and len(runs.read_text().splitlines()) >= 2:
            break
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)  # the runner and its cell processes, mid-grid
    process.wait()
    done_before = len(RunStore(out).records())
    assert 2 <= done_before < 6
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, timeout=300)
    records = RunStore(out).records()
    keys = [r["cell_key"] for r in records]
    assert len(keys) == 6 and len(set(keys)) == 6  # every seed exactly once
    assert all(r["status"] == "ok" for r in records)


def test_unwritable_output_folder_is_a_clear_error(tiny_manifest: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # works as root too, unlike chmod
    config = RunConfig(methods=("mean-brightness",), datasets=(f"manifest:{tiny_manifest}",), seeds=(0,),
                       preset=get_preset("smoke"), weights="random", out=blocker / "run")
    with pytest.raises(OSError, match="cannot write to the output folder"):
        run(config)


def test_existing_lines_survive_a_failed_append(tiny_manifest: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    preset = get_preset("smoke").with_overrides(bootstrap_samples=20)
    config = RunConfig(methods=("mean-brightness",), datasets=(f"manifest:{tiny_manifest}",), seeds=(0,),
                       preset=preset, weights="random", out=out)
    run(config)
    before = (out / "runs.jsonl").read_bytes()

    def disk_full(fd: int, data: bytes, path: Path) -> None:
        os.write(fd, data[: len(data) // 2])  # a partial line reaches the disk, then ENOSPC
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store_module, "_write_line", disk_full)
    with pytest.raises(OSError, match="No space left"):
        run(RunConfig(**{**config.__dict__, "force": True}))
    monkeypatch.undo()
    assert (out / "runs.jsonl").read_bytes().startswith(before)
    assert [r["cell_key"] for r in RunStore(out).records()] == [json.loads(before)["cell_key"]]
    run(config)  # resuming reads past the torn half line and skips the finished cell
    assert len(RunStore(out).records()) == 1


def test_cli_unusable_arguments(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["run", "--methods", "patchcor"]) == 2
    assert "did you mean patchcore" in capsys.readouterr().err
    assert main(["run", "--all", "--datasets", "smartphone-synt"]) == 2
    assert "did you mean smartphone-synth" in capsys.readouterr().err
    assert main(["run", "--all", "--weights", "random", "--weights-dir", str(tmp_path)]) == 2
    assert "contradicts" in capsys.readouterr().err
    assert main(["run", "--all", "--shard", "3/2"]) == 2
    assert main(["run", "--methods", "patchcore", "--datasets", f"manifest:{tmp_path / 'none.csv'}",
                 "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_same_config_gives_identical_metrics(tiny_manifest: Path, tmp_path: Path) -> None:
    preset = get_preset("smoke").with_overrides(bootstrap_samples=100)
    config = RunConfig(methods=("patchcore",), datasets=(f"manifest:{tiny_manifest}",), seeds=(0,), preset=preset,
                       weights="random", out=tmp_path / "run",
                       method_options={"patchcore": {"backbone": "resnet18", "image_size": 64, "crop_size": 64}})
    metrics = []
    for _ in range(3):
        summary = run(RunConfig(**{**config.__dict__, "force": True}))
        assert summary.ran[0]["status"] == "ok", summary.ran[0]["error"]
        metrics.append(json.dumps(summary.ran[0]["metrics"], sort_keys=True))
    assert metrics[0] == metrics[1] == metrics[2]
