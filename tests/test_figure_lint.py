"""The figure lint: each check catches its fault on a hand-made figure, passes a clean one, and
every figure kind the suite draws passes it on stored runs that stress it (long weights banners,
many methods, wide latency ranges, long group names)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from fake_run import write_fake_run
from matplotlib.figure import Figure

from baselines.ltfm_plugin import LTFMBaseline
from benchmarks.reporting import figures
from benchmarks.reporting.figure_lint import CHECKS, MIN_PRINTED_PT, LintReport, lint_figure, print_width
from benchmarks.reporting.figures import FIGURE_CAPTIONS
from benchmarks.reporting.plot_style import DOUBLE_COLUMN_IN, SINGLE_COLUMN_IN, figure_style, new_figure
from benchmarks.results.reader import load_run


def _checks(report: LintReport) -> list[str]:
    return [p.check for p in report.problems]


def _clean_axes(fig: Figure):  # noqa: ANN202
    ax = fig.add_subplot()
    ax.plot([0, 1, 2, 3], [0, 1, 0.5, 2], label="a line")
    ax.set(title="a title", xlabel="x", ylabel="y")
    return ax


def test_a_clean_figure_passes() -> None:
    with figure_style():
        fig = new_figure()
        ax = _clean_axes(fig)
        ax.legend(loc="upper left")
        report = lint_figure(fig, "clean")
    assert report.ok, report.problems
    assert report.print_width_in == SINGLE_COLUMN_IN and report.smallest_font_pt >= MIN_PRINTED_PT


def test_text_outside_the_canvas_is_found() -> None:
    with figure_style():
        fig = new_figure()
        _clean_axes(fig)
        fig.text(0.5, 0.99, "A BANNER FAR TOO LONG FOR ONE COLUMN OF A TWO-COLUMN PAPER, CUT AT BOTH ENDS",
                 ha="center", va="top", fontsize=8)
        report = lint_figure(fig, "banner")
    assert "off-canvas" in _checks(report), report.problems
    assert "A BANNER" in str(report.problems[0])


def test_overlapping_text_is_found_also_for_tick_labels() -> None:
    with figure_style():
        fig = new_figure()
        ax = _clean_axes(fig)
        ax.set_xticks([1.0, 1.02], ["2000", "3000"])
        report = lint_figure(fig, "ticks")
    assert _checks(report) == ["text-overlap"], report.problems
    assert "'2000' and '3000'" in report.problems[0].message


def test_rotated_labels_that_do_not_touch_are_not_an_overlap() -> None:
    """Rotated tick labels whose axis-aligned boxes overlap but whose glyph rectangles do not."""
    names = ["phone-2024-alpha", "phone-2025-beta", "phone-2025-gamma"]
    with figure_style():
        fig = new_figure()
        ax = _clean_axes(fig)
        ax.set_xticks([0.5, 1.5, 2.5], names, rotation=40, ha="right", rotation_mode="anchor")
        rotated = lint_figure(fig, "rotated")
        ax.set_xticks([0.5, 0.6, 2.5], names, rotation=40, ha="right", rotation_mode="anchor")
        crowded = lint_figure(fig, "crowded")
    assert rotated.ok, rotated.problems
    assert "text-overlap" in _checks(crowded)


def test_a_legend_on_data_points_is_found() -> None:
    with figure_style():
        fig = new_figure()
        ax = fig.add_subplot()
        ax.scatter([0.1, 0.15, 0.2, 0.9], [0.9, 0.85, 0.8, 0.1], label="points")
        ax.set(xlim=(0, 1), ylim=(0, 1))
        ax.legend(loc="upper left", markerscale=3, borderpad=2)
        covered = lint_figure(fig, "covered")
        ax.legend(loc="center")
        free = lint_figure(fig, "free")
    assert _checks(covered) == ["legend-covers-data"], covered.problems
    assert free.ok, free.problems


def test_reference_lines_in_axes_coordinates_are_not_data() -> None:
    with figure_style():
        fig = new_figure()
        ax = fig.add_subplot()
        ax.scatter([0.9], [0.9], label="point")
        ax.axhline(0.5, label="chance")
        ax.set(xlim=(0, 1), ylim=(0, 1))
        ax.legend(loc="center left")
        report = lint_figure(fig, "reference")
    assert report.ok, report.problems


def test_small_fonts_are_judged_at_the_printed_width() -> None:
    with figure_style():
        column = new_figure(SINGLE_COLUMN_IN)
        _clean_axes(column).text(1, 1, "5.5 pt", fontsize=5.5)
        wide = new_figure(2 * DOUBLE_COLUMN_IN, 3.0)  # printed shrunk to the text width: 7 pt -> 3.5 pt
        _clean_axes(wide).set_title("a 7 pt title", fontsize=7)
        column_report, wide_report = lint_figure(column), lint_figure(wide)
    assert "font-too-small" in _checks(column_report)
    assert column_report.smallest_font_pt == pytest.approx(5.5)
    assert print_width(wide) == DOUBLE_COLUMN_IN
    assert wide_report.smallest_font_pt == pytest.approx(3.5)
    assert {"font-too-small"} == set(_checks(wide_report))


def _linted(run: Path) -> dict[str, LintReport]:
    reports: dict[str, LintReport] = {}

    def lint(fig: Figure, out_dir: Path, name: str) -> list[Path]:
        reports[name] = lint_figure(fig, name)
        return []

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(figures, "save_figure", lint)
        figures.render_figures(load_run(run), run / "figures")
    return reports


ABLATION = LTFMBaseline.meta.ablation
assert ABLATION is not None
# The offline default `run --all` as it ran on 2026-12-03 (2-core AMD EPYC): all five methods with
# their default variants (winclip also k1, for a k-shot curve), its weights (three methods on the
# substitute, two random: a two-line banner), LTFM's base from a synthetic source, and its batch-1
# latencies (28 ms to 3.65 s: the minor tick labels 2000 and 3000 collided there, and the gallery's
# column titles of nine cells ran into each other); plus a failed cell.
DEFAULT_LIKE: dict[str, object] = {
    "methods": ("patchcore", "winclip", "dino-knn", "anomalygpt", "ltfm"),
    "weights": {"patchcore": "substitute", "dino-knn": "substitute", "ltfm": "substitute"},
    "variants": {"ltfm": ABLATION.variants, "winclip": ("k0", "k1"), "dino-knn": ("k1", "full"),
                 "anomalygpt": ("k1", "unsupervised")},
    "profiles": {"patchcore": (2.5, 1.0, 83.0), "winclip": (0.3, 0.01, 3650.0), "dino-knn": (1.8, 5.0, 331.0),
                 "anomalygpt": (0.4, 1.0, 262.0), "ltfm": (1.0, 1.0, 28.0)},
    "provenance": {"ltfm/base": {"origin": "synthetic source", "expert_checkpoint": False}},
    "failed_method": "crashing",
}
RUNS: dict[str, Callable[[Path], Path]] = {
    "default-like": lambda d: write_fake_run(d, **DEFAULT_LIKE),  # type: ignore[arg-type]
    "random, three methods": lambda d: write_fake_run(d, ("patchcore", "winclip", "ltfm"),
                                                      variants={"ltfm": ABLATION.variants, "winclip": ("k0", "k1")}),
    "pretrained, two seeds": lambda d: write_fake_run(d, ("patchcore", "dino-knn"), weights="pretrained",
                                                      seeds=(0, 1), failed_method=None),
}


@pytest.fixture(scope="module", params=sorted(RUNS))
def linted(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, LintReport]:
    return _linted(RUNS[request.param](tmp_path_factory.mktemp("run")))


def test_every_figure_of_a_stored_run_passes_the_lint(linted: dict[str, LintReport]) -> None:
    problems = {name: [str(p) for p in report.problems] for name, report in linted.items() if not report.ok}
    assert not problems, problems
    assert round(min(r.smallest_font_pt for r in linted.values()), 1) >= MIN_PRINTED_PT


def test_the_default_like_run_draws_every_figure_kind(tmp_path: Path) -> None:
    """The lint above is only as good as its coverage: the stressing run draws every kind."""
    reports = _linted(RUNS["default-like"](tmp_path / "run"))
    kinds = {name.rsplit("_smartphone-synth", 1)[0] for name in reports}
    assert kinds == {*FIGURE_CAPTIONS, "ablation_ltfm", "ablation_ltfm_cross_generation"}


def test_saving_a_figure_logs_what_the_lint_finds(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with figure_style():
        fig = new_figure()
        _clean_axes(fig).set_xticks([1.0, 1.02], ["2000", "3000"])
        with caplog.at_level(logging.WARNING):
            figures.save_figure(fig, tmp_path, "crowded")
    assert "figure crowded: text-overlap: '2000' and '3000'" in caplog.text
    assert set(CHECKS) == {"off-canvas", "text-overlap", "legend-covers-data", "font-too-small"}
