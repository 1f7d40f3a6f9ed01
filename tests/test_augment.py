"""Augmenter plugins: the registry, the procedural augmenter's contract, Poisson blending."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from benchmarks.data.augment import (
    AUGMENTERS,
    AugmentResult,
    ProceduralAugmenter,
    build_augmenter,
    object_mask,
    poisson_blend,
)
from benchmarks.data.smartphone.designs import PHONE_DESIGNS
from benchmarks.data.smartphone.render import render_capture
from benchmarks.plugins.registry import UnknownNameError


@pytest.fixture(scope="module")
def normal_image() -> np.ndarray:
    return render_capture(PHONE_DESIGNS[10], (0, 7)).image


def test_registry_has_procedural_and_explains_unknown_names() -> None:
    assert "procedural" in AUGMENTERS
    assert isinstance(build_augmenter("procedural"), ProceduralAugmenter)
    with pytest.raises(UnknownNameError, match="did you mean procedural") as info:
        build_augmenter("procedurall")
    assert "AUGMENTERS.register" in str(info.value)


@pytest.mark.parametrize("seed", range(16))
def test_augment_changes_exactly_the_masked_pixels(normal_image: np.ndarray, seed: int) -> None:
    before = normal_image.copy()
    result = build_augmenter("procedural").augment(normal_image, np.random.default_rng(seed))
    assert isinstance(result, AugmentResult)
    np.testing.assert_array_equal(normal_image, before)  # the input is left alone
    assert result.image.shape == normal_image.shape and result.image.dtype == np.uint8
    assert result.mask.shape == normal_image.shape[:2] and result.mask.dtype == bool
    changed = np.any(result.image != normal_image, axis=-1)
    np.testing.assert_array_equal(changed, result.mask)
    assert result.defect_type in ProceduralAugmenter.defect_types
    # the defect sits on the phone, not on the table around it
    on_phone = (result.mask & object_mask(normal_image, margin=0)).sum() / result.mask.sum()
    assert on_phone > 0.9


def test_augment_is_deterministic_and_covers_every_type(normal_image: np.ndarray) -> None:
    aug = build_augmenter("procedural")
    a = aug.augment(normal_image, np.random.default_rng(1))
    b = aug.augment(normal_image, np.random.default_rng(1))
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.mask, b.mask)
    kinds = {aug.augment(normal_image, np.random.default_rng(s)).defect_type for s in range(24)}
    assert kinds == set(ProceduralAugmenter.defect_types)


def test_hard_negative_keeps_shape_and_changes_something(normal_image: np.ndarray) -> None:
    aug = build_augmenter("procedural")
    for seed in range(6):
        out = aug.hard_negative(normal_image, np.random.default_rng(seed))
        assert out.shape == normal_image.shape and out.dtype == np.uint8
        assert np.any(out != normal_image)


def test_poisson_blend_keeps_the_boundary_and_the_source_gradients() -> None:
    rng = np.random.default_rng(0)
    target = rng.uniform(0, 1, (40, 50, 3))
    source = ndimage.gaussian_filter(rng.uniform(0, 1, (15, 20, 3)), (2, 2, 0))
    top, left = 10, 12
    out = poisson_blend(target, source, top, left)
    inside = np.zeros((40, 50), bool)
    inside[top + 1 : top + 14, left + 1 : left + 19] = True
    np.testing.assert_array_equal(out[~inside], target[~inside])  # border ring and outside untouched
    box = out[top : top + 15, left : left + 20]

    def laplacian(a: np.ndarray) -> np.ndarray:
        return a[:-2, 1:-1] + a[2:, 1:-1] + a[1:-1, :-2] + a[1:-1, 2:] - 4 * a[1:-1, 1:-1]

    np.testing.assert_allclose(laplacian(box), laplacian(source), atol=1e-9)
    assert np.abs(box - source).max() > 0.05  # it did not just paste the source


def test_poisson_blend_of_a_shifted_copy_restores_the_target() -> None:
    target = np.random.default_rng(1).uniform(0, 1, (30, 30, 3))
    patch = target[5:20, 8:26] + 0.3  # same gradients, different brightness
    np.testing.assert_allclose(poisson_blend(target, patch, 5, 8), target, atol=1e-9)


def test_foreground_mask_finds_the_object() -> None:
    image = np.full((120, 80, 3), 40, np.uint8)
    image[20:100, 15:65] = (200, 180, 90)
    mask = object_mask(image, margin=2)
    assert mask[30:90, 25:55].all()
    assert not mask[:15].any() and not mask[:, :10].any()
