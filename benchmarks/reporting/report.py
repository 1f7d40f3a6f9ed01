"""`report.md` plus per-dataset tables (CSV, Markdown, LaTeX booktabs) from a stored run (SPEC 10).

This module assembles the report: the stamp, summary and protocol, one section per dataset with
the tables of `result_tables`, the published-vs-reproduced section, latency, failures, notes and
the environment. Numbers come from `runs.jsonl` as the runner wrote them; nothing is recomputed.
CSV files hold the raw values (CI bounds in `<metric>_lo` / `<metric>_hi` columns).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from benchmarks.reporting.figures import figure_captions, render_figures
from benchmarks.reporting.published_table import published_section
from benchmarks.reporting.result_tables import (
    answers_table,
    breakdown_long,
    breakdown_tables,
    comparison_table,
    failed_section,
    latency_section,
    main_table,
    operating_table,
    roi_defect_table,
    roi_table,
)
from benchmarks.reporting.statistics import SIGNIFICANCE_LEVEL, aggregate_seeds, compare_with_best
from benchmarks.reporting.tables import WORSE_MARK, md_escape
from benchmarks.results.reader import RunResults, dataset_slugs, load_run
from benchmarks.results.record import CellResult
from benchmarks.results.stamp import STAMP_SENTENCE

log = logging.getLogger(__name__)

CI_NOTE = "95 % CIs (stratified bootstrap) are shown as [lo, hi]"
SIGNIFICANCE_NOTE = (
    f"{WORSE_MARK} after an AUROC: significantly lower than the best method/variant of the dataset"
    f" (paired DeLong test on the same test images, Holm-adjusted p < {SIGNIFICANCE_LEVEL:g})"
)


def write_report(run_dir: str | Path, out_dir: str | Path | None = None, *, figures: bool = True) -> Path:
    """Write `report.md`, `tables/` and (with `figures`) `figures/` into `out_dir` (default: the run folder).

    Returns the path of `report.md`. Without `figures`, PNGs already in `<out_dir>/figures` are linked.
    """
    results = load_run(run_dir)
    target = Path(out_dir) if out_dir is not None else Path(run_dir)
    target.mkdir(parents=True, exist_ok=True)
    figure_dir = target / "figures"
    slugs = dataset_slugs(results.datasets)
    if figures:
        drawn = render_figures(results, figure_dir)
        pngs = {d: [p for p in paths if p.suffix == ".png"] for d, paths in drawn.items()}
    else:
        pngs = {
            d: [p for kind in figure_captions(results) if (p := figure_dir / f"{kind}_{slugs[d]}.png").is_file()]
            for d in results.datasets
        }
    report = target / "report.md"
    report.write_text(_markdown(results, target, slugs, pngs), encoding="utf-8")
    log.info("wrote %s", report)
    return report


def _markdown(results: RunResults, target: Path, slugs: dict[str, str], pngs: dict[str, list[Path]]) -> str:
    tables_dir = target / "tables"
    frame = results.frame()
    captions = figure_captions(results)
    any_random = results.any_random_weights
    show_weights = not results.all_pretrained
    comments = [CI_NOTE] + (
        ["RANDOM WEIGHTS: some cells used randomly initialised backbones"] if any_random else []
    ) + (["SUBSTITUTE WEIGHTS: some cells used the bundled ImageNet MobileNetV2 in place of the paper's backbone"]
         if any(c.substitute_weights for c in results.cells) else [])
    comments.append(SIGNIFICANCE_NOTE)
    run_ids = sorted({c.run_id for c in results.cells if c.run_id})
    out = [f"# Benchmark report: {md_escape(', '.join(run_ids) or results.run_dir.name)}", ""]
    out += _stamp(results)
    out += _summary(results)
    out += _protocol(results)
    frame.to_csv(_ensure(tables_dir) / "cells.csv", index=False)
    breakdown_long(results).to_csv(tables_dir / "breakdowns.csv", index=False)
    for dataset in results.datasets:
        slug = slugs[dataset]
        data = _dataset_frame(results, frame, dataset)
        out += [f"## Dataset: {md_escape(dataset)}", ""]
        if data.empty:
            out += ["No cell of this dataset finished; see *Cells without results*.", ""]
            continue
        show_seed = data.groupby(["method", "variant"]).size().max() > 1
        summary = aggregate_seeds(data)
        comparisons = compare_with_best(results, dataset)
        tables = [
            main_table(summary, comparisons, slug, show_seed, show_weights),
            operating_table(data, slug, show_seed),
        ]
        if comparisons:
            tables.append(comparison_table(comparisons, summary, slug))
        tables += breakdown_tables(results, dataset, slug)
        if data["decision_f1"].notna().any() or data["location_accuracy"].notna().any():
            tables.append(answers_table(data, slug, show_seed))
        tables += [t for t in (roi_table(data, slug, show_seed), roi_defect_table(results, dataset, slug)) if t]
        for table in tables:
            table.write(tables_dir, comments)
            out += [f"### {table.title}", "", table.to_markdown()]
        out += _figure_links(pngs.get(dataset, []), target, dataset, slug, captions)
    out += published_section(results, frame, tables_dir, comments)
    out += latency_section(frame, tables_dir, comments)
    out += failed_section(frame, tables_dir, comments)
    out += _notes(results)
    out += _environment(results)
    out += [
        "## Files",
        "",
        "- `tables/`: every table as CSV (raw values), Markdown and LaTeX (booktabs);",
        "  `tables/cells.csv` has one row per cell with every stored number.",
        "- `figures/`: every figure as PNG (200 dpi) and PDF.",
        "",
    ]
    return "\n".join(out)


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _stamp(results: RunResults) -> list[str]:
    random = [c for c in results.cells if c.random_weights]
    substitute = [c for c in results.cells if c.substitute_weights]
    out = []
    if random:
        methods = ", ".join(sorted({md_escape(c.method) for c in random}))
        out += [
            f"> **⚠ RANDOM WEIGHTS.** {len(random)} of {len(results.cells)} cells ran with randomly initialised "
            f"backbones ({methods}): their numbers say nothing about the methods. Provide pretrained weights "
            "(`python -m benchmarks weights` says how) and re-run.",
            "",
        ]
    if substitute:
        methods = ", ".join(sorted({md_escape(c.method) for c in substitute}))
        tags = ", ".join(sorted({md_escape(c.weights_tag or "substitute") for c in substitute}))
        out += [f"> **SUBSTITUTE WEIGHTS ({tags}).** {len(substitute)} of {len(results.cells)} cells ({methods}). "
                f"{STAMP_SENTENCE}", ""]
    return out


def _summary(results: RunResults) -> list[str]:
    counts = {s: sum(c.status == s for c in results.cells) for s in ("ok", "failed", "skipped")}
    presets = sorted({c.preset for c in results.cells if c.preset})
    hashes = sorted({c.config_hash for c in results.cells if c.config_hash})
    lines = [
        f"- Cells: {len(results.cells)} ({counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} skipped)",
        f"- Datasets: {', '.join(md_escape(d) for d in results.datasets) or 'none'}",
        f"- Preset: {', '.join(md_escape(p) for p in presets) or 'unknown'};"
        f" config hash: {', '.join(md_escape(h) for h in hashes) or 'unknown'}",
    ]
    return [*lines, ""]


def _protocol(results: RunResults) -> list[str]:
    lines = [
        "## Protocol",
        "",
        "- **Image AUROC, AUPR (average precision) and F1-max** are threshold-free and measured on the test"
        " split. F1-max is the best F1 over all thresholds *on test*: optimistic, shown for comparison with"
        " papers.",
        "- **F1@val, precision and recall** are measured on the test split at the score threshold chosen on"
        " the **validation** split (never on test); the threshold and its source per cell are in the"
        " *operating point* tables.",
        f"- {CI_NOTE}. Best value per column in **bold** (higher is better; lower for latency, memory and FPR).",
        "- Main tables have one row per method/variant. When several seeds ran, a value is the mean over"
        " seeds ± their standard deviation, its [lo, hi] the envelope of the seeds' 95 % CIs, and latency"
        " the median over seeds; the *operating point* tables keep one row per seed.",
        f"- {SIGNIFICANCE_NOTE}. With several seeds each seed is tested against the best's same seed and the"
        " largest p-value counts; the *paired comparison* tables give every delta and p-value.",
        "- Latency: per image at batch size 1 after warm-up (p50 / p95 in ms); throughput in images/s at the"
        " best batch size; peak memory in MB (RSS on CPU, max allocated on GPU).",
        "- Threshold sources: `val` = F1-optimal on the validation split; `val-normal-p99` = 99th percentile"
        " of validation normals (validation split without anomalies); `none` = no threshold.",
        "- Breakdowns and hard-negative FPR are on the test split; FPR uses the validation threshold.",
        *_roi_protocol(results),
        "",
    ]
    for cell in results.cells:
        source = cell.metrics.threshold_source if cell.ok and cell.metrics else None
        if source is None or source.startswith("val"):
            continue
        what = (
            "had no usable validation data: F1, precision and recall are n/a"
            if source == "none"
            else (f"took its threshold from {md_escape(source)}, not from the validation split")
        )
        lines.append(f"> **Warning:** cell {md_escape(cell.cell_key)} {what}.")
        lines.append("")
    return lines


def _roi_protocol(results: RunResults) -> list[str]:
    """The ROI protocol line: which datasets gave a region of interest, the mode, and what was used."""
    with_roi = [c for c in results.cells if c.ok and c.roi is not None]
    if not with_roi:
        return ["- Image scores: each method's own score over the whole image (no dataset gave a region of"
                " interest)."]
    modes = ", ".join(sorted({str(c.roi.mode) for c in with_roi if c.roi is not None}))
    used = sum(bool(c.roi and c.roi.used) for c in with_roi)
    datasets = ", ".join(md_escape(d) for d in sorted({c.dataset for c in with_roi}))
    return [f"- **Image scores, ROI-guided** (`--roi {modes}`) on {datasets}: where a method's image score pools"
            " its anomaly map, the harness pools the map inside each image's region of interest as well, and"
            " under `auto` uses that score when it beats the method's own score on the *validation* split. "
            f"{used} of {len(with_roi)} cells use it; the main table's *Image score* column says which, and"
            " the *ROI-guided image scores* table gives both scorings side by side with DeLong's paired test."]


def _dataset_frame(results: RunResults, frame: pd.DataFrame, dataset: str) -> pd.DataFrame:
    keys = [c.cell_key for c in results.for_dataset(dataset, ok_only=True)]
    return frame.set_index("cell_key").loc[keys].reset_index()


def _figure_links(pngs: list[Path], target: Path, dataset: str, slug: str, captions: dict[str, str]) -> list[str]:
    if not pngs:
        return ["*No figures for this dataset (see the log for why).*", ""]
    lines = ["### Figures", ""]
    for png in pngs:
        kind = png.stem.removesuffix(f"_{slug}")
        caption = captions.get(kind, kind)
        link = quote(Path(os.path.relpath(png, target)).as_posix())
        lines += [
            f"![{md_escape(caption)}, {md_escape(dataset)}]({link})",
            "",
            f"*{md_escape(caption)}.*",
            "",
        ]
    return lines


def _notes(results: RunResults) -> list[str]:
    notes = [f"- {md_escape(p)}" for p in results.problems]
    for cell in results.cells:
        if cell.ok and cell.metrics and cell.metrics.undefined_reason:
            notes.append(f"- {md_escape(cell.cell_key)}: {md_escape(cell.metrics.undefined_reason)}")
        if cell.ok and cell.metrics is None:
            notes.append(f"- {md_escape(cell.cell_key)}: status ok but no metrics were stored")
    return ["## Notes", "", *notes, ""] if notes else []


def _environment(results: RunResults) -> list[str]:
    lines = ["## Hardware and versions", ""]
    for what in ("hardware", "versions"):
        groups: dict[str, list[CellResult]] = {}
        for cell in results.cells:
            value = getattr(cell, what)
            if value:
                groups.setdefault(json.dumps(value, sort_keys=True, default=str), []).append(cell)
        if not groups:
            lines += [f"- {what}: not recorded", ""]
            continue
        for blob, cells in groups.items():
            every = len(cells) == len(results.cells)
            scope = (
                ("all cells" if every else "every cell that recorded it")
                if len(groups) == 1
                else ", ".join(md_escape(c.cell_key) for c in cells)
            )
            items = "; ".join(
                f"{md_escape(str(k))}: {md_escape(_plain_value(v))}" for k, v in json.loads(blob).items()
            )
            lines.append(f"- {what.capitalize()} ({scope}): {items}")
        lines.append("")
    return lines


def _plain_value(value: object) -> str:
    return "n/a" if value is None else value if isinstance(value, str) else json.dumps(value)
