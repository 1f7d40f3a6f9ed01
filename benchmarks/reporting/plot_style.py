"""The one figure style of the suite: sizes, fonts, colour-blind-safe colours, saving, stamps.

Figures are built on `matplotlib.figure.Figure` with an Agg canvas, never through pyplot, so
importing this module changes no global backend or state of the caller's session.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib as mpl
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from benchmarks.reporting.figure_lint import (
    DOUBLE_COLUMN_IN as DOUBLE_COLUMN_IN,  # the figures take both widths from here
)
from benchmarks.reporting.figure_lint import SINGLE_COLUMN_IN, lint_figure

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

log = logging.getLogger(__name__)

PNG_DPI = 200

LineStyle = str | tuple[int, tuple[int, ...]]
LINESTYLES: tuple[LineStyle, ...] = (
    "-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (8, 3)),
)  # fmt: skip
MARKERS = ("o", "s", "^", "D", "v", "P", "X")

# Score-distribution categories use fixed colours that do not collide with method colours' role.
CATEGORY_COLORS = {"normal": "#9e9e9e", "hard negative": "#56b4e9", "defect": "#d55e00"}
STAMP_COLOR = "#c00000"

_RC: dict[RcKeyType, Any] = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 6.5,
    "legend.title_fontsize": 7,
    "figure.titlesize": 8,
    "axes.linewidth": 0.6,
    "lines.linewidth": 1.2,
    "lines.markersize": 4,
    "grid.linewidth": 0.4,
    "grid.alpha": 0.5,
    "legend.frameon": False,
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
}


@contextmanager
def figure_style() -> Iterator[None]:
    """Apply the suite's seaborn theme and font sizes for the duration of the block."""
    with sns.axes_style("whitegrid"), mpl.rc_context(_RC):
        yield


def new_figure(width_in: float = SINGLE_COLUMN_IN, height_in: float = 2.6) -> Figure:
    """A pyplot-free figure with an Agg canvas and constrained layout."""
    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


PALETTE_SALT = 2079
"""Chosen once (the first salt that does it) so that the suite's five built-in methods kept the
palette slots they had when colours were a hand-kept list: figures of existing runs did not change."""


def palette_slot(method: str, size: int = 10) -> int:
    """The palette entry a method name prefers: a stable hash of the name (the same in every run)."""
    return int(hashlib.md5(f"{PALETTE_SALT}:{method}".encode()).hexdigest(), 16) % size


def method_colors(methods: Iterable[str]) -> dict[str, tuple[float, float, float]]:
    """Map each method to a colour of seaborn's "colorblind" palette, keyed by its name.

    A method takes its preferred slot (`palette_slot`), so it keeps its colour in every run and
    figure; when two methods of one figure prefer the same slot, the later name (in sorted order)
    takes the next free one. After 10 methods the palette repeats; line styles and markers still
    tell them apart.
    """
    palette = sns.color_palette("colorblind", 10)
    colors: dict[str, tuple[float, float, float]] = {}
    taken: set[int] = set()
    for method in sorted(set(methods)):
        slot = palette_slot(method, len(palette))
        for step in range(len(palette)):
            if (slot + step) % len(palette) not in taken:
                slot = (slot + step) % len(palette)
                break
        taken.add(slot)
        colors[method] = palette[slot]
    return colors


def plain(text: str) -> str:
    """Make a data-provided string safe for matplotlib text (no accidental mathtext)."""
    return text.replace("$", r"\$")


def stamp_weights(fig: Figure, random: Iterable[str], substitute: Iterable[tuple[str, str]], all_random: bool) -> None:
    """Write a visible red weights line on top of the figure: "RANDOM WEIGHTS" with the methods
    that ran random-init, and the substitute tag ("subst. MobileNetV2-IN1k") with the methods
    that ran on the bundled substitute backbone."""
    random = sorted(set(random))
    parts = []
    if random:
        parts.append("RANDOM WEIGHTS: scores are not meaningful" if all_random
                     else "RANDOM WEIGHTS: " + ", ".join(plain(m) for m in random))
    by_tag: dict[str, set[str]] = {}
    for method, tag in substitute:
        by_tag.setdefault(tag, set()).add(method)
    parts += [f"{plain(tag).upper()}: " + ", ".join(plain(m) for m in sorted(methods))
              for tag, methods in sorted(by_tag.items())]
    if parts:  # one line per kind of weights, wrapped to the figure's width (the lint checks it fits)
        fig.suptitle("\n".join(parts), color=STAMP_COLOR, fontweight="bold", fontsize=7.5, wrap=True)


def save_figure(fig: Figure, out_dir: Path, name: str) -> list[Path]:
    """Save `fig` as `<name>.png` (dpi 200) and `<name>.pdf`; return both paths.

    The figure lint (`benchmarks.reporting.figure_lint`) runs first and logs each problem it finds
    as a warning naming the figure: a figure the suite draws from a user's own data (long names,
    many methods) is checked as the suite's own are in the tests."""
    for problem in lint_figure(fig, name).problems:
        log.warning("figure %s: %s", name, problem)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=PNG_DPI)
    fig.savefig(paths[1])
    return paths
