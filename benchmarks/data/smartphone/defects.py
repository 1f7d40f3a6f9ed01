"""Defect and hard-negative synthesis on a phone's supersampled front view, with footprints.

Everything here works in phone-canvas pixels (the renderer's supersampled drawing space, about
2 canvas pixels per captured pixel) on a `PhoneSurface` that the renderer owns; the renderer warps
the returned footprint with the phone, so masks follow the same pose as the pixels.
Colours are float32 in [0, 1]. `severity` in [0, 1]: near 0 gives "micro" defects (a pixel or
two, a few grey levels of contrast), 1 gives obvious ones.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

DEFECT_KINDS = ("scratch", "crack", "burn_in", "dead_pixels", "dent", "mura")
HARD_NEGATIVE_KINDS = ("smudge", "dust", "reflection", "protector_edge")

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive ends), pixels


@dataclass
class PhoneSurface:
    """A phone's front view before the capture pose, mutated in place by defects.

    rgb: (h, w, 3) float32 straight (not premultiplied) colour; alpha: (h, w) float32 silhouette;
    glass / display / frame: (h, w) bool regions (display excludes cut-outs; frame is the metal
    band around the glass, antialiased outer edge included). `pixel` is the size of one captured
    pixel in canvas pixels, `mm` of one millimetre on the phone (physical sizes use `mm`, so a
    defect keeps its size on the phone whatever the capture resolution).
    """

    rgb: np.ndarray
    alpha: np.ndarray
    glass: np.ndarray
    display: np.ndarray
    frame: np.ndarray
    display_box: Box
    body_box: Box
    pixel: int = 2
    mm: float = 4.2

    @property
    def shape(self) -> tuple[int, int]:
        return self.alpha.shape  # type: ignore[return-value]


# ---------------------------------------------------------------- geometry shared with augment.py


def random_stroke(
    rng: np.random.Generator, start: Sequence[float], length: float, step: float = 3.0, bend: float = 0.05
) -> np.ndarray:
    """A gently curving polyline from `start`: (n, 2) float xy points, `length` pixels long."""
    n = max(2, int(length / step) + 1)
    heading = rng.uniform(0, 2 * np.pi)
    turn = rng.normal(0, bend)
    headings = heading + np.cumsum(np.full(n - 1, turn) + rng.normal(0, bend / 2, n - 1))
    steps = np.stack([np.cos(headings), np.sin(headings)], axis=1) * step
    return np.vstack([np.asarray(start, float)[None], np.asarray(start, float) + np.cumsum(steps, axis=0)])


def crack_polylines(
    rng: np.random.Generator, center: Sequence[float], branches: int, length: float, step: float = 3.0
) -> list[np.ndarray]:
    """Jagged polylines radiating from an impact point, each possibly forking once or twice."""
    lines: list[np.ndarray] = []
    base = rng.uniform(0, 2 * np.pi)
    for k in range(branches):
        heading = base + 2 * np.pi * k / branches + rng.normal(0, 0.35)
        _grow_crack(rng, np.asarray(center, float), heading, length * rng.uniform(0.5, 1.0), step, lines, 0)
    return lines


def _grow_crack(
    rng: np.random.Generator,
    start: np.ndarray,
    heading: float,
    length: float,
    step: float,
    out: list[np.ndarray],
    depth: int,
) -> None:
    n = max(2, int(length / step))
    headings = heading + np.cumsum(rng.normal(0, 0.28, n))
    points = start + np.cumsum(np.stack([np.cos(headings), np.sin(headings)], axis=1) * step, axis=0)
    out.append(np.vstack([start[None], points]))
    if depth < 2:
        for _ in range(rng.poisson(0.9)):
            at = int(rng.integers(1, n))
            fork = headings[at - 1] + rng.choice([-1, 1]) * rng.uniform(0.4, 1.0)
            _grow_crack(
                rng, points[at - 1], fork, (n - at) * step * rng.uniform(0.3, 0.8), step, out, depth + 1
            )


def polyline_coverage(
    shape: tuple[int, int],
    polylines: Sequence[np.ndarray],
    width: float,
    intensities: Sequence[float] | None = None,
    supersample: int = 2,
) -> np.ndarray:
    """Antialiased coverage in [0, 1] of `polylines` drawn `width` pixels wide: (h, w) float32.

    Each line is drawn at `supersample` times the resolution and box-averaged back down, so a
    sub-pixel hairline yields fractional coverage. `intensities` scales each polyline.
    """
    h, w = shape
    canvas = Image.new("L", (w * supersample, h * supersample), 0)
    draw = ImageDraw.Draw(canvas)
    line_width = max(1, round(width * supersample))
    for i, line in enumerate(polylines):
        level = 255 if intensities is None else int(round(255 * float(np.clip(intensities[i], 0, 1))))
        points = [(float(x) * supersample, float(y) * supersample) for x, y in line]
        draw.line(points, fill=level, width=line_width, joint="curve")
    arr = np.asarray(canvas, np.float32) / 255.0
    return arr.reshape(h, supersample, w, supersample).mean(axis=(1, 3))


def blend_toward(rgb: np.ndarray, amount: np.ndarray, target: np.ndarray | Sequence[float]) -> None:
    """In place: rgb += amount * (target - rgb); amount (h, w), target broadcastable to rgb."""
    rows, cols = np.nonzero(amount)
    if rows.size == 0:
        return
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    patch = rgb[r0:r1, c0:c1]
    tgt = np.asarray(target, np.float32)
    if tgt.ndim == 3:
        tgt = tgt[r0:r1, c0:c1]
    patch += amount[r0:r1, c0:c1, None] * (tgt - patch)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Rec. 601 luma of (..., 3) colours in [0, 1]."""
    return rgb @ np.array([0.299, 0.587, 0.114], np.float32)


def _random_point(rng: np.random.Generator, region: np.ndarray, margin: int = 0) -> tuple[int, int]:
    """A uniformly random (x, y) inside `region`, at least `margin` pixels from its edge."""
    if margin > 0:
        region = ndimage.binary_erosion(region, iterations=margin)
    ys, xs = np.nonzero(region)
    k = int(rng.integers(len(xs)))
    return int(xs[k]), int(ys[k])


@functools.lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=max(6, size))


# ---------------------------------------------------------------- defects


def _scratch(s: PhoneSurface, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Hairline: a thin, intermittent stroke that catches light on dark and shades bright content."""
    body_w = s.body_box[2] - s.body_box[0]
    start = _random_point(rng, s.glass, margin=8)
    length = body_w * (0.1 + 0.45 * severity) * rng.uniform(0.7, 1.3)
    line = random_stroke(rng, start, length, step=0.7 * s.mm, bend=0.03)  # steps in mm: same curvature at any resolution
    pieces = np.array_split(line, max(1, len(line) // 4))
    pieces = [np.vstack([p, q[:1]]) for p, q in zip(pieces[:-1], pieces[1:], strict=True)] + [pieces[-1]]
    fade = np.clip(rng.normal(0.8, 0.3, len(pieces)), 0.25, 1.0)
    cover = polyline_coverage(s.shape, pieces, s.mm * (0.2 + 0.3 * severity), fade) * s.glass
    strength = 0.12 + 0.65 * severity
    target = np.where(luminance(s.rgb)[..., None] < 0.55, 0.92, 0.18).astype(np.float32)
    blend_toward(s.rgb, cover * strength, target)
    return cover > 0


def _crack(s: PhoneSurface, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Glass crack: jagged branches from an impact point, bright edges with a dark refraction twin."""
    body_w = s.body_box[2] - s.body_box[0]
    center = _random_point(rng, s.glass, margin=6)
    branches = 2 + int(round(5 * severity * rng.uniform(0.6, 1.0)))
    lines = crack_polylines(rng, center, branches, body_w * (0.08 + 0.5 * severity), step=0.7 * s.mm)
    width = s.mm * (0.2 + 0.25 * severity)
    bright = polyline_coverage(s.shape, lines, width)
    dark = polyline_coverage(s.shape, [ln + 0.25 * s.mm for ln in lines], width)
    spot = np.zeros(s.shape, np.float32)
    radius = s.mm * (0.35 + 1.2 * severity)
    yy, xx = np.ogrid[: s.shape[0], : s.shape[1]]
    spot[(xx - center[0]) ** 2 + (yy - center[1]) ** 2 <= radius**2] = 1.0
    strength = 0.3 + 0.5 * severity
    blend_toward(s.rgb, dark * s.glass * strength * 0.6, (0.04, 0.04, 0.05))
    blend_toward(s.rgb, np.maximum(bright, spot * 0.7) * s.glass * strength, (0.93, 0.95, 0.97))
    return (np.maximum(np.maximum(bright, dark), spot) * s.glass) > 0


def _burn_in(s: PhoneSurface, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Faint ghost of static UI (AOD clock, nav buttons, keyboard, media bar): aged, dimmer, warmer."""
    x0, y0, x1, y1 = s.display_box
    dw, dh = x1 - x0, y1 - y0
    u = dw / 100.0
    ghost = Image.new("L", (s.shape[1], s.shape[0]), 0)
    draw = ImageDraw.Draw(ghost)
    template = rng.choice(["aod_clock", "nav_buttons", "keyboard", "media_bar"])
    if template == "aod_clock":  # always-on-display clock and date, static for years
        font = _font(int(rng.uniform(16, 26) * u))
        top = y0 + rng.uniform(0.12, 0.45) * dh
        draw.text((x0 + dw / 2, top), "10:08", fill=255, font=font, anchor="mt")
        draw.rectangle([x0 + 30 * u, top + 26 * u, x1 - 30 * u, top + 29 * u], fill=255)
    elif template == "nav_buttons":
        cy = y1 - 5 * u
        draw.polygon([(x0 + 25 * u, cy), (x0 + 31 * u, cy - 3.5 * u), (x0 + 31 * u, cy + 3.5 * u)], fill=255)
        draw.ellipse(
            [x0 + 46 * u, cy - 3.5 * u, x0 + 53 * u, cy + 3.5 * u], outline=255, width=max(1, int(u))
        )
        draw.rectangle([x0 + 69 * u, cy - 3 * u, x0 + 75 * u, cy + 3 * u], outline=255, width=max(1, int(u)))
    elif template == "keyboard":
        top = y1 - 0.36 * dh
        for row in range(4):
            keys = 10 if row < 3 else 5
            key_w = (dw - 4 * u) / keys
            for k in range(keys):
                kx = x0 + 2 * u + k * key_w
                ky = top + row * 0.08 * dh
                draw.rounded_rectangle(
                    [kx + 0.8 * u, ky, kx + key_w - 0.8 * u, ky + 0.065 * dh], radius=u, fill=255
                )
    else:  # a media player's bottom bar with its four buttons
        top = y1 - rng.uniform(0.1, 0.16) * dh
        draw.rectangle([x0, top, x1, top + 0.08 * dh], fill=255)
        for k in range(4):
            cx = x0 + (k + 0.5) * dw / 4
            draw.ellipse([cx - 4 * u, top + 0.04 * dh - 4 * u, cx + 4 * u, top + 0.04 * dh + 4 * u], fill=60)
    cover = ndimage.gaussian_filter(np.asarray(ghost, np.float32) / 255.0, 0.15 * s.mm) * s.display
    cover[cover < 0.02] = 0.0
    amount = (0.03 + 0.3 * severity) * cover
    s.rgb *= 1.0 - amount[..., None] * np.array([0.55, 0.8, 1.0], np.float32)
    return cover > 0


def _dead_pixels(s: PhoneSurface, severity: float, rng: np.random.Generator) -> np.ndarray:
    """A cluster of dead (black) or stuck (R, G, B or white) display pixels on the pixel grid."""
    p = s.pixel
    cx, cy = _random_point(rng, s.display, margin=6 * p)
    colours = np.array(
        [(0.0, 0.0, 0.0), (1.0, 0.05, 0.05), (0.05, 1.0, 0.05), (0.1, 0.2, 1.0), (1.0, 1.0, 1.0)], np.float32
    )
    weights = np.array([0.4, 0.15, 0.15, 0.15, 0.15])
    # a stuck red pixel on a red field is no defect to anyone: only colours that stand out locally
    weights *= np.abs(colours - s.rgb[cy, cx]).sum(axis=1) > 0.9
    colour = colours[int(rng.choice(len(colours), p=weights / weights.sum()))]
    count = 4 + int(round(severity * rng.uniform(10, 40)))
    cells = {(0, 0)}
    while len(cells) < count:
        gx, gy = list(cells)[int(rng.integers(len(cells)))]
        dx, dy = rng.integers(-1, 2, size=2)
        cells.add((gx + int(dx), gy + int(dy)))
    footprint = np.zeros(s.shape, bool)
    for gx, gy in cells:
        x, y = (cx // p + gx) * p, (cy // p + gy) * p
        footprint[y : y + p, x : x + p] = True
    footprint &= s.display
    s.rgb[footprint] = colour
    return footprint


def _dent(s: PhoneSurface, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Tiny dent on the frame: a bite out of the silhouette, a dark crease, bright bent shoulders.

    Drop dents land on a corner, on a long side below the keys (a dent among the keys would pass
    for one) or on the top / bottom edge.
    """
    bx0, by0, bx1, by1 = s.body_box
    bw, bh = bx1 - bx0, by1 - by0
    solid = s.alpha > 0.5
    ys, xs = np.nonzero(solid & ~ndimage.binary_erosion(solid))
    near_x = np.minimum(xs - bx0, bx1 - xs) < 0.2 * bw
    near_y = np.minimum(ys - by0, by1 - ys) < 0.2 * bw
    height = (ys - by0) / bh
    zones = {"corner": near_x & near_y, "side": ~near_y & (height > 0.45) & (height < 0.85), "end": ~near_x & near_y}
    zone_name = str(rng.choice(list(zones), p=[0.35, 0.45, 0.2]))
    candidates = np.flatnonzero(zones[zone_name])
    k = int(candidates[int(rng.integers(len(candidates)))])
    x, y = int(xs[k]), int(ys[k])
    # the inward normal: the gradient of the distance to the outside, smoothed around the point
    r0 = int(4 * s.mm)
    y0, x0 = max(0, y - r0), max(0, x - r0)
    window = ndimage.gaussian_filter(
        ndimage.distance_transform_edt(solid[y0 : y + r0 + 1, x0 : x + r0 + 1]).astype(np.float32), s.mm
    )
    gy, gx = np.gradient(window)
    normal = np.array([gx[y - y0, x - x0], gy[y - y0, x - x0]], float)
    normal /= np.linalg.norm(normal) + 1e-9
    radius = s.mm * (1.2 + 3.8 * severity)
    yy, xx = np.mgrid[: s.shape[0], : s.shape[1]].astype(np.float32)
    along = (xx - x) * normal[1] - (yy - y) * normal[0]
    across = (xx - x) * normal[0] + (yy - y) * normal[1]  # > 0 points into the phone
    depth = radius * (0.35 + 0.35 * severity)
    bite = np.clip(1.0 - (along / radius) ** 2 - ((across + 0.2 * depth) / depth) ** 2, 0, 1) ** 0.5
    zone = ((along / (1.8 * radius)) ** 2 + (across / (2.2 * radius)) ** 2 < 1.0) & s.frame
    crease = np.exp(-(((across - 0.8 * depth) / (0.35 * radius)) ** 2)) * np.clip(
        1 - (along / (1.3 * radius)) ** 2, 0, 1
    )
    shoulders = np.exp(
        -(((np.abs(along) - radius) / (0.3 * radius)) ** 2) - ((across - 0.4 * depth) / (0.4 * radius)) ** 2
    )
    blend_toward(s.rgb, crease * zone * (0.6 + 0.35 * severity), (0.04, 0.04, 0.04))
    blend_toward(s.rgb, shoulders * zone * (0.5 + 0.45 * severity), (0.98, 0.98, 0.96))
    s.alpha *= 1.0 - bite * zone
    return zone


def _mura(s: PhoneSurface, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Backlight bleed at a display edge or a cloudy blotch inside it; lightens dark content, dims bright."""
    x0, y0, x1, y1 = s.display_box
    dw, dh = x1 - x0, y1 - y0
    bleed = rng.random() < 0.5
    if bleed:
        cx = rng.choice([x0, x1]) if rng.random() < 0.5 else rng.uniform(x0, x1)
        cy = rng.uniform(y0, y1) if cx in (x0, x1) else rng.choice([y0, y1])
    else:
        cx, cy = rng.uniform(x0 + 0.2 * dw, x1 - 0.2 * dw), rng.uniform(y0 + 0.15 * dh, y1 - 0.15 * dh)
    rx = dw * (0.12 + 0.25 * rng.uniform(0.5, 1.0) * (0.4 + 0.6 * severity))
    ry = rx * rng.uniform(0.6, 1.6)
    yy, xx = np.mgrid[: s.shape[0], : s.shape[1]].astype(np.float32)
    wobble = ndimage.zoom(
        rng.normal(0, 1, (6, 4)).astype(np.float32), (s.shape[0] / 6, s.shape[1] / 4), order=1
    )
    dist = np.sqrt(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2) * (
        1 + 0.15 * wobble[: s.shape[0], : s.shape[1]]
    )
    profile = (np.clip(1 - dist**2, 0, 1) ** 2) * s.display
    amp = 0.04 + 0.4 * severity
    core = profile > 0.05
    if luminance(s.rgb[core]).mean() < 0.4:  # stray light shows on dark content, dimming on bright
        blend_toward(s.rgb, profile * amp, (1.0, 0.97, 0.88))
    else:
        s.rgb *= 1.0 - (profile * amp)[..., None] * np.array([0.9, 1.0, 0.85], np.float32)
    return profile * amp > 1.0 / 255  # the mask: wherever the blotch moves a pixel by a grey level


_DEFECTS: dict[str, Callable[[PhoneSurface, float, np.random.Generator], np.ndarray]] = {
    "scratch": _scratch,
    "crack": _crack,
    "burn_in": _burn_in,
    "dead_pixels": _dead_pixels,
    "dent": _dent,
    "mura": _mura,
}


def add_defect(surface: PhoneSurface, kind: str, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Draw one defect of `kind` onto `surface` in place; return its (h, w) bool footprint."""
    if kind not in _DEFECTS:
        raise ValueError(f"unknown defect kind {kind!r}; expected one of {DEFECT_KINDS}")
    return _DEFECTS[kind](surface, float(np.clip(severity, 0.0, 1.0)), rng)


# ---------------------------------------------------------------- hard negatives


def _smudge(s: PhoneSurface, rng: np.random.Generator) -> np.ndarray:
    """One to three oily finger marks: a greyish haze with smeared streaks and coarse ridges."""
    h, w = s.shape
    yy, xx = (g.astype(np.float32) for g in np.ogrid[:h, :w])
    streaks = ndimage.gaussian_filter(rng.normal(0, 1, (h // 4, w // 4)).astype(np.float32), (0.6, 3.0))
    streaks = ndimage.zoom(streaks / (streaks.std() + 1e-6), 4, order=1)
    streaks = np.pad(streaks, ((0, h - streaks.shape[0]), (0, w - streaks.shape[1])), mode="edge")
    total = np.zeros(s.shape, np.float32)
    for _ in range(int(rng.integers(1, 4))):
        cx, cy = _random_point(rng, s.display)
        rx = s.mm * rng.uniform(3.8, 7.6)
        ry = rx * rng.uniform(1.2, 1.7)
        angle = rng.uniform(0, np.pi)
        u = ((xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)) / rx
        v = (-(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)) / ry
        d = np.sqrt(u**2 + v**2)
        ridges = 0.5 + 0.5 * np.sin(d * rx / (0.22 * s.mm) + 2 * np.sin(3 * np.arctan2(v, u)))
        texture = np.clip(0.35 + 0.35 * ridges + 0.3 * streaks, 0, 1)
        total = np.maximum(total, np.clip(3 * (1 - d), 0, 1) * texture * rng.uniform(0.12, 0.3))
    total *= s.glass
    haze = 0.5 * s.rgb + 0.5 * np.array([0.62, 0.62, 0.64], np.float32)
    blend_toward(s.rgb, total, haze)
    return total > 0.01


def _dust(s: PhoneSurface, rng: np.random.Generator) -> np.ndarray:
    """Soft specks (light on dark content, dark on light) and sometimes a lint fibre on the glass."""
    h, w = s.shape
    lum = luminance(s.rgb)
    cover = np.zeros(s.shape, np.float32)
    target = np.zeros((h, w, 3), np.float32)
    yy, xx = np.ogrid[:h, :w]
    for _ in range(int(rng.integers(3, 12))):
        x, y = _random_point(rng, s.glass)
        r = s.mm * rng.uniform(0.2, 0.6)
        reach = int(np.ceil(1.2 * r)) + 2
        win = (slice(max(0, y - reach), y + reach + 1), slice(max(0, x - reach), x + reach + 1))
        speck = np.clip(
            1.2 - np.sqrt((xx[:, win[1]] - x) ** 2 + (yy[win[0]] - y) ** 2) / r, 0, 1
        ) * rng.uniform(0.4, 0.85)
        cover[win] = np.maximum(cover[win], speck)
        target[win] = 0.78 if lum[y, x] < 0.5 else 0.22
    cover = ndimage.gaussian_filter(cover, 0.15 * s.mm) * s.glass
    blend_toward(s.rgb, cover, target)
    region = cover > 0.02
    if rng.random() < 0.35:
        fibre = random_stroke(
            rng, _random_point(rng, s.glass), s.mm * rng.uniform(3, 7), step=0.35 * s.mm, bend=0.3
        )
        strand = polyline_coverage(s.shape, [fibre], 0.15 * s.mm) * s.glass
        blend_toward(s.rgb, strand * 0.45, (0.25, 0.24, 0.22))
        region |= strand > 0
    return region


def _reflection(s: PhoneSurface, rng: np.random.Generator) -> np.ndarray:
    """Window panes or a ceiling lamp mirrored in the glass."""
    h, w = s.shape
    x0, y0, x1, y1 = s.body_box
    light = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(light)
    if rng.random() < 0.6:
        px, py = (
            rng.uniform(x0 - 0.2 * (x1 - x0), x1 - 0.3 * (x1 - x0)),
            rng.uniform(y0, y1 - 0.4 * (y1 - y0)),
        )
        pw, ph, gap, skew = (
            (x1 - x0) * rng.uniform(0.25, 0.4),
            (y1 - y0) * rng.uniform(0.12, 0.2),
            s.mm,
            rng.uniform(-3.6, 3.6) * s.mm,
        )
        for i in range(2):
            for j in range(2):
                ax, ay = px + i * (pw + gap), py + j * (ph + gap)
                draw.polygon(
                    [(ax + skew, ay), (ax + pw + skew, ay), (ax + pw, ay + ph), (ax, ay + ph)], fill=255
                )
        blur, strength = 0.7 * s.mm, rng.uniform(0.06, 0.15)
    else:
        cx, cy = rng.uniform(x0, x1), rng.uniform(y0, y1)
        r = (x1 - x0) * rng.uniform(0.05, 0.12)
        draw.ellipse([cx - 2.5 * r, cy - r, cx + 2.5 * r, cy + r], fill=255)
        blur, strength = 0.95 * s.mm, rng.uniform(0.15, 0.3)
    cover = ndimage.gaussian_filter(np.asarray(light, np.float32) / 255.0, blur) * s.glass
    blend_toward(s.rgb, cover * strength, (1.0, 1.0, 0.98))
    return cover > 0.02


def _protector_edge(s: PhoneSurface, rng: np.random.Generator) -> np.ndarray:
    """The outline of a screen protector a little inside the glass edge, maybe lifted at a corner."""
    h, w = s.shape
    ys, xs = np.nonzero(s.glass)
    inset = rng.uniform(0.7, 1.9) * s.mm
    gx0, gy0, gx1, gy1 = xs.min() + inset, ys.min() + inset, xs.max() - inset, ys.max() - inset
    radius = max(2.0, (s.body_box[2] - s.body_box[0]) * 0.08)
    edge = Image.new("L", (w * 2, h * 2), 0)
    ImageDraw.Draw(edge).rounded_rectangle(
        [2 * gx0, 2 * gy0, 2 * gx1, 2 * gy1], radius=2 * radius, outline=255, width=max(2, round(0.5 * s.mm))
    )
    cover = np.asarray(edge, np.float32).reshape(h, 2, w, 2).mean(axis=(1, 3)) / 255 * s.glass
    shadow = np.roll(cover, (1, 1), axis=(0, 1))
    blend_toward(s.rgb, shadow * 0.15, (0.0, 0.0, 0.0))
    blend_toward(s.rgb, cover * rng.uniform(0.15, 0.35), (0.9, 0.92, 0.95))
    region = (cover + shadow) > 0
    if rng.random() < 0.4:
        corner = (gx0 if rng.random() < 0.5 else gx1, gy0 if rng.random() < 0.5 else gy1)
        yy, xx = np.ogrid[:h, :w]
        lift = (
            np.clip(1 - ((xx - corner[0]) ** 2 + (yy - corner[1]) ** 2) / (5.7 * s.mm) ** 2, 0, 1)
            * s.glass
        )
        blend_toward(s.rgb, lift * 0.12, (0.85, 0.88, 0.95))
        region |= lift > 0
    return region


_HARD_NEGATIVES: dict[str, Callable[[PhoneSurface, np.random.Generator], np.ndarray]] = {
    "smudge": _smudge,
    "dust": _dust,
    "reflection": _reflection,
    "protector_edge": _protector_edge,
}


def add_hard_negative(surface: PhoneSurface, kind: str, rng: np.random.Generator) -> np.ndarray:
    """Draw one defect-like but normal artefact onto `surface`; return its (h, w) bool region.

    The region is for bookkeeping only (montage crops, analyses): the image stays a normal.
    """
    if kind not in _HARD_NEGATIVES:
        raise ValueError(f"unknown hard negative {kind!r}; expected one of {HARD_NEGATIVE_KINDS}")
    return _HARD_NEGATIVES[kind](surface, rng)
