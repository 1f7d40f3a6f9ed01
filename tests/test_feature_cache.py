"""The shared feature cache: hits return what was stored, writes are atomic, latency bypasses it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from test_anomalygpt import TINY as ANOMALYGPT_TINY
from test_dino_knn import TINY as DINO_TINY

import baselines  # noqa: F401  (registers the built-in plugins)
from benchmarks.plugins.feature_cache import FeatureCache, weights_fingerprint
from benchmarks.plugins.registry import BASELINES


def test_map_computes_only_missing_images_and_returns_the_same_features(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    images = [np.full((4, 4, 3), i, np.uint8) for i in range(3)]
    calls: list[int] = []

    def compute(todo):  # noqa: ANN001, ANN202
        calls.append(len(todo))
        return torch.stack([torch.full((2,), float(im[0, 0, 0])) for im in todo])

    first = cache.map("ns", images, compute)
    again = cache.map("ns", images, compute)
    assert calls == [3] and torch.equal(first, again) and cache.hits == 3
    cache.map("other-namespace", images[:1], compute)
    assert calls == [3, 1]
    with cache.disabled():
        cache.map("ns", images, compute)
    assert calls == [3, 1, 3]
    assert not list(tmp_path.rglob("*.tmp"))


def test_eviction_keeps_the_cache_bounded(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, max_bytes=20_000)  # room for about four 4 kB entries
    for i in range(66):  # eviction runs every 64 writes
        cache.put("ns", np.full((2, 2, 3), i, np.uint8), torch.zeros(1000))
    assert len(list(tmp_path.rglob("*.safetensors"))) <= 6


def test_random_init_weights_get_distinct_fingerprints() -> None:
    torch.manual_seed(0)
    a = torch.nn.Linear(4, 4)
    torch.manual_seed(1)
    b = torch.nn.Linear(4, 4)
    assert weights_fingerprint(a) != weights_fingerprint(b)


WARM_CACHE_PLUGINS = {
    "patchcore": ("default", {"backbone": "resnet18", "image_size": 64, "crop_size": 56}),
    "dino-knn": ("k1", DINO_TINY),
    "anomalygpt": ("unsupervised", {"model_overrides": ANOMALYGPT_TINY, "epochs": 2, "anomalous_images": 6,
                                    "normal_images": 2, "calibration_images": 4}),
}


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("name", sorted(WARM_CACHE_PLUGINS))
def test_scores_identical_with_a_warm_cache(name: str, make_context, toy_task, tmp_path: Path) -> None:
    """A second fit + predict reads every backbone feature from the cache and scores the same."""
    variant, options = WARM_CACHE_PLUGINS[name]
    images = [s.image for s in toy_task["test"]]
    caches, scores = [], []
    for _ in range(2):
        cache = FeatureCache(tmp_path / "features")
        plugin = BASELINES.get(name)(replace(make_context(variant, **options), feature_cache=cache))
        torch.manual_seed(0)
        plugin.fit(toy_task["train"], toy_task["val"])
        scores.append(plugin.predict(images).scores)
        caches.append(cache)
    assert caches[0].hits == 0 and caches[0].misses > 0
    assert caches[1].misses == 0 and caches[1].hits == caches[0].misses
    np.testing.assert_allclose(scores[0], scores[1], rtol=1e-5, atol=1e-6)
