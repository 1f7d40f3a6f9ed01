"""Latency protocol (SPEC 8): warm-up, batch-1 per-image timings, throughput, peak memory.

Timed like timm's benchmark: `time.perf_counter`, untimed warm-up calls first, and
`torch.cuda.synchronize()` before and after each timed call on GPU. The timed call is the
plugin's whole `predict` (preprocessing included), never a cached feature lookup.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from benchmarks.results.record import CellLatency


def synchronize(device: str) -> None:
    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.synchronize(torch.device(device))


def time_call(fn: Callable[[], object], device: str) -> float:
    """Seconds for one call of `fn`, synchronised on GPU."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def batch1_latency(
    predict: Callable[[Sequence[np.ndarray]], object], images: Sequence[np.ndarray], device: str, warmup: int
) -> list[float]:
    """Per-image seconds at batch size 1 over `images`, after `warmup` untimed calls."""
    for image in list(images)[:warmup] or list(images)[:1]:
        predict([image])
    return [time_call(lambda image=image: predict([image]), device) for image in images]


def best_throughput(
    predict: Callable[[Sequence[np.ndarray]], object],
    images: Sequence[np.ndarray],
    device: str,
    batch_sizes: Sequence[int],
) -> tuple[float | None, int | None]:
    """Images/s at the best of `batch_sizes` (each timed over the same images after one warm-up batch)."""
    best: tuple[float | None, int | None] = (None, None)
    for size in batch_sizes:
        if size > len(images):
            continue
        n_batches = max(1, len(images) // size)
        chunks = [list(images[i * size : (i + 1) * size]) for i in range(n_batches)]
        predict(chunks[0])
        seconds = sum(time_call(lambda chunk=chunk: predict(chunk), device) for chunk in chunks)
        ips = n_batches * size / seconds if seconds > 0 else None
        if ips is not None and (best[0] is None or ips > best[0]):
            best = (ips, size)
    return best


def peak_memory_mb(device: str) -> tuple[float, str]:
    """Peak memory of this process: max allocated on GPU, else max RSS (the cell runs in its own process)."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated(torch.device(device)) / 2**20, "cuda_max_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (rss / 2**20 if sys.platform == "darwin" else rss / 1024), "max_rss"


def summarise(
    device: str,
    batch1_s: Sequence[float],
    throughput: tuple[float | None, int | None],
    fit_s: float | None,
    predict_s: float | None,
) -> CellLatency:
    ms = np.asarray(batch1_s, dtype=np.float64) * 1000.0
    peak, kind = peak_memory_mb(device)
    have = ms.size > 0
    return CellLatency(
        device=device,
        batch1_p50_ms=float(np.percentile(ms, 50)) if have else None,
        batch1_p95_ms=float(np.percentile(ms, 95)) if have else None,
        batch1_mean_ms=float(ms.mean()) if have else None,
        n_timed=int(ms.size),
        throughput_ips=throughput[0],
        throughput_batch_size=throughput[1],
        fit_s=fit_s,
        predict_s=predict_s,
        peak_mem_mb=float(peak),
        peak_mem_kind=kind,
    )
