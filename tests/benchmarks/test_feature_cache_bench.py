"""`FeatureCache.map` on 16 images of 224 px: a miss (resnet18 forward + writes) vs a hit (reads).

The features are a random-init timm resnet18's `(16, 512, 7, 7)` last stage. "compute only" is
the forward pass without a cache, so miss - compute is the cost of writing the entries.

    .venv/bin/pytest tests/benchmarks/test_feature_cache_bench.py --benchmark-only -q
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

from baselines.common import images_to_tensor
from benchmarks.plugins.feature_cache import FeatureCache

NAMESPACE = "bench|resnet18|random|224"
Compute = Callable[[Sequence[np.ndarray]], torch.Tensor]

pytestmark = pytest.mark.benchmark(group="feature cache, 16 images at 224 px, resnet18")


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (224, 224, 3), dtype=np.uint8) for _ in range(16)]


@pytest.fixture(scope="module")
def compute() -> Compute:
    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False).eval()

    def forward(batch: Sequence[np.ndarray]) -> torch.Tensor:
        with torch.inference_mode():
            return model.forward_features(images_to_tensor(batch, 224))

    return forward


def test_compute_only(benchmark, images: list[np.ndarray], compute: Compute) -> None:
    features = benchmark.pedantic(compute, args=(images,), rounds=3, iterations=1, warmup_rounds=1)
    assert features.shape == (16, 512, 7, 7)


def test_cache_miss(benchmark, images: list[np.ndarray], compute: Compute, tmp_path: Path) -> None:
    fresh = (tmp_path / f"cache{i}" for i in itertools.count())

    def empty_cache() -> tuple[tuple[FeatureCache, str, list[np.ndarray], Compute], dict]:
        return (FeatureCache(next(fresh)), NAMESPACE, images, compute), {}

    compute(images[:1])  # warm-up outside the timing
    features = benchmark.pedantic(lambda cache, *args: cache.map(*args), setup=empty_cache, rounds=3, iterations=1)
    assert features.shape == (16, 512, 7, 7)


def test_cache_hit(benchmark, images: list[np.ndarray], compute: Compute, tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "cache")
    expected = cache.map(NAMESPACE, images, compute)

    def must_not_run(batch: Sequence[np.ndarray]) -> torch.Tensor:
        raise AssertionError(f"cache hit expected, {len(batch)} images recomputed")

    features = benchmark.pedantic(cache.map, args=(NAMESPACE, images, must_not_run), rounds=5, iterations=1)
    torch.testing.assert_close(features, expected)
    assert cache.hits == 5 * 16
