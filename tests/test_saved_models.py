"""Saved fitted models (`run --save-models`) and the QC page of `inspect`.

Round trip: every installed method is fitted by the runner in a cell process (its tiny setup on a
small real-file dataset), saved, loaded here in another process, and must score the test images
exactly as the cell did. A method that cannot save says so in the cell's record.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import installed_methods, write_tiny_manifest
from PIL import Image

from benchmarks.cli import main
from benchmarks.inspection.saved_models import load_saved, saved_cell
from benchmarks.results.store import RunStore
from benchmarks.running.config import RunConfig
from benchmarks.running.presets import get_preset
from benchmarks.running.runner import run

METHODS = {name: (tiny.variant, dict(tiny.options)) for name, (_, tiny) in installed_methods().items()
           if tiny is not None}


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run, every installed method with its tiny setup, models saved."""
    root = tmp_path_factory.mktemp("saved")
    manifest = write_tiny_manifest(root / "data")
    out = root / "run"
    for name, (variant, options) in METHODS.items():
        config = RunConfig(methods=(name,), datasets=(f"manifest:{manifest}",), seeds=(0,), variants=(variant,),
                           preset=get_preset("smoke").with_overrides(bootstrap_samples=20, cell_timeout_s=300.0),
                           weights="random", out=out, method_options={name: options}, save_models=True,
                           feature_cache=False)
        summary = run(config)
        assert [r.status for r in summary.ran] == ["ok"], summary.ran[0].error
    return out


@pytest.mark.parametrize("name", sorted(METHODS))
def test_a_saved_model_scores_exactly_as_the_fitted_one(saved_run: Path, name: str) -> None:
    cells = [c for c in RunStore(saved_run).latest().values() if c.method == name]
    (cell,) = cells
    if cell.model_dir is None:
        assert cell.model_note and "does not implement saving" in cell.model_note  # it says so
        pytest.skip(f"{name}: {cell.model_note}")
    plugin, stamp = load_saved(saved_run, saved_cell(saved_run, name))
    assert stamp.weights == "random" and stamp.threshold == cell.metrics.threshold
    scores = pd.read_parquet(saved_run / cell.scores_file)
    test = scores[scores["split"] == "test"]
    root = Path(cell.dataset_root)
    images = [np.asarray(Image.open(root / image).convert("RGB")) for image in test["image"]]
    np.testing.assert_allclose(plugin.predict(images).scores, test["score"].to_numpy(), rtol=1e-5, atol=1e-7)


def test_every_built_in_method_saves(saved_run: Path) -> None:
    saved = {c.method for c in RunStore(saved_run).latest().values() if c.model_dir}
    assert {"patchcore", "dino-knn", "ltfm", "anomalygpt", "winclip"} <= saved


def test_a_model_loads_in_a_fresh_process(saved_run: Path, tmp_path: Path) -> None:
    """`inspect` in a new interpreter: the page's scores are the cell's scores."""
    cell = saved_cell(saved_run, "patchcore")
    scores = pd.read_parquet(saved_run / cell.scores_file)
    test = scores[scores["split"] == "test"]
    folder = tmp_path / "images"
    folder.mkdir()
    for image in test["image"]:
        shutil.copy(Path(cell.dataset_root) / image, folder / Path(image).name)
    done = subprocess.run(
        [os.sys.executable, "-m", "benchmarks", "inspect", str(saved_run), str(folder), "--method", "patchcore",
         "--out", str(tmp_path / "page")], capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    page = json.loads((tmp_path / "page" / "qc-patchcore-k1.json").read_text())
    by_name = {item["name"]: item["score"] for item in page["images"]}
    expected = {Path(image).name: score for image, score in zip(test["image"], test["score"], strict=True)}
    assert by_name.keys() == expected.keys()
    np.testing.assert_allclose([by_name[k] for k in expected], list(expected.values()), rtol=1e-5)


def test_inspect_page_has_verdicts_bad_image_rows_and_the_weights_stamp(saved_run: Path, tmp_path: Path) -> None:
    cell = saved_cell(saved_run, "patchcore")
    root = Path(cell.dataset_root)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    args = ["inspect", str(saved_run), str(root / "images"), str(broken), str(tmp_path / "missing.png"),
            "--method", "patchcore", "--out", str(tmp_path / "page")]
    assert main(args) == 0
    page = json.loads((tmp_path / "page" / "qc-patchcore-k1.json").read_text())
    rows = {item["name"]: item for item in page["images"]}
    assert "error" in rows["broken.png"] and "error" in rows["missing.png"]
    read = [item for item in page["images"] if "error" not in item]
    assert len(read) == len(list((root / "images").glob("*.png")))
    threshold = page["model"]["threshold"]
    for item in read:
        assert item["verdict"] == ("ANOMALOUS" if item["score"] >= threshold else "normal")
        assert item["location"] in {"top left", "top", "top right", "left", "center", "right", "bottom left",
                                    "bottom", "bottom right"}
        assert (item["severity"] is None) == (item["verdict"] == "normal")
        x0, y0, x1, y1 = item["region"]
        assert 0 <= x0 < x1 <= item["size"][0] and 0 <= y0 < y1 <= item["size"][1]
    assert page["summary"]["errors"] == 2 and page["model"]["weights"] == "random"
    html = (tmp_path / "page" / "qc-patchcore-k1.html").read_text()
    assert "RANDOM WEIGHTS" in html and "http" not in html.split("<body", 1)[1]  # nothing fetched from a network


def test_inspect_the_test_split_outlines_the_truth(saved_run: Path, tmp_path: Path) -> None:
    assert main(["inspect", str(saved_run), "--split", "test", "--method", "patchcore", "--out", str(tmp_path)]) == 0
    page = json.loads((tmp_path / "qc-patchcore-k1.json").read_text())
    labelled = [item for item in page["images"] if "label" in item]
    assert len(labelled) == 12 and page["summary"]["labelled"] == 12
    assert sum(item["correct"] for item in labelled) == page["summary"]["correct"]
    html = (tmp_path / "qc-patchcore-k1.html").read_text()
    assert html.count('data-slot="truth"') == 6  # an outline image beside each anomaly's panels
    assert html.count('data-slot="capture"') == html.count('data-slot="map"') == html.count('data-slot="crop"') == 12


def test_inspect_refuses_a_run_without_saved_models(tmp_path: Path, tiny_manifest: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    run(RunConfig(methods=("patchcore",), datasets=(f"manifest:{tiny_manifest}",), seeds=(0,), variants=("k1",),
                  preset=get_preset("smoke"), weights="random", out=out,
                  method_options={"patchcore": dict(METHODS["patchcore"][1])}))
    assert main(["inspect", str(out), str(tiny_manifest.parent / "images"), "--method", "patchcore"]) == 2
    assert "run without --save-models" in capsys.readouterr().err


CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--virtual-time-budget=10000")


def _chromium() -> str:
    """Debian's Chromium (the README's test command installs it); a skip saying why when it is missing.

    A test never installs system packages itself."""
    found = shutil.which("chromium")
    if not found:
        pytest.skip("Chromium is not installed: the README's test command installs Debian's chromium "
                    "(apt-get install chromium) before the tests; without it this browser check cannot run")
    return found


def test_the_qc_page_renders_in_a_real_headless_browser(saved_run: Path, tmp_path: Path) -> None:
    """Chromium opens the page from a file URL; every embedded image decoded (the page's own script
    counts them) and every verdict is in the rendered DOM. A screenshot is kept beside the page."""
    browser = _chromium()
    assert main(["inspect", str(saved_run), "--split", "test", "--method", "patchcore", "--out", str(tmp_path)]) == 0
    page = tmp_path / "qc-patchcore-k1.html"
    data = json.loads((tmp_path / "qc-patchcore-k1.json").read_text())
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    dom = subprocess.run([browser, *CHROMIUM_FLAGS, *profile, "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=180).stdout
    total = int(dom.split('data-images-total="')[1].split('"')[0])
    assert total == 42  # per image the capture, its map and the region's crop; and 6 ground-truth outlines
    assert f'data-images-rendered="{total}"' in dom
    assert dom.count('data-rendered="yes"') == total
    for item in data["images"]:
        assert f'data-name="{item["name"]}" data-verdict="{item["verdict"]}"' in dom
    assert 'id="weights-stamp"' in dom and "RANDOM WEIGHTS" in dom
    shot = tmp_path / "qc-page.png"
    subprocess.run([browser, *CHROMIUM_FLAGS, *profile, f"--screenshot={shot}", "--window-size=1400,1800",
                    page.as_uri()], capture_output=True, text=True, timeout=180)
    assert shot.is_file() and shot.stat().st_size > 10_000
