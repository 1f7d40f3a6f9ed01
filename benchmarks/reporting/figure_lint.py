"""A lint every figure of the suite must pass before it goes into a paper (SPEC 10).

Checks, on the figure as drawn (constrained layout applied, exactly the text the saved file shows):
- `off-canvas`: a text element (title, banner, label, tick label, legend entry, annotation)
  reaches outside the figure;
- `text-overlap`: two text elements overlap (e.g. tick labels running into each other, a legend
  entry on a banner);
- `legend-covers-data`: a legend's box contains a data point of an axes it sits on: a line
  vertex, a scatter point, the top of a bar or the end of a whisker drawn in data coordinates
  (reference lines drawn in axes coordinates, such as a chance level, are not data points);
- `font-too-small`: the smallest text, at the size the figure is printed in a two-column paper,
  is under `MIN_PRINTED_PT`. The suite sizes figures in real inches for a two-column paper
  (`SINGLE_COLUMN_IN`, `DOUBLE_COLUMN_IN`) and fonts in real points, so a figure up to a column wide
  goes in a column and a wider one across both at its natural size; only a figure wider than the
  text would be shrunk (to `DOUBLE_COLUMN_IN`), and its fonts with it.

Only text that is actually drawn is checked (tick labels outside the view limits are not), by
recording the `Text` artists matplotlib draws during one render.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from unittest import mock

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.patches import Rectangle
from matplotlib.text import Text
from matplotlib.transforms import Bbox

SINGLE_COLUMN_IN = 3.5
DOUBLE_COLUMN_IN = 7.16
"""A two-column paper's column and text widths (IEEE/ACM-style templates); the suite sizes its
figures for them (`plot_style` takes them from here)."""
MIN_PRINTED_PT = 6.0
TOLERANCE_PX = 1.0
"""Overlaps and overhangs up to this many pixels (at the figure's own dpi) are rounding, not problems."""

CHECKS = ("off-canvas", "text-overlap", "legend-covers-data", "font-too-small")


@dataclass(frozen=True)
class LintProblem:
    check: str
    message: str

    def __str__(self) -> str:
        return f"{self.check}: {self.message}"


@dataclass(frozen=True)
class LintReport:
    """The problems of one figure, and its smallest printed font size (points at `print_width_in`)."""

    name: str
    problems: tuple[LintProblem, ...]
    smallest_font_pt: float
    print_width_in: float

    @property
    def ok(self) -> bool:
        return not self.problems


def print_width(fig: Figure) -> float:
    """The width (inches) the figure is printed at in a two-column paper: its own width when that
    fits one column or the text width (a `figure*` at natural size), else the text width."""
    return min(float(fig.get_figwidth()), DOUBLE_COLUMN_IN)


def lint_figure(fig: Figure, name: str = "") -> LintReport:
    """Draw `fig` once and run every check on it."""
    texts = _drawn_texts(fig)
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    boxes = [(t, t.get_window_extent(renderer)) for t in texts]
    problems: list[LintProblem] = []
    canvas = fig.bbox
    for text, box in boxes:
        over = max(canvas.x0 - box.x0, box.x1 - canvas.x1, canvas.y0 - box.y0, box.y1 - canvas.y1)
        if over > TOLERANCE_PX:
            problems.append(LintProblem("off-canvas", f"{_quote(text)} reaches {over:.0f} px outside the figure"))
    shapes = [(text, box, _corners(text, box, renderer)) for text, box in boxes]
    for (a, box_a, corners_a), (b, box_b, corners_b) in itertools.combinations(shapes, 2):
        overlap = _overlap(box_a, box_b) and _penetration(corners_a, corners_b)
        if overlap > TOLERANCE_PX:
            problems.append(LintProblem("text-overlap", f"{_quote(a)} and {_quote(b)} overlap by {overlap:.0f} px"))
    for legend, axes in _legends(fig):
        box = legend.get_window_extent(renderer)
        for ax in axes:
            covered = _covered_points(ax, box)
            if covered:
                problems.append(LintProblem(
                    "legend-covers-data",
                    f"the legend ({_legend_words(legend)}) covers {covered} data point(s) of "
                    f"{_quote(ax.title) if ax.get_title() else 'an axes'}"))
    scale = print_width(fig) / float(fig.get_figwidth())
    sizes = [(float(t.get_fontsize()) * scale, t) for t in texts]
    smallest = min((size for size, _ in sizes), default=float("inf"))
    for size, text in sizes:
        if round(size, 1) < MIN_PRINTED_PT:  # printed sizes are read to a tenth of a point
            problems.append(LintProblem("font-too-small", f"{_quote(text)} prints at {size:.1f} pt "
                                                          f"(< {MIN_PRINTED_PT:g} pt at {print_width(fig):.2f} in)"))
    return LintReport(name, tuple(problems), smallest, print_width(fig))


@contextmanager
def _recording_text_draws(drawn: list[Text]) -> Iterator[None]:
    original = Text.draw

    def draw(self: Text, renderer: object) -> None:
        if self.get_visible() and self.get_text().strip():
            drawn.append(self)
        original(self, renderer)  # type: ignore[arg-type]

    with mock.patch.object(Text, "draw", draw):
        yield


def _drawn_texts(fig: Figure) -> list[Text]:
    drawn: list[Text] = []
    with _recording_text_draws(drawn):
        fig.canvas.draw()  # type: ignore[attr-defined]
    return list(dict.fromkeys(drawn))


def _overlap(a: Bbox, b: Bbox) -> float:
    """The smaller side of the intersection of two boxes, in pixels (0 when they do not meet)."""
    width = min(a.x1, b.x1) - max(a.x0, b.x0)
    height = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(0.0, min(width, height))


def _corners(text: Text, box: Bbox, renderer: object) -> np.ndarray:
    """The four display-space corners `(4, 2)` of a text's own (possibly rotated) rectangle.

    Its width and height are measured unrotated; the rotated rectangle is then placed where its
    axis-aligned bounds are the drawn extent `box` (true in either of matplotlib's rotation modes).
    """
    angle = float(text.get_rotation())
    if angle % 180 == 0:
        return np.array([[box.x0, box.y0], [box.x1, box.y0], [box.x1, box.y1], [box.x0, box.y1]])
    text.set_rotation(0)
    try:
        flat = text.get_window_extent(renderer)  # type: ignore[arg-type]
    finally:
        text.set_rotation(angle)
    theta = np.deg2rad(angle)
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    corners = np.array([[0, 0], [flat.width, 0], [flat.width, flat.height], [0, flat.height]]) @ rotation.T
    return corners - corners.min(axis=0) + np.array([box.x0, box.y0])


def _penetration(a: np.ndarray, b: np.ndarray) -> float:
    """How deep two convex quadrilaterals overlap (pixels along the separating-axis direction of
    least overlap); 0 when some edge normal separates them."""
    depth = float("inf")
    for poly in (a, b):
        for i in range(len(poly)):
            edge = poly[(i + 1) % len(poly)] - poly[i]
            normal = np.array([-edge[1], edge[0]])
            length = float(np.hypot(*normal))
            if length == 0:
                continue
            pa, pb = a @ normal / length, b @ normal / length
            depth = min(depth, min(pa.max(), pb.max()) - max(pa.min(), pb.min()))
            if depth <= 0:
                return 0.0
    return depth


def _legends(fig: Figure) -> list[tuple[Legend, list[Axes]]]:
    """Each drawn legend with the axes whose data it could hide (its own, or every axes for a figure legend)."""
    found: list[tuple[Legend, list[Axes]]] = []
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is not None and legend.get_visible():
            found.append((legend, [ax]))
    found += [(legend, list(fig.axes)) for legend in fig.legends if legend.get_visible()]
    return found


def _data_points(ax: Axes) -> np.ndarray:
    """Display coordinates `(N, 2)` of the data points drawn in `ax`'s data coordinates."""
    points: list[np.ndarray] = []
    for line in ax.lines:
        if line.get_visible() and line.get_transform() == ax.transData:
            points.append(ax.transData.transform(np.asarray(line.get_xydata(), dtype=float)))
    for collection in ax.collections:
        if not collection.get_visible():
            continue
        if isinstance(collection, PathCollection) and collection.get_offset_transform() == ax.transData:
            offsets = np.asarray(collection.get_offsets(), dtype=float)
            if offsets.size:
                points.append(ax.transData.transform(offsets))
        elif isinstance(collection, LineCollection) and collection.get_transform() == ax.transData:
            ends = [seg[[0, -1]] for seg in collection.get_segments() if len(seg)]
            if ends:
                points.append(ax.transData.transform(np.concatenate(ends).astype(float)))
    for patch in ax.patches:
        if isinstance(patch, Rectangle) and patch.get_visible() and patch.get_transform() == ax.transData:
            x, y, w, h = patch.get_x(), patch.get_y(), patch.get_width(), patch.get_height()
            tip = (x + w / 2, y + h) if abs(h) >= abs(w) else (x + w, y + h / 2)
            points.append(ax.transData.transform(np.array([tip], dtype=float)))
    if not points:
        return np.zeros((0, 2))
    stacked = np.concatenate(points)
    return stacked[np.isfinite(stacked).all(axis=1)]


def _covered_points(ax: Axes, box: Bbox) -> int:
    """How many of `ax`'s visible data points fall inside the legend box `box`."""
    points = _data_points(ax)
    view = ax.bbox
    inside_view = ((points[:, 0] >= view.x0) & (points[:, 0] <= view.x1)
                   & (points[:, 1] >= view.y0) & (points[:, 1] <= view.y1))
    pad = TOLERANCE_PX
    covered = ((points[:, 0] > box.x0 + pad) & (points[:, 0] < box.x1 - pad)
               & (points[:, 1] > box.y0 + pad) & (points[:, 1] < box.y1 - pad))
    return int((covered & inside_view).sum())


def _legend_words(legend: Legend) -> str:
    words = [t.get_text() for t in legend.get_texts()][:2]
    return ", ".join(repr(w) for w in words) + (", ..." if len(legend.get_texts()) > 2 else "")


def _quote(text: Text) -> str:
    words = " ".join(text.get_text().split())
    return repr(words if len(words) <= 40 else words[:37] + "...")
