"""NearestNeighbourIndex against brute-force numpy: exact kinds, approximate recall, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from baselines.neighbours import NearestNeighbourIndex


def _random(rows: int, dim: int = 24, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)


def _clustered(rows: int, seed: int, centres: int = 40, dim: int = 32) -> np.ndarray:
    """Rows scattered tightly around shared centres: the structure IVF and HNSW rely on."""
    rng = np.random.default_rng(seed)
    means = np.random.default_rng(99).standard_normal((centres, dim))
    points = means[rng.integers(centres, size=rows)] + 0.15 * rng.standard_normal((rows, dim))
    return points.astype(np.float32)


def _brute(bank: np.ndarray, queries: np.ndarray, metric: str) -> np.ndarray:
    """`(Q, N)` distances in float64: Euclidean, or 1 - cosine."""
    b, q = bank.astype(np.float64), queries.astype(np.float64)
    if metric == "l2":
        return np.sqrt(np.maximum((q**2).sum(1)[:, None] + (b**2).sum(1)[None] - 2 * q @ b.T, 0.0))
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return 1.0 - q @ b.T


@pytest.mark.parametrize("kind", ["flat", "torch"])
@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_exact_kinds_equal_brute_force_with_k_sorted(kind: str, metric: str) -> None:
    bank, queries = _random(500), _random(60, seed=1)
    got = NearestNeighbourIndex(bank, metric, kind).search(queries, k=5)
    assert got.shape == (60, 5) and got.dtype == np.float32
    expected = np.sort(_brute(bank, queries, metric), axis=1)[:, :5]
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    assert (np.diff(got, axis=1) >= 0).all()  # nearest first


def test_torch_inputs_and_zero_query_rows() -> None:
    bank = torch.from_numpy(_random(100))
    index = NearestNeighbourIndex(bank, "cosine")
    assert index.kind == "flat" and index.shape == (100, 24)
    queries = torch.from_numpy(_random(3, seed=2)).half()
    queries[0] = 0  # cosine similarity 0 with every row, not a division by zero
    got = index.search(queries)
    assert got[0, 0] == pytest.approx(1.0)
    expected = _brute(bank.numpy(), queries[1:].float().numpy(), "cosine").min(axis=1)
    np.testing.assert_allclose(got[1:, 0], expected, atol=1e-3)


@pytest.mark.parametrize("kind", ["auto", "hnsw"])
@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_approximate_kinds_recall_on_clustered_data(kind: str, metric: str) -> None:
    bank, queries = _clustered(2000, seed=0), _clustered(200, seed=1)
    index = NearestNeighbourIndex(bank, metric, kind, exact_limit=500)
    assert index.kind == ("ivf" if kind == "auto" else "hnsw")
    got = index.search(queries, k=3)
    exact = np.sort(_brute(bank, queries, metric), axis=1)[:, :3]
    recall = np.mean(np.isclose(got[:, 0], exact[:, 0], atol=1e-4))
    assert recall >= 0.9
    assert (got >= exact - 1e-4).all() and (np.diff(got, axis=1) >= 0).all()  # never nearer than the truth


def test_ivf_is_seeded_and_falls_back_when_probed_lists_are_short() -> None:
    bank, queries = _clustered(1200, seed=0), _clustered(50, seed=1)
    first = NearestNeighbourIndex(bank, kind="ivf", nlist=30, nprobe=1, seed=3)
    second = NearestNeighbourIndex(bank, kind="ivf", nlist=30, nprobe=1, seed=3)
    np.testing.assert_array_equal(first.search(queries, k=2), second.search(queries, k=2))
    # k above any one list's length: every query is searched again over all lists, i.e. exactly
    got = first.search(queries, k=200)
    np.testing.assert_allclose(got, np.sort(_brute(bank, queries, "l2"), axis=1)[:, :200], atol=1e-3)


def test_ivf_trains_on_a_seeded_subsample_of_a_large_bank() -> None:
    """1200 rows, 4 lists: k-means sees 4 x 64 = 256 seeded rows. Same seed, same lists; another
    seed, other lists; the search stays exact where every list is probed."""
    bank, queries = _clustered(1200, seed=0), _clustered(50, seed=1)

    def centroids(index: NearestNeighbourIndex) -> np.ndarray:
        quantizer, _ = index._ivf_parts
        return quantizer.reconstruct_n(0, index.nlist)

    first, again = (NearestNeighbourIndex(bank, kind="ivf", nlist=4, nprobe=4, seed=3) for _ in range(2))
    other = NearestNeighbourIndex(bank, kind="ivf", nlist=4, nprobe=4, seed=4)
    np.testing.assert_array_equal(centroids(first), centroids(again))
    assert not np.allclose(centroids(first), centroids(other))
    np.testing.assert_allclose(first.search(queries, k=2), np.sort(_brute(bank, queries, "l2"), axis=1)[:, :2],
                               atol=1e-3)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_the_exhaustive_fallback_searches_the_full_precision_rows(kind: str) -> None:
    bank, queries = _clustered(800, seed=0), _clustered(20, seed=1)
    index = NearestNeighbourIndex(bank, kind=kind, nlist=8)
    got = index._search_exhaustive(np.ascontiguousarray(queries), 3)
    np.testing.assert_allclose(np.sqrt(np.maximum(got, 0)), np.sort(_brute(bank, queries, "l2"), axis=1)[:, :3],
                               atol=1e-3)


def test_the_torch_kind_takes_float64_and_grad_tracking_queries() -> None:
    bank, queries = _random(50), _random(6, seed=1)
    index = NearestNeighbourIndex(torch.from_numpy(bank), "cosine", "torch")
    expected = np.sort(_brute(bank, queries, "cosine"), axis=1)[:, :2]
    np.testing.assert_allclose(index.search(queries.astype(np.float64), k=2), expected, atol=1e-5)
    tracked = torch.from_numpy(queries).requires_grad_(True)
    np.testing.assert_allclose(index.search(tracked, k=2), expected, atol=1e-5)


def test_kinds_defaults_and_bounds() -> None:
    """The index each kind builds, the IVF list and probe defaults, and the edges of the allowed ranges."""
    import faiss

    assert type(NearestNeighbourIndex(_random(50), kind="flat")._index) is faiss.IndexFlat
    big = NearestNeighbourIndex(_random(10_000, dim=4), kind="hnsw")
    assert (big.nlist, big.nprobe) == (100, 16)  # sqrt(10000); max(16, 100 // 16)
    assert NearestNeighbourIndex(_random(1170, dim=4), kind="hnsw").nlist == 30  # 1170 // 39 < sqrt(1170)
    assert NearestNeighbourIndex(_random(50)).search(_random(3)).shape == (3, 1)  # k = 1 by default
    assert NearestNeighbourIndex(_random(10_000, dim=4), kind="hnsw", nlist=800).nprobe == 50  # 800 // 16
    hnsw = NearestNeighbourIndex(_random(300), kind="hnsw")  # D = 24: the graph is built over 24-d rows
    np.testing.assert_allclose(hnsw.search(_random(5, seed=1), k=1)[:, 0],
                               np.sort(_brute(_random(300), _random(5, seed=1), "l2"), axis=1)[:, 0], atol=1e-3)
    bank = _random(40)
    for nlist in (1, 40):
        NearestNeighbourIndex(bank, kind="ivf", nlist=nlist)  # both ends of 1..N are allowed
    assert NearestNeighbourIndex(bank).search(bank[:2], k=40).shape == (2, 40)  # k = N is allowed
    column = np.arange(5, dtype=np.float32)[:, None]  # one feature per row is a bank too
    assert NearestNeighbourIndex(column).search(column, k=1)[:, 0].tolist() == [0.0] * 5
    tracked = torch.from_numpy(bank).requires_grad_(True)
    assert NearestNeighbourIndex(tracked, kind="torch").search(bank[:1])[0, 0] == pytest.approx(0.0, abs=1e-3)


def test_bad_input_messages() -> None:
    with pytest.raises(ValueError, match=r"non-empty \(N, D\) array, got shape \(0, 8\)"):
        NearestNeighbourIndex(np.zeros((0, 8), np.float32))
    with pytest.raises(ValueError, match="non-empty"):
        NearestNeighbourIndex(np.zeros(8, np.float32))
    with pytest.raises(ValueError, match="unknown nearest-neighbour metric 'dot'"):
        NearestNeighbourIndex(_random(10), "dot")
    with pytest.raises(ValueError, match="unknown nearest-neighbour index kind 'lsh'"):
        NearestNeighbourIndex(_random(10), kind="lsh")
    with pytest.raises(ValueError, match=r"nlist must be in 1\.\.10"):
        NearestNeighbourIndex(_random(10), kind="ivf", nlist=11)
    index = NearestNeighbourIndex(_random(10))
    with pytest.raises(ValueError, match=r"queries must be \(Q, 24\) to match the bank, got shape \(4, 16\)"):
        index.search(_random(4, dim=16))
    with pytest.raises(ValueError, match=r"k must be in 1\.\.10"):
        index.search(_random(4), k=11)
