"""A cell streams its test set: memory does not grow with the number of test images (beyond the
scores and the stored 64x64 maps), and what streaming computes is what the whole-set code computes."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import dummy_plugins  # noqa: F401  (registers mean-brightness)
import numpy as np
import pytest
from conftest import write_tiny_manifest

from benchmarks import metrics
from benchmarks.data.loaders import load_dataset
from benchmarks.running.cell import MAP_STORE_SIZE, load_samples, run_cell
from benchmarks.running.config import CellSpec, RunConfig
from benchmarks.running.presets import get_preset

SIDE = 160


def _cell_peak_mb(tmp_path: Path, n_test: int, monkeypatch: pytest.MonkeyPatch, trace: bool = True
                  ) -> tuple[float, object]:
    """tracemalloc's peak (numpy and torch CPU buffers are traced) of one mean-brightness cell over
    `n_test` test images per class, with the pixel sample capped small so the sample is the same
    size at both test-set sizes."""
    monkeypatch.setattr(metrics.pixel, "DEFAULT_MAX_PIXELS", 2**15)
    manifest = write_tiny_manifest(tmp_path / f"data{n_test}", n_train=4, n_val=2, n_test=n_test, size=SIDE)
    preset = get_preset("smoke").with_overrides(max_eval_images=None, bootstrap_samples=10)
    config = RunConfig(methods=("mean-brightness",), datasets=(f"manifest:{manifest}",), seeds=(0,),
                       preset=preset, out=tmp_path / f"run{n_test}", feature_cache=False)
    load_dataset(f"manifest:{manifest}")  # the manifest's own checks are not the cell's memory
    if trace:
        tracemalloc.start()
    try:
        outcome = run_cell(config, CellSpec("mean-brightness", "default", f"manifest:{manifest}", 0), None,
                           config.out)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert outcome.status == "ok", outcome.error
    return peak / 2**20, outcome


def test_a_cells_memory_does_not_grow_with_its_test_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Held whole, each extra test image costs its decoded image (75 KB), its mask (25 KB) and its map at
    # image size (100 KB float32, more in copies): 4x the test images would add > 30 MB.
    _cell_peak_mb(tmp_path, 2, monkeypatch, trace=False)  # first imports and the GEMM probe, untraced
    small, _ = _cell_peak_mb(tmp_path, 20, monkeypatch)
    large, outcome = _cell_peak_mb(tmp_path, 80, monkeypatch)
    per_image_kb = (large - small) * 1024 / 120
    assert per_image_kb < 40, f"peak grew {large - small:.1f} MB for 120 more test images ({per_image_kb:.0f} KB each)"
    assert outcome.counts.n_test == 160
    assert outcome.maps is not None and outcome.maps.maps.shape == (160, MAP_STORE_SIZE, MAP_STORE_SIZE)


def test_streamed_pixel_metrics_equal_the_whole_set_computation(tmp_path: Path) -> None:
    """The cell's streamed pixel AUROC / AUPRO against `pixel_metrics` over every map and mask at once."""
    from dummy_plugins import MeanBrightness

    manifest = write_tiny_manifest(tmp_path / "data", n_train=4, n_val=2, n_test=12, size=64)
    preset = get_preset("smoke").with_overrides(max_eval_images=None)
    config = RunConfig(methods=("mean-brightness",), datasets=(f"manifest:{manifest}",), seeds=(0,),
                       preset=preset, out=tmp_path / "run", feature_cache=False)
    outcome = run_cell(config, CellSpec("mean-brightness", "default", f"manifest:{manifest}", 0), None, config.out)
    assert outcome.status == "ok", outcome.error
    dataset = load_dataset(f"manifest:{manifest}")
    train = load_samples([r for r in dataset.split("train")], with_masks=False)
    test = load_samples(list(dataset.split("test")), with_masks=True)
    plugin = MeanBrightness.__new__(MeanBrightness)
    plugin.fit(train)
    maps = plugin.predict([s.image for s in test]).maps
    expected = metrics.pixel_metrics(
        [metrics.resize_map(m, s.image.shape[:2]) for m, s in zip(maps, test, strict=True)],
        [s.mask if s.mask is not None else np.zeros(s.image.shape[:2], bool) for s in test])
    assert outcome.metrics.pixel_auroc == pytest.approx(expected.pixel_auroc, abs=1e-12)
    assert outcome.metrics.aupro == pytest.approx(expected.aupro, abs=1e-12)
    small = np.stack([metrics.resize_map(m, (MAP_STORE_SIZE, MAP_STORE_SIZE)) for m in maps]).astype(np.float16)
    np.testing.assert_array_equal(outcome.maps.maps, small)


def test_the_accumulator_draws_the_whole_set_sample() -> None:
    """Fed one image at a time with the total announced, the sample (and so the numbers) is the one
    `pixel_metrics` draws over the lists, also when the cap subsamples."""
    rng = np.random.default_rng(3)
    maps = [rng.random((40, 50)) for _ in range(6)]
    masks = [np.zeros((40, 50), bool) for _ in range(6)]
    for i in (1, 4):
        masks[i][10:20, 5:25] = True
        maps[i][10:20, 5:25] += 0.4
    whole = metrics.pixel_metrics(maps, masks, max_pixels=3000)
    accumulator = metrics.PixelAccumulator(6 * 40 * 50, max_pixels=3000)
    for i, (m, k) in enumerate(zip(maps, masks, strict=True)):
        accumulator.add(m, k, i)
    assert accumulator.result() == whole
    assert whole.pixel_fraction < 0.3
