"""Phone designs per generation year and the capture renderer (front-view photos of phones).

A capture is drawn at `SUPERSAMPLE` x resolution in a phone-local canvas (body, frame, glass,
display with wallpaper and UI, cut-outs), defects and hard negatives are drawn there, then the
phone is posed (scale, rotation, keystone perspective) onto a table background, box-averaged down
to `IMAGE_HEIGHT x IMAGE_WIDTH`, lit (exposure, white balance, illumination gradient, vignetting,
gamma) and given sensor noise. JPEG is applied by the writer. Designs depend only on (year, model
index), never on the dataset seed, so a group name always means the same device.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFont
from scipy import ndimage

from benchmarks.data.smartphone.defects import PhoneSurface, add_defect, add_hard_negative

IMAGE_WIDTH = 256
IMAGE_HEIGHT = 384
SUPERSAMPLE = 2
YEARS = tuple(range(2017, 2026))
MODELS_PER_YEAR = 3
SCREENS = ("home", "lock", "app", "solid")
_BODY_HEIGHT = 620  # phone body height in canvas pixels before the pose scale
_PAD = 16  # canvas margin around the body, room for side buttons

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class PhoneDesign:
    """One device model. Lengths are fractions of the body width; colours are 0-255 RGB.

    cutout: "home_button" (2017: no display cut-out, physical button), "notch", "waterdrop",
    "punch_left", "punch_center", "pill". ui_style picks the generation's UI look.
    """

    group: str
    year: int
    aspect: float  # body height / body width
    corner_radius: float
    bezel_side: float
    bezel_top: float
    bezel_bottom: float
    display_radius: float
    cutout: str
    cutout_size: float  # notch / pill width, punch-hole or water-drop diameter, home-button diameter
    frame_width: float
    frame_rgb: RGB
    bezel_rgb: RGB
    ui_style: str  # "classic", "material" or "modern"


@dataclass(frozen=True)
class _YearLanguage:
    aspect: tuple[float, float]
    corner_radius: tuple[float, float]
    bezel_side: tuple[float, float]
    bezel_top: tuple[float, float]
    bezel_bottom: tuple[float, float]
    display_radius: tuple[float, float]
    cutouts: tuple[str, ...]
    cutout_size: tuple[float, float]
    frame_width: tuple[float, float]
    frames: tuple[RGB, ...]
    ui_style: str


_CLASSIC_FRAMES: tuple[RGB, ...] = (
    (200, 200, 204),
    (214, 190, 150),
    (222, 180, 170),
    (90, 90, 95),
    (40, 40, 42),
)
_MATERIAL_FRAMES: tuple[RGB, ...] = (
    (60, 62, 70),
    (170, 175, 185),
    (30, 60, 110),
    (150, 40, 50),
    (20, 20, 22),
)
_TITANIUM_FRAMES: tuple[RGB, ...] = ((176, 170, 160), (75, 84, 100), (196, 176, 150), (58, 58, 62))
_LATEST_FRAMES: tuple[RGB, ...] = (
    (210, 210, 216),
    (124, 146, 116),
    (232, 140, 70),
    (44, 52, 78),
    (160, 120, 190),
)

# Numeric fields: (low, high) ranges each model draws from, in body widths (aspect: height / width);
# cut-outs go to the models in turn, frame colours are picked per model.
# fmt: off
_LANGUAGE: dict[int, _YearLanguage] = {
    #           aspect        corner        bezel side      bezel top       bezel bottom    display radius
    2017: _YearLanguage((1.95, 2.02), (0.1, 0.14), (0.05, 0.065), (0.17, 0.2), (0.18, 0.21), (0.0, 0.01),
                        ("home_button",), (0.13, 0.16), (0.018, 0.024), _CLASSIC_FRAMES, "classic"),
    2018: _YearLanguage((2.0, 2.06), (0.12, 0.14), (0.035, 0.045), (0.045, 0.055), (0.07, 0.09), (0.06, 0.08),
                        ("notch",), (0.42, 0.55), (0.016, 0.02), _CLASSIC_FRAMES, "classic"),
    2019: _YearLanguage((2.05, 2.1), (0.12, 0.14), (0.03, 0.038), (0.032, 0.04), (0.05, 0.065), (0.07, 0.09),
                        ("waterdrop",), (0.07, 0.09), (0.015, 0.019), _MATERIAL_FRAMES, "material"),
    2020: _YearLanguage((2.1, 2.15), (0.12, 0.14), (0.026, 0.03), (0.028, 0.034), (0.036, 0.045), (0.08, 0.1),
                        ("punch_left", "punch_center"), (0.05, 0.058), (0.015, 0.018), _MATERIAL_FRAMES, "material"),
    2021: _YearLanguage((2.1, 2.16), (0.12, 0.14), (0.022, 0.027), (0.025, 0.03), (0.032, 0.04), (0.09, 0.11),
                        ("punch_center", "punch_left"), (0.046, 0.052), (0.015, 0.018), _MATERIAL_FRAMES, "material"),
    2022: _YearLanguage((2.12, 2.18), (0.12, 0.14), (0.018, 0.022), (0.02, 0.025), (0.024, 0.03), (0.1, 0.12),
                        ("punch_center",), (0.038, 0.044), (0.014, 0.017), _MATERIAL_FRAMES, "material"),
    2023: _YearLanguage((2.12, 2.18), (0.12, 0.14), (0.016, 0.02), (0.018, 0.022), (0.022, 0.027), (0.1, 0.12),
                        ("punch_center", "punch_left"), (0.035, 0.04), (0.014, 0.017), _MATERIAL_FRAMES, "material"),
    2024: _YearLanguage((2.0, 2.24), (0.17, 0.2), (0.011, 0.013), (0.011, 0.014), (0.011, 0.014), (0.15, 0.18),
                        ("pill", "punch_center", "pill"), (0.26, 0.3), (0.024, 0.03), _TITANIUM_FRAMES, "modern"),
    2025: _YearLanguage((1.98, 2.26), (0.2, 0.23), (0.008, 0.011), (0.009, 0.012), (0.009, 0.012), (0.18, 0.21),
                        ("pill", "pill", "punch_center"), (0.24, 0.3), (0.026, 0.032), _LATEST_FRAMES, "modern"),
}
# fmt: on


def phone_design(year: int, index: int) -> PhoneDesign:
    """Model `index` (0-based) of generation `year`; group name `phone-{year}-{a,b,c,...}`."""
    lang = _LANGUAGE[year]
    rng = np.random.default_rng(1000 * year + index)

    def pick(bounds: tuple[float, float]) -> float:
        return float(rng.uniform(*bounds))

    lo, hi = lang.aspect
    aspect = lo + (hi - lo) * (index + rng.uniform(0.2, 0.8)) / MODELS_PER_YEAR  # spread models out
    cutout = lang.cutouts[index % len(lang.cutouts)]
    size = pick(lang.cutout_size) if cutout != "punch_center" or year < 2024 else 0.032
    white_front = year == 2017 and index == 1
    return PhoneDesign(
        group=f"phone-{year}-{'abcdefgh'[index]}",
        year=year,
        aspect=aspect,
        corner_radius=pick(lang.corner_radius),
        bezel_side=pick(lang.bezel_side),
        bezel_top=pick(lang.bezel_top),
        bezel_bottom=pick(lang.bezel_bottom),
        display_radius=pick(lang.display_radius),
        cutout=cutout,
        cutout_size=size,
        frame_width=pick(lang.frame_width),
        frame_rgb=lang.frames[int(rng.integers(len(lang.frames)))],
        bezel_rgb=(236, 236, 232) if white_front else (10, 10, 13),
        ui_style=lang.ui_style,
    )


PHONE_DESIGNS: tuple[PhoneDesign, ...] = tuple(
    phone_design(year, i) for year in YEARS for i in range(MODELS_PER_YEAR)
)


def designs_for_years(years: Sequence[int]) -> tuple[PhoneDesign, ...]:
    return tuple(d for d in PHONE_DESIGNS if d.year in set(years))


# ---------------------------------------------------------------- screen content


@functools.lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=max(6, size))


_ICON_COLOURS: tuple[RGB, ...] = (
    (52, 199, 89),
    (0, 122, 255),
    (255, 149, 0),
    (255, 59, 48),
    (175, 82, 222),
    (255, 204, 0),
    (90, 200, 250),
    (255, 45, 85),
    (88, 86, 214),
    (142, 142, 147),
    (30, 30, 30),
    (245, 245, 245),
)


def _wallpaper(w: int, h: int, rng: np.random.Generator, dark: bool) -> Image.Image:
    """Smooth abstract wallpaper: a two-colour gradient with soft colour blobs, drawn at 1/4 size."""
    sw, sh = max(4, w // 4), max(4, h // 4)
    yy, xx = np.mgrid[0:sh, 0:sw].astype(np.float32)
    c1, c2 = rng.uniform(0.05, 0.95, 3), rng.uniform(0.05, 0.95, 3)
    angle = rng.uniform(0, np.pi)
    t = ((xx / sw - 0.5) * np.cos(angle) + (yy / sh - 0.5) * np.sin(angle)) + 0.5
    img = c1 * (1 - t[..., None]) + c2 * t[..., None]
    for _ in range(int(rng.integers(2, 5))):
        bx, by, br = rng.uniform(0, sw), rng.uniform(0, sh), rng.uniform(0.15, 0.45) * sw
        blob = np.exp(-((xx - bx) ** 2 + (yy - by) ** 2) / (2 * br**2))
        img = img * (1 - 0.7 * blob[..., None]) + 0.7 * blob[..., None] * rng.uniform(0, 1, 3)
    if rng.random() < 0.4:
        waves = 0.5 + 0.5 * np.sin(yy / sh * rng.uniform(6, 14) + 3 * np.sin(xx / sw * 3))
        img = img * (0.85 + 0.15 * waves[..., None])
    if dark:
        img = img * 0.35
    small = Image.fromarray(np.clip(img * 255, 0, 255).astype(np.uint8))
    return small.resize((w, h), Image.Resampling.BILINEAR)


def _icon(
    draw: ImageDraw.ImageDraw, x: float, y: float, size: float, colour: RGB, style: str, glyph: int
) -> None:
    radius = {"classic": 0.22, "material": 0.5, "modern": 0.3}[style] * size
    draw.rounded_rectangle([x, y, x + size, y + size], radius=radius, fill=colour)
    g = size * 0.28
    cx, cy = x + size / 2, y + size / 2
    ink = (255, 255, 255) if sum(colour) < 600 else (60, 60, 60)
    if glyph == 0:
        draw.ellipse([cx - g, cy - g, cx + g, cy + g], outline=ink, width=max(1, int(size * 0.08)))
    elif glyph == 1:
        draw.rectangle([cx - g, cy - g * 0.7, cx + g, cy + g * 0.7], fill=ink)
    elif glyph == 2:
        draw.polygon([(cx, cy - g), (cx + g, cy + g * 0.8), (cx - g, cy + g * 0.8)], fill=ink)
    else:
        draw.line([(cx - g, cy), (cx + g, cy)], fill=ink, width=max(1, int(size * 0.1)))
        draw.line([(cx, cy - g), (cx, cy + g)], fill=ink, width=max(1, int(size * 0.1)))


def _status_bar(
    draw: ImageDraw.ImageDraw, w: int, u: float, ink: RGB, rng: np.random.Generator, style: str
) -> None:
    top = 2.5 * u if style != "modern" else 3.5 * u
    clock = f"{int(rng.integers(1, 13))}:{int(rng.integers(0, 60)):02d}"
    draw.text((7 * u, top), clock, fill=ink, font=_font(int(5.5 * u)))
    draw.rounded_rectangle(
        [w - 13 * u, top + 0.8 * u, w - 5.5 * u, top + 4.5 * u],
        radius=u,
        outline=ink,
        width=max(1, int(0.6 * u)),
    )
    draw.rectangle(
        [w - 12 * u, top + 1.8 * u, w - 12 * u + rng.uniform(1.5, 5.5) * u, top + 3.5 * u], fill=ink
    )
    for k in range(4):
        bx = w - 24 * u + 2 * k * u
        draw.rectangle([bx, top + (4.2 - k) * u, bx + 1.2 * u, top + 4.5 * u], fill=ink)


def _home_screen(img: Image.Image, design: PhoneDesign, rng: np.random.Generator, dark: bool) -> None:
    w, h = img.size
    u = w / 100.0
    overlay = Image.new("RGBA", img.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    style = design.ui_style
    cols = 4
    size = {"classic": 15.5, "material": 14.0, "modern": 17.0}[style] * u
    gap_x = (w - cols * size) / (cols + 1)
    top = 12 * u
    if style != "classic":  # clock / weather widget
        wh = 22 * u if style == "material" else 40 * u
        draw.rounded_rectangle(
            [gap_x, top, w - gap_x, top + wh],
            radius=6 * u if style == "modern" else 3 * u,
            fill=(255, 255, 255, 70) if not dark else (40, 40, 48, 200),
        )
        draw.text(
            (gap_x + 5 * u, top + 3 * u),
            f"{int(rng.integers(1, 13))}:{int(rng.integers(0, 60)):02d}",
            fill=(255, 255, 255, 255),
            font=_font(int(11 * u)),
        )
        if style == "modern":
            draw.rounded_rectangle(
                [w / 2 + 2 * u, top + 4 * u, w - gap_x - 4 * u, top + wh - 4 * u],
                radius=4 * u,
                fill=tuple(int(c) for c in rng.integers(60, 230, 3)) + (230,),
            )
        top += wh + 5 * u
    rows = int(rng.integers(2, 5)) if style != "classic" else int(rng.integers(3, 6))
    colours = rng.integers(len(_ICON_COLOURS), size=(rows + 1) * cols)
    for r in range(rows):
        for c in range(cols):
            x, y = gap_x + c * (size + gap_x), top + r * (size + 8 * u)
            _icon(
                draw, x, y, size, _ICON_COLOURS[colours[r * cols + c]], style, int(colours[r * cols + c]) % 4
            )
            draw.rectangle(
                [x + 0.15 * size, y + size + 2 * u, x + 0.85 * size, y + size + 3.3 * u],
                fill=(255, 255, 255, 170),
            )
    dock_y = h - (size + (14 if style == "classic" else 19) * u)
    if style == "classic":
        draw.rectangle([0, dock_y - 3 * u, w, h], fill=(255, 255, 255, 60))
    elif style == "modern":
        draw.rounded_rectangle(
            [3 * u, dock_y - 4 * u, w - 3 * u, dock_y + size + 4 * u], radius=9 * u, fill=(255, 255, 255, 55)
        )
    for c in range(cols):
        k = int(colours[rows * cols + c])
        _icon(draw, gap_x + c * (size + gap_x), dock_y, size, _ICON_COLOURS[k], style, k % 4)
    img.paste(Image.alpha_composite(img.convert("RGBA"), overlay).convert("RGB"))


def _lock_screen(img: Image.Image, design: PhoneDesign, rng: np.random.Generator, dark: bool) -> None:
    w, h = img.size
    u = w / 100.0
    overlay = Image.new("RGBA", img.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    clock = f"{int(rng.integers(1, 13))}:{int(rng.integers(0, 60)):02d}"
    font = _font(int((24 if design.ui_style != "modern" else 30) * u))
    tw = draw.textlength(clock, font=font)
    draw.text(((w - tw) / 2, 16 * u), clock, fill=(255, 255, 255, 240), font=font)
    draw.rectangle([w / 2 - 18 * u, 12 * u, w / 2 + 18 * u, 14 * u], fill=(255, 255, 255, 200))
    for k in range(int(rng.integers(0, 3))):
        y = 60 * u + k * 22 * u
        draw.rounded_rectangle([5 * u, y, w - 5 * u, y + 18 * u], radius=4 * u, fill=(245, 245, 245, 200))
        draw.ellipse(
            [8 * u, y + 4 * u, 17 * u, y + 13 * u], fill=_ICON_COLOURS[int(rng.integers(10))] + (255,)
        )
        draw.rectangle([21 * u, y + 5 * u, 60 * u, y + 7 * u], fill=(40, 40, 40, 220))
        draw.rectangle([21 * u, y + 10 * u, 80 * u, y + 12 * u], fill=(110, 110, 110, 200))
    for cx in (14 * u, w - 14 * u):
        draw.ellipse([cx - 6 * u, h - 22 * u, cx + 6 * u, h - 10 * u], fill=(30, 30, 30, 150))
    img.paste(Image.alpha_composite(img.convert("RGBA"), overlay).convert("RGB"))


def _app_screen(img: Image.Image, design: PhoneDesign, rng: np.random.Generator, dark: bool) -> None:
    w, h = img.size
    u = w / 100.0
    draw = ImageDraw.Draw(img)
    bg, ink = ((28, 28, 30), (220, 220, 225)) if dark else ((250, 250, 250), (40, 40, 45))
    draw.rectangle([0, 0, w, h], fill=bg)
    accent = _ICON_COLOURS[int(rng.integers(9))]
    draw.rectangle([0, 0, w, 20 * u], fill=accent)
    draw.rectangle([8 * u, 12 * u, 50 * u, 15 * u], fill=(255, 255, 255))
    y = 26 * u
    while y < h - 20 * u:
        draw.ellipse([5 * u, y, 16 * u, y + 11 * u], fill=_ICON_COLOURS[int(rng.integers(12))])
        draw.rectangle([21 * u, y + 2 * u, 21 * u + rng.uniform(30, 60) * u, y + 4 * u], fill=ink)
        draw.rectangle(
            [21 * u, y + 7 * u, 21 * u + rng.uniform(40, 70) * u, y + 8.5 * u], fill=(140, 140, 145)
        )
        draw.line([(21 * u, y + 13 * u), (w, y + 13 * u)], fill=(200, 200, 200) if not dark else (60, 60, 60))
        y += 16 * u
    draw.ellipse([w - 22 * u, h - 30 * u, w - 6 * u, h - 14 * u], fill=accent)


def render_screen(
    design: PhoneDesign, size: tuple[int, int], screen: str, rng: np.random.Generator
) -> Image.Image:
    """Display content of `size` (w, h) canvas pixels as an RGB image.

    `screen` is one of SCREENS; "solid" is an inspection test pattern (flat white, grey, dark grey
    or a primary colour with a faint vertical gradient).
    """
    w, h = size
    dark = rng.random() < (0.2 if design.ui_style == "classic" else 0.4)
    if screen == "solid":
        levels = [
            (0.95, 0.95, 0.95),
            (0.55, 0.55, 0.55),
            (0.25, 0.25, 0.25),
            (0.85, 0.1, 0.1),
            (0.1, 0.7, 0.2),
            (0.15, 0.25, 0.85),
        ]
        base = np.array(levels[int(rng.integers(len(levels)))], np.float32)
        ramp = 1 + rng.uniform(-0.04, 0.04) * np.linspace(-1, 1, h, dtype=np.float32)
        column = np.clip(base * ramp[:, None] * 255 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(np.ascontiguousarray(np.broadcast_to(column[:, None], (h, w, 3))))
    img = _wallpaper(w, h, rng, dark)
    {"home": _home_screen, "lock": _lock_screen, "app": _app_screen}[screen](img, design, rng, dark)
    u = w / 100.0
    draw = ImageDraw.Draw(img)
    ink: RGB = (255, 255, 255) if dark or screen != "app" else (30, 30, 30)
    _status_bar(draw, w, u, ink if screen != "app" else (255, 255, 255), rng, design.ui_style)
    if design.cutout != "home_button":
        if design.year <= 2019:
            cy = h - 4.5 * u
            draw.polygon([(30 * u, cy), (35 * u, cy - 3 * u), (35 * u, cy + 3 * u)], fill=ink)
            draw.ellipse([47 * u, cy - 3 * u, 53 * u, cy + 3 * u], outline=ink, width=max(1, int(0.7 * u)))
            draw.rectangle(
                [65 * u, cy - 2.5 * u, 70 * u, cy + 2.5 * u], outline=ink, width=max(1, int(0.7 * u))
            )
        else:
            draw.rounded_rectangle(
                [w / 2 - 17 * u, h - 3.5 * u, w / 2 + 17 * u, h - 2.3 * u], radius=u, fill=ink
            )
    return img


# ---------------------------------------------------------------- phone front


def _rounded(size: tuple[int, int], box: Sequence[float], radius: float) -> Image.Image:
    """A filled rounded rectangle as an "L" mask (0 / 255)."""
    img = Image.new("L", size, 0)
    ImageDraw.Draw(img).rounded_rectangle([float(v) for v in box], radius=max(0.0, radius), fill=255)
    return img


def _shade(rgb: RGB, factor: float) -> RGB:
    return tuple(int(np.clip(c * factor, 0, 255)) for c in rgb)  # type: ignore[return-value]


def build_surface(design: PhoneDesign, screen: str, rng: np.random.Generator) -> PhoneSurface:
    """Draw the phone's front (frame, glass, display content, cut-outs, glass sheen) in canvas pixels."""
    bh = _BODY_HEIGHT
    bw = int(round(bh / design.aspect))
    cw, ch = bw + 2 * _PAD, bh + 2 * _PAD
    bx0, by0, bx1, by1 = _PAD, _PAD, _PAD + bw, _PAD + bh
    silhouette = _rounded((cw, ch), [bx0, by0, bx1 - 1, by1 - 1], design.corner_radius * bw)
    sdraw = ImageDraw.Draw(silhouette)
    for side, y0, y1 in ((1, 0.22, 0.3), (0, 0.2, 0.26), (0, 0.28, 0.36)):  # power and volume keys
        x = bx1 - 2 if side else bx0 - 3
        sdraw.rounded_rectangle([x, by0 + y0 * bh, x + 4, by0 + y1 * bh], radius=1.5, fill=255)
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
        draw.ellipse([mid - size / 2, cy - size / 2, mid + size / 2, cy + size / 2], outline=ring, width=3)
        draw.rounded_rectangle(
            [mid - 0.09 * bw, ty - 3, mid + 0.09 * bw, ty + 3], radius=3, fill=(25, 25, 28)
        )
        lenses.append((mid - 0.17 * bw, ty, 5.0))
    elif design.cutout == "notch":
        cdraw.rounded_rectangle(
            [mid - size / 2, dy0 - 20, mid + size / 2, dy0 + 0.075 * bw], radius=0.035 * bw, fill=255
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
    gloss = np.exp(-(((band - offset) / width) ** 2)) * np.float32(rng.uniform(0.03, 0.1)) * glass_mask
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
    )


# ---------------------------------------------------------------- capture


@dataclass(frozen=True)
class Capture:
    """One rendered photo before JPEG.

    image: (IMAGE_HEIGHT, IMAGE_WIDTH, 3) uint8 RGB. mask: (IMAGE_HEIGHT, IMAGE_WIDTH) bool defect
    pixels (all False without a defect). region: the same for the hard-negative artefact, kept
    for bookkeeping only. screen: which display content was shown.
    """

    image: np.ndarray
    mask: np.ndarray
    region: np.ndarray
    screen: str


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


_SURFACES: tuple[tuple[float, float, float], ...] = (
    (0.55, 0.38, 0.24),
    (0.5, 0.5, 0.52),
    (0.86, 0.85, 0.83),
    (0.13, 0.13, 0.15),
    (0.16, 0.34, 0.26),
    (0.3, 0.34, 0.45),
)


def _upsample(arr: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Bilinear resize of a 2-D field to `shape` (h, w), float32."""
    img = Image.fromarray(np.asarray(arr, np.float32), mode="F")
    return np.asarray(img.resize((shape[1], shape[0]), Image.Resampling.BILINEAR), np.float32)


def _background(rng: np.random.Generator) -> np.ndarray:
    """Table surface (wood, desk, paper, fabric, cutting mat): (H, W, 3) float32."""
    h, w = IMAGE_HEIGHT, IMAGE_WIDTH
    base = np.array(_SURFACES[int(rng.integers(len(_SURFACES)))], np.float32) * rng.uniform(0.85, 1.15)
    low = _upsample(rng.normal(0, 1, (6, 4)), (h, w))
    xx = np.arange(w, dtype=np.float32)[None]
    grain = np.sin(xx * rng.uniform(0.1, 0.4) + 2.5 * low) * rng.uniform(0, 0.05)
    fine = _upsample(rng.normal(0, 1, (h // 2, w // 2)), (h, w)) * rng.uniform(0.005, 0.03)
    return base * (1 + 0.06 * low + grain + fine)[..., None]


@dataclass(frozen=True)
class _Pose:
    """Where the phone canvas lands in the supersampled frame: a homography and the window it
    covers (x0, y0, x1, y1, multiples of SUPERSAMPLE), so pixels far from the phone are skipped."""

    coeffs: tuple[float, ...]
    window: tuple[int, int, int, int]

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
        full = np.zeros((IMAGE_HEIGHT, IMAGE_WIDTH, *small.shape[2:]), np.float32)
        s = SUPERSAMPLE
        full[y0 // s : y1 // s, x0 // s : x1 // s] = small
        return full

    def mask(self, footprint: np.ndarray | None) -> np.ndarray:
        """A canvas footprint posed like the phone; a pixel is in when >5% of it is covered."""
        if footprint is None:
            return np.zeros((IMAGE_HEIGHT, IMAGE_WIDTH), bool)
        return self.apply(Image.fromarray(footprint.astype(np.uint8) * 255, "L")) > 0.05


def _random_pose(canvas: tuple[int, int], rng: np.random.Generator) -> _Pose:
    """Scale, in-plane rotation up to 4 degrees, keystone tilt and an off-centre shift."""
    ch, cw = canvas
    out_w, out_h = IMAGE_WIDTH * SUPERSAMPLE, IMAGE_HEIGHT * SUPERSAMPLE
    scale = rng.uniform(0.9, 1.03) * (0.9 * out_h) / ch
    theta = math.radians(rng.uniform(-4, 4))
    tilt_x, tilt_y = rng.uniform(-0.035, 0.035), rng.uniform(-0.025, 0.025)
    corners = np.array([[-cw / 2, -ch / 2], [cw / 2, -ch / 2], [cw / 2, ch / 2], [-cw / 2, ch / 2]])
    corners[:, 0] *= 1 + tilt_x * np.sign(corners[:, 1])
    corners[:, 1] *= 1 + tilt_y * np.sign(corners[:, 0])
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    shift = (rng.uniform(-0.04, 0.04) * out_w, rng.uniform(-0.025, 0.025) * out_h)
    dst = corners @ rot.T * scale + np.array([out_w / 2 + shift[0], out_h / 2 + shift[1]])
    s = SUPERSAMPLE
    x0, y0 = (max(0, int(v) // s * s - s) for v in dst.min(axis=0))
    x1 = min(out_w, (int(math.ceil(dst[:, 0].max())) // s + 2) * s)
    y1 = min(out_h, (int(math.ceil(dst[:, 1].max())) // s + 2) * s)
    src = np.array([[0, 0], [cw, 0], [cw, ch], [0, ch]], float)
    return _Pose(_homography(src, dst - np.array([x0, y0])), (x0, y0, x1, y1))


def render_capture(
    design: PhoneDesign,
    seed: Sequence[int],
    defect: str = "none",
    severity: float = 0.5,
    hard_negative: str = "none",
    screen: str | None = None,
) -> Capture:
    """Render one photo of `design`; deterministic in `seed` (e.g. (dataset seed, image index)).

    The scene (screen content, pose, background, lighting), the defect and the sensor noise draw
    from independent child streams of `seed`, so the same seed with and without a defect gives
    the same photo except inside the defect mask.
    """
    scene_ss, defect_ss, noise_ss = np.random.SeedSequence(list(seed)).spawn(3)
    rng, defect_rng, noise_rng = (np.random.default_rng(s) for s in (scene_ss, defect_ss, noise_ss))
    if screen is None:
        screen = str(rng.choice(SCREENS, p=[0.55, 0.15, 0.12, 0.18]))
    surface = build_surface(design, screen, rng)
    intact_alpha = surface.alpha.copy()
    footprint = region = None
    if hard_negative != "none":
        region = add_hard_negative(surface, hard_negative, defect_rng)
    if defect != "none":
        footprint = add_defect(surface, defect, severity, defect_rng)

    pose = _random_pose(surface.shape, rng)
    rgba = np.dstack([_to_uint8(surface.rgb), _to_uint8(surface.alpha)])
    posed = pose.apply(Image.fromarray(rgba, "RGBA"))
    colour, alpha = posed[..., :3], posed[..., 3]
    mask, region_mask = pose.mask(footprint), pose.mask(region)
    if np.array_equal(intact_alpha, surface.alpha):
        caster = alpha
    else:  # a dent must not move the shadow
        caster = pose.apply(Image.fromarray(_to_uint8(intact_alpha), "L"))
    background = _background(rng)
    shadow_offset = rng.uniform(2, 8, 2).astype(int)
    coarse = np.roll(caster, tuple(shadow_offset), axis=(0, 1))[::4, ::4]
    shadow = _upsample(ndimage.gaussian_filter(coarse, rng.uniform(0.75, 1.75)), caster.shape)
    background *= 1 - rng.uniform(0.3, 0.55) * shadow[..., None]
    img = background * (1 - alpha[..., None]) + colour

    h, w = IMAGE_HEIGHT, IMAGE_WIDTH
    yy, xx = (g.astype(np.float32) for g in np.ogrid[0:h, 0:w])
    gx, gy = (float(v) for v in rng.uniform(-0.25, 0.25, 2))
    vignette = 1 - rng.uniform(0.05, 0.3) * (((xx / w - 0.5) ** 2 + (yy / h - 0.5) ** 2) / 0.5)
    light = (1 + gx * (xx / w - 0.5) + gy * (yy / h - 0.5)) * vignette * rng.uniform(0.75, 1.25)
    white_balance = np.array([1 + (t := rng.uniform(-0.07, 0.07)), 1.0, 1 - t], np.float32)
    img *= light[..., None] * white_balance
    # sensor noise in linear light, then the camera's tone curve (a gamma) through a 12-bit lookup
    sigma = noise_rng.uniform(0.004, 0.012) + noise_rng.uniform(0.005, 0.015) * np.sqrt(np.clip(img, 0, 1))
    img += sigma * noise_rng.standard_normal(img.shape, dtype=np.float32)
    codes = np.clip(img * 4095 + 0.5, 0, 4095).astype(np.uint16)
    curve = np.linspace(0, 1, 4096) ** rng.uniform(0.9, 1.1)
    image = (curve * 255 + 0.5).astype(np.uint8)[codes]
    return Capture(image=image, mask=mask, region=region_mask, screen=screen)
