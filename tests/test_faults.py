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

from benchmarks.cli import main
from benchmarks.results import store as store_module
from benchmarks.results.store import RunStore
from benchmarks.running.config import RunConfig
from benchmarks.running.presets import get_preset
from benchmarks.running.runner import run

TESTS = Path(__file__).resolve().parent

RUN_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    import dummy_plugins
    from pathlib import Path
    from benchmarks.running.config import RunConfig
    from benchmarks.running.presets import get_preset
    from benchmarks.running.runner import run
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
    keys = [r.cell_key for r in records]
    assert len(keys) == 6 and len(set(keys)) == 6  # every seed exactly once
    assert all(r.status == "ok" for r in records)


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
    assert [r.cell_key for r in RunStore(out).records()] == [json.loads(before)["cell_key"]]
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
        assert summary.ran[0].status == "ok", summary.ran[0].error
        metrics.append(json.dumps(summary.ran[0].metrics.to_json(), sort_keys=True))
    assert metrics[0] == metrics[1] == metrics[2]


def test_bad_map_shapes_and_out_of_memory_fail_their_cells_only(tiny_manifest: Path, tmp_path: Path) -> None:
    preset = get_preset("smoke").with_overrides(bootstrap_samples=20, latency_images=2, cell_timeout_s=120.0)
    config = RunConfig(methods=("flat-maps", "maps-sometimes", "out-of-memory", "mean-brightness"),
                       datasets=(f"manifest:{tiny_manifest}",), seeds=(0,), preset=preset, weights="random",
                       out=tmp_path / "run")
    summary = run(config)
    status = {r.method: (r.status, r.error or "") for r in summary.ran}
    assert status["mean-brightness"] == ("ok", "")
    assert status["flat-maps"][0] == "failed"
    assert "maps have shape (8, 16), expected (8, h, w)" in status["flat-maps"][1]
    assert "for images images/val_0_0.png" in status["flat-maps"][1]  # names the images of the batch
    assert status["maps-sometimes"][0] == "failed"
    assert "present for some batches but not for others" in status["maps-sometimes"][1]
    assert status["out-of-memory"][0] == "failed" and status["out-of-memory"][1].startswith("out of memory")
    assert {r.method for r in summary.failed} == {"flat-maps", "maps-sometimes", "out-of-memory"}
    stored = {r.method: r.status for r in RunStore(tmp_path / "run").records()}
    assert stored == {m: s for m, (s, _) in status.items()}


def test_cell_processes_stop_when_the_runner_dies(tiny_manifest: Path, tmp_path: Path) -> None:
    from benchmarks.running.runner import _alive

    out, pid_file = tmp_path / "run", tmp_path / "cell.pid"
    script = RUN_SCRIPT.format(tests=str(TESTS), manifest=tiny_manifest, out=str(out)).replace(
        '("mean-brightness",)', '("hanging",)').replace("seeds=tuple(range(6))", "seeds=(0,)")
    runner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "BENCHMARKS_TEST_PIDFILE": str(pid_file)})
    deadline = time.monotonic() + 240
    while not (pid_file.is_file() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.2)
    cell_pid = int(pid_file.read_text())
    assert _alive(cell_pid)
    runner.send_signal(signal.SIGTERM)  # the runner only, not its process group
    runner.wait(timeout=30)
    deadline = time.monotonic() + 15
    while _alive(cell_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(cell_pid), "the cell process outlived its runner"
    assert not (out / "runs.jsonl").is_file() or not RunStore(out).records()


def test_run_refuses_an_invalid_dataset_before_any_model_work(tiny_manifest: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    lines = tiny_manifest.read_text().splitlines()
    fields = lines[3].split(",")
    fields[1] = "7"  # label
    bad = tiny_manifest.with_name("bad.csv")
    bad.write_text("\n".join([*lines[:3], ",".join(fields), *lines[4:]]) + "\n")
    out = tmp_path / "run"
    assert main(["run", "--methods", "sentinel", "--datasets", f"manifest:{bad}", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "row 3" in err and "label" in err
    assert not out.exists()  # no run folder, no work folder: the plugin was never constructed
    # the same command on the valid table does construct the plugin: the sentinel can fire
    assert main(["run", "--methods", "sentinel", "--datasets", f"manifest:{tiny_manifest}", "--out", str(out),
                 "--preset", "smoke", "--no-report"]) == 0
    assert [p.read_text() for p in (out / "work").glob("*/constructed")] == ["constructed"]
