"""Figures from a stored run: every kind is written as PNG and PDF, stamped, and readable."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fake_run import write_fake_run
from matplotlib.figure import Figure
from matplotlib.text import Annotation
from PIL import Image

from benchmarks import figures
from benchmarks.figures import FIGURE_CAPTIONS, write_figures
from benchmarks.plot_style import PNG_DPI, STAMP_COLOR, method_colors
from benchmarks.results_table import load_run

SLUG = "smartphone-synth"


def keeping(kept: list[Figure], write: bool = True) -> Callable[[Figure, Path, str], list[Path]]:
    """A stand-in for `save_figure` that also keeps each Figure for inspection."""
    save = figures.save_figure

    def keep(fig: Figure, out_dir: Path, name: str) -> list[Path]:
        kept.append(fig)
        return save(fig, out_dir, name) if write else []

    return keep


@pytest.fixture(scope="module")
def drawn(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], list[Figure], float]:
    """Figures of a 2-method random-weights run with a failed cell; the Figure objects are kept."""
    run = write_fake_run(tmp_path_factory.mktemp("run"))
    kept: list[Figure] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(figures, "save_figure", keeping(kept))
        start = time.perf_counter()
        paths = write_figures(run)
        seconds = time.perf_counter() - start
    return paths, kept, seconds


@pytest.mark.parametrize("kind", list(FIGURE_CAPTIONS))
def test_every_figure_kind_is_written_as_png_and_pdf(
    drawn: tuple[list[Path], list[Figure], float], kind: str
) -> None:
    paths, _, _ = drawn
    png, pdf = (p for p in paths if p.name in (f"{kind}_{SLUG}.png", f"{kind}_{SLUG}.pdf"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pdf.read_bytes()[:5] == b"%PDF-"
    assert pdf.stat().st_size > 5_000
    with Image.open(png) as image:
        assert image.info["dpi"] == pytest.approx((PNG_DPI, PNG_DPI), abs=1)
        assert 500 <= image.width <= 1500, "sized for a single (or double) column"
        # Not a blank canvas: many distinct colours were drawn.
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 50


def test_figures_are_written_under_run_dir_and_fast(drawn: tuple[list[Path], list[Figure], float]) -> None:
    paths, _, seconds = drawn
    assert {p.parent.name for p in paths} == {"figures"}
    assert len(paths) == 2 * len(FIGURE_CAPTIONS)
    assert seconds < 60


def test_every_figure_of_a_random_weights_run_is_stamped(
    drawn: tuple[list[Path], list[Figure], float],
) -> None:
    _, kept, _ = drawn
    assert len(kept) == len(FIGURE_CAPTIONS)
    for fig in kept:
        (stamp,) = [t for t in fig.texts if "RANDOM WEIGHTS" in t.get_text()]
        assert stamp.get_color() == STAMP_COLOR
        assert stamp.get_visible() and float(stamp.get_fontsize()) >= 7


def test_failed_cell_is_left_out_of_curves(drawn: tuple[list[Path], list[Figure], float]) -> None:
    _, kept, _ = drawn
    (roc,) = [f for f in kept if f.axes[0].get_title().startswith("ROC")]
    legend = roc.axes[0].get_legend()
    assert legend is not None
    labels = [t.get_text() for t in legend.get_texts()]
    assert any(label.startswith("patchcore/default") for label in labels)
    assert any(label.startswith("winclip/default") for label in labels)
    assert not any("anomalygpt" in label for label in labels)
    # Legend is ordered by AUROC, best first, after the chance line.
    aurocs = [float(label.rsplit("(", 1)[1].rstrip(")")) for label in labels[1:]]
    assert aurocs == sorted(aurocs, reverse=True)


def test_pretrained_run_has_no_stamp_and_missing_latency_skips_pareto(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    run = write_fake_run(tmp_path / "run", weights="pretrained", with_latency=False, failed_method=None)
    kept: list[Figure] = []
    monkeypatch.setattr(figures, "_DRAWERS", (figures.draw_roc, figures.draw_pareto))
    monkeypatch.setattr(figures, "save_figure", keeping(kept))
    with caplog.at_level(logging.INFO, logger="benchmarks.figures"):
        paths = write_figures(run, tmp_path / "out")
    names = {p.name for p in paths}
    assert f"pareto_{SLUG}.png" not in names
    assert names == {f"roc_{SLUG}.png", f"roc_{SLUG}.pdf"}
    assert all(p.parent == tmp_path / "out" for p in paths)
    assert "skipping figure pareto" in caplog.text and "latency" in caplog.text
    assert kept and not any("RANDOM" in t.get_text() for fig in kept for t in fig.texts)


def test_pareto_labels_do_not_overlap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = write_fake_run(
        tmp_path / "run", ("patchcore", "winclip", "dino-knn", "ltfm", "other"), failed_method=None
    )
    kept: list[Figure] = []
    monkeypatch.setattr(figures, "_DRAWERS", (figures.draw_pareto,))
    monkeypatch.setattr(figures, "save_figure", keeping(kept, write=False))
    figures.render_figures(load_run(run), tmp_path / "out")
    (fig,) = kept
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    boxes = [t.get_window_extent(renderer) for t in fig.axes[0].texts if isinstance(t, Annotation)]
    assert len(boxes) == 5
    for a, b in itertools.combinations(boxes, 2):
        assert not a.overlaps(b)


def test_pareto_front_keeps_points_no_faster_point_beats() -> None:
    points = [(10.0, 0.80), (20.0, 0.90), (15.0, 0.70), (30.0, 0.85), (40.0, 0.95)]
    assert figures._pareto_front(points) == [(10.0, 0.80), (20.0, 0.90), (40.0, 0.95)]


def test_method_colours_do_not_depend_on_the_other_methods() -> None:
    alone = method_colors(["winclip"])
    crowded = method_colors(["winclip", "patchcore", "zeta", "alpha"])
    assert alone["winclip"] == crowded["winclip"]
    assert len({crowded[m] for m in ("winclip", "patchcore", "zeta", "alpha")}) == 4
