"""The source domain of LTFM's `base` variant: textures and photographs with generic synthetic anomalies.

Backgrounds are procedural textures and, when the caller hands some in, random crops of real
photographs (scaled, flipped, rotated by quarter turns, colour-jittered): photographs bring the
edges, text and structure a normal image has, which a detector must learn not to flag.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

ANOMALY_KINDS = ("stroke", "blob", "patch", "spots", "blur", "hairline", "pixels")


def synthetic_source_domain(
    n: int, size: int = 256, seed: int = 0, photographs: Sequence[np.ndarray] = ()
) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """`n` backgrounds, every other one with a synthetic anomaly -> [(RGB uint8, bool mask, label)].

    Backgrounds: with `photographs` (RGB uint8 arrays), half are random crops of them, the rest
    procedural textures (a base colour, oriented gratings, smooth noise at a random scale, a
    gradient and sensor noise). Anomalies (a random kind per image): a polyline stroke, a colour
    blob, a patch of another texture pasted in, a cluster of spots, a locally blurred region, a
    faint 1-px hairline, or a few pixels stuck at a colour. Nothing is drawn from any benchmark
    dataset: this is the generic source domain LTFM's `base` is trained on.
    """
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        use_photo = bool(photographs) and i % 4 >= 2
        image = _photo_crop(rng, photographs, size) if use_photo else _texture(rng, size)
        mask = np.zeros((size, size), dtype=bool)
        label = i % 2
        if label:
            image, mask = _anomaly(rng, image, str(rng.choice(ANOMALY_KINDS)))
        out.append(((np.clip(image, 0, 1) * 255).astype(np.uint8), mask, label))
    return out


def _photo_crop(rng: np.random.Generator, photographs: Sequence[np.ndarray], size: int) -> np.ndarray:
    """A random square crop of a random photograph, resized to `size`, flipped/rotated and colour-jittered, in [0, 1]."""
    photo = photographs[int(rng.integers(len(photographs)))]
    h, w = photo.shape[:2]
    side = int(rng.uniform(0.3, 1.0) * min(h, w))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = Image.fromarray(photo[y : y + side, x : x + side]).resize((size, size), Image.Resampling.BICUBIC)
    image = np.rot90(np.asarray(crop, dtype=np.float64) / 255.0, int(rng.integers(4)))
    if rng.random() < 0.5:
        image = image[:, ::-1]
    image = image * rng.uniform(0.7, 1.2, 3) + rng.uniform(-0.1, 0.1)
    return np.ascontiguousarray(image) + rng.normal(0, rng.uniform(0.0, 0.02), image.shape)


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
    elif kind == "hairline":
        length, angle = rng.uniform(size / 8, size / 2), rng.uniform(0, math.pi)
        dx, dy = length * math.cos(angle) / 2, length * math.sin(angle) / 2
        draw.line([(int(cx - dx), int(cy - dy)), (int(cx + dx), int(cy + dy))], fill=255, width=1)
    elif kind == "pixels":
        for _ in range(int(rng.integers(1, 4))):
            x, y = np.array([cx, cy]) + rng.integers(-3, 4, 2)
            r = int(rng.integers(0, 2))
            draw.rectangle([int(x), int(y), int(x + r), int(y + r)], fill=255)
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
    elif kind == "pixels":
        out[mask] = rng.choice([0.0, 1.0], 3)  # a pixel stuck at a primary colour, black or white
    else:
        colour = np.clip(out[mask].mean(0) + rng.choice([-1, 1]) * rng.uniform(0.2, 0.5, 3), 0, 1)
        alpha = rng.uniform(0.25, 0.6) if kind == "hairline" else rng.uniform(0.6, 1.0)
        out[mask] = (1 - alpha) * out[mask] + alpha * colour
    return out, mask
