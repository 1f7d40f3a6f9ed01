"""An on-disk cache of backbone features shared by methods, cells and runs (SPEC 11).

Entries are keyed by a namespace (backbone, weights fingerprint, preprocessing: whatever
determines the features) and the image's content hash, stored as safetensors files, written to
a temporary file and renamed (safe against concurrent writers and interrupted writes: a reader
sees a whole entry or none), and evicted least-recently-used beyond `max_bytes`.
The runner switches the cache off while it measures latency, so timings always include the
backbone.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 8 * 2**30


def weights_fingerprint(module: torch.nn.Module) -> str:
    """A short hash of a module's parameters (sampled), so random-init weights get their own entries."""
    digest = hashlib.sha1()
    params = list(module.state_dict().items())
    for name, tensor in params[:: max(1, len(params) // 16)]:
        digest.update(name.encode())
        digest.update(tensor.detach().float().flatten()[:4096].cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


class FeatureCache:
    def __init__(self, root: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.enabled = True
        self.hits = 0
        self.misses = 0
        self._puts = 0

    @contextmanager
    def disabled(self) -> Iterator[None]:
        """Neither read nor write inside the block (latency measurement)."""
        previous, self.enabled = self.enabled, False
        try:
            yield
        finally:
            self.enabled = previous

    def _path(self, namespace: str, image: np.ndarray) -> Path:
        digest = hashlib.sha256()
        digest.update(namespace.encode())
        digest.update(str(image.shape).encode())
        digest.update(np.ascontiguousarray(image).tobytes())
        key = digest.hexdigest()
        return self.root / key[:2] / f"{key}.safetensors"

    def get(self, namespace: str, image: np.ndarray) -> torch.Tensor | None:
        if not self.enabled:
            return None
        path = self._path(namespace, image)
        try:
            tensor = load_file(str(path))["features"]
        except (FileNotFoundError, OSError, KeyError, ValueError):
            self.misses += 1
            return None
        os.utime(path)  # recency for LRU eviction
        self.hits += 1
        return tensor

    def put(self, namespace: str, image: np.ndarray, features: torch.Tensor) -> None:
        if not self.enabled:
            return
        path = self._path(namespace, image)
        tmp: str | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            os.close(fd)
            save_file({"features": features.detach().cpu().contiguous()}, tmp)
            os.replace(tmp, path)
        except OSError as exc:  # a full or read-only cache disk costs speed, not results
            log.warning("feature cache write failed (%s); continuing without caching", exc)
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            return
        self._puts += 1
        if self._puts % 64 == 1:  # a directory scan per put would dominate for small entries
            self._evict()

    def _evict(self) -> None:
        files = [(p.stat().st_mtime, p.stat().st_size, p) for p in self.root.glob("*/*.safetensors")]
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files):
            if total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size

    def map(
        self, namespace: str, images: Sequence[np.ndarray], compute: Callable[[Sequence[np.ndarray]], torch.Tensor]
    ) -> torch.Tensor:
        """Per-image features `(B, ...)`: cached ones loaded, the rest computed in one `compute` call."""
        found = [self.get(namespace, image) for image in images]
        missing = [i for i, f in enumerate(found) if f is None]
        if missing:
            computed = compute([images[i] for i in missing])
            for i, features in zip(missing, computed, strict=True):
                found[i] = features
                self.put(namespace, images[i], features)
        return torch.stack([f for f in found if f is not None])
