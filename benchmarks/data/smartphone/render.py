"""The capture renderer: a phone of a given design, photographed under a capture protocol.

A capture is drawn at `SUPERSAMPLE` x resolution in a phone-local canvas (body, frame, glass,
display content, cut-outs); defects and hard negatives are drawn there, then the phone is posed
(scale, rotation, keystone) onto a background, box-averaged down to the protocol's frame size,
lit, and given sensor noise and a tone curve. JPEG is applied by the writer.

Two protocols (`PROTOCOLS`):
- `qc` (the default benchmark): a QC station. The phone sits centred in a fixture (pose jitter
  under a degree and 2 % of scale) on one of a few station backgrounds; the display shows a test
  pattern (white, grey, black, red, green, blue) under dim diffuse light, or is switched off and
  lit by a raking lamp from one side, which makes what scatters light on the glass (scratches,
  cracks, dust) glow. Each defect kind is shot where a QC programme inspects it
  (`STATION_PROGRAMME`), and normals are shot on the same programme, so the screen a capture
  shows says nothing about its label.
- `wild`: consumer photos (wallpapers, home / lock / app screens, tables, free poses, white
  balance and exposure drift): the harder, less controlled variant.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageChops, ImageDraw
from scipy import ndimage

from benchmarks.data.smartphone.defects import DEFECT_KINDS, PhoneSurface, add_defect, add_hard_negative
from benchmarks.data.smartphone.designs import RGB, PhoneDesign
from benchmarks.data.smartphone.screens import QC_SCREENS, SCREEN_OFF, WILD_SCREENS, render_screen

SUPERSAMPLE = 2
PHONE_WIDTH_MM = 71.0  # every body is drawn this wide; millimetre sizes of defects follow from it
_REFERENCE_BODY = 620  # body height (canvas px) that the fixed-size details were drawn for
_PAD = 16  # canvas margin around the body at _REFERENCE_BODY, room for side buttons

# Where a QC station inspects each defect kind: display defects on lit patterns, glass and frame
# defects with the panel off under the raking lamp. Normals draw a kind, then its screen.
STATION_PROGRAMME: dict[str, tuple[str, ...]] = {
    "burn_in": ("grey", "white"),
    "mura": ("grey", "black"),
    "dead_pixels": ("white", "grey", "black", "red", "green", "blue"),
    "scratch": (SCREEN_OFF,),
    "crack": (SCREEN_OFF,),
    "dent": (SCREEN_OFF,),
}


@dataclass(frozen=True)
class CaptureProtocol:
    """How a capture is taken: frame size, framing and its jitter, and the screens shown.

    phone_height: the body's height as a fraction of the frame height (uniform in the range);
    rotation_deg / keystone / shift: the largest in-plane rotation, perspective tilt (x, y) and
    off-centre shift (fraction of the frame's width, height).
    """

    name: str
    width: int
    height: int
    phone_height: tuple[float, float]
    rotation_deg: float
    keystone: tuple[float, float]
    shift: tuple[float, float]
    jpeg_quality: int
    description: str

    @property
    def body_height(self) -> int:
        """Canvas pixels of the body before the pose (the pose then scales it by about 1)."""
        return int(round(SUPERSAMPLE * self.height * sum(self.phone_height) / 2))

    def screen_for(self, defect: str, rng: np.random.Generator) -> str:
        if self.name == "wild":
            return str(rng.choice(WILD_SCREENS, p=[0.55, 0.15, 0.12, 0.18]))
        kind = defect if defect in STATION_PROGRAMME else DEFECT_KINDS[int(rng.integers(len(DEFECT_KINDS)))]
        screens = STATION_PROGRAMME[kind]
        return screens[int(rng.integers(len(screens)))]


QC = CaptureProtocol(
    name="qc",
    width=384,
    height=768,
    phone_height=(0.8, 0.83),
    rotation_deg=0.7,
    keystone=(0.004, 0.004),
    shift=(0.012, 0.008),
    jpeg_quality=95,
    description="QC station: phone in a fixture, test patterns or raking light on the switched-off panel",
)
WILD = CaptureProtocol(
    name="wild",
    width=512,
    height=768,
    phone_height=(0.77, 0.89),
    rotation_deg=4.0,
    keystone=(0.035, 0.025),
    shift=(0.04, 0.025),
    jpeg_quality=90,
    description="consumer photos: wallpapers and UI content on random tables, free poses and lighting",
)
PROTOCOLS: dict[str, CaptureProtocol] = {p.name: p for p in (QC, WILD)}
assert set(STATION_PROGRAMME) == set(DEFECT_KINDS) and all(
    s in QC_SCREENS for screens in STATION_PROGRAMME.values() for s in screens
)


# ---------------------------------------------------------------- phone front


def _rounded(size: tuple[int, int], box: Sequence[float], radius: float) -> Image.Image:
    """A filled rounded rectangle as an "L" mask (0 / 255)."""
    img = Image.new("L", size, 0)
    ImageDraw.Draw(img).rounded_rectangle([float(v) for v in box], radius=max(0.0, radius), fill=255)
    return img


def _shade(rgb: RGB, factor: float) -> RGB:
    return tuple(int(np.clip(c * factor, 0, 255)) for c in rgb)  # type: ignore[return-value]


def build_surface(
    design: PhoneDesign, screen: str, rng: np.random.Generator, body_height: int = 2 * _REFERENCE_BODY
) -> PhoneSurface:
    """Draw the phone's front (frame, glass, display content, cut-outs, glass sheen) in canvas pixels.

    `body_height`: the body's height in canvas pixels (SUPERSAMPLE canvas pixels make one captured
    pixel); details drawn in fixed sizes (keys, home button, lens) scale with it.
    """
    bh = body_height
    k = bh / _REFERENCE_BODY
    pad = int(round(_PAD * k))
    bw = int(round(bh / design.aspect))
    cw, ch = bw + 2 * pad, bh + 2 * pad
    bx0, by0, bx1, by1 = pad, pad, pad + bw, pad + bh
    silhouette = _rounded((cw, ch), [bx0, by0, bx1 - 1, by1 - 1], design.corner_radius * bw)
    sdraw = ImageDraw.Draw(silhouette)
    for side, y0, y1 in ((1, 0.22, 0.3), (0, 0.2, 0.26), (0, 0.28, 0.36)):  # power and volume keys
        x = bx1 - 2 * k if side else bx0 - 3 * k
        sdraw.rounded_rectangle([x, by0 + y0 * bh, x + 4 * k, by0 + y1 * bh], radius=1.5 * k, fill=255)
    fw = design.frame_width * bw
    glass = _rounded(
        (cw, ch), [bx0 + fw, by0 + fw, bx1 - 1 - fw, by1 - 1 - fw], design.corner_radius * bw - fw
    )
    dx0, dx1 = bx0 + round(design.bezel_side * bw), bx1 - round(design.bezel_side * bw)
    dy0, dy1 = by0 + round(design.bezel_top * bw), by1 - round(design.bezel_bottom * bw)
    display = _rounded((cw, ch), [dx0, dy0, dx1 - 1, dy1 - 1], design.display_radius * bw)

    xs = np.arange(cw, dtype=np.float32)
    sheen = 0.78 + 0.3 * np.cos((xs - bx0) / bw * np.pi * rng.uniform(1.5, 2.5) + rng.uniform(0, np.pi)) ** 2
    frame_row = np.clip(np.outer(sheen, design.frame_rgb), 0, 255).astype(np.uint8)
    front = Image.fromarray(np.ascontiguousarray(np.broadcast_to(frame_row[None], (ch, cw, 3))))
    front.paste(design.bezel_rgb, mask=glass)
    content = render_screen(design, (dx1 - dx0, dy1 - dy0), screen, rng)
    if screen in WILD_SCREENS:  # a phone in use, at its own brightness; QC panels are calibrated
        brightness = rng.uniform(0.8, 1.0)
        content = content.point([int(v * brightness + 0.5) for v in range(256)] * 3)
    front.paste(content, (dx0, dy0), mask=display.crop((dx0, dy0, dx1, dy1)))

    cut = Image.new("L", (cw, ch), 0)
    cdraw = ImageDraw.Draw(cut)
    draw = ImageDraw.Draw(front)
    lenses: list[tuple[float, float, float]] = []  # (x, y, radius) of front cameras
    size = design.cutout_size * bw
    mid = (bx0 + bx1) / 2
    if design.cutout == "home_button":
        cy, ty = (dy1 + by1) / 2, (by0 + dy0) / 2
        ring = _shade(design.bezel_rgb, 0.7) if design.bezel_rgb[0] > 128 else (80, 80, 84)
        draw.ellipse([mid - size / 2, cy - size / 2, mid + size / 2, cy + size / 2], outline=ring, width=max(1, round(3 * k)))
        draw.rounded_rectangle(
            [mid - 0.09 * bw, ty - 3 * k, mid + 0.09 * bw, ty + 3 * k], radius=3 * k, fill=(25, 25, 28)
        )
        lenses.append((mid - 0.17 * bw, ty, 5.0 * k))
    elif design.cutout == "notch":
        cdraw.rounded_rectangle(
            [mid - size / 2, dy0 - 20 * k, mid + size / 2, dy0 + 0.075 * bw], radius=0.035 * bw, fill=255
        )
        lenses.append((mid + size * 0.28, dy0 + 0.035 * bw, 0.018 * bw))
    elif design.cutout == "waterdrop":
        cdraw.ellipse([mid - size / 2, dy0 - size * 0.35, mid + size / 2, dy0 + size * 0.65], fill=255)
        lenses.append((mid, dy0 + size * 0.15, size * 0.25))
    elif design.cutout.startswith("punch"):
        cx = mid if design.cutout == "punch_center" else dx0 + 0.1 * bw
        cy = dy0 + 0.045 * bw
        cdraw.ellipse([cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2], fill=255)
        lenses.append((cx, cy, size * 0.3))
    else:  # pill
        cy, ph = dy0 + 0.06 * bw, 0.085 * bw
        cdraw.rounded_rectangle(
            [mid - size / 2, cy - ph / 2, mid + size / 2, cy + ph / 2], radius=ph / 2, fill=255
        )
        lenses.append((mid + size * 0.3, cy, ph * 0.28))
    cut = ImageChops.darker(cut, glass)  # a notch never eats into the frame
    front.paste((5, 5, 6), mask=cut)
    for lx, ly, lr in lenses:
        draw.ellipse([lx - lr, ly - lr, lx + lr, ly + lr], fill=(15, 18, 30))
        draw.ellipse([lx - 0.45 * lr, ly - 0.45 * lr, lx + 0.45 * lr, ly + 0.45 * lr], fill=(30, 36, 64))

    glass_mask = np.asarray(glass) > 127
    rgb = np.asarray(front, np.float32) / 255.0
    angle = rng.uniform(-0.9, -0.3)
    band = (
        (xs[None, :] - bx0) * math.cos(angle)
        + (np.arange(ch, dtype=np.float32)[:, None] - by0) * math.sin(angle)
    ) / bh
    offset, width = rng.uniform(-0.6, 0.4), rng.uniform(0.08, 0.25)
    gloss_peak = rng.uniform(0.03, 0.1) if screen in WILD_SCREENS else rng.uniform(0.005, 0.015)
    gloss = np.exp(-(((band - offset) / width) ** 2)) * np.float32(gloss_peak) * glass_mask
    rgb *= 1.0 - gloss[..., None]
    rgb += gloss[..., None]
    return PhoneSurface(
        rgb=rgb,
        alpha=np.asarray(silhouette, np.float32) / 255.0,
        glass=glass_mask,
        display=(np.asarray(display) > 127) & glass_mask & (np.asarray(cut) < 128),
        frame=(np.asarray(silhouette) > 0) & ~glass_mask,
        display_box=(dx0, dy0, dx1, dy1),
        body_box=(bx0, by0, bx1, by1),
        pixel=SUPERSAMPLE,
        mm=bw / PHONE_WIDTH_MM,
    )


# ---------------------------------------------------------------- capture


@dataclass(frozen=True)
class Capture:
    """One rendered photo before JPEG.

    image: (height, width, 3) uint8 RGB. mask: (height, width) bool defect pixels (all False
    without a defect). region: the same for the hard-negative artefact, kept for bookkeeping only.
    screen: which display content was shown (WILD_SCREENS or QC_SCREENS). roi: (height, width) bool,
    the phone's intact body (display, bezel and frame; not the background): where a QC station
    inspects. mm_per_px: the capture's scale, from the design's body height in mm (`body_mm`).
    """

    image: np.ndarray
    mask: np.ndarray
    region: np.ndarray
    screen: str
    roi: np.ndarray | None = None
    mm_per_px: float | None = None


BODY_WIDTH_MM = 71.5
"""A phone body's width in mm (a typical 6-inch-class phone); its height follows the design's aspect."""


def body_mm(design: PhoneDesign) -> tuple[float, float]:
    """(width, height) of the design's body in mm: the scale the embedded captures record."""
    return BODY_WIDTH_MM, BODY_WIDTH_MM * design.aspect


def _homography(src: np.ndarray, dst: np.ndarray) -> tuple[float, ...]:
    """PIL PERSPECTIVE coefficients mapping output points `dst` (4, 2) back to input `src` (4, 2)."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(dst, src, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    return tuple(float(c) for c in np.linalg.solve(np.array(rows), np.array(rhs)))


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    return np.clip(arr * 255 + 0.5, 0, 255).astype(np.uint8)


def _upsample(arr: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Bilinear resize of a 2-D field to `shape` (h, w), float32."""
    img = Image.fromarray(np.asarray(arr, np.float32), mode="F")
    return np.asarray(img.resize((shape[1], shape[0]), Image.Resampling.BILINEAR), np.float32)


_TABLES: tuple[tuple[float, float, float], ...] = (
    (0.55, 0.38, 0.24),
    (0.5, 0.5, 0.52),
    (0.86, 0.85, 0.83),
    (0.13, 0.13, 0.15),
    (0.16, 0.34, 0.26),
    (0.3, 0.34, 0.45),
)
_STATIONS: tuple[tuple[float, float, float], ...] = (
    (0.07, 0.07, 0.075),  # matte black fixture plate
    (0.2, 0.2, 0.21),  # grey anodised plate
    (0.11, 0.17, 0.3),  # blue ESD mat
)


def _table(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Table surface (wood, desk, paper, fabric, cutting mat): (H, W, 3) float32."""
    h, w = shape
    base = np.array(_TABLES[int(rng.integers(len(_TABLES)))], np.float32) * rng.uniform(0.85, 1.15)
    low = _upsample(rng.normal(0, 1, (6, 4)), (h, w))
    xx = np.arange(w, dtype=np.float32)[None]
    grain = np.sin(xx * rng.uniform(0.05, 0.2) + 2.5 * low) * rng.uniform(0, 0.05)
    fine = _upsample(rng.normal(0, 1, (h // 4, w // 4)), (h, w)) * rng.uniform(0.005, 0.03)
    return base * (1 + 0.06 * low + grain + fine)[..., None]


def _station(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A fixture background: a flat plate or mat with a faint fine texture, (H, W, 3) float32."""
    base = np.array(_STATIONS[int(rng.integers(len(_STATIONS)))], np.float32) * rng.uniform(0.95, 1.05)
    fine = _upsample(rng.normal(0, 1, (shape[0] // 4, shape[1] // 4)), shape) * 0.02
    return base * (1 + fine)[..., None]


@dataclass(frozen=True)
class _Pose:
    """Where the phone canvas lands in the supersampled frame: a homography, the window it covers
    (x0, y0, x1, y1, multiples of SUPERSAMPLE; pixels far from the phone are skipped) and the
    frame size (h, w) in captured pixels."""

    coeffs: tuple[float, ...]
    window: tuple[int, int, int, int]
    frame: tuple[int, int]
    body_px: float = 0.0  # the body's height in captured pixels (before tilt)

    def apply(self, img: Image.Image) -> np.ndarray:
        """Warp a canvas image, box-average it to capture size: (H, W) or (H, W, C) float32 in [0, 1].

        RGBA comes back premultiplied ("RGBa"), so that box averaging is correct; PIL itself
        interpolates straight alpha.
        """
        x0, y0, x1, y1 = self.window
        size = (x1 - x0, y1 - y0)
        out = img.transform(
            size, Image.Transform.PERSPECTIVE, self.coeffs, resample=Image.Resampling.BILINEAR
        )
        if img.mode == "RGBA":
            out = out.convert("RGBa")
        small = np.asarray(out.reduce(SUPERSAMPLE), np.float32) / 255.0
        full = np.zeros((*self.frame, *small.shape[2:]), np.float32)
        s = SUPERSAMPLE
        full[y0 // s : y1 // s, x0 // s : x1 // s] = small
        return full

    def mask(self, footprint: np.ndarray | None) -> np.ndarray:
        """A canvas footprint posed like the phone; a pixel is in when >5% of it is covered."""
        if footprint is None:
            return np.zeros(self.frame, bool)
        return self.apply(Image.fromarray(footprint.astype(np.uint8) * 255, "L")) > 0.05


def _random_pose(
    canvas: tuple[int, int], body_height: int, protocol: CaptureProtocol, rng: np.random.Generator
) -> _Pose:
    """Scale to the protocol's phone height, in-plane rotation, keystone tilt and an off-centre shift."""
    ch, cw = canvas
    out_w, out_h = protocol.width * SUPERSAMPLE, protocol.height * SUPERSAMPLE
    scale = rng.uniform(*protocol.phone_height) * out_h / body_height
    theta = math.radians(rng.uniform(-protocol.rotation_deg, protocol.rotation_deg))
    tilt_x, tilt_y = (rng.uniform(-t, t) for t in protocol.keystone)
    corners = np.array([[-cw / 2, -ch / 2], [cw / 2, -ch / 2], [cw / 2, ch / 2], [-cw / 2, ch / 2]])
    corners[:, 0] *= 1 + tilt_x * np.sign(corners[:, 1])
    corners[:, 1] *= 1 + tilt_y * np.sign(corners[:, 0])
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    shift = (rng.uniform(-1, 1) * protocol.shift[0] * out_w, rng.uniform(-1, 1) * protocol.shift[1] * out_h)
    dst = corners @ rot.T * scale + np.array([out_w / 2 + shift[0], out_h / 2 + shift[1]])
    s = SUPERSAMPLE
    x0, y0 = (max(0, int(v) // s * s - s) for v in dst.min(axis=0))
    x1 = min(out_w, (int(math.ceil(dst[:, 0].max())) // s + 2) * s)
    y1 = min(out_h, (int(math.ceil(dst[:, 1].max())) // s + 2) * s)
    src = np.array([[0, 0], [cw, 0], [cw, ch], [0, ch]], float)
    return _Pose(_homography(src, dst - np.array([x0, y0])), (x0, y0, x1, y1), (protocol.height, protocol.width),
                 body_px=scale * body_height / s)


def _raking_light(surface: PhoneSurface, rng: np.random.Generator) -> None:
    """In place: a low lamp on one side of a switched-off phone. Light falls off across the body;
    what scatters it (scratches, crack edges, dust, the frame) shows, clean glass stays dark."""
    h, w = surface.shape
    bx0, _, bx1, _ = surface.body_box
    xs = (np.arange(w, dtype=np.float32) - bx0) / (bx1 - bx0)
    if rng.random() < 0.5:
        xs = 1 - xs
    falloff = np.exp(-np.clip(xs, 0, None) * rng.uniform(0.8, 1.2))
    light = (rng.uniform(0.55, 0.7) + rng.uniform(0.5, 0.65) * falloff).astype(np.float32)
    surface.rgb *= light[None, :, None]


def _light_wild(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Exposure, a light gradient, vignetting and white balance of a hand-held photo."""
    h, w = image.shape[:2]
    yy, xx = (g.astype(np.float32) for g in np.ogrid[0:h, 0:w])
    gx, gy = (float(v) for v in rng.uniform(-0.25, 0.25, 2))
    vignette = 1 - rng.uniform(0.05, 0.3) * (((xx / w - 0.5) ** 2 + (yy / h - 0.5) ** 2) / 0.5)
    light = (1 + gx * (xx / w - 0.5) + gy * (yy / h - 0.5)) * vignette * rng.uniform(0.75, 1.25)
    white_balance = np.array([1 + (t := rng.uniform(-0.07, 0.07)), 1.0, 1 - t], np.float32)
    return image * (light[..., None] * white_balance)


def _light_station(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A fixed station camera: exposure within 3 %, a faint lens vignette, locked white balance."""
    h, w = image.shape[:2]
    yy, xx = (g.astype(np.float32) for g in np.ogrid[0:h, 0:w])
    vignette = 1 - 0.06 * (((xx / w - 0.5) ** 2 + (yy / h - 0.5) ** 2) / 0.5)
    return image * (vignette * rng.uniform(0.97, 1.03))[..., None]


def render_capture(
    design: PhoneDesign,
    seed: Sequence[int],
    defect: str = "none",
    severity: float = 0.5,
    hard_negative: str = "none",
    screen: str | None = None,
    protocol: CaptureProtocol = QC,
) -> Capture:
    """Render one photo of `design` under `protocol`; deterministic in `seed` (e.g. (dataset seed,
    image index)).

    The screen, the scene (pose, background, lighting), the defect and the sensor noise draw from
    independent child streams of `seed`, so the same seed and screen with and without a defect
    give the same photo except inside the defect mask. Without `screen`, the protocol picks one
    (under `qc`, the station programme of `defect`).
    """
    screen_ss, scene_ss, defect_ss, noise_ss = np.random.SeedSequence(list(seed)).spawn(4)
    rng, defect_rng, noise_rng = (np.random.default_rng(s) for s in (scene_ss, defect_ss, noise_ss))
    if screen is None:
        screen = protocol.screen_for(defect, np.random.default_rng(screen_ss))
    surface = build_surface(design, screen, rng, body_height=protocol.body_height)
    intact_alpha = surface.alpha.copy()
    footprint = region = None
    if hard_negative != "none":
        region = add_hard_negative(surface, hard_negative, defect_rng)
    if defect != "none":
        footprint = add_defect(surface, defect, severity, defect_rng)
    if screen == SCREEN_OFF:
        _raking_light(surface, rng)

    pose = _random_pose(surface.shape, protocol.body_height, protocol, rng)
    rgba = np.dstack([_to_uint8(surface.rgb), _to_uint8(surface.alpha)])
    posed = pose.apply(Image.fromarray(rgba, "RGBA"))
    colour, alpha = posed[..., :3], posed[..., 3]
    mask, region_mask = pose.mask(footprint), pose.mask(region)
    frame = (protocol.height, protocol.width)
    if protocol.name == "wild":
        if np.array_equal(intact_alpha, surface.alpha):
            caster = alpha
        else:  # a dent must not move the shadow
            caster = pose.apply(Image.fromarray(_to_uint8(intact_alpha), "L"))
        background = _table(rng, frame)
        shadow_offset = (rng.uniform(2, 8, 2) * protocol.height / 384).astype(int)
        coarse = np.roll(caster, tuple(shadow_offset), axis=(0, 1))[::4, ::4]
        shadow = _upsample(ndimage.gaussian_filter(coarse, rng.uniform(0.75, 1.75)), caster.shape)
        background *= 1 - rng.uniform(0.3, 0.55) * shadow[..., None]
        img = _light_wild(background * (1 - alpha[..., None]) + colour, rng)
        noise = (noise_rng.uniform(0.004, 0.012), noise_rng.uniform(0.005, 0.015))
        gamma = rng.uniform(0.9, 1.1)
    else:
        img = _light_station(_station(rng, frame) * (1 - alpha[..., None]) + colour, rng)
        noise = (noise_rng.uniform(0.003, 0.005), noise_rng.uniform(0.004, 0.007))
        gamma = 1.0
    # sensor noise in linear light, then the camera's tone curve (a gamma) through a 12-bit lookup
    sigma = noise[0] + noise[1] * np.sqrt(np.clip(img, 0, 1))
    img += sigma * noise_rng.standard_normal(img.shape, dtype=np.float32)
    codes = np.clip(img * 4095 + 0.5, 0, 4095).astype(np.uint16)
    curve = np.linspace(0, 1, 4096) ** gamma
    image = (curve * 255 + 0.5).astype(np.uint8)[codes]
    roi = pose.mask(intact_alpha > 0.5)
    return Capture(image=image, mask=mask, region=region_mask, screen=screen, roi=roi,
                   mm_per_px=body_mm(design)[1] / pose.body_px)
