"""What a display shows: consumer UI (wallpaper, home / lock / app screens) and QC test patterns."""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from benchmarks.data.smartphone.designs import RGB, PhoneDesign


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


WILD_SCREENS = ("home", "lock", "app", "solid")
SCREEN_OFF = "off"
# QC test patterns (linear RGB in [0, 1]); "black" is a lit black field, not a switched-off display
TEST_PATTERNS: dict[str, tuple[float, float, float]] = {
    "white": (0.93, 0.93, 0.93),
    "grey": (0.5, 0.5, 0.5),
    "black": (0.03, 0.03, 0.035),
    "red": (0.86, 0.07, 0.06),
    "green": (0.08, 0.8, 0.16),
    "blue": (0.1, 0.16, 0.88),
}
QC_SCREENS = (SCREEN_OFF, *TEST_PATTERNS)
_OFF_GLASS = (0.022, 0.024, 0.03)


def _flat_field(w: int, h: int, rgb: tuple[float, float, float], rng: np.random.Generator, spread: float) -> Image.Image:
    """A uniform field with a faint vertical ramp and low-frequency unevenness of about `spread`."""
    ramp = 1 + rng.uniform(-spread, spread) * np.linspace(-1, 1, h, dtype=np.float32)
    coarse = Image.fromarray(rng.normal(0, spread / 2, (4, 3)).astype(np.float32), mode="F")
    uneven = np.asarray(coarse.resize((w, h), Image.Resampling.BICUBIC), np.float32)
    field = np.asarray(rgb, np.float32) * (ramp[:, None] + uneven)[..., None]
    return Image.fromarray(np.clip(field * 255 + 0.5, 0, 255).astype(np.uint8))


def render_screen(
    design: PhoneDesign, size: tuple[int, int], screen: str, rng: np.random.Generator
) -> Image.Image:
    """Display content of `size` (w, h) canvas pixels as an RGB image.

    `screen` is one of WILD_SCREENS (consumer content; "solid" is a flat colour with a faint
    gradient) or QC_SCREENS: "off" (a switched-off panel: dark glass) or a TEST_PATTERNS name
    (a calibrated uniform field, unevenness about 1 %).
    """
    w, h = size
    if screen == SCREEN_OFF:
        return _flat_field(w, h, _OFF_GLASS, rng, 0.03)
    if screen in TEST_PATTERNS:
        return _flat_field(w, h, TEST_PATTERNS[screen], rng, 0.01)
    if screen not in WILD_SCREENS:
        raise ValueError(f"unknown screen {screen!r}; expected one of {WILD_SCREENS + QC_SCREENS}")
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
        base = levels[int(rng.integers(len(levels)))]
        return _flat_field(w, h, base, rng, 0.04)
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
