"""The latency protocol's timing and summaries (SPEC 8) on a fake clock: warm-up calls are untimed,
every image is timed once at batch 1, throughput picks the fastest batch size, and the summary's
percentiles are those of the timed calls."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from benchmarks.running import latency


class FakeClock:
    """`time.perf_counter` that advances only when a predict call says how long it took."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(latency.time, "perf_counter", fake)
    return fake


def _images(n: int) -> list[np.ndarray]:
    return [np.full((4, 4, 3), i, dtype=np.uint8) for i in range(n)]


def test_time_call_measures_only_the_call(clock: FakeClock) -> None:
    def call() -> None:
        clock.now += 0.25

    assert latency.time_call(call, "cpu") == pytest.approx(0.25)


def test_batch1_latency_warms_up_untimed_then_times_each_image_alone(clock: FakeClock) -> None:
    calls: list[list[int]] = []

    def predict(batch: Sequence[np.ndarray]) -> None:
        calls.append([int(image[0, 0, 0]) for image in batch])
        clock.now += 0.010 * (1 + int(batch[0][0, 0, 0]))  # image i takes (i + 1) * 10 ms

    seconds = latency.batch1_latency(predict, _images(5), "cpu", warmup=2)
    assert calls == [[0], [1], [0], [1], [2], [3], [4]]  # two untimed warm-up calls, then one call per image
    assert seconds == pytest.approx([0.01, 0.02, 0.03, 0.04, 0.05])


def test_batch1_latency_warms_up_once_even_when_warmup_is_zero(clock: FakeClock) -> None:
    calls: list[int] = []

    def predict(batch: Sequence[np.ndarray]) -> None:
        calls.append(len(batch))

    assert len(latency.batch1_latency(predict, _images(3), "cpu", warmup=0)) == 3
    assert calls == [1, 1, 1, 1]


def test_best_throughput_picks_the_fastest_batch_size_and_skips_sizes_beyond_the_images(clock: FakeClock) -> None:
    sizes_seen: list[int] = []

    def predict(batch: Sequence[np.ndarray]) -> None:
        sizes_seen.append(len(batch))
        clock.now += {1: 0.10, 2: 0.12, 4: 0.30}[len(batch)]  # per call: batch 2 is the fastest per image

    ips, size = latency.best_throughput(predict, _images(5), "cpu", batch_sizes=(1, 2, 4, 8))
    assert size == 2
    assert ips == pytest.approx(4 / (2 * 0.12))  # 2 whole batches of 2 out of 5 images, 0.12 s each
    # each size: one warm-up batch, then floor(5 / size) timed batches; 8 > 5 images is not tried
    assert sizes_seen == [1] * 6 + [2] * 3 + [4] * 2


def test_best_throughput_with_no_usable_batch_size_is_none(clock: FakeClock) -> None:
    assert latency.best_throughput(lambda batch: None, _images(2), "cpu", batch_sizes=(4,)) == (None, None)


def test_a_zero_time_batch_gives_no_throughput_rather_than_infinity(clock: FakeClock) -> None:
    assert latency.best_throughput(lambda batch: None, _images(2), "cpu", batch_sizes=(1,)) == (None, None)


def test_summary_percentiles_are_those_of_the_timed_calls_in_milliseconds() -> None:
    batch1 = [0.010, 0.020, 0.030, 0.040, 0.100, 0.011, 0.012, 0.013, 0.014, 0.015, 0.500]
    summary = latency.summarise("cpu", batch1, (12.5, 4), fit_s=3.0, predict_s=7.0)
    ms = np.asarray(batch1) * 1000
    assert summary.batch1_p50_ms == pytest.approx(np.percentile(ms, 50)) == pytest.approx(15.0)
    assert summary.batch1_p95_ms == pytest.approx(np.percentile(ms, 95)) == pytest.approx(300.0)
    assert summary.batch1_mean_ms == pytest.approx(ms.mean())
    assert summary.n_timed == 11
    assert (summary.throughput_ips, summary.throughput_batch_size) == (12.5, 4)
    assert (summary.fit_s, summary.predict_s, summary.device) == (3.0, 7.0, "cpu")
    assert summary.peak_mem_kind == "max_rss" and summary.peak_mem_mb is not None and summary.peak_mem_mb > 10


def test_summary_without_timed_calls_has_no_percentiles() -> None:
    summary = latency.summarise("cpu", [], (None, None), fit_s=None, predict_s=None)
    assert (summary.batch1_p50_ms, summary.batch1_p95_ms, summary.batch1_mean_ms, summary.n_timed) == (None, None, None, 0)
    assert (summary.throughput_ips, summary.throughput_batch_size, summary.fit_s, summary.predict_s) == (None,) * 4


def test_peak_memory_is_the_process_max_rss_in_mib_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    class Usage:
        ru_maxrss = 2048 * 1024  # KiB on Linux

    monkeypatch.setattr(latency.resource, "getrusage", lambda who: Usage())
    monkeypatch.setattr(latency.sys, "platform", "linux")
    assert latency.peak_memory_mb("cpu") == (2048.0, "max_rss")
    monkeypatch.setattr(latency.sys, "platform", "darwin")  # bytes on macOS
    assert latency.peak_memory_mb("cpu") == (2.0, "max_rss")


def test_best_throughput_tries_a_batch_of_all_images_and_sizes_in_any_order(clock: FakeClock) -> None:
    def predict(batch: Sequence[np.ndarray]) -> None:
        clock.now += {1: 0.10, 4: 0.20}[len(batch)]

    # 4 == len(images) is tried; listing the larger size first does not stop the smaller one
    assert latency.best_throughput(predict, _images(4), "cpu", batch_sizes=(8, 4, 1)) == (pytest.approx(20.0), 4)
    assert latency.best_throughput(predict, _images(4), "cpu", batch_sizes=(8, 1)) == (pytest.approx(10.0), 1)


def test_best_throughput_keeps_the_first_of_equally_fast_sizes(clock: FakeClock) -> None:
    def predict(batch: Sequence[np.ndarray]) -> None:
        clock.now += 0.125 * len(batch)  # exact in binary: every size ties at 8 images/s

    assert latency.best_throughput(predict, _images(4), "cpu", batch_sizes=(1, 2, 4))[1] == 1


def test_one_timed_call_is_its_own_percentiles() -> None:
    summary = latency.summarise("cpu", [0.02], (None, None), fit_s=None, predict_s=None)
    assert (summary.batch1_p50_ms, summary.batch1_p95_ms, summary.batch1_mean_ms, summary.n_timed) == (
        pytest.approx(20.0), pytest.approx(20.0), pytest.approx(20.0), 1)


class FakeCuda:
    """torch.cuda as seen from the latency code, on a machine without a GPU."""

    def __init__(self) -> None:
        self.synchronized: list[object] = []
        self.asked: list[object] = []

    def is_available(self) -> bool:
        return True

    def synchronize(self, device: object) -> None:
        self.synchronized.append(device)

    def max_memory_allocated(self, device: object) -> int:
        self.asked.append(device)
        return 3 * 2**20


def test_on_a_gpu_calls_are_synchronised_and_memory_is_cuda_max_allocated(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    cuda = FakeCuda()
    monkeypatch.setattr(latency.torch, "cuda", cuda)
    assert latency.peak_memory_mb("cuda:1") == (3.0, "cuda_max_allocated")
    assert cuda.asked == [torch.device("cuda:1")]
    latency.time_call(lambda: None, "cuda:1")
    assert cuda.synchronized == [torch.device("cuda:1")] * 2  # before and after the timed call
    cuda.synchronized.clear()
    latency.synchronize("cpu")  # a CPU cell never waits on the GPU, even where one exists
    assert latency.peak_memory_mb("cpu")[1] == "max_rss" and cuda.synchronized == []


def test_without_a_gpu_a_cuda_device_falls_back_to_max_rss(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = FakeCuda()
    monkeypatch.setattr(cuda, "is_available", lambda: False)
    monkeypatch.setattr(latency.torch, "cuda", cuda)
    latency.synchronize("cuda")
    assert latency.peak_memory_mb("cuda")[1] == "max_rss" and cuda.synchronized == [] and cuda.asked == []
