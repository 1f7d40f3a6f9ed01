"""Greedy k-centre coreset picks per second: ours (`greedy_coreset`) and anomalib's `KCenterGreedy`.

Ours runs at a PatchCore-sized problem (20,000 x 1536 at 10 %: 2,000 picks) and, like
anomalib's, at 5,000 x 1536 with 250 picks, where both also report the covering radius of their
coreset (the largest distance from a row to its nearest pick, in the full 1536 dims; smaller is
better). Picks per second are in `extra_info`.

    .venv/bin/pytest tests/benchmarks/test_coreset_bench.py --benchmark-only -q
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from anomalib.models.components.sampling import KCenterGreedy

from baselines.neighbours import NearestNeighbourIndex, greedy_coreset

SMALL_ROWS, SMALL_PICKS = 5_000, 250


def _covering_radius(features: np.ndarray, picks: list[int] | np.ndarray) -> float:
    return float(NearestNeighbourIndex(features[np.asarray(picks)], kind="flat").search(features).max())


def _record(benchmark, features: np.ndarray, picks: list[int] | np.ndarray, expected: int) -> None:
    assert len(picks) == expected == len(set(np.asarray(picks).tolist()))
    benchmark.extra_info["picks_per_s"] = expected / benchmark.stats.stats.mean
    benchmark.extra_info["covering_radius"] = _covering_radius(features, picks)


@pytest.mark.benchmark(group="coreset 20000x1536, 10 %")
def test_greedy_coreset_patchcore_size(benchmark, features: Callable[[int, int, int], np.ndarray]) -> None:
    feats = features(20_000, 1536, 0)
    picks = benchmark.pedantic(greedy_coreset, args=(feats, 0.1), kwargs={"seed": 0}, rounds=3, iterations=1)
    _record(benchmark, feats, picks, 2_000)


@pytest.mark.benchmark(group=f"coreset {SMALL_ROWS}x1536, {SMALL_PICKS} picks")
def test_greedy_coreset_small(benchmark, features: Callable[[int, int, int], np.ndarray]) -> None:
    feats = features(SMALL_ROWS, 1536, 0)
    picks = benchmark.pedantic(greedy_coreset, args=(feats, SMALL_PICKS / SMALL_ROWS), rounds=3, iterations=1)
    _record(benchmark, feats, picks, SMALL_PICKS)


@pytest.mark.benchmark(group=f"coreset {SMALL_ROWS}x1536, {SMALL_PICKS} picks")
def test_anomalib_kcenter_greedy_small(benchmark, features: Callable[[int, int, int], np.ndarray]) -> None:
    feats = features(SMALL_ROWS, 1536, 0)
    embedding = torch.from_numpy(feats)

    def select() -> list[int]:
        torch.manual_seed(0)  # its first pick is torch.randint
        return KCenterGreedy(embedding, sampling_ratio=SMALL_PICKS / SMALL_ROWS).select_coreset_idxs()

    picks = benchmark.pedantic(select, rounds=3, iterations=1)
    _record(benchmark, feats, picks, SMALL_PICKS)
