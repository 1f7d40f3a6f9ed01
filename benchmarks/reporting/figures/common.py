"""What every figure of one dataset shares: its ok cells, their styles and test scores, the
"RANDOM WEIGHTS" stamp, saving as PNG and PDF, skip log lines and small axis helpers."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from benchmarks.reporting.plot_style import LINESTYLES, MARKERS, LineStyle, new_figure, plain, stamp_weights
from benchmarks.reporting.published import dataset_kind
from benchmarks.reporting.statistics import aggregate_seeds
from benchmarks.results.reader import RunResults
from benchmarks.results.record import CellResult

log = logging.getLogger(__name__)

HEATMAP_KINDS = {"year": "release year", "group": "device group"}


@dataclass
class DatasetView:
    """The ok cells of one dataset plus what every figure needs: colours, labels, test scores.

    `saver` writes a figure as PNG and PDF (`plot_style.save_figure`); `render_figures` passes the
    one `benchmarks.reporting.figures` holds, so replacing that name reaches every drawer.
    """

    results: RunResults
    dataset: str
    slug: str
    colors: dict[str, tuple[float, float, float]]
    labels: dict[str, str]
    out_dir: Path
    saver: Callable[[Figure, Path, str], list[Path]]
    _scores: dict[str, pd.DataFrame | None] = field(default_factory=dict)
    _summary: pd.DataFrame | None = None

    @property
    def cells(self) -> tuple[CellResult, ...]:
        return self.results.for_dataset(self.dataset, ok_only=True)

    def label(self, cell: CellResult) -> str:
        return plain(self.labels[cell.cell_key])

    @property
    def summary(self) -> pd.DataFrame:
        """`aggregate_seeds` of the dataset: one row per method/variant, means over seeds."""
        if self._summary is None:
            frame = self.results.frame()
            self._summary = aggregate_seeds(frame[frame["dataset"] == self.dataset])
        return self._summary

    @property
    def kind(self) -> str | None:
        """The published dataset kind this dataset matches (`benchmarks.reporting.published.dataset_kind`)."""
        root = next((c.dataset_root for c in self.cells if c.dataset_root), None)
        return dataset_kind(self.dataset, root)

    def origin(self, method: str, variant: str) -> str | None:
        """The `origin` the variant's ok cells report in their provenance (what a `base` model is,
        e.g. "synthetic source"), when they agree; None when they name none or disagree."""
        found = {str(c.provenance.get("origin") or "") for c in self.cells if c.method == method and c.variant == variant}
        return found.pop() or None if len(found) == 1 else None

    def style(self, cell: CellResult) -> tuple[tuple[float, float, float], LineStyle, str]:
        """(colour, line style, marker): colour per method; line style per variant and seed, marker
        per variant, within the method."""
        siblings = [c for c in self.cells if c.method == cell.method]
        runs = sorted({(c.variant, c.seed if c.seed is not None else -1) for c in siblings})
        variants = sorted({c.variant for c in siblings})
        i = runs.index((cell.variant, cell.seed if cell.seed is not None else -1))
        j = variants.index(cell.variant)
        return self.colors[cell.method], LINESTYLES[i % len(LINESTYLES)], MARKERS[j % len(MARKERS)]

    def test_scores(self, cell: CellResult) -> pd.DataFrame | None:
        """The cell's test rows, or None (logged) when its score file is missing or unusable."""
        if cell.cell_key not in self._scores:
            try:
                scores = self.results.scores(cell)
            except (OSError, ValueError) as err:
                log.warning("%s: skipping cell %s in figures: %s", self.dataset, cell.cell_key, err)
                self._scores[cell.cell_key] = None
            else:
                self._scores[cell.cell_key] = scores[scores["split"] == "test"].reset_index(drop=True)
        return self._scores[cell.cell_key]

    def two_class_scores(self) -> list[tuple[CellResult, pd.DataFrame]]:
        usable = []
        for cell in self.cells:
            scores = self.test_scores(cell)
            if scores is not None and scores["label"].nunique() == 2:
                usable.append((cell, scores))
            elif scores is not None:
                log.info("%s: %s has a single-class test split; no curve", self.dataset, cell.cell_key)
        return usable

    def figure(self, shown: Sequence[CellResult], width_in: float, height_in: float) -> Figure:
        """A new figure, stamped "RANDOM WEIGHTS" / "SUBST. ..." when any of the `shown` cells used random
        weights or a substitute backbone."""
        fig = new_figure(width_in, height_in)
        random = [c for c in shown if c.random_weights]
        substitute = [(c.method, c.weights_tag or "substitute") for c in shown if c.substitute_weights]
        stamp_weights(fig, (c.method for c in random), substitute, all_random=len(random) == len(shown) > 0)
        return fig

    def save(self, fig: Figure, kind: str) -> list[Path]:
        return self.saver(fig, self.out_dir, f"{kind}_{self.slug}")

    def skip(self, kind: str, why: str) -> list[Path]:
        log.info("%s: skipping figure %s_%s: %s", self.dataset, kind, self.slug, why)
        return []


def set_title(ax: Axes, what: str, dataset: str) -> None:
    """`what: dataset`, wrapped onto a second line where the figure is too narrow for one."""
    ax.set_title(f"{what}: {plain(short_name(dataset))}", wrap=True)


def short_name(dataset: str) -> str:
    """`dataset` cut to its last 32 characters for titles."""
    return dataset if len(dataset) <= 32 else "…" + dataset[-31:]


def whiskers(value: float, lo: float, hi: float) -> tuple[float, float]:
    """Error-bar lengths; a percentile-bootstrap CI may exclude its point estimate, so clip at 0."""
    return max(value - lo, 0.0), max(hi - value, 0.0)


def chance_level(metric: str, cells: Sequence[CellResult]) -> tuple[float | None, str]:
    """(value, legend label) of `metric` for a chance ranker: 0.5 AUROC, or the F1 of flagging every
    image; (None, "") when the cells' class counts are unknown."""
    if metric == "image_auroc":
        return 0.5, "chance (0.500)"
    m = cells[0].metrics
    if m is None or not m.n_normal or not m.n_anomalous:
        return None, ""
    prevalence = m.n_anomalous / (m.n_normal + m.n_anomalous)
    chance = 2 * prevalence / (1 + prevalence)
    return chance, f"chance: flag all ({chance:.3f})"
