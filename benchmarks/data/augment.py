"""Augmenters: the generative-data step (SPEC 3.3) that turns normal images into anomalies.

An augmenter is any class with the two `Augmenter` methods, registered by name in `AUGMENTERS`.
The built-in `procedural` one is offline and fast: stroke (scratch), crack and ghost (burn-in)
synthesis plus CutPaste with Poisson blending, the way AnomalyGPT synthesised anomalies (there
with a NSA-style seamless clone; here the clone is solved exactly on a rectangle with a DST).

Extension point: an augmenter backed by an image-generation API or a diffusers inpainting
pipeline lives in its own module or package, registers itself with
`@AUGMENTERS.register("name")` when imported, and is only used when a run asks for that name.
Nothing here imports such back ends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np
from scipy import fft, ndimage

from benchmarks.data.smartphone.defects import (
    blend_toward,
    crack_polylines,
    luminance,
    polyline_coverage,
    random_stroke,
)
from benchmarks.plugins.registry import Registry, UnknownNameError


@dataclass(frozen=True)
class AugmentResult:
    """One synthesised anomaly.

    image: (H, W, 3) uint8 RGB, same size as the input. mask: (H, W) bool, True exactly where
    `image` differs from the input. defect_type: the manifest `defect` value.
    """

    image: np.ndarray
    mask: np.ndarray
    defect_type: str


@dataclass(frozen=True)
class AugmenterInfo:
    """What an augmenter is, written next to the data it produced."""

    name: str
    description: str
    reference: str = ""


class Augmenter(Protocol):
    """Turns a normal image into an anomaly or into a defect-looking normal."""

    info: ClassVar[AugmenterInfo]

    def augment(self, normal_image: np.ndarray, rng: np.random.Generator) -> AugmentResult:
        """Synthesise one anomaly on `normal_image` ((H, W, 3) uint8); must not modify the input."""
        ...

    def hard_negative(self, normal_image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Add a defect-looking but normal artefact (smudge, dust, glare); (H, W, 3) uint8."""
        ...


AUGMENTERS: Registry[type[Augmenter]] = Registry("augmenter")


def build_augmenter(name: str) -> Augmenter:
    """Instantiate the augmenter registered as `name`; unknown names raise `UnknownNameError`."""
    try:
        cls = AUGMENTERS.get(name)
    except UnknownNameError as exc:
        raise UnknownNameError(
            f"{exc}. API-backed or diffusers augmenters are not built in: import a module that "
            "registers one with benchmarks.data.augment.AUGMENTERS.register(name)"
        ) from None
    return cls()


# ---------------------------------------------------------------- image-space helpers


def object_mask(image: np.ndarray, margin: int = 4) -> np.ndarray:
    """Where the object is: pixels unlike the border colour, largest smoothed blob, holes filled.

    (H, W, 3) uint8 -> (H, W) bool, eroded by `margin` pixels. Falls back to the central half of
    the image when nothing stands out from the background.
    """
    img = image.astype(np.float32) / 255.0
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    distance = np.abs(ndimage.uniform_filter(img, (5, 5, 1)) - np.median(border, axis=0)).max(axis=-1)
    solid = ndimage.binary_fill_holes(ndimage.binary_closing(distance > 0.1, iterations=3))
    labels, count = ndimage.label(ndimage.binary_opening(solid, iterations=3))
    h, w = distance.shape
    fallback = np.zeros((h, w), bool)
    fallback[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = True
    if count == 0:
        return fallback
    largest = 1 + int(np.argmax(ndimage.sum_labels(np.ones_like(distance), labels, range(1, count + 1))))
    mask = labels == largest
    if margin > 0:  # iterations=0 would mean "erode until nothing changes"
        mask = ndimage.binary_erosion(mask, iterations=margin)
    return mask if mask.sum() > 0.05 * h * w else fallback


def poisson_blend(target: np.ndarray, source: np.ndarray, top: int, left: int) -> np.ndarray:
    """Seamless clone of `source` into `target` with its top-left corner at (top, left).

    target: (H, W, C) float, source: (h, w, C) float, h, w >= 3. Inside the rectangle the result
    has the Laplacian of `source`; on the rectangle's one-pixel border it equals `target`, and
    outside it is `target` untouched. Solved exactly with a type-I discrete sine transform, which
    diagonalises the 5-point Laplacian with Dirichlet boundaries.
    """
    h, w = source.shape[:2]
    out = target.astype(np.float64, copy=True)
    box = out[top : top + h, left : left + w]
    src = source.astype(np.float64)
    lap = src[:-2, 1:-1] + src[2:, 1:-1] + src[1:-1, :-2] + src[1:-1, 2:] - 4 * src[1:-1, 1:-1]
    rhs = lap.copy()  # move the known border values to the right-hand side
    rhs[0] -= box[0, 1:-1]
    rhs[-1] -= box[-1, 1:-1]
    rhs[:, 0] -= box[1:-1, 0]
    rhs[:, -1] -= box[1:-1, -1]
    m, n = h - 2, w - 2
    eig = (2 * np.cos(np.pi * np.arange(1, m + 1) / (m + 1)) - 2)[:, None] + (
        2 * np.cos(np.pi * np.arange(1, n + 1) / (n + 1)) - 2
    )[None, :]
    spectrum = fft.dstn(rhs, type=1, axes=(0, 1)) / eig[..., None]
    box[1:-1, 1:-1] = fft.idstn(spectrum, type=1, axes=(0, 1))
    return out


def _point(rng: np.random.Generator, region: np.ndarray) -> tuple[int, int]:
    """A random (x, y) in `region`, or anywhere in its frame when it is empty."""
    ys, xs = np.nonzero(region)
    if len(xs) == 0:
        return int(rng.integers(region.shape[1])), int(rng.integers(region.shape[0]))
    k = int(rng.integers(len(xs)))
    return int(xs[k]), int(ys[k])


def _corner(rng: np.random.Generator, region: np.ndarray, h: int, w: int) -> tuple[int, int]:
    """A random top-left (x, y) whose h x w window lies inside `region` (anywhere if none does)."""
    table = np.pad(region.astype(np.int32).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    inside = table[h:, w:] - table[:-h, w:] - table[h:, :-w] + table[:-h, :-w] == h * w
    return _point(rng, inside)


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- the procedural augmenter


def _unit(region: np.ndarray) -> float:
    """Pixels per pixel of the 384-pixel-high photos the procedural sizes were chosen for."""
    return max(region.shape) / 384.0


@AUGMENTERS.register("procedural")
class ProceduralAugmenter:
    """Offline anomaly synthesis in image space: scratch, crack, burn-in ghost, CutPaste.

    Works on any object photo: defects are placed on the estimated foreground. Strengths are
    drawn wide so that some generated anomalies are as faint as the rendered "micro" defects.
    Sizes were chosen for 384-pixel-high photos and scale with the image (`_unit`).
    """

    info: ClassVar[AugmenterInfo] = AugmenterInfo(
        name="procedural",
        description="stroke/crack/ghost synthesis and CutPaste with Poisson blending",
        reference="Li et al., CutPaste (CVPR 2021); Gu et al., AnomalyGPT (AAAI 2024)",
    )
    defect_types: ClassVar[tuple[str, ...]] = ("scratch", "crack", "burn_in", "cutpaste")

    def augment(self, normal_image: np.ndarray, rng: np.random.Generator) -> AugmentResult:
        region = object_mask(normal_image)
        synthesise: dict[str, Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray]] = {
            "scratch": self._scratch,
            "crack": self._crack,
            "burn_in": self._ghost,
            "cutpaste": self._cutpaste,
        }
        original = normal_image.astype(np.float32) / 255.0
        for _ in range(20):  # retry the rare draw whose change rounds away entirely
            kind = str(rng.choice(self.defect_types))
            img = original.copy()
            footprint = synthesise[kind](img, region, rng)
            # keep the pixels that move by a full grey level: exactly those change after rounding
            mask = footprint & (np.abs(np.clip(img, 0, 1) - original).max(axis=-1) >= 1.001 / 255)
            image = _to_uint8(img)
            image[~mask] = normal_image[~mask]
            if mask.any():
                return AugmentResult(image=image, mask=mask, defect_type=kind)
        raise RuntimeError("procedural augmenter could not change this image (is it blank?)")

    def hard_negative(self, normal_image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        img = normal_image.astype(np.float32) / 255.0
        artefacts: dict[str, Callable[[np.ndarray, np.ndarray, np.random.Generator], None]] = {
            "smudge": self._smudge,
            "dust": self._dust,
            "glare": self._glare,
        }
        artefacts[str(rng.choice(list(artefacts)))](img, object_mask(normal_image), rng)
        return _to_uint8(img)

    @staticmethod
    def _smudge(img: np.ndarray, region: np.ndarray, rng: np.random.Generator) -> None:
        h, w = region.shape
        yy, xx = np.ogrid[:h, :w]
        cx, cy = _point(rng, region)
        u = _unit(region)
        rx, ry = rng.uniform(8, 18) * u, rng.uniform(10, 24) * u
        d = np.sqrt(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2)
        streaks = ndimage.gaussian_filter(rng.normal(0, 1, (h, w)), (0.5 * u, 2.5 * u))
        amount = np.clip(2.5 * (1 - d), 0, 1) * np.clip(0.6 + 2 * streaks, 0, 1) * rng.uniform(0.25, 0.5)
        blend_toward(img, (amount * region).astype(np.float32), 0.5 * img + 0.3)

    @staticmethod
    def _dust(img: np.ndarray, region: np.ndarray, rng: np.random.Generator) -> None:
        cover = np.zeros(region.shape, np.float32)
        for _ in range(int(rng.integers(3, 12))):
            cx, cy = _point(rng, region)
            cover[cy, cx] = rng.uniform(0.5, 1.0)
        cover = np.clip(ndimage.gaussian_filter(cover, rng.uniform(0.5, 0.9) * _unit(region)) * 4, 0, 1)
        blend_toward(img, cover, np.where(luminance(img)[..., None] < 0.5, 0.8, 0.2).astype(np.float32))

    @staticmethod
    def _glare(img: np.ndarray, region: np.ndarray, rng: np.random.Generator) -> None:
        h, w = region.shape
        yy, xx = np.ogrid[:h, :w]
        cx, cy = _point(rng, region)
        angle = rng.uniform(0, np.pi)
        along = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
        across = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
        u = _unit(region)
        glare = np.exp(-((along / (rng.uniform(20, 60) * u)) ** 2) - (across / (rng.uniform(4, 12) * u)) ** 2)
        blend_toward(img, (glare * rng.uniform(0.25, 0.6) * region).astype(np.float32), (1.0, 1.0, 0.97))

    @staticmethod
    def _scratch(img: np.ndarray, region: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        u = _unit(region)
        line = random_stroke(rng, _point(rng, region), rng.uniform(12, 70) * u, step=2.0 * u, bend=0.04)
        cover = polyline_coverage(region.shape, [line], rng.uniform(0.5, 1.5) * u) * region
        target = np.where(luminance(img)[..., None] < 0.55, 0.92, 0.15).astype(np.float32)
        blend_toward(img, cover * rng.uniform(0.15, 0.7), target)
        return cover > 0

    @staticmethod
    def _crack(img: np.ndarray, region: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        u = _unit(region)
        lines = crack_polylines(
            rng, _point(rng, region), int(rng.integers(2, 7)), rng.uniform(10, 70) * u, step=2.0 * u
        )
        width = rng.uniform(0.5, 1.3) * u
        bright = polyline_coverage(region.shape, lines, width) * region
        dark = polyline_coverage(region.shape, [ln + 0.7 * u for ln in lines], width) * region
        strength = rng.uniform(0.3, 0.8)
        blend_toward(img, dark * strength * 0.6, (0.04, 0.04, 0.05))
        blend_toward(img, bright * strength, (0.93, 0.95, 0.97))
        return (bright + dark) > 0

    @staticmethod
    def _ghost(img: np.ndarray, region: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Burn-in: the edges of one part of the image imprinted faintly somewhere else on it
        (the source is redrawn, up to 10 times, until it has edges: a uniform test pattern has few)."""
        h, w = region.shape
        u = _unit(region)
        gh, gw = int(rng.integers(12, 40) * u), int(rng.integers(20, 60) * u)
        for _ in range(10):
            sx, sy = _corner(rng, region, gh, gw)
            patch = luminance(img[sy : sy + gh, sx : sx + gw])
            detail = patch - ndimage.gaussian_filter(patch, 2.0 * u)
            if (np.abs(detail) > 0.04).sum() >= 10:
                break
        dx, dy = _corner(rng, region, gh, gw)
        ghost = np.where(np.abs(detail) > 0.04, np.sign(detail), 0.0) * region[dy : dy + gh, dx : dx + gw]
        ghost = ndimage.gaussian_filter(ghost, 0.5 * u)
        amount = np.abs(ghost) * rng.uniform(0.05, 0.2)
        view = img[dy : dy + gh, dx : dx + gw]
        view *= 1 - amount[..., None] * np.array([0.55, 0.8, 1.0], np.float32)
        changed = np.zeros((h, w), bool)
        changed[dy : dy + gh, dx : dx + gw] = amount > 0
        return changed

    @staticmethod
    def _cutpaste(img: np.ndarray, region: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """CutPaste: a patch of the object, recoloured, maybe turned 180 degrees, Poisson-blended
        elsewhere on the object (retried while the clone barely differs from what it covers)."""
        u = _unit(region)
        for _ in range(10):
            ph, pw = int(rng.integers(8, 36) * u), int(rng.integers(8, 36) * u)
            sx, sy = _corner(rng, region, ph, pw)
            dx, dy = _corner(rng, region, ph, pw)
            patch = img[sy : sy + ph, sx : sx + pw] * rng.uniform(0.8, 1.2, 3).astype(np.float32)
            if rng.random() < 0.5:
                patch = patch[::-1, ::-1]
            blended = poisson_blend(img, patch, dy, dx).astype(np.float32)
            change = np.abs(blended - img).max(axis=-1)
            if change[dy : dy + ph, dx : dx + pw].mean() > 0.03:
                np.clip(blended, 0, 1, out=img)
                return change > 0.5 / 255
        np.clip(blended, 0, 1, out=img)
        return change > 0.5 / 255
