"""dino-knn: search, aggregation and masking pieces against hand computations; a tiny end-to-end run."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from baselines.dino_knn import (
    DINOV2_VITS14_WEIGHTS,
    DinoKnn,
    dilate_then_close,
    first_principal_component,
    mean_top_fraction,
    orient_foreground,
    resized_shape,
    token_foreground_mask,
)
from baselines.neighbours import NearestNeighbourIndex
from benchmarks.plugins.registry import BASELINES
from benchmarks.plugins.weights import WeightsResolver

# DINOv2 ViT-S/14 architecture shrunk to 2 blocks of width 48; 112 px -> an 8x8 patch grid.
TINY = dict(DinoKnn.meta.tiny.options)  # type: ignore[union-attr]


def _fit(make_context, train, variant: str = "full", **options: object) -> DinoKnn:
    torch.manual_seed(0)
    plugin = DinoKnn(make_context(variant, **{**TINY, **options}))
    plugin.fit(train)
    return plugin


@pytest.mark.parametrize("kind", ["flat", "torch"])
def test_nearest_neighbour_equals_brute_force(kind):
    g = torch.Generator().manual_seed(0)
    bank = F.normalize(torch.randn(300, 16, generator=g), dim=-1)
    queries = F.normalize(torch.randn(70, 16, generator=g), dim=-1)
    expected = 1 - (queries @ bank.T).max(dim=1).values
    got = torch.from_numpy(NearestNeighbourIndex(bank, "cosine", kind).search(queries)[:, 0])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_mean_top_fraction_by_hand():
    distances = torch.arange(250, dtype=torch.float32)[torch.randperm(250)][None]
    assert mean_top_fraction(distances).item() == pytest.approx((249 + 248) / 2)  # int(2.5) = 2 patches
    assert mean_top_fraction(torch.tensor([[0.1, 0.9, 0.3]])).item() == pytest.approx(0.9)  # < 100 patches: max
    assert mean_top_fraction(torch.ones(2, 1536)).shape == (2,)


def test_resized_shape_follows_torchvision_resize():
    assert resized_shape(384, 256, 448) == (672, 448)  # portrait phone photo: 48 x 32 patches, no crop
    assert resized_shape(700, 1024, 448) == (448, 655)  # long side truncated, then cropped to 644


def _centre_block(size: int) -> torch.Tensor:
    """A square object filling exactly the central crop (border 0.2) of a `size` x `size` grid."""
    block = torch.zeros(size, size, dtype=torch.bool)
    lo, hi = int(size * 0.2), int(size * 0.8)
    block[lo:hi, lo:hi] = True
    return block


def test_orient_foreground_sign_flip_rule():
    centre = _centre_block(10)  # rows/cols 2..7
    pc = torch.where(centre, -20.0, 20.0)  # the object has the negative sign: pc > 10 selects the background
    torch.testing.assert_close(orient_foreground(pc), centre)  # 0 % of the central crop kept: flipped
    torch.testing.assert_close(orient_foreground(-pc), centre)  # already the right sign: kept
    # boundary: the central crop is rows/cols 2..7 (36 cells); flip when at most 35 % (12.6 cells) is foreground
    pc = torch.full((10, 10), -20.0)
    pc.view(-1)[torch.tensor([22 + i for i in range(6)] + [32 + i for i in range(6)])] = 20.0  # 12 cells
    assert orient_foreground(pc).sum() == 100 - 12  # flipped
    pc.view(-1)[42] = 20.0  # 13 cells > 12.6
    assert orient_foreground(pc).sum() == 13  # kept


def test_foreground_boundaries_and_defaults():
    """Exactly 35 % of the central crop (7 of 20 cells) still flips; a PC equal to the threshold
    is not foreground; the default threshold is the reference's 10."""
    pc = torch.full((7, 8), -20.0)  # central crop rows 1..4, cols 1..5: 20 cells
    pc[1, 1:6], pc[2, 1:3] = 20.0, 20.0  # 7 cells = 35 %
    assert orient_foreground(pc).sum() == 7 * 8 - 7  # flipped
    at = torch.full((7, 8), 10.0)
    assert orient_foreground(at).sum() == 0 and orient_foreground(-at).sum() == 0
    assert orient_foreground(torch.full((7, 8), 10.5)).all()
    tokens = torch.zeros(6, 6, 4)
    tokens[1:5, 1:5, 0] = 10.6  # first PC +-8 around the mean: foreground only below threshold 10
    assert not token_foreground_mask(tokens).any()
    assert token_foreground_mask(tokens, threshold=5.0).sum() > 0


def test_first_principal_component_equals_sklearn_with_its_sign():
    from sklearn.decomposition import PCA

    features = torch.from_numpy(np.random.default_rng(3).standard_normal((50, 6)) * [5, 3, 1, 1, 1, 1])
    ours = first_principal_component(features).numpy()
    np.testing.assert_allclose(ours, PCA(n_components=1).fit_transform(features.numpy())[:, 0], atol=1e-8)


def test_foreground_mask_on_constructed_tokens():
    """Object tokens and background tokens differ along one direction: either PCA sign gives the object."""
    g = torch.Generator().manual_seed(0)
    centre = _centre_block(16)  # rows/cols 3..11, away from the border (cv2 closing never erodes from it)
    direction = F.normalize(torch.randn(32, generator=g), dim=0)
    tokens = torch.randn(16, 16, 32, generator=g) * 0.1 + torch.where(centre, 30.0, -30.0)[..., None] * direction
    expected = dilate_then_close(centre)
    assert expected.sum() == 11 * 11  # the 9x9 block grown by one patch on each side
    torch.testing.assert_close(token_foreground_mask(tokens), expected)
    torch.testing.assert_close(token_foreground_mask(-tokens), expected)
    sklearn = pytest.importorskip("sklearn.decomposition")
    flat = tokens.reshape(-1, 32)
    reference = sklearn.PCA(n_components=1, svd_solver="full").fit_transform(flat.numpy())[:, 0]
    np.testing.assert_allclose(first_principal_component(flat).numpy(), reference, atol=1e-3)


def test_dilate_then_close_matches_cv2():
    cv2 = pytest.importorskip("cv2")
    mask = np.random.default_rng(0).random((12, 9)) > 0.8
    kernel = np.ones((3, 3), np.uint8)
    expected = cv2.dilate(mask.astype(np.uint8), kernel)
    expected = cv2.morphologyEx(expected, cv2.MORPH_CLOSE, kernel).astype(bool)
    np.testing.assert_array_equal(dilate_then_close(torch.from_numpy(mask)).numpy(), expected)


@pytest.mark.parametrize("variant", ["k1", "k4", "full"])
def test_fit_predict_end_to_end(make_context, toy_task, variant):
    plugin = _fit(make_context, toy_task["train"], variant)
    shots = {"k1": 1, "k4": 4, "full": 8}[variant]
    assert plugin.index is not None and plugin.index.size == shots * 8 * 8
    images = [s.image for s in toy_task["test"]]
    prediction = plugin.predict(images)
    prediction.check(len(images))
    assert prediction.maps.shape == (len(images), 64, 64)
    assert (prediction.scores >= 0).all() and (prediction.scores <= 2).all()


def test_robust_ranking_with_random_weights(make_context, toy_task):
    """A memorised normal scores 0; with a pasted defect it scores higher and peaks there; anomalies outscore normals."""
    train = toy_task["train"]
    plugin = _fit(make_context, train, "full")
    normal = train[0].image
    defect = normal.copy()
    defect[40:52, 8:20] = 255
    anomalies = [s.image for s in toy_task["test"] if s.label == 1]
    prediction = plugin.predict([normal, defect, *anomalies])
    assert prediction.scores[0] == pytest.approx(0.0, abs=1e-5)
    assert (prediction.scores[1:] > prediction.scores[0] + 1e-3).all()
    normals = [s.image for s in toy_task["test"] if s.label == 0]
    assert prediction.scores[2:].mean() > plugin.predict(normals).scores.mean()  # held for 6 of 6 init seeds
    row, col = np.unravel_index(prediction.maps[1].argmax(), prediction.maps[1].shape)
    assert 36 <= row < 56 and 4 <= col < 24


def test_mixed_sizes_and_masked_patches(make_context, toy_task):
    """Images of different sizes are batched by input shape; masked-out patches score 0."""
    images = [toy_task["test"][0].image, np.ascontiguousarray(toy_task["test"][-1].image[:48])]
    plugin = _fit(make_context, toy_task["train"], "k1")
    prediction = plugin.predict(images)
    prediction.check(2)
    assert prediction.maps.shape == (2, 64, 64) and (prediction.scores > 0).all()
    # a threshold no first-PC value reaches: neither sign keeps a patch, so every distance is 0
    masked = _fit(make_context, toy_task["train"], "k1", masking=True, mask_threshold=1e9).predict(images)
    assert (masked.scores == 0).all() and (masked.maps == 0).all()


def test_resolver_weights_are_loaded(make_context, toy_task, tmp_path):
    source = timm.create_model(DINOV2_VITS14_WEIGHTS.model_id, pretrained=False, **TINY["backbone_kwargs"])
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, tmp_path / "dinov2_vits14.safetensors")
    resolver = WeightsResolver(mode="pretrained", weights_dir=tmp_path, allow_download=False)
    context = dataclasses.replace(make_context("k1", **TINY), weights=resolver)
    plugin = DinoKnn(context)
    plugin.fit(toy_task["train"][:1])
    for name, value in source.state_dict().items():
        torch.testing.assert_close(plugin.model.model.state_dict()[name], value, msg=name)
    assert resolver.summary()[0]["mode"] == "pretrained"


def test_meta_weights_and_options(make_context):
    assert BASELINES.get("dino-knn") is DinoKnn
    assert DinoKnn.meta.default_variants == ("k1", "full") and DinoKnn.meta.input_size == 448
    assert DINOV2_VITS14_WEIGHTS.hf_repo == timm.models.get_pretrained_cfg(DINOV2_VITS14_WEIGHTS.model_id).hf_hub_id
    with pytest.raises(ValueError, match="unknown options"):
        DinoKnn(make_context("k1", image_size=224))
    with pytest.raises(ValueError, match="no variant"):
        DinoKnn(make_context("k2"))


def test_bank_cap_subsamples_with_seed(make_context, toy_task):
    plugin = _fit(make_context, toy_task["train"], "full", max_bank_patches=100)
    assert plugin.index is not None and plugin.index.size == 100


def test_map_smoothing_follows_map_sigma(make_context, toy_task):
    """sigma 0 leaves the maps unsmoothed; sigma 0.5 smooths them exactly by `gaussian_blur_maps`."""
    from baselines.common import gaussian_blur_maps

    tiny = DinoKnn.meta.tiny
    maps = {}
    for sigma in (0.0, 0.5):
        torch.manual_seed(0)
        plugin = DinoKnn(make_context(tiny.variant, **{**tiny.options, "map_sigma": sigma}))
        plugin.fit(toy_task["train"][:1])
        maps[sigma] = plugin.predict([s.image for s in toy_task["test"][:2]]).maps
    smoothed = gaussian_blur_maps(torch.from_numpy(maps[0.0]), 0.5).numpy()
    assert not np.allclose(maps[0.5], maps[0.0])
    np.testing.assert_allclose(maps[0.5], smoothed, rtol=1e-5, atol=1e-6)
