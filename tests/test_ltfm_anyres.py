"""LTFM's AnyRes: the best-fit tile grid, the crops of images and masks, and maps stitched back onto the image."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest
import torch

from baselines.ltfm_plugin import LTFMBaseline
from benchmarks.plugins.contract import MethodContext, Sample
from ltfm.anyres import AnyResGrid
from ltfm.trainer import image_scores, map_targets

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(("height", "width", "max_tiles", "expected"), [
    (768, 384, 6, (3, 2)),  # a portrait QC capture at scale 1: 2 columns, 3 rows, 64 px padding each side
    (384, 768, 6, (2, 3)),  # the same landscape: the grid turns with it
    (768, 384, 2, (2, 1)),  # fewer tiles allowed: the most pixels still shown, portrait kept
    (300, 300, 6, (2, 2)),  # an ELPV cell, larger than one tile: scaled up into 2 x 2
    (256, 256, 6, (0, 0)),  # fits the tower input: the global view alone
    (200, 120, 6, (0, 0)),
])
def test_best_grid_follows_size_and_aspect(height: int, width: int, max_tiles: int, expected: tuple[int, int]) -> None:
    grid = AnyResGrid.best_for(height, width, 256, max_tiles)
    assert (grid.rows, grid.cols) == expected
    assert grid.num_crops == 1 + expected[0] * expected[1]


def test_crops_are_the_padded_image_cut_into_tiles() -> None:
    image = np.random.default_rng(0).integers(1, 256, (768, 384, 3), dtype=np.uint8)  # no zero pixel
    grid = AnyResGrid.best_for(768, 384, 256, 6)
    crops = grid.crops(image)
    assert len(crops) == 7 and crops[0] is image
    assert all(c.shape == (256, 256, 3) for c in crops[1:])
    top_left, top_right, bottom_right = crops[1], crops[2], crops[6]
    assert (top_left[:, :64] == 0).all() and (top_right[:, 192:] == 0).all()  # black padding, LLaVA's
    np.testing.assert_array_equal(top_left[:, 64:], image[:256, :192])
    np.testing.assert_array_equal(top_right[:, :192], image[:256, 192:])
    np.testing.assert_array_equal(bottom_right[:, :192], image[512:, 192:])


def test_mask_targets_land_in_the_tile_that_holds_the_defect() -> None:
    grid = AnyResGrid.best_for(768, 384, 256, 6)
    mask = np.zeros((768, 384), bool)
    mask[700, 300] = True  # canvas (700, 364): tile row 2, column 1 -> crop 6, tile pixel (188, 108)
    targets, has_map = map_targets([mask], [1], (16, 16), grid)
    assert targets.shape == (1, 7, 16, 16) and bool(has_map[0])
    hot = {(int(c), int(i), int(j)) for c, i, j in torch.nonzero(targets[0])}
    assert hot == {(0, 14, 12), (6, 11, 6)}  # global view: squashed 768 x 384 -> 16 x 16


def test_stitched_map_puts_each_tile_back_where_it_was_cut() -> None:
    grid = AnyResGrid.best_for(768, 384, 256, 6)
    maps = np.zeros((7, 16, 16), np.float32)
    maps[6, 15, 0] = 1.0  # bottom-right tile, bottom-left token: canvas token (47, 16)
    stitched = grid.stitch(maps, 768, 384)
    assert stitched.shape == (48, 24)  # the image region only: 384 px of 512 -> 24 of 32 token columns
    assert np.unravel_index(int(stitched.argmax()), stitched.shape) == (47, 12)
    assert stitched.max() == pytest.approx(0.5)  # averaged with the (zero) global map
    maps[0] = 1.0
    assert grid.stitch(maps, 768, 384).min() == pytest.approx(0.5)
    alone = AnyResGrid.global_only(256)
    np.testing.assert_array_equal(alone.stitch(maps[:1], 768, 384), maps[0])


def test_image_scores_from_head_map_or_both() -> None:
    head = np.array([0.2, 0.9], np.float32)
    maps = [np.array([[0.1, 0.6]]), np.array([[0.3, 0.0]])]
    np.testing.assert_allclose(image_scores(head, maps, "head"), [0.2, 0.9])
    np.testing.assert_allclose(image_scores(head, maps, "map"), [0.6, 0.3])
    np.testing.assert_allclose(image_scores(head, maps, "mean"), [0.4, 0.6])


def _portrait(samples: list[Sample]) -> list[Sample]:
    """The toy images stretched to 128 x 64 (portrait, larger than the 64 px tiny tower)."""
    out = []
    for s in samples:
        image = np.repeat(s.image, 2, axis=0)
        mask = None if s.mask is None else np.repeat(s.mask, 2, axis=0)
        out.append(replace(s, image=image, mask=mask))
    return out


def test_plugin_sees_large_images_through_anyres_and_saves_its_grid(
    toy_task: dict[str, list[Sample]], make_context: Callable[..., MethodContext]
) -> None:
    options = {"init": "scratch", "epochs": 2, "tower": "dinov2-tiny", "dim": 64, "score": "mean", "anyres": True}
    plugin = LTFMBaseline(make_context("ft-real", **options))
    train, val = _portrait(toy_task["train"] + toy_task["test"]), _portrait(toy_task["val"])
    plugin.fit(train, val)
    assert (plugin.crops.rows, plugin.crops.cols) == (2, 1)
    assert plugin.fit_result is not None and plugin.fit_result.epochs_run >= 1
    assert plugin.cache is not None and plugin.cache.feature_set([val[0].image], [0], [None]).features.shape[1] == 3
    pred = plugin.predict([s.image for s in val])
    pred.check(len(val))
    assert pred.maps is not None and pred.maps.shape == (len(val), 128, 64)  # the image's own aspect
    # mean of the head probability and the peak of the stitched map, both in [0, 1]
    assert ((pred.scores >= 0) & (pred.scores <= 1)).all()

    loaded = LTFMBaseline(make_context("ft-real", **options))
    loaded.load_fitted_state(plugin.fitted_state())
    assert loaded.crops == plugin.crops
    again = loaded.predict([s.image for s in val])
    np.testing.assert_allclose(again.scores, pred.scores, atol=1e-6)
    np.testing.assert_allclose(again.maps, pred.maps, atol=1e-6)


def test_a_model_saved_before_anyres_loads_as_it_was_fitted(
    toy_task: dict[str, list[Sample]], make_context: Callable[..., MethodContext]
) -> None:
    """Saved states without `crops` / `score` (written before both existed) saw the global view and read the head."""
    options = {"init": "scratch", "epochs": 1, "tower": "dinov2-tiny", "dim": 64, "score": "head"}
    plugin = LTFMBaseline(make_context("ft-real", **options))
    plugin.fit(toy_task["train"] + toy_task["test"], toy_task["val"])
    state = plugin.fitted_state()
    old = type(state)(state.tensors, {k: v for k, v in state.info.items() if k not in ("crops", "score")})
    loaded = LTFMBaseline(make_context("ft-real", **{**options, "score": "map"}))
    loaded.load_fitted_state(old)
    assert loaded.score == "head" and loaded.crops == AnyResGrid.global_only(64)
    images = [s.image for s in toy_task["val"]]
    np.testing.assert_allclose(loaded.predict(images).scores, plugin.predict(images).scores, atol=1e-6)
