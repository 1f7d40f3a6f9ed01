"""Phone designs per generation year: the design language of 2017-2025 devices.

Designs depend only on (year, model index), never on a dataset seed, so a group name always means
the same device. Lengths are fractions of the body width.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

YEARS = tuple(range(2017, 2026))
MODELS_PER_YEAR = 3

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
    2022: _YearLanguage((2.12, 2.18), (0.12, 0.15), (0.018, 0.022), (0.02, 0.025), (0.024, 0.03), (0.1, 0.12),
                        ("punch_center",), (0.038, 0.044), (0.014, 0.017), _MATERIAL_FRAMES, "material"),
    2023: _YearLanguage((2.12, 2.18), (0.13, 0.16), (0.016, 0.02), (0.018, 0.022), (0.022, 0.027), (0.1, 0.12),
                        ("punch_center", "pill", "punch_left"), (0.035, 0.04), (0.014, 0.017), _MATERIAL_FRAMES, "material"),
    2024: _YearLanguage((2.0, 2.24), (0.14, 0.16), (0.013, 0.016), (0.014, 0.018), (0.015, 0.019), (0.12, 0.15),
                        ("pill", "punch_center", "pill"), (0.26, 0.3), (0.016, 0.021), _TITANIUM_FRAMES, "modern"),
    2025: _YearLanguage((1.98, 2.26), (0.14, 0.17), (0.012, 0.015), (0.013, 0.017), (0.014, 0.018), (0.13, 0.16),
                        ("pill", "pill", "punch_center"), (0.24, 0.3), (0.017, 0.022), _LATEST_FRAMES, "modern"),
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
    if cutout == "pill" and year < 2024:  # the first pill (2023) is the size of the later ones
        size = pick(_LANGUAGE[2024].cutout_size)
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
