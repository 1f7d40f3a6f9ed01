"""PatchCore on the toy task with a random-init resnet18 at 64 px (resize 64, crop 56)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from baselines.backbone_weights import timm_weight_spec
from baselines.neighbours import greedy_coreset
from baselines.patchcore import PatchCore
from benchmarks.plugins.contract import MethodContext, Protocol, Sample
from benchmarks.plugins.weights import WeightsResolver
from benchmarks.running.presets import get_preset

TINY = dict(PatchCore.meta.tiny.options)  # type: ignore[union-attr]


def _fitted(make_context: Callable[..., MethodContext], toy_task: dict[str, list[Sample]], **options: object) -> PatchCore:
    model = PatchCore(make_context(**{**TINY, **options}))
    model.fit(toy_task["train"])
    return model


@pytest.fixture(scope="module")
def fitted(toy_task: dict[str, list[Sample]], tmp_path_factory: pytest.TempPathFactory) -> PatchCore:
    """One model fitted once for the read-only tests; the same context `make_context` builds."""
    context = MethodContext(
        variant="default", seed=0, device="cpu", weights=WeightsResolver(mode="random"),
        preset=get_preset("smoke"), class_name="toy texture", work_dir=tmp_path_factory.mktemp("patchcore"),
        options=TINY,
    )
    model = PatchCore(context)
    model.fit(toy_task["train"])
    return model


def _test_images(toy_task: dict[str, list[Sample]]) -> tuple[list[np.ndarray], np.ndarray]:
    test = toy_task["test"]
    return [s.image for s in test], np.array([s.label for s in test])


def test_fit_predict_shapes_scores_and_ranking(fitted: PatchCore, toy_task) -> None:
    model = fitted
    images, labels = _test_images(toy_task)
    prediction = model.predict(images)
    prediction.check(len(images))
    assert prediction.maps is not None and prediction.maps.shape == (len(images), 64, 64)
    assert np.isfinite(prediction.scores).all() and (prediction.scores >= 0).all()
    # A 2-px saturated scratch is far, in any conv feature space, from every stripe patch of the
    # normal bank; random resnet18 features rank all 6 anomalies above all 6 normals (AUROC 1.0
    # for seeds 0-4). 0.9 leaves room for 3 of 36 pairs to swap on another BLAS/platform.
    assert roc_auc_score(labels, prediction.scores) > 0.9


def test_map_peaks_on_the_scratch_in_full_image_coordinates(fitted: PatchCore, toy_task) -> None:
    anomalous = [s for s in toy_task["test"] if s.label == 1]
    maps = fitted.predict([s.image for s in anomalous]).maps
    assert maps is not None
    for heat, sample in zip(maps, anomalous, strict=True):
        assert sample.mask is not None
        peak = np.array(np.unravel_index(heat.argmax(), heat.shape))
        nearest = np.abs(np.argwhere(sample.mask) - peak).sum(axis=1).min()
        # The map is put back from the 56-px crop into the 64-px frame; a misplaced crop would
        # shift the peak by 4 px. Observed distances are 0-3 px (stride-8 patches, blur).
        assert nearest <= 4


def test_the_crop_margin_of_a_map_repeats_the_crop_edge(fitted: PatchCore, toy_task) -> None:
    """64 px frame, 56 px crop: 4 px on each side are the nearest crop pixel (replicate), not zeros."""
    maps = fitted.predict([s.image for s in toy_task["test"][:2]]).maps
    assert maps is not None
    for heat in maps:
        np.testing.assert_array_equal(heat[:4, 4:60], np.repeat(heat[4:5, 4:60], 4, axis=0))
        np.testing.assert_array_equal(heat[60:, 4:60], np.repeat(heat[59:60, 4:60], 4, axis=0))
        np.testing.assert_array_equal(heat[:, :4], np.repeat(heat[:, 4:5], 4, axis=1))
        assert heat[:4].min() > 0


def test_memory_bank_is_ceil_ratio_of_training_patches(make_context, toy_task) -> None:
    model = _fitted(make_context, toy_task, coreset_ratio=0.25)
    grid = 56 // 8  # layer-2 stride of resnet18
    n_patches = len(toy_task["train"]) * grid * grid
    assert model.memory_bank is not None
    assert model.memory_bank.shape == (math.ceil(0.25 * n_patches), 128 + 256)


def test_reweighting_shrinks_the_max_patch_score(make_context, toy_task) -> None:
    model = _fitted(make_context, toy_task, reweight=True)
    images, _ = _test_images(toy_task)
    grid, _ = model.patch_scores(images)
    scores = model.predict(images).scores
    assert np.isfinite(scores).all()
    # anomalib multiplies the max distance by 1 - softmax(...)[0], a factor in (0, 1).
    assert (scores > 0).all() and (scores < grid.amax(dim=(1, 2)).numpy()).all()


def test_faiss_knn_equals_bruteforce_cdist(fitted: PatchCore, toy_task) -> None:
    model = fitted
    images, _ = _test_images(toy_task)
    _, queries = model.patch_scores(images)
    assert model.memory_bank is not None and model.index is not None and model.index.kind == "flat"
    bank = torch.from_numpy(model.memory_bank)
    brute = torch.cdist(queries.double(), bank.double()).min(dim=1).values.numpy()
    np.testing.assert_allclose(model.index.search(queries, k=1)[:, 0], brute, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("ratio", [0.01, 0.1, 0.37, 1.0])
def test_coreset_size_and_seed_determinism(ratio: float) -> None:
    features = np.random.default_rng(1).standard_normal((500, 256)).astype(np.float32)
    first = greedy_coreset(features, ratio, seed=3)
    assert len(first) == math.ceil(ratio * 500) == len(set(first.tolist()))
    np.testing.assert_array_equal(first, greedy_coreset(features, ratio, seed=3))
    if ratio < 1.0:
        assert not np.array_equal(first, greedy_coreset(features, ratio, seed=4))


def _one_pick_at_a_time(features: np.ndarray, target: int, first: int) -> np.ndarray:
    """The textbook greedy k-centre loop: each pick is the row farthest from all picks so far."""
    sq = np.einsum("ij,ij->i", features, features)
    min_dist = np.full(len(features), np.inf, dtype=np.float32)
    picks = [first]
    while len(picks) < target:
        np.minimum(min_dist, sq - 2 * (features @ features[picks[-1]]) + sq[picks[-1]], out=min_dist)
        picks.append(int(min_dist.argmax()))
    return np.array(picks)


@pytest.mark.parametrize("candidates", [16, 64, 10_000])
def test_batched_coreset_makes_the_same_picks_as_the_greedy_loop(candidates: int) -> None:
    rng = np.random.default_rng(2)
    features = rng.standard_normal((3000, 32)).astype(np.float32) * rng.uniform(0.5, 2.0, (3000, 1)).astype(np.float32)
    got = greedy_coreset(features, 0.1, seed=5, projection_dim=32, candidates=candidates)
    first = int(np.random.default_rng(5).integers(3000))  # the start greedy_coreset draws for seed 5
    np.testing.assert_array_equal(got, _one_pick_at_a_time(features, 300, first))


def test_meta_variants_and_weight_spec() -> None:
    variants = PatchCore.meta.variants
    assert variants["default"].protocol is Protocol.FULL_SHOT
    assert {k: v.shots for k, v in variants.items() if v.protocol is Protocol.FEW_SHOT} == {"k1": 1, "k4": 4, "k16": 16}
    spec = timm_weight_spec("wide_resnet50_2")
    assert (spec.key, spec.model_id, spec.hf_repo) == (
        "wide_resnet50_2", "wide_resnet50_2.racm_in1k", "timm/wide_resnet50_2.racm_in1k"
    )


def test_unknown_option_and_predict_before_fit_are_refused(make_context, toy_task) -> None:
    with pytest.raises(ValueError, match="patchcore: unknown options"):
        PatchCore(make_context(**TINY, corset_ratio=0.1))
    with pytest.raises(RuntimeError, match="call fit before predict"):
        PatchCore(make_context(**TINY)).predict([toy_task["test"][0].image])
