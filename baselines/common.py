"""Pieces several plugins share: preprocessing, batching, faiss search, coreset, map smoothing."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypeVar

import faiss
import numpy as np
import torch
import torch.nn.functional as F

OptionsT = TypeVar("OptionsT")


def options_from_mapping(cls: type[OptionsT], options: Mapping[str, Any], method: str) -> OptionsT:
    """Build a plugin's frozen options dataclass from `MethodContext.options`.

    Unknown names are refused (a typo must not silently run the default); lists given for
    tuple-valued fields (YAML, JSON) become tuples so the options stay hashable.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise ValueError(f"{method}: unknown options {unknown}; known: {sorted(fields)}")
    values = {k: tuple(v) if isinstance(fields[k].default, tuple) and isinstance(v, list) else v
              for k, v in options.items()}
    return cls(**values)


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def images_to_tensor(
    images: Sequence[np.ndarray],
    size: int | tuple[int, int],
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    mode: str = "bicubic",
) -> torch.Tensor:
    """RGB uint8 `(H, W, 3)` images of any sizes -> normalised float `(B, 3, h, w)`.

    Each image is resized on its own (bicubic, antialiased) to `size` (int = square).
    """
    hw = (size, size) if isinstance(size, int) else tuple(size)
    out = []
    for image in images:
        t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255.0
        if t.shape[-2:] != hw:
            t = F.interpolate(t, size=hw, mode=mode, align_corners=False, antialias=True)
        out.append(t.clamp_(0.0, 1.0))
    batch = torch.cat(out)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return (batch - m) / s


def batches(items: Sequence, batch_size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), batch_size):
        yield items[start : start + batch_size]


def knn_search(bank: np.ndarray | torch.Tensor, queries: np.ndarray | torch.Tensor, k: int = 1) -> np.ndarray:
    """Euclidean k-NN distances with faiss exact search: `(N, D)` bank, `(Q, D)` queries -> `(Q, k)`.

    faiss returns squared L2; this returns the (non-squared) distance.
    """
    bank_np = np.ascontiguousarray(_as_numpy(bank), dtype=np.float32)
    query_np = np.ascontiguousarray(_as_numpy(queries), dtype=np.float32)
    index = faiss.IndexFlatL2(bank_np.shape[1])
    index.add(bank_np)
    squared, _ = index.search(query_np, k)
    return np.sqrt(np.maximum(squared, 0.0))


def cosine_knn_search(bank: np.ndarray | torch.Tensor, queries: np.ndarray | torch.Tensor, k: int = 1) -> np.ndarray:
    """Max-cosine-similarity k-NN with faiss inner product on L2-normalised rows -> `(Q, k)` cosines."""
    bank_np = _normalise(np.ascontiguousarray(_as_numpy(bank), dtype=np.float32))
    query_np = _normalise(np.ascontiguousarray(_as_numpy(queries), dtype=np.float32))
    index = faiss.IndexFlatIP(bank_np.shape[1])
    index.add(bank_np)
    sims, _ = index.search(query_np, k)
    return sims


def greedy_coreset(
    features: np.ndarray | torch.Tensor, ratio: float, seed: int = 0, projection_dim: int = 128
) -> np.ndarray:
    """Approximate greedy k-centre coreset (PatchCore): indices of `ceil(ratio * N)` rows of `(N, D)`.

    Distances are computed on a seeded Gaussian random projection to `projection_dim` dims, as
    in the paper. Each pick is one mat-vec on squared distances (|x|^2 - 2 x.c + |c|^2), with no
    `(N, D)` temporaries; numpy's mat-vec is about 2x faster than torch's here on CPU.
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
    selected = np.empty(target, dtype=np.int64)
    idx = int(rng.integers(n))
    min_dist = np.full(n, np.inf, dtype=np.float32)
    for i in range(target):
        selected[i] = idx
        np.minimum(min_dist, sq_norms - 2 * (feats @ feats[idx]) + sq_norms[idx], out=min_dist)
        idx = int(min_dist.argmax())
    return selected


def gaussian_blur_maps(maps: torch.Tensor, sigma: float = 4.0) -> torch.Tensor:
    """Gaussian-smooth `(B, H, W)` maps with kernel size 2*round(4*sigma)+1 (reflect padding)."""
    radius = int(round(4 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=maps.dtype, device=maps.device)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    b = maps[:, None]
    pad_h = min(radius, maps.shape[-2] - 1)
    pad_w = min(radius, maps.shape[-1] - 1)
    b = F.pad(b, (pad_w, pad_w, 0, 0), mode="reflect") if pad_w > 0 else b
    b = F.conv2d(b, kernel[radius - pad_w : radius + pad_w + 1].view(1, 1, 1, -1))
    b = F.pad(b, (0, 0, pad_h, pad_h), mode="reflect") if pad_h > 0 else b
    b = F.conv2d(b, kernel[radius - pad_h : radius + pad_h + 1].view(1, 1, -1, 1))
    return b[:, 0]


def _as_numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
