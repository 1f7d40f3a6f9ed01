"""k=1 nearest-neighbour search: faiss exact, faiss approximate (`NearestNeighbourIndex`) and torch.

Two banks of 1536-dim rows (wide_resnet50 layers 2+3, PatchCore's width): a PatchCore coreset
(12,000 rows, one 224 px image's 784 patches as queries) and a large bank (200,000 rows, 1,000
queries), above `EXACT_SEARCH_LIMIT`, where `kind="auto"` switches to IVF. The torch baseline
is what a careful user writes: `torch.cdist` + `topk` over chunks of 250 queries. Index builds
happen once, outside the timing (their seconds are in `extra_info`); each search is timed 3
times. Accuracy is measured against a torch brute force on the first 200 queries.

    .venv/bin/pytest tests/benchmarks/test_knn_bench.py --benchmark-only -q
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from baselines.neighbours import NearestNeighbourIndex

CHECKED_QUERIES = 200


@dataclass(frozen=True)
class Problem:
    name: str
    bank: np.ndarray
    queries: np.ndarray
    nearest: np.ndarray  # exact distances of the first CHECKED_QUERIES queries


def cdist_topk(bank: torch.Tensor, queries: torch.Tensor, k: int = 1, chunk: int = 250) -> torch.Tensor:
    """`(Q, k)` Euclidean distances by `torch.cdist`, at most `(chunk, N)` distances in memory."""
    return torch.cat([torch.cdist(part, bank).topk(k, dim=1, largest=False).values for part in queries.split(chunk)])


@pytest.fixture(scope="module", params=[(12_000, 784), (200_000, 1_000)], ids=["patchcore-12k", "bank-200k"])
def problem(request: pytest.FixtureRequest, features: Callable[[int, int, int], np.ndarray]) -> Problem:
    rows, n_queries = request.param
    bank, queries = features(rows, 1536, 0), features(n_queries, 1536, 1)
    nearest = cdist_topk(torch.from_numpy(bank), torch.from_numpy(queries[:CHECKED_QUERIES]))[:, 0].numpy()
    return Problem(f"{rows}x1536, {n_queries} queries", bank, queries, nearest)


@pytest.mark.parametrize("method", ["faiss-flat", "faiss-ivf", "faiss-hnsw", "torch-cdist"])
def test_knn_search(benchmark, problem: Problem, method: str) -> None:
    if method == "faiss-hnsw" and len(problem.bank) > 50_000:
        pytest.skip("an HNSW graph of 200k x 1536 takes many minutes to build on 2 cores")
    benchmark.group = f"kNN k=1, {problem.name}"
    if method == "torch-cdist":
        bank, queries = torch.from_numpy(problem.bank), torch.from_numpy(problem.queries)
        found = benchmark.pedantic(lambda: cdist_topk(bank, queries).numpy(), rounds=3, iterations=1)
    else:
        start = time.perf_counter()
        index = NearestNeighbourIndex(problem.bank, kind=method.removeprefix("faiss-"), seed=0)
        benchmark.extra_info["build_s"] = time.perf_counter() - start
        if index.kind == "ivf":
            benchmark.extra_info.update(nlist=index.nlist, nprobe=index.nprobe)
        found = benchmark.pedantic(index.search, args=(problem.queries, 1), rounds=3, iterations=1)
    assert found.shape == (len(problem.queries), 1)
    checked = found[:CHECKED_QUERIES, 0]
    recall = float(np.mean(np.isclose(checked, problem.nearest, rtol=0, atol=1e-3)))
    benchmark.extra_info["recall_at_1"] = recall
    if method in ("faiss-flat", "torch-cdist"):
        np.testing.assert_allclose(checked, problem.nearest, rtol=0, atol=1e-3)
    else:
        assert recall >= 0.9 and (checked >= problem.nearest - 1e-3).all()
