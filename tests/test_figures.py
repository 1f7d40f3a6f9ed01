"""Figures from a stored run: every kind is written as PNG and PDF, stamped, and readable."""

from __future__ import annotations

import itertools
import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fake_run import write_fake_run
from matplotlib.container import BarContainer
from matplotlib.figure import Figure
from matplotlib.text import Annotation
from PIL import Image

from baselines.ltfm_plugin import LTFMBaseline
from benchmarks.reporting import figures
from benchmarks.reporting.figures import FIGURE_CAPTIONS, write_figures
from benchmarks.reporting.plot_style import PNG_DPI, STAMP_COLOR, method_colors
from benchmarks.results.reader import load_run

SLUG = "smartphone-synth"


def keeping(kept: list[Figure], write: bool = True) -> Callable[[Figure, Path, str], list[Path]]:
    """A stand-in for `save_figure` that also keeps each Figure for inspection."""
    save = figures.save_figure

    def keep(fig: Figure, out_dir: Path, name: str) -> list[Path]:
        kept.append(fig)
        return save(fig, out_dir, name) if write else []

    return keep


# LTFM's declared ablation and winclip's k0 / k1 (two shots make a k-shot curve) give every figure kind data.
ABLATION = LTFMBaseline.meta.ablation
assert ABLATION is not None
LTFM_VARIANTS = ABLATION.variants
VARIANTS = {"ltfm": LTFM_VARIANTS, "winclip": ("k0", "k1")}
# every fixed kind, and the two figures of LTFM's ablation
KINDS = [*FIGURE_CAPTIONS, "ablation_ltfm", "ablation_ltfm_cross_generation"]


@pytest.fixture(scope="module")
def drawn(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], list[Figure], float]:
    """Figures of a 3-method, 6-cell random-weights run with a failed cell; the Figure objects are kept."""
    run = write_fake_run(tmp_path_factory.mktemp("run"), ("patchcore", "winclip", "ltfm"), variants=VARIANTS)
    kept: list[Figure] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(figures, "save_figure", keeping(kept))
        start = time.perf_counter()
        paths = write_figures(run)
        seconds = time.perf_counter() - start
    return paths, kept, seconds


@pytest.mark.parametrize("kind", KINDS)
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
    assert len(paths) == 2 * len(KINDS)
    assert seconds < 60


def test_every_figure_of_a_random_weights_run_is_stamped(
    drawn: tuple[list[Path], list[Figure], float],
) -> None:
    _, kept, _ = drawn
    assert len(kept) == len(KINDS)
    for fig in kept:
        (stamp,) = [t for t in fig.texts if "RANDOM WEIGHTS" in t.get_text()]
        assert stamp.get_color() == STAMP_COLOR
        assert stamp.get_visible() and float(stamp.get_fontsize()) >= 7


def test_substitute_and_random_cells_are_both_named_on_every_figure(tmp_path: Path) -> None:
    run = write_fake_run(tmp_path / "run", ("patchcore", "winclip"), weights={"patchcore": "substitute"},
                         failed_method=None)
    kept: list[Figure] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(figures, "save_figure", keeping(kept))
        write_figures(run)
    assert len(kept) >= 6  # the ablation needs ltfm cells, k-shot curves several shots
    for fig in kept:
        (stamp,) = [t.get_text() for t in fig.texts if "WEIGHTS" in t.get_text()]
        assert stamp == "RANDOM WEIGHTS: winclip\nSUBST. MOBILENETV2-IN1K: patchcore"  # a line per kind


def test_failed_cell_is_left_out_of_curves(drawn: tuple[list[Path], list[Figure], float]) -> None:
    _, kept, _ = drawn
    (roc,) = [f for f in kept if f.axes[0].get_title().startswith("ROC")]
    legend = roc.axes[0].get_legend() or roc.legends[0]
    labels = [t.get_text() for t in legend.get_texts()]
    assert any(label.startswith("patchcore/default") for label in labels)
    assert any(label.startswith("winclip/k0") for label in labels)
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
    with caplog.at_level(logging.INFO, logger="benchmarks.reporting.figures"):
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


def draw_only(
    run: Path, drawer: Callable[..., list[Path]], monkeypatch: pytest.MonkeyPatch, out: Path
) -> list[Figure]:
    """The figures `drawer` makes of `run`, kept instead of saved."""
    kept: list[Figure] = []
    monkeypatch.setattr(figures, "_DRAWERS", (drawer,))
    monkeypatch.setattr(figures, "save_figure", keeping(kept, write=False))
    figures.render_figures(load_run(run), out)
    return kept


def titled(kept: list[Figure], start: str) -> Figure:
    (fig,) = [f for f in kept if f.axes and f.axes[0].get_title().startswith(start)]
    return fig


def texts(fig: Figure) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_gallery_shows_image_truth_and_one_map_per_method_variant(
    drawn: tuple[list[Path], list[Figure], float],
) -> None:
    _, kept, _ = drawn
    (gallery,) = [f for f in kept if "ground truth" in texts(f)]
    shown = texts(gallery)
    assert shown[:2] == ["image", "ground truth"]
    cells = [f"ltfm/\n{v}" for v in LTFM_VARIANTS] + ["patchcore/\ndefault", "winclip/\nk0", "winclip/\nk1"]
    assert sorted(shown[2:8]) == sorted(cells)
    rows = shown[8:14]
    assert [r.split("\n")[0] for r in rows] == ["normal", "normal", "hard", "burn_in", "crack", "scratch"]
    assert shown.count("no defect") == 3 and "image not found" not in shown


def test_gallery_picks_are_deterministic_and_cover_every_defect(tmp_path: Path) -> None:
    results = load_run(write_fake_run(tmp_path / "run", failed_method=None))
    scores = results.scores(results.cells[0])
    test = scores[scores["split"] == "test"]
    picks = figures._gallery_picks(test, set())
    assert picks == figures._gallery_picks(test.sample(frac=1.0, random_state=3), set())
    assert len(picks) == figures.GALLERY_ROWS
    labels = test.set_index("image_id").loc[[i for i, _ in picks]]
    assert list(labels["label"]) == [0, 0, 0, 1, 1, 1] and labels["hard_negative"].sum() == 1
    assert sorted(labels["defect"][labels["label"] == 1]) == ["burn_in", "crack", "scratch"]


def test_gallery_is_skipped_without_maps_and_drawn_without_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    no_maps = write_fake_run(tmp_path / "no-maps", failed_method=None, with_maps=False)
    with caplog.at_level(logging.INFO, logger="benchmarks.reporting.figures"):
        assert draw_only(no_maps, figures.draw_gallery, monkeypatch, tmp_path / "out") == []
    assert "skipping figure gallery" in caplog.text and "no cell stored anomaly maps" in caplog.text
    no_images = write_fake_run(tmp_path / "no-images", failed_method=None)
    shutil.rmtree(no_images / "dataset")
    (gallery,) = draw_only(no_images, figures.draw_gallery, monkeypatch, tmp_path / "out")
    assert texts(gallery).count("image not found") == figures.GALLERY_ROWS


def test_ltfm_ablation_has_published_bars_beside_and_says_they_are_other_data(
    drawn: tuple[list[Path], list[Figure], float],
) -> None:
    _, kept, _ = drawn
    (fig,) = [f for f in kept if f.axes and f.axes[0].get_title().startswith("LTFM ablation")
              and "by test" not in f.axes[0].get_title()]
    ax = fig.axes[0]
    bars = {c.get_label(): [r.get_height() for r in c] for c in ax.containers if isinstance(c, BarContainer)}
    assert bars[ABLATION.reference_label] == [84.73, 87.38, 88.48]
    f1 = {
        c.variant: c.metrics.f1 for c in load_run(kept_run(drawn)).cells if c.method == "ltfm" and c.metrics
    }
    assert bars["F1 at the validation threshold"] == pytest.approx([100 * f1[v] for v in LTFM_VARIANTS])
    assert [t.get_text().split("\n")[0] for t in ax.get_xticklabels()] == list(LTFM_VARIANTS)
    (legend,) = fig.legends
    assert "a different dataset from smartphone-synth: not comparable" in legend.get_title().get_text()
    cross = titled(kept, "LTFM F1 by test release year")
    assert len(cross.axes) == 2 and cross.axes[1].get_title() == "by test device group"


def kept_run(drawn: tuple[list[Path], list[Figure], float]) -> Path:
    return drawn[0][0].parent.parent


def test_ltfm_ablation_on_the_flagged_study_set_has_no_caveat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = write_fake_run(
        tmp_path / "run", ("ltfm",), variants=VARIANTS, dataset="manifest:/data/phones/manifest.csv",
        failed_method=None, weights="pretrained",
    )  # fmt: skip
    (run / "dataset" / "dataset.json").write_text(json.dumps({"published_reference": "smartphone-study"}))
    fig, _cross = draw_only(run, figures.draw_ablations, monkeypatch, tmp_path / "out")
    (legend,) = fig.legends
    assert "different dataset" not in legend.get_title().get_text()
    assert not any("RANDOM" in t.get_text() for t in fig.texts)


def test_kshot_curve_averages_seeds_and_marks_published_points(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shots = ("k0", "k1", "k2", "k4")
    run = write_fake_run(
        tmp_path / "run", ("winclip", "patchcore"), variants={"winclip": shots}, seeds=(0, 1),
        dataset="mvtec:/data/mvtec_ad/bottle", failed_method=None, weights="pretrained",
    )  # fmt: skip
    (fig,) = draw_only(run, figures.draw_kshot, monkeypatch, tmp_path / "out")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "2", "4"]
    (curve,) = [line for line in ax.get_lines() if line.get_label() == "winclip"]
    aurocs = {(c.variant, c.seed): c.metrics.image_auroc for c in load_run(run).cells if c.metrics}
    expected = [(aurocs[(k, 0)] + aurocs[(k, 1)]) / 2 for k in shots]
    assert list(curve.get_xdata()) == [0, 1, 2, 3]
    assert list(curve.get_ydata()) == pytest.approx(expected)
    published = [line for line in ax.get_lines() if line.get_markerfacecolor() == "white"]
    assert sorted(float(line.get_ydata()[0]) for line in published) == pytest.approx(
        [0.918, 0.931, 0.944, 0.952]
    )
    (legend,) = fig.legends
    assert "published (MVTec AD)" in [t.get_text() for t in legend.get_texts()]
    assert "mean of up to 2 seeds" in legend.get_title().get_text()


@pytest.mark.parametrize(("origin", "expected"), [("synthetic source", "synthetic source"),
                                                  ("expert checkpoint", "expert checkpoint"), (None, "no target data")])
def test_the_base_is_named_by_its_stored_provenance_everywhere(tmp_path: Path, origin: str | None,
                                                                expected: str) -> None:
    """`origin` from the cell's provenance names LTFM's base on the ablation's axis, in the legend of
    its cross-generation figure and in every figure's cell label; without it, the method's own note."""
    facts = {"ltfm/base": {"origin": origin}} if origin else {}
    run = write_fake_run(tmp_path / "run", ("ltfm",), variants={"ltfm": LTFM_VARIANTS}, provenance=facts,
                         failed_method=None)
    kept: list[Figure] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(figures, "save_figure", keeping(kept, write=False))
        write_figures(run)
    ablation = titled(kept, "LTFM ablation: ")
    assert ablation.axes[0].get_xticklabels()[0].get_text() == f"base\n({expected})"
    labels = {c.variant: label for c in load_run(run).cells for key, label in load_run(run).labels().items()
              if key == c.cell_key}
    assert labels["base"] == (f"ltfm/base ({origin})" if origin else "ltfm/base")
    assert labels["ft-real"] == "ltfm/ft-real"
    bars = titled(kept, "Image AUROC")
    assert (f"ltfm/base ({origin})" if origin else "ltfm/base") in [t.get_text() for t in bars.axes[0].get_yticklabels()]
    if origin:
        cross = titled(kept, "LTFM F1 by test release year")
        assert f"base ({origin})" in [t.get_text() for t in cross.legends[0].get_texts()]


# --- confidence intervals drawn on the figures -------------------------------------------------------

import numpy as np  # noqa: E402
from matplotlib.container import ErrorbarContainer  # noqa: E402

from benchmarks.metrics.bootstrap import stratified_bootstrap  # noqa: E402
from benchmarks.reporting.figures import known_unseen  # noqa: E402
from benchmarks.reporting.figures.common import chance_level, whiskers  # noqa: E402


def _segments(container: ErrorbarContainer) -> list[tuple[float, float, float]]:
    """(y, left end, right end) of each horizontal error bar in the container."""
    (bars,) = container.lines[2]
    return [(float(s[0][1]), float(s[0][0]), float(s[1][0])) for s in bars.get_segments()]


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Figure]]:
    run = write_fake_run(tmp_path_factory.mktemp("ci"), ("patchcore", "winclip", "dino-knn"), failed_method=None)
    lines = [json.loads(line) for line in (run / "runs.jsonl").read_text().splitlines()]
    for line in lines:  # CIs that are not symmetric, one that excludes its estimate
        m = line["metrics"]
        m["image_auroc_ci"] = [m["image_auroc"] - 0.07, min(1.0, m["image_auroc"] + 0.02)]
        m["f1_ci"] = [m["f1"] - 0.03, m["f1"] + 0.09]
    lines[-1]["metrics"]["f1_ci"] = [lines[-1]["metrics"]["f1"] + 0.01, lines[-1]["metrics"]["f1"] + 0.05]
    (run / "runs.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    kept: list[Figure] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(figures, "save_figure", keeping(kept, write=False))
        write_figures(run)
    return run, kept


def _figure(kept: list[Figure], title_start: str) -> Figure:
    return next(f for f in kept if f.axes and f.axes[0].get_title().startswith(title_start))


def test_bars_draw_each_cells_stored_ci_and_the_chance_line(ci_run: tuple[Path, list[Figure]]) -> None:
    run, kept = ci_run
    cells = load_run(run).for_dataset(SLUG, ok_only=True)
    for metric, ci_name, title in (("image_auroc", "image_auroc_ci", "Image AUROC"), ("f1", "f1_ci", "F1 at")):
        ax = _figure(kept, title).axes[0]
        rows = sorted(cells, key=lambda c: getattr(c.metrics, metric))  # drawn bottom-up, best on top
        (container,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
        drawn = _segments(container)
        for y, cell in enumerate(rows):
            value, ci = getattr(cell.metrics, metric), getattr(cell.metrics, ci_name)
            assert drawn[y][0] == pytest.approx(y)
            assert drawn[y][1] == pytest.approx(min(ci.lo, value)) and drawn[y][2] == pytest.approx(max(ci.hi, value))
        assert [t.get_text() for t in ax.texts] == [f"{getattr(c.metrics, metric):.3f}" for c in rows]
        labels = [t.get_text() for t in ax.get_yticklabels()]
        assert len(labels) == len(rows) and all(c.method in label for c, label in zip(rows, labels, strict=True))
        chance, _ = chance_level(metric, rows)
        dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
        assert len(dashed) == 1 and dashed[0].get_xdata()[0] == pytest.approx(chance)
        assert ax.get_xlim() == (0.0, 1.0)


def test_whiskers_clip_at_zero_where_a_ci_excludes_its_estimate() -> None:
    assert whiskers(0.8, 0.7, 0.85) == pytest.approx((0.1, 0.05))
    assert whiskers(0.8, 0.82, 0.9) == pytest.approx((0.0, 0.1))
    assert whiskers(0.8, 0.6, 0.79) == pytest.approx((0.2, 0.0))


def test_chance_levels_are_half_for_auroc_and_flag_all_f1_from_the_class_counts(
    ci_run: tuple[Path, list[Figure]]
) -> None:
    run, _ = ci_run
    cells = list(load_run(run).for_dataset(SLUG, ok_only=True))
    assert chance_level("image_auroc", cells) == (0.5, "chance (0.500)")
    m = cells[0].metrics
    prevalence = m.n_anomalous / (m.n_normal + m.n_anomalous)
    value, label = chance_level("f1", cells)
    assert value == pytest.approx(2 * prevalence / (1 + prevalence)) and label == f"chance: flag all ({value:.3f})"
    assert (m.n_normal, m.n_anomalous) == (40, 24)  # unbalanced: flag-all F1 is not 2/3
    from dataclasses import replace
    unknown = replace(cells[0], metrics=replace(m, n_normal=None))
    assert chance_level("f1", [unknown]) == (None, "")
    assert chance_level("f1", [replace(cells[0], metrics=replace(m, n_anomalous=0))]) == (None, "")


def test_known_vs_unseen_draws_the_val_bootstrap_and_the_stored_test_ci(ci_run: tuple[Path, list[Figure]]) -> None:
    run, kept = ci_run
    results = load_run(run)
    cells = sorted(results.for_dataset(SLUG, ok_only=True), key=lambda c: c.metrics.image_auroc)
    ax = _figure(kept, "Known vs unseen").axes[0]
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 2 * len(cells)
    for y, cell in enumerate(cells):
        scores = results.scores(cell)
        val = scores[scores["split"] == "val"]
        val_ci = stratified_bootstrap(val["score"].to_numpy(float), val["label"].to_numpy(int), None,
                                      n_bootstrap=known_unseen.VAL_BOOTSTRAP, seed=cell.seed or 0).image_auroc
        test_ci = cell.metrics.image_auroc_ci
        ((vy, vlo, vhi),) = _segments(bars[2 * y])
        ((ty, tlo, thi),) = _segments(bars[2 * y + 1])
        assert (vy, ty) == (pytest.approx(y + 0.12), pytest.approx(y - 0.12))
        v = cell.metrics.val_image_auroc
        assert (vlo, vhi) == (pytest.approx(min(val_ci.lo, v)), pytest.approx(max(val_ci.hi, v)))
        t = cell.metrics.image_auroc
        assert (tlo, thi) == (pytest.approx(min(test_ci.lo, t)), pytest.approx(max(test_ci.hi, t)))
    legend = [t.get_text() for t in kept[kept.index(ax.figure)].legends[0].get_texts()]
    assert legend == ["validation split", "test split", "chance (0.5)"]  # the fake manifest lists test rows only
    lows = [min(c.metrics.image_auroc_ci.lo, 1.0) for c in cells]
    assert ax.get_xlim()[0] <= min(lows) and ax.get_xlim()[1] == 1.0
    assert np.isclose(ax.get_ylim(), (-0.6, len(cells) - 0.4)).all()


def test_known_vs_unseen_names_the_splits_by_their_years_only_when_test_is_later(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    view = object()
    for years, expected in (
        ({"val": [2020, 2023], "test": [2024, 2025]},
         ("val: held-out images of known designs (2020-2023)", "test: unseen designs (2024-2025)")),
        ({"val": [2019], "test": [2024]}, ("val: held-out images of known designs (2019)", "test: unseen designs (2024)")),
        ({"val": [2020, 2024], "test": [2024, 2025]}, ("validation split", "test split")),
        ({"test": [2024]}, ("validation split", "test split")),
    ):
        monkeypatch.setattr(known_unseen, "_split_years", lambda v, years=years: years)
        assert known_unseen._split_names(view) == expected  # type: ignore[arg-type]


def test_ci_figures_legends_colours_and_layers(ci_run: tuple[Path, list[Figure]]) -> None:
    """What a reader uses to read the CIs: the legend entries, black whiskers over the bars, the grey dashed
    chance line on top, bars in each method's colour, open markers for val and filled ones for test."""
    from matplotlib.colors import to_rgba

    run, kept = ci_run
    cells = sorted(load_run(run).for_dataset(SLUG, ok_only=True), key=lambda c: c.metrics.image_auroc)
    auroc = _figure(kept, "Image AUROC")
    ax = auroc.axes[0]
    assert sorted(t.get_text() for t in auroc.legends[0].get_texts()) == ["95 % CI", "chance (0.500)"]
    (container,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    (whisker_lines,) = container.lines[2]
    assert to_rgba(whisker_lines.get_colors()[0]) == to_rgba("black") and whisker_lines.get_linewidths()[0] == 0.8
    assert all(len(cap.get_xdata()) for cap in container.lines[1])  # capped whiskers
    (chance,) = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert to_rgba(chance.get_color()) == to_rgba("0.3") and chance.get_zorder() == 4 and chance.get_linewidth() == 0.8
    (bars,) = [c for c in ax.containers if not isinstance(c, ErrorbarContainer)]
    methods = [c.method for c in cells]
    assert len({tuple(b.get_facecolor()) for b in bars}) == len(set(methods))  # one colour per method
    assert all(b.get_zorder() < whisker_lines.get_zorder() < chance.get_zorder() for b in bars)
    assert not any(line.get_visible() for line in ax.yaxis.get_gridlines())
    unseen = _figure(kept, "Known vs unseen")
    uax = unseen.axes[0]
    points = [c for c in uax.containers if isinstance(c, ErrorbarContainer)]
    faces = [to_rgba(p.lines[0].get_markerfacecolor()) for p in points]
    assert faces[0::2] == [to_rgba("white")] * len(cells) and to_rgba("white") not in faces[1::2]
    assert all(p.lines[0].get_marker() == "o" for p in points)
    (half,) = [line for line in uax.get_lines() if line.get_linestyle() == "--"]
    assert half.get_xdata()[0] == 0.5 and to_rgba(half.get_color()) == to_rgba("0.3")
    links = [line for line in uax.get_lines() if line.get_linestyle() == "-" and len(line.get_xdata()) == 2
             and to_rgba(line.get_color()) == to_rgba("0.6")]
    assert len(links) == len(cells)  # each cell's val and test joined
    handles = unseen.legends[0].legend_handles
    assert [h.get_marker() for h in handles[:2]] == ["o", "o"] and to_rgba(handles[0].get_markerfacecolor()) == to_rgba(
        "white")


def test_known_vs_unseen_reads_the_split_years_from_the_manifest_and_spans_them(tmp_path: Path) -> None:
    from types import SimpleNamespace

    root = tmp_path / "set"
    root.mkdir()
    (root / "manifest.csv").write_text("image,split,year\na,val,2017\nb,val,2019\nc,val,2018\nd,test,2024\n"
                                       "e,test,2025\nf,train,\n")
    view = SimpleNamespace(cells=[SimpleNamespace(dataset_root=str(root))], dataset="d")
    assert known_unseen._split_years(view) == {"val": [2017, 2018, 2019], "test": [2024, 2025], "train": []}
    assert known_unseen._split_names(view) == ("val: held-out images of known designs (2017-2019)",
                                                "test: unseen designs (2024-2025)")
    (root / "manifest.csv").write_text("image,split\na,val\n")
    assert known_unseen._split_years(view) == {}  # no year column
    (root / "manifest.csv").unlink()
    assert known_unseen._split_years(view) == {}  # no manifest
    assert known_unseen._split_years(SimpleNamespace(cells=[SimpleNamespace(dataset_root=None)], dataset="d")) == {}


def test_a_cell_without_a_stored_ci_gets_no_whiskers(tmp_path: Path) -> None:
    run = write_fake_run(tmp_path / "run", ("patchcore", "winclip"), failed_method=None)
    lines = [json.loads(line) for line in (run / "runs.jsonl").read_text().splitlines()]
    lines[0]["metrics"]["image_auroc_ci"] = None
    (run / "runs.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    kept: list[Figure] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(figures, "save_figure", keeping(kept, write=False))
        write_figures(run)
    ax = _figure(kept, "Image AUROC").axes[0]
    (container,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    widths = sorted(round(right - left, 6) for _, left, right in _segments(container))
    assert widths[0] == 0.0 and widths[1] > 0.0  # the cell without a CI is drawn without whiskers
