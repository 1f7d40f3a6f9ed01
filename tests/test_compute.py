"""FLOPs of a prediction and this machine's GEMM peak (`benchmarks.running.compute`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.running import compute


def test_flops_of_a_prediction_are_the_products_it_runs() -> None:
    """A 3-layer network at known sizes: 2 * M * K * N per matrix product, 2 * C_out * C_in * k^2 * H * W per convolution."""
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    linear = torch.nn.Linear(8 * 16 * 16, 10)

    def predict(images: list[np.ndarray]) -> np.ndarray:
        x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
        with torch.no_grad():
            return linear(conv(x).flatten(1)).numpy()

    expected = 2 * 8 * 3 * 3 * 3 * 16 * 16 + 2 * 8 * 16 * 16 * 10
    assert compute.flops_per_image(predict, np.zeros((16, 16, 3), np.uint8)) == expected



@pytest.mark.parametrize("batch_first", [True, False])
def test_attention_is_counted_whole_in_inference_mode(batch_first: bool) -> None:
    """`nn.MultiheadAttention` in eval + inference mode runs one fused op the counter cannot see; the
    count must still be its projections (2·L·E·3E in, 2·L·E·E out) plus 4·H·L·S·(E/H) for attention."""
    length, width, heads = 10, 64, 4
    attention = torch.nn.MultiheadAttention(width, heads, batch_first=batch_first).eval()

    def predict(images: list[np.ndarray]) -> torch.Tensor:
        x = torch.from_numpy(np.stack(images)).float().reshape(len(images), length, width)
        x = x if batch_first else x.transpose(0, 1)
        with torch.inference_mode():
            return attention(x, x, x, need_weights=False)[0]

    expected = 2 * length * width * 3 * width + 4 * length * length * width + 2 * length * width * width
    assert compute.flops_per_image(predict, np.zeros((length, width), np.uint8)) == expected
    assert torch.backends.mha.get_fastpath_enabled()  # restored after counting

def test_gemm_peak_measures_each_library_and_keeps_the_best() -> None:
    peak = compute.gemm_peak(seconds_per_shape=0.01)
    assert set(peak.per_library) == set(compute.cpu_libraries()) >= {"torch", "numpy"}
    assert peak.gflops == max(peak.per_library.values()) > 0.5  # any CPU of this decade does 0.5 GFLOP/s
    assert peak.library in peak.per_library


def test_machine_peak_is_measured_once_per_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCHMARKS_CACHE", str(tmp_path))
    calls = []
    monkeypatch.setattr(compute, "gemm_peak", lambda device="cpu": calls.append(device) or compute.GemmPeak(
        123.0, "numpy", {"torch": 100.0, "numpy": 123.0}))
    first = compute.machine_gemm_peak()
    again = compute.machine_gemm_peak()
    assert first == again and calls == ["cpu"]
    (entry,) = json.loads((tmp_path / "gemm-peak.json").read_text()).values()
    assert entry["gflops"] == 123.0 and entry["library"] == "numpy"
    # a run measures again; a lower (busier) measurement does not replace the best one, a higher one does
    for measured, kept in ((50.0, 123.0), (150.0, 150.0)):
        monkeypatch.setattr(compute, "gemm_peak", lambda device="cpu", v=measured: compute.GemmPeak(
            v, "torch", {"torch": v, "numpy": 1.0}))
        assert compute.machine_gemm_peak(measure=True).gflops == kept
