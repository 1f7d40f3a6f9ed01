"""The synthetic source domain of LTFM's `base` variant: procedural textures with generic anomalies."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

ANOMALY_KINDS = ("stroke", "blob", "patch", "spots", "blur")


def synthetic_source_domain(
    n: int, size: int = 256, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """`n` procedural textures, every other one with a synthetic anomaly -> [(RGB uint8, bool mask, label)].

    Textures mix a base colour, oriented gratings, smooth noise at a random scale, a gradient and
    sensor noise. Anomalies (a random kind per image): a polyline stroke, a colour blob, a patch
    of another texture pasted in, a cluster of spots, or a locally blurred region. Nothing is
    drawn from any benchmark dataset: this is the generic source domain LTFM's `base` is trained on.
    """
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        image = _texture(rng, size)
        mask = np.zeros((size, size), dtype=bool)
        label = i % 2
        if label:
            image, mask = _anomaly(rng, image, str(rng.choice(ANOMALY_KINDS)))
        out.append(((np.clip(image, 0, 1) * 255).astype(np.uint8), mask, label))
    return out


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / size
    image = np.broadcast_to(rng.uniform(0.15, 0.85, 3), (size, size, 3)).copy()
    for _ in range(int(rng.integers(0, 3))):
        theta, freq = rng.uniform(0, math.pi), rng.uniform(2, 40)
        wave = np.sin(2 * math.pi * freq * (xx * math.cos(theta) + yy * math.sin(theta)) + rng.uniform(0, 6.3))
        image += rng.uniform(0.02, 0.15) * wave[..., None] * rng.uniform(0.5, 1.0, 3)
    noise = ndimage.gaussian_filter(rng.normal(size=(size, size)), rng.uniform(1, 12))
    image += rng.uniform(0.0, 0.12) * (noise / (noise.std() + 1e-8))[..., None]
    angle = rng.uniform(0, 2 * math.pi)
    image += rng.uniform(-0.15, 0.15) * (xx * math.cos(angle) + yy * math.sin(angle))[..., None]
    return image + rng.normal(0, rng.uniform(0.0, 0.03), image.shape)


def _anomaly(rng: np.random.Generator, image: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    size = image.shape[0]
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    cx, cy = rng.integers(size // 8, size - size // 8, 2)
    if kind == "stroke":
        points = [(int(cx), int(cy))]
        for _ in range(int(rng.integers(1, 4))):
            x, y = points[-1]
            points.append((int(x + rng.integers(-size // 4, size // 4)), int(y + rng.integers(-size // 4, size // 4))))
        draw.line(points, fill=255, width=int(rng.integers(1, 4)))
    elif kind in ("blob", "blur"):
        rx, ry = rng.integers(size // 40 + 2, size // 10 + 3, 2)
        draw.ellipse([int(cx - rx), int(cy - ry), int(cx + rx), int(cy + ry)], fill=255)
    elif kind == "patch":
        w, h = rng.integers(size // 12, size // 4, 2)
        draw.rectangle([int(cx - w // 2), int(cy - h // 2), int(cx + w // 2), int(cy + h // 2)], fill=255)
    else:  # spots
        for _ in range(int(rng.integers(3, 12))):
            x, y = np.array([cx, cy]) + rng.integers(-size // 12, size // 12, 2)
            r = int(rng.integers(1, 4))
            draw.ellipse([int(x - r), int(y - r), int(x + r), int(y + r)], fill=255)
    mask = np.asarray(canvas) > 0
    out = image.copy()
    if kind == "patch":
        out[mask] = _texture(rng, size)[mask]
    elif kind == "blur":
        out[mask] = ndimage.gaussian_filter(image, (4, 4, 0))[mask] + rng.normal(0, 0.05, (int(mask.sum()), 3))
    else:
        colour = np.clip(out[mask].mean(0) + rng.choice([-1, 1]) * rng.uniform(0.2, 0.5, 3), 0, 1)
        alpha = rng.uniform(0.6, 1.0)
        out[mask] = (1 - alpha) * out[mask] + alpha * colour
    return out, mask
