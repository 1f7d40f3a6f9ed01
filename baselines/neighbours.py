"""Nearest neighbours and coresets shared by the memory-bank plugins (PatchCore, AnomalyGPT, dino-knn).

`NearestNeighbourIndex`: one faiss index class (exact flat, IVF, HNSW, or torch on an accelerator),
built once at fit and searched many times. `greedy_coreset`: PatchCore's greedy k-centre
subsampling, with exactly the picks of the one-at-a-time loop.
"""

from __future__ import annotations

import faiss
import numpy as np
import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits

EXACT_SEARCH_LIMIT = 100_000  # NearestNeighbourIndex(kind="auto") searches banks up to this many rows exactly
IVF_TRAIN_POINTS_PER_LIST = 64  # IVF k-means trains on at most this many rows per list (faiss wants >= 39)
IVF_REFINE_FACTOR = 4  # IVF re-ranks this many times k candidates with exact distances
TORCH_CHUNK_BYTES = 256 * 2**20  # the torch kind holds at most this many bytes of (queries, N) distances


class NearestNeighbourIndex:
    """k-NN search over a fixed `(N, D)` bank: built once (at fit), searched many times.

    metric: `"l2"` (Euclidean distance, not squared) or `"cosine"` (1 - cosine similarity; bank
        and query rows are L2-normalised here, zero rows stay zero and have similarity 0).
    kind:
        `"flat"`: faiss exact search.
        `"ivf"`: approximate. faiss `IndexIVFScalarQuantizer` with 8-bit codes (a quarter of the
            memory traffic of float rows, which is what bounds IVF scans at D = 1536); the
            `IVF_REFINE_FACTOR * k` best candidates are re-ranked with exact distances
            (`IndexRefineFlat`, which keeps a full-precision copy of the bank). `nlist` lists
            (default `round(sqrt(N))`, at most `N // 39`: the low end of faiss's advice, keeping
            k-means cheap on CPU); k-means seeded with `seed`, trained on a seeded subsample of at
            most `IVF_TRAIN_POINTS_PER_LIST * nlist` rows; `nprobe` lists scanned per query
            (default `max(16, nlist // 16)`, about 1/16 of a large bank). Queries that get fewer
            than k candidates are searched again exactly.
        `"hnsw"`: faiss `IndexHNSWFlat`, approximate. `hnsw_m` links per node, faiss's default
            efConstruction 40, efSearch `max(ef_search, k)`. Levels come from faiss's fixed-seed
            generator, but the graph is built by several threads: only a one-thread build is
            bit-reproducible.
        `"torch"`: exact search in query chunks of at most `TORCH_CHUNK_BYTES` of distances, on
            the bank's device (a GPU bank, where faiss-cpu would need a round trip per search).
        `"auto"`: `"torch"` for a torch bank on an accelerator, else `"flat"` up to
            `exact_limit` rows (`EXACT_SEARCH_LIMIT`), else `"ivf"`.
    faiss runs with torch's intra-op thread count (`torch.get_num_threads()`), read at every call.
    """

    def __init__(
        self,
        bank: np.ndarray | torch.Tensor,
        metric: str = "l2",
        kind: str = "auto",
        *,
        exact_limit: int = EXACT_SEARCH_LIMIT,
        nlist: int | None = None,
        nprobe: int | None = None,
        hnsw_m: int = 32,
        ef_search: int = 64,
        seed: int = 0,
    ) -> None:
        if metric not in ("l2", "cosine"):
            raise ValueError(f"unknown nearest-neighbour metric {metric!r}; known: 'l2', 'cosine'")
        if kind not in ("auto", "flat", "ivf", "hnsw", "torch"):
            raise ValueError(f"unknown nearest-neighbour index kind {kind!r}; known: auto, flat, ivf, hnsw, torch")
        if bank.ndim != 2 or bank.shape[0] == 0 or bank.shape[1] == 0:
            raise ValueError(f"nearest-neighbour bank must be a non-empty (N, D) array, got shape {tuple(bank.shape)}")
        self.metric = metric
        self.size, self.dim = int(bank.shape[0]), int(bank.shape[1])
        if kind == "auto":
            on_accelerator = isinstance(bank, torch.Tensor) and bank.device.type != "cpu"
            kind = "torch" if on_accelerator else "flat" if self.size <= exact_limit else "ivf"
        self.kind = kind
        self.nlist = nlist if nlist is not None else max(1, min(round(np.sqrt(self.size)), self.size // 39))
        if kind == "ivf" and not 1 <= self.nlist <= self.size:
            raise ValueError(f"nlist must be in 1..{self.size} (the bank size), got {self.nlist}")
        self.nprobe = min(self.nlist, nprobe if nprobe is not None else max(16, self.nlist // 16))
        self.ef_search = ef_search
        if kind == "torch":
            tensor = bank.detach() if isinstance(bank, torch.Tensor) else torch.from_numpy(np.asarray(bank))
            self._bank = self._unit_rows(tensor.float())
            return
        vectors = self._vectors(bank)
        faiss.omp_set_num_threads(torch.get_num_threads())
        faiss_metric = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
        if kind == "flat":
            self._index = faiss.IndexFlat(self.dim, faiss_metric)
        elif kind == "hnsw":
            self._index = faiss.IndexHNSWFlat(self.dim, hnsw_m, faiss_metric)
        else:
            self._index = self._trained_ivf(vectors, faiss_metric, seed)
        self._index.add(vectors)

    def _trained_ivf(self, vectors: np.ndarray, faiss_metric: int, seed: int) -> faiss.IndexRefineFlat:
        """IVF lists of 8-bit codes, trained on a seeded subsample, wrapped in an exact re-ranking."""
        quantizer = faiss.IndexFlat(self.dim, faiss_metric)
        ivf = faiss.IndexIVFScalarQuantizer(
            quantizer, self.dim, self.nlist, faiss.ScalarQuantizer.QT_8bit, faiss_metric
        )
        ivf.cp.seed = seed
        n_train = min(self.size, IVF_TRAIN_POINTS_PER_LIST * self.nlist)
        rows = np.sort(np.random.default_rng(seed).choice(self.size, n_train, replace=False))
        ivf.train(vectors if n_train == self.size else vectors[rows])
        ivf.nprobe = self.nprobe
        index = faiss.IndexRefineFlat(ivf)
        index.k_factor = IVF_REFINE_FACTOR
        self._ivf_parts = (quantizer, ivf)  # faiss holds raw pointers to these
        return index

    @property
    def shape(self) -> tuple[int, int]:
        """The bank's `(N, D)`."""
        return self.size, self.dim

    def search(self, queries: np.ndarray | torch.Tensor, k: int = 1) -> np.ndarray:
        """`(Q, D)` queries -> `(Q, k)` float32 distances to the k nearest bank rows, nearest first."""
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"queries must be (Q, {self.dim}) to match the bank, got shape {tuple(queries.shape)}")
        if not 1 <= k <= self.size:
            raise ValueError(f"k must be in 1..{self.size} (the bank size), got {k}")
        if self.kind == "torch":
            return self._search_torch(queries, k)
        vectors = self._vectors(queries)
        faiss.omp_set_num_threads(torch.get_num_threads())
        params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, k)) if self.kind == "hnsw" else None
        found, labels = self._index.search(vectors, k, params=params)
        short = (labels < 0).any(axis=1)
        if short.any():  # approximate kinds only: too few rows in the probed lists / visited nodes
            found[short] = self._search_exhaustive(vectors[short], k)
        return np.sqrt(np.maximum(found, 0.0)) if self.metric == "l2" else 1.0 - found

    def _search_exhaustive(self, vectors: np.ndarray, k: int) -> np.ndarray:
        """Exact search over the full-precision copy the approximate kinds keep (IVF re-ranking, HNSW storage)."""
        exact = self._index.refine_index if self.kind == "ivf" else self._index.storage
        return faiss.downcast_index(exact).search(vectors, k)[0]

    def _search_torch(self, queries: np.ndarray | torch.Tensor, k: int) -> np.ndarray:
        q = queries.detach() if isinstance(queries, torch.Tensor) else torch.from_numpy(np.asarray(queries))
        q = self._unit_rows(q.to(self._bank.device, torch.float32))
        rows = max(1, TORCH_CHUNK_BYTES // (4 * self.size))
        if self.metric == "l2":
            parts = [torch.cdist(part, self._bank).topk(k, dim=1, largest=False).values for part in q.split(rows)]
        else:
            parts = [1.0 - (part @ self._bank.T).topk(k, dim=1).values for part in q.split(rows)]
        return torch.cat(parts).cpu().numpy()

    def _unit_rows(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1) if self.metric == "cosine" else x

    def _vectors(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        """faiss input: contiguous float32 rows, L2-normalised for the cosine metric."""
        vectors = np.ascontiguousarray(_as_numpy(x), dtype=np.float32)
        return np.ascontiguousarray(_normalise(vectors), dtype=np.float32) if self.metric == "cosine" else vectors


CORESET_CANDIDATES = 8192
CORESET_UPDATE_CHUNK = 512


def greedy_coreset(
    features: np.ndarray | torch.Tensor,
    ratio: float,
    seed: int = 0,
    projection_dim: int = 128,
    candidates: int = CORESET_CANDIDATES,
) -> np.ndarray:
    """Greedy k-centre coreset (PatchCore): indices of `ceil(ratio * N)` rows of `(N, D)`.

    Distances are computed on a seeded Gaussian random projection to `projection_dim` dims, as
    in the paper, and the picks are exactly those of the one-at-a-time greedy loop (each pick the
    row farthest from all picks so far; tested against it), found in batches:
    - the `candidates` rows with the largest distance-to-coreset are copied out, and picks are
      made among them, updating only their distances, for as long as the best of them is
      strictly farther than `tau`, the largest distance of any row left out. Distances only
      shrink as picks are added, so no left-out row can be the next pick until then;
    - then every row's distance is updated against the whole batch of picks at once, a matrix
      product instead of one pass over all `N` rows per pick. The one-at-a-time loop is bound
      by memory bandwidth (anomalib's `KCenterGreedy` ran at about 12 picks/s on 150k rows
      here); the batched update runs at BLAS speed.
    Squared distances are |x|^2 - 2 x.c + |c|^2 in float32.
    """
    feats = np.ascontiguousarray(_as_numpy(features), dtype=np.float32)
    n = feats.shape[0]
    target = max(1, int(np.ceil(ratio * n)))
    if target >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    if feats.shape[1] > projection_dim:
        proj = rng.standard_normal((feats.shape[1], projection_dim), dtype=np.float32)
        feats = feats @ (proj / np.float32(np.sqrt(projection_dim)))
    sq_norms = np.einsum("ij,ij->i", feats, feats)
    first = int(rng.integers(n))
    selected = [first]
    min_dist = sq_norms - 2 * (feats @ feats[first]) + sq_norms[first]
    while len(selected) < target:
        batch = _coreset_batch(feats, sq_norms, min_dist, target - len(selected), candidates)
        for start in range(0, len(batch), CORESET_UPDATE_CHUNK):
            picks = batch[start : start + CORESET_UPDATE_CHUNK]
            dist = sq_norms[:, None] - 2 * (feats @ feats[picks].T) + sq_norms[picks][None]
            np.minimum(min_dist, dist.min(axis=1), out=min_dist)
        selected.extend(batch.tolist())
    return np.asarray(selected, dtype=np.int64)


def _coreset_batch(
    feats: np.ndarray, sq_norms: np.ndarray, min_dist: np.ndarray, budget: int, candidates: int
) -> np.ndarray:
    """The next picks of the greedy loop that can be made among the farthest `candidates` rows."""
    n = len(min_dist)
    k = min(candidates, n)
    if k < n:
        order = np.argpartition(min_dist, n - k - 1)
        chosen, tau = order[n - k :], min_dist[order[n - k - 1]]
    else:
        chosen, tau = np.arange(n), -np.inf
    values = min_dist[chosen]
    sub, sub_sq = feats[chosen], sq_norms[chosen]
    picks: list[int] = []
    with threadpool_limits(1, user_api="blas"):  # small mat-vecs: extra BLAS threads only spin
        while len(picks) < budget:
            j = int(values.argmax())
            if picks and values[j] <= tau:
                break
            picks.append(j)
            np.minimum(values, sub_sq - 2 * (sub @ sub[j]) + sub_sq[j], out=values)
    return chosen[np.asarray(picks)]


def _as_numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
