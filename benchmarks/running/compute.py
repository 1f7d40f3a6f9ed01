"""How much arithmetic a prediction is, and how fast this machine can do arithmetic at all.

`flops_per_image` counts the floating-point operations of one batch-1 `predict` with torch's own
counter (`torch.utils.flop_counter.FlopCounterMode`: matrix products, convolutions and attention
of torch ops; work done outside torch, such as a faiss nearest-neighbour search or numpy code,
is not counted, so the figure is a lower bound for such methods). `gemm_peak` measures the best
sustained fp32 matrix-product rate of this machine at batch-1 transformer shapes, across the
GEMM libraries the process has (torch's BLAS, numpy's, and oneDNN with packed weights). The
latency record divides one by the other: achieved GFLOP/s of a prediction and its share of the
machine's GEMM rate, the "how close to the limit" figure of every cell on any hardware.
`gemm_path` picks, from the same measurement, the path backbones run on (`benchmarks.plugins.gemm_path`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from benchmarks.plugins.gemm_path import EAGER, ONEDNN_PACKED, onednn_available, pack_weight, packed_linear

PROBE_SHAPES: tuple[tuple[int, int, int], ...] = ((197, 768, 768), (197, 768, 3072), (197, 3072, 768),
                                                 (577, 1024, 4096), (1024, 1024, 1024))
"""(M, K, N) of the probe's products: ViT-B/16 at 224 px, batch 1 (197 tokens, width 768, MLP 3072),
a ViT-L-sized layer, and a square product."""


def _cpu_attention_flops(query_shape: torch.Size, key_shape: torch.Size, value_shape: torch.Size,
                         *args: object, out_shape: object = None, **kwargs: object) -> int:
    return int(sdpa_flop_count(query_shape, key_shape, value_shape))


def _packed_linear_flops(x_shape: torch.Size, weight_shape: torch.Size, *args: object, out_shape: object = None,
                         **kwargs: object) -> int:
    rows = int(np.prod(x_shape[:-1]))
    return 2 * rows * int(weight_shape[0]) * int(weight_shape[1])


UNCOUNTED_BY_TORCH: dict[object, Callable[..., int]] = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops,
    **({torch.ops.mkldnn._linear_pointwise: _packed_linear_flops} if onednn_available() else {}),
}
"""Ops torch's counter has no formula for: the CPU kernel of `scaled_dot_product_attention`
(counted like its GPU kernels, 4·B·H·L·S·E) and the oneDNN linear of the packed GEMM path (2·M·K·N)."""


def flops_per_image(predict: Callable[[Sequence[np.ndarray]], object], image: np.ndarray) -> int:
    """Floating-point operations torch performs in `predict([image])` (a multiply-add counts as two).

    While counting, `nn.MultiheadAttention`'s fused inference path is off: its one fused op
    (`_native_multi_head_attention`, projections and attention together) is invisible to the
    counter, which undercounted a CLIP ViT by a third. Off, the same arithmetic runs as linear
    layers and `scaled_dot_product_attention`, which are counted.
    """
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with FlopCounterMode(display=False, custom_mapping=UNCOUNTED_BY_TORCH) as counter:
            predict([image])
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return int(counter.get_total_flops())


@dataclass(frozen=True)
class GemmPeak:
    """The best fp32 GEMM rate measured, which library reached it, and each library's best."""

    gflops: float
    library: str
    per_library: dict[str, float]

    def to_json(self) -> dict[str, object]:
        return {"gflops": self.gflops, "library": self.library, "per_library": dict(self.per_library)}


def gemm_peak(seconds_per_shape: float = 0.25, device: str = "cpu") -> GemmPeak:
    """Best sustained fp32 GFLOP/s over `PROBE_SHAPES` per library of `cpu_libraries()` (CPU), or torch on a GPU."""
    rates: dict[str, float] = {}
    for library in cpu_libraries() if device == "cpu" else ("torch",):
        best = 0.0
        for m, k, n in PROBE_SHAPES:
            best = max(best, _rate(library, m, k, n, seconds_per_shape, device))
        rates[library] = best
    library = max(rates, key=lambda name: rates[name])
    return GemmPeak(gflops=rates[library], library=library, per_library=rates)


def cpu_libraries() -> tuple[str, ...]:
    """The CPU GEMM libraries the probe measures: torch's BLAS, numpy's, and oneDNN with packed
    weights (the `onednn-packed` path of `benchmarks.plugins.gemm_path`) where torch has it."""
    return ("torch", "numpy", "onednn") if onednn_available() else ("torch", "numpy")


def _rate(library: str, m: int, k: int, n: int, seconds: float, device: str) -> float:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((m, k), dtype=np.float32), rng.standard_normal((k, n), dtype=np.float32)
    if library == "onednn":
        x, packed = torch.from_numpy(a), pack_weight(torch.from_numpy(np.ascontiguousarray(b.T)))

        def product() -> None:
            packed_linear(x, packed, None)
    elif library == "torch":
        ta, tb = torch.from_numpy(a).to(device), torch.from_numpy(b).to(device)

        def product() -> None:
            torch.mm(ta, tb)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
    else:
        def product() -> None:
            np.dot(a, b)
    product()  # warm-up: thread pools, packing buffers
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or calls < 3:
        product()
        calls += 1
    return 2.0 * m * k * n * calls / elapsed / 1e9


PROBE_VERSION = "probe-2"
"""Part of the cache key: bumped when the probe measures something new (2: oneDNN packed)."""


def machine_gemm_peak(device: str = "cpu", measure: bool = False) -> GemmPeak:
    """This machine configuration's GEMM peak: the best `gemm_peak` ever measured for it, kept in the
    cache folder (`gemm-peak.json`, keyed by CPU model, thread count, device and library versions).

    `measure`: measure now and keep the better of the two (a busy machine measures low, so the
    best measurement stands); otherwise measure only when nothing is known yet.
    """
    from benchmarks.data.cache import cache_root
    from benchmarks.running.environment import cpu_model

    key = "|".join([PROBE_VERSION, cpu_model(), str(torch.get_num_threads()), device, torch.__version__,
                    np.__version__])
    path = cache_root() / "gemm-peak.json"
    try:
        known = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    entry = known.get(key)
    best = None if entry is None else GemmPeak(float(entry["gflops"]), str(entry["library"]), dict(entry["per_library"]))
    if best is not None and not measure:
        return best
    fresh = gemm_peak(device=device)
    if best is not None and best.gflops >= fresh.gflops:
        return best
    known[key] = fresh.to_json()
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_suffix(f".{os.getpid()}.tmp")
    scratch.write_text(json.dumps(known, indent=2), encoding="utf-8")
    os.replace(scratch, path)
    return fresh


@dataclass(frozen=True)
class GemmPathChoice:
    """Which path `benchmarks.plugins.gemm_path` runs backbones on, and why."""

    path: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


GEMM_PATH_ENV = "BENCHMARKS_GEMM_PATH"


def gemm_path(device: str = "cpu") -> GemmPathChoice:
    """The faster of torch's BLAS and oneDNN with packed weights, by this machine's GEMM probe
    (`machine_gemm_peak`); `BENCHMARKS_GEMM_PATH=eager|onednn-packed` forces one (for side-by-side timing).

    GPUs keep torch's own path (cuBLAS); numpy's BLAS is measured for the peak but cannot run a module.
    """
    forced = os.environ.get(GEMM_PATH_ENV)
    if forced:
        if forced not in (EAGER, ONEDNN_PACKED):
            raise ValueError(f"{GEMM_PATH_ENV} must be {EAGER} or {ONEDNN_PACKED}, got {forced!r}")
        return GemmPathChoice(forced, f"forced by {GEMM_PATH_ENV}")
    if device != "cpu":
        return GemmPathChoice(EAGER, f"{device}: torch's own kernels")
    if not onednn_available():
        return GemmPathChoice(EAGER, "this torch build has no oneDNN linear kernels")
    rates = machine_gemm_peak(device).per_library
    torch_rate, onednn_rate = rates.get("torch", 0.0), rates.get("onednn", 0.0)
    measured = f"oneDNN packed {onednn_rate:.0f} GFLOP/s vs torch BLAS {torch_rate:.0f} GFLOP/s"
    return GemmPathChoice(ONEDNN_PACKED if onednn_rate > torch_rate else EAGER, measured)
