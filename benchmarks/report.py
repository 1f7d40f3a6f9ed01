"""`report.md` plus per-dataset tables (CSV, Markdown, LaTeX booktabs) from a stored run (SPEC 10).

Numbers come from `runs.jsonl` as the runner wrote them; nothing is recomputed. CSV files hold
the raw values (CI bounds in `<metric>_lo` / `<metric>_hi` columns); Markdown and LaTeX show
CIs as `value [lo, hi]` because bootstrap intervals are not symmetric. Every string that comes
from a dataset or a plugin (names, groups, errors) is escaped for the format it is written in.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd

from benchmarks.data.schema import NORMAL_DEFECT
from benchmarks.figures import FIGURE_CAPTIONS, render_figures
from benchmarks.published import (
    DATASET_KIND_NAMES,
    PROTOCOL_CAVEATS,
    PUBLISHED,
    PublishedResult,
    comparability,
    dataset_kind,
)
from benchmarks.record import CellResult
from benchmarks.results_table import RunResults, dataset_slugs, load_run, strata_order
from benchmarks.stamp import STAMP_SENTENCE
from benchmarks.statistics import SIGNIFICANCE_LEVEL, BestComparison, aggregate_seeds, compare_with_best

log = logging.getLogger(__name__)

CI_NOTE = "95 % CIs (stratified bootstrap) are shown as [lo, hi]"
WORSE_MARK = "†"
SIGNIFICANCE_NOTE = (
    f"{WORSE_MARK} after an AUROC: significantly lower than the best method/variant of the dataset"
    f" (paired DeLong test on the same test images, Holm-adjusted p < {SIGNIFICANCE_LEVEL:g})"
)
MISSING_MD = "–"
MISSING_TEX = "--"
ERROR_CHARS = 300

Rendered = tuple[str, str]  # (text that bold applies to, trailing text such as a CI)


@dataclass(frozen=True)
class Column:
    """One displayed column.

    `render` turns a row of the table's data into text, or None where the value is missing.
    `rank_by` names the data column whose best value is bolded (ties at `decimals` all bold).
    `text` marks data-provided strings: escaped per output format and left-aligned.
    """

    header: str
    render: Callable[[pd.Series], Rendered | None]
    rank_by: str | None = None
    higher_is_better: bool = True
    decimals: int = 3
    text: bool = False


@dataclass(frozen=True)
class ReportTable:
    """A table written as `<name>.csv` (raw values), `<name>.md` and `<name>.tex` (display columns)."""

    name: str
    title: str
    data: pd.DataFrame
    columns: tuple[Column, ...]
    csv: pd.DataFrame | None = None  # raw values for the CSV when they differ from `data`

    def cells(self) -> list[list[tuple[str, str, bool] | None]]:
        """Rows of (head, tail, bold) per column, None where missing."""
        bold = {i: self._best_rows(c) for i, c in enumerate(self.columns)}
        rows = []
        for r, (_, row) in enumerate(self.data.iterrows()):
            cells: list[tuple[str, str, bool] | None] = []
            for i, column in enumerate(self.columns):
                value = column.render(row)
                cells.append(None if value is None else (value[0], value[1], r in bold[i]))
            rows.append(cells)
        return rows

    def _best_rows(self, column: Column) -> set[int]:
        if column.rank_by is None:
            return set()
        values = (
            pd.to_numeric(self.data[column.rank_by], errors="coerce")
            .round(column.decimals)
            .reset_index(drop=True)
        )
        if values.notna().sum() < 2:
            return set()
        best = values.max() if column.higher_is_better else values.min()
        return set(values.index[values == best])

    def _row_texts(
        self, row: list[tuple[str, str, bool] | None], escape: Callable[[str], str], missing: str,
        bold_format: str, render_tail: Callable[[str], str],
    ) -> list[str]:
        """One row's cells as text: text columns escaped, the best value bolded, the tail rendered."""
        texts = []
        for column, cell in zip(self.columns, row, strict=True):
            if cell is None:
                texts.append(missing)
                continue
            head, tail, bold = cell
            head = escape(head) if column.text else head
            texts.append((bold_format.format(head) if bold else head) + render_tail(tail))
        return texts

    def to_markdown(self) -> str:
        header = "| " + " | ".join(md_escape(c.header) for c in self.columns) + " |"
        align = "|" + "|".join(":--" if c.text else "--:" for c in self.columns) + "|"
        lines = [header, align]
        for row in self.cells():
            texts = self._row_texts(row, md_escape, MISSING_MD, "**{}**", lambda tail: tail)
            lines.append("| " + " | ".join(texts) + " |")
        return "\n".join(lines) + "\n"

    def to_latex(self, comments: Sequence[str] = ()) -> str:
        """A booktabs `tabular` (no float environment, so the paper sets caption and label)."""
        spec = "".join("l" if c.text else "r" for c in self.columns)
        lines = [f"% {one_line(c)}" for c in (self.title, *comments)]
        lines += [rf"\begin{{tabular}}{{{spec}}}", r"\toprule"]
        lines.append(" & ".join(tex_escape(c.header) for c in self.columns) + r" \\")
        lines.append(r"\midrule")
        for row in self.cells():
            texts = self._row_texts(
                row, tex_escape, MISSING_TEX, r"\textbf{{{}}}",
                lambda tail: tail.replace("±", r"$\pm$").replace(WORSE_MARK, r"\textsuperscript{\dag}"),
            )
            lines.append(" & ".join(texts) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}"]
        return "\n".join(lines) + "\n"

    def write(self, out_dir: Path, comments: Sequence[str] = ()) -> list[Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = [out_dir / f"{self.name}.{ext}" for ext in ("csv", "md", "tex")]
        (self.data if self.csv is None else self.csv).to_csv(paths[0], index=False)
        paths[1].write_text(f"{self.title}\n\n{self.to_markdown()}", encoding="utf-8")
        paths[2].write_text(self.to_latex(comments), encoding="utf-8")
        return paths


def md_escape(text: str) -> str:
    """Make a data-provided string inert in Markdown: one line, no markup, links or HTML."""
    text = one_line(text)
    return re.sub(r"([\\`*_\[\]<>|~&$])", r"\\\1", text)


def tex_escape(text: str) -> str:
    """Escape LaTeX special characters in a data-provided string."""
    replacements = {
        "\\": r"\textbackslash{}",
        "&": r"\&",
        "%": r"\%",
        "$": r"\$",
        "#": r"\#",
        "_": r"\_",
        "{": r"\{",
        "}": r"\}",
        "~": r"\textasciitilde{}",
        "^": r"\textasciicircum{}",
        "<": r"\textless{}",
        ">": r"\textgreater{}",
        "|": r"\textbar{}",
        "[": "{[}",
        "]": "{]}",
    }
    return "".join(replacements.get(ch, ch) for ch in one_line(text))


def one_line(text: str) -> str:
    return " ".join(str(text).split())


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
            d: [p for kind in FIGURE_CAPTIONS if (p := figure_dir / f"{kind}_{slugs[d]}.png").is_file()]
            for d in results.datasets
        }
    report = target / "report.md"
    report.write_text(_markdown(results, target, slugs, pngs), encoding="utf-8")
    log.info("wrote %s", report)
    return report


def _markdown(results: RunResults, target: Path, slugs: dict[str, str], pngs: dict[str, list[Path]]) -> str:
    tables_dir = target / "tables"
    frame = results.frame()
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
    _breakdown_long(results).to_csv(tables_dir / "breakdowns.csv", index=False)
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
            _main_table(summary, comparisons, slug, show_seed, show_weights),
            _operating_table(data, slug, show_seed),
        ]
        if comparisons:
            tables.append(_comparison_table(comparisons, summary, slug))
        tables += _breakdown_tables(results, dataset, slug)
        if data["decision_f1"].notna().any() or data["location_accuracy"].notna().any():
            tables.append(_answers_table(data, slug, show_seed))
        for table in tables:
            table.write(tables_dir, comments)
            out += [f"### {table.title}", "", table.to_markdown()]
        out += _figure_links(pngs.get(dataset, []), target, dataset, slug)
    out += _published_section(results, frame, tables_dir, comments)
    out += _latency_section(frame, tables_dir, comments)
    out += _failed_section(frame, tables_dir, comments)
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


def _dataset_frame(results: RunResults, frame: pd.DataFrame, dataset: str) -> pd.DataFrame:
    keys = [c.cell_key for c in results.for_dataset(dataset, ok_only=True)]
    return frame.set_index("cell_key").loc[keys].reset_index()


def _number(name: str, decimals: int = 3) -> Callable[[pd.Series], Rendered | None]:
    def render(row: pd.Series) -> Rendered | None:
        value = row.get(name)
        return None if pd.isna(value) else (f"{value:.{decimals}f}", "")

    return render


def _with_ci(name: str) -> Callable[[pd.Series], Rendered | None]:
    def render(row: pd.Series) -> Rendered | None:
        value, lo, hi = row.get(name), row.get(f"{name}_lo"), row.get(f"{name}_hi")
        if pd.isna(value):
            return None
        return f"{value:.3f}", "" if pd.isna(lo) or pd.isna(hi) else f" [{lo:.3f}, {hi:.3f}]"

    return render


def _ms(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _latency_pair(row: pd.Series) -> Rendered | None:
    p50, p95 = row.get("batch1_p50_ms"), row.get("batch1_p95_ms")
    if pd.isna(p50):
        return None
    return _ms(p50), "" if pd.isna(p95) else f" / {_ms(p95)}"


def _memory(row: pd.Series) -> Rendered | None:
    mb, kind = row.get("peak_mem_mb"), row.get("peak_mem_kind")
    if pd.isna(mb):
        return None
    return f"{mb:.0f}", "" if kind is None or pd.isna(kind) else f" ({kind})"


def _text(name: str) -> Callable[[pd.Series], Rendered | None]:
    def render(row: pd.Series) -> Rendered | None:
        value = row.get(name)
        return None if value is None or pd.isna(value) else (str(value), "")

    return render


def _key_columns(show_seed: bool, show_weights: bool = False) -> list[Column]:
    columns = [Column("Method", _text("method"), text=True), Column("Variant", _text("variant"), text=True)]
    if show_seed:
        columns.append(Column("Seed", _number("seed", 0)))
    if show_weights:
        columns.append(Column("Weights", _text("weights_tag"), text=True))
    return columns


def _main_table(
    summary: pd.DataFrame,
    comparisons: Sequence[BestComparison],
    slug: str,
    show_seeds: bool,
    show_weights: bool,
) -> ReportTable:
    """One row per method/variant: means over seeds (± sd with several), the significance mark on AUROC."""
    one_device = summary["device"].dropna().nunique() <= 1
    worse = {(c.method, c.variant): c for c in comparisons}
    data = summary.copy()
    found = [worse.get(key) for key in zip(data["method"], data["variant"], strict=True)]
    data["delta_vs_best"] = [None if c is None else c.delta for c in found]
    data["p_vs_best_holm"] = [None if c is None else c.p_holm for c in found]
    data["significance"] = [WORSE_MARK if c is not None and c.significantly_worse else "" for c in found]

    def rank(name: str) -> str | None:
        return name if one_device else None  # latencies measured on different devices do not compete

    spread = " ± seed sd" if show_seeds else ""
    columns = [Column("Method", _text("method"), text=True), Column("Variant", _text("variant"), text=True)]
    if show_seeds:
        columns.append(Column("Seeds", _number("seeds", 0)))
    if show_weights:
        columns.append(Column("Weights", _text("weights_tag"), text=True))
    columns += [
        Column(f"AUROC{spread} (95 % CI)", _mean("image_auroc", ci=True, mark=True), "image_auroc"),
        Column("AUPR", _mean("aupr"), "aupr"),
        Column("F1@val", _mean("f1"), "f1"),
        Column("F1-max", _mean("f1_max"), "f1_max"),
        Column("Pixel AUROC", _mean("pixel_auroc"), "pixel_auroc"),
        Column("AUPRO", _mean("aupro"), "aupro"),
        Column("Val AUROC (val − test)", _val_gap, "val_image_auroc"),
        Column("p50 / p95 (ms)", _latency_pair, rank("batch1_p50_ms"), higher_is_better=False, decimals=2),
        Column("Throughput (img/s)", _number("throughput_ips", 1), rank("throughput_ips"), decimals=1),
        Column(
            "Peak mem (MB)",
            _number("peak_mem_mb", 0),
            rank("peak_mem_mb"),
            higher_is_better=False,
            decimals=0,
        ),
    ]
    keep = [
        "method",
        "variant",
        "seeds",
        "weights",
        "weights_tag",
        *(
            f"{m}{suffix}"
            for m in ("image_auroc", "aupr", "f1", "f1_max", "pixel_auroc", "aupro", "val_image_auroc")
            for suffix in ("", "_sd")
        ),
        "image_auroc_lo",
        "image_auroc_hi",
        "delta_vs_best",
        "p_vs_best_holm",
        "significance",
        "device",
        "batch1_p50_ms",
        "batch1_p95_ms",
        "throughput_ips",
        "peak_mem_mb",
    ]
    return ReportTable(f"main_{slug}", "Main results (test split)", data[keep], tuple(columns))


def _val_gap(row: pd.Series) -> Rendered | None:
    """Val AUROC and, in the tail, val minus test: on a cross-generation split the gap is the price
    of unseen designs (the val split holds known ones)."""
    val, test = row.get("val_image_auroc"), row.get("image_auroc")
    if pd.isna(val):
        return None
    return f"{val:.3f}", "" if pd.isna(test) else f" ({val - test:+.3f})"


def _mean(name: str, ci: bool = False, mark: bool = False) -> Callable[[pd.Series], Rendered | None]:
    """`mean` plus, in the tail, the significance mark, `± sd` over seeds and `[lo, hi]`, where present."""

    def render(row: pd.Series) -> Rendered | None:
        value = row.get(name)
        if pd.isna(value):
            return None
        tail = str(row.get("significance") or "") if mark else ""
        sd = row.get(f"{name}_sd")
        tail += "" if pd.isna(sd) else f" ± {sd:.3f}"
        lo, hi = row.get(f"{name}_lo"), row.get(f"{name}_hi")
        tail += "" if not ci or pd.isna(lo) or pd.isna(hi) else f" [{lo:.3f}, {hi:.3f}]"
        return f"{value:.3f}", tail

    return render


def _comparison_table(comparisons: Sequence[BestComparison], summary: pd.DataFrame, slug: str) -> ReportTable:
    best = (comparisons[0].best_method, comparisons[0].best_variant)
    auroc = summary.set_index(["method", "variant"])["image_auroc"]
    data = pd.DataFrame(
        [
            {
                "method": c.method,
                "variant": c.variant,
                "image_auroc": auroc.get((c.method, c.variant)),
                "delta": c.delta,
                "p_value": c.p_value,
                "p_holm": c.p_holm,
                "n_images": c.n_images,
                "n_pairs": c.n_pairs,
                "result": _verdict(c),
            }
            for c in comparisons
        ]
    )

    def p_value(name: str) -> Callable[[pd.Series], Rendered | None]:
        def render(row: pd.Series) -> Rendered | None:
            value = row.get(name)
            return None if pd.isna(value) else (f"{value:.2g}" if value < 0.001 else f"{value:.3f}", "")

        return render

    columns = (
        *_key_columns(False),
        Column("AUROC", _number("image_auroc")),
        Column("Δ AUROC vs best", lambda r: None if pd.isna(r["delta"]) else (f"{r['delta']:+.3f}", "")),
        Column("p (DeLong)", p_value("p_value")),
        Column("p (Holm)", p_value("p_holm")),
        Column("Test images", _number("n_images", 0)),
        Column("Seed pairs", _number("n_pairs", 0)),
        Column("Result", _text("result"), text=True),
    )
    title = f"Paired comparison with the best method/variant, {best[0]}/{best[1]} (DeLong, test images)"
    return ReportTable(f"paired_{slug}", title, data, columns)


def _verdict(comparison: BestComparison) -> str:
    if comparison.p_holm is None:
        return f"not tested: {comparison.undefined_reason or 'no p-value'}"
    if comparison.significantly_worse:
        return f"significantly worse {WORSE_MARK}"
    return "not significantly different"


def _operating_table(data: pd.DataFrame, slug: str, show_seed: bool) -> ReportTable:
    columns = [
        *_key_columns(show_seed),
        Column("Threshold", lambda r: None if pd.isna(r["threshold"]) else (f"{r['threshold']:.4g}", "")),
        Column("Source", _text("threshold_source"), text=True),
        Column("Precision", _number("precision"), "precision"),
        Column("Recall", _number("recall"), "recall"),
        Column("F1@val (95 % CI)", _with_ci("f1"), "f1"),
        Column("F1-max (95 % CI)", _with_ci("f1_max"), "f1_max"),
        Column("AUPR (95 % CI)", _with_ci("aupr"), "aupr"),
        Column("FPR normal", _number("normal_fpr"), "normal_fpr", higher_is_better=False),
        Column("FPR hard neg.", _number("hard_negative_fpr"), "hard_negative_fpr", higher_is_better=False),
    ]
    keep = [
        "method",
        "variant",
        "seed",
        "threshold",
        "threshold_source",
        "precision",
        "recall",
        "f1",
        "f1_lo",
        "f1_hi",
        "f1_max",
        "f1_max_lo",
        "f1_max_hi",
        "aupr",
        "aupr_lo",
        "aupr_hi",
        "normal_fpr",
        "hard_negative_fpr",
        "n_normal",
        "n_anomalous",
    ]
    title = "Operating point at the validation threshold, and hard-negative FPR (test split)"
    return ReportTable(f"operating_point_{slug}", title, data[keep], tuple(columns))


def _answers_table(data: pd.DataFrame, slug: str, show_seed: bool) -> ReportTable:
    rows = data[data["decision_f1"].notna() | data["location_accuracy"].notna()]
    columns = [
        *_key_columns(show_seed),
        Column("Decision F1", _number("decision_f1"), "decision_f1"),
        Column("Decision accuracy", _number("decision_accuracy"), "decision_accuracy"),
        Column("Location accuracy (3x3)", _number("location_accuracy"), "location_accuracy"),
        Column("Unparsed answers", _number("n_failed_answers", 0)),
    ]
    keep = [
        "method",
        "variant",
        "seed",
        "decision_f1",
        "decision_accuracy",
        "location_accuracy",
        "n_failed_answers",
    ]
    title = "Prompting answers: Yes/No decision and anomaly location vs test labels and masks"
    return ReportTable(f"answers_{slug}", title, rows[keep], tuple(columns))


def _breakdown_tables(results: RunResults, dataset: str, slug: str) -> list[ReportTable]:
    cells = results.for_dataset(dataset, ok_only=True)
    labels = results.labels()
    kinds = list(dict.fromkeys(k for c in cells for k in c.breakdowns))
    kinds.sort(key=lambda k: (["year", "group", "defect"] + [k]).index(k))
    tables = []
    for kind in kinds:
        strata = strata_order(list(dict.fromkeys(s for c in cells for s in c.breakdowns.get(kind, {}))))
        if kind == "defect":  # the "none" stratum holds the normals alone: no AUROC, no recall
            strata = [s for s in strata if s != NORMAL_DEFECT]
        if len(strata) < 2:  # one stratum only repeats the main table
            continue
        rows = []
        for cell in cells:
            row: dict[str, object] = {
                "cell": labels[cell.cell_key],
                "method": cell.method,
                "variant": cell.variant,
            }
            for i, name in enumerate(strata):
                stratum = cell.breakdowns.get(kind, {}).get(name)
                row[f"auroc_{i}"] = stratum.auroc if stratum else None
                row[f"recall_{i}"] = stratum.recall if stratum else None
            rows.append(row)
        data = pd.DataFrame(rows)
        columns = [Column("Method/variant", _text("cell"), text=True)]
        for i, name in enumerate(strata):
            found = [s for c in cells if (s := c.breakdowns.get(kind, {}).get(name))]
            # a defect stratum also holds every normal: its own size is its anomaly count
            n = next((s.n_anomalous if kind == "defect" else s.n for s in found if s.n), None)
            header = f"{name} (n={n})" if n else name
            render = _auroc_recall(i) if kind == "defect" else _number(f"auroc_{i}")
            columns.append(Column(header, render, f"auroc_{i}"))
        csv = data.rename(
            columns={f"{m}_{i}": f"{m}[{s}]" for i, s in enumerate(strata) for m in ("auroc", "recall")}
        )
        what = "AUROC / recall@val (each defect type against all normals)" if kind == "defect" else "AUROC"
        title = f"Breakdown by {kind}: {what}"
        tables.append(ReportTable(f"breakdown_{kind}_{slug}", title, data, tuple(columns), csv))
    return tables


def _auroc_recall(i: int) -> Callable[[pd.Series], Rendered | None]:
    def render(row: pd.Series) -> Rendered | None:
        auroc, recall = row.get(f"auroc_{i}"), row.get(f"recall_{i}")
        if pd.isna(auroc) and pd.isna(recall):
            return None
        head = "n/a" if pd.isna(auroc) else f"{auroc:.3f}"
        return head, "" if pd.isna(recall) else f" / {recall:.2f}"

    return render


def _breakdown_long(results: RunResults) -> pd.DataFrame:
    rows = [
        {
            "cell_key": c.cell_key,
            "dataset": c.dataset,
            "method": c.method,
            "variant": c.variant,
            "seed": c.seed,
            "kind": kind,
            "stratum": name,
            **vars(m),
        }
        for c in results.cells
        if c.ok
        for kind, strata in c.breakdowns.items()
        for name, m in strata.items()
    ]
    columns = [
        "cell_key",
        "dataset",
        "method",
        "variant",
        "seed",
        "kind",
        "stratum",
        "n",
        "n_anomalous",
        "auroc",
        "f1",
        "precision",
        "recall",
    ]
    return pd.DataFrame(rows, columns=columns)


def _figure_links(pngs: list[Path], target: Path, dataset: str, slug: str) -> list[str]:
    if not pngs:
        return ["*No figures for this dataset (see the log for why).*", ""]
    lines = ["### Figures", ""]
    for png in pngs:
        kind = png.stem.removesuffix(f"_{slug}")
        caption = FIGURE_CAPTIONS.get(kind, kind)
        link = quote(Path(os.path.relpath(png, target)).as_posix())
        lines += [
            f"![{md_escape(caption)}, {md_escape(dataset)}]({link})",
            "",
            f"*{md_escape(caption)}.*",
            "",
        ]
    return lines


def _published_section(
    results: RunResults, frame: pd.DataFrame, tables_dir: Path, comments: Sequence[str]
) -> list[str]:
    """Every published number of `benchmarks.published`, beside the run's number where comparable."""
    summary = aggregate_seeds(frame)
    roots = {c.dataset: c.dataset_root for c in results.cells}
    summary["kind"] = [dataset_kind(d, roots.get(d)) for d in summary["dataset"]]
    provenance: dict[tuple[str, str, str], list[dict[str, object]]] = {}
    for cell in results.cells:
        if cell.ok:
            facts = cell.raw.get("provenance")
            provenance.setdefault((cell.dataset, cell.method, cell.variant), []).append(
                facts if isinstance(facts, dict) else {}
            )
    papers = list(dict.fromkeys(entry.paper for entry in PUBLISHED))
    data = pd.DataFrame(
        [_published_row(entry, summary, papers.index(entry.paper) + 1, provenance) for entry in PUBLISHED]
    )

    def percent(name: str) -> Callable[[pd.Series], Rendered | None]:
        def render(row: pd.Series) -> Rendered | None:
            value = row[name]
            return (
                None
                if pd.isna(value)
                else (f"{value:.1f}" if round(value, 1) == value else f"{value:.2f}", "")
            )

        return render

    columns = (
        Column("Method", _text("method"), text=True),
        Column("Variant", _text("variants"), text=True),
        Column("Metric", _text("metric"), text=True),
        Column("Protocol", _text("protocol"), text=True),
        Column("Dataset", _text("dataset_name"), text=True),
        Column("Published", percent("published")),
        Column("Reproduced", _number("reproduced", 2)),
        Column("Δ (pp)", lambda r: None if pd.isna(r["delta"]) else (f"{r['delta']:+.2f}", "")),
        Column("Status", _text("status"), text=True),
        Column("Source", _text("source"), text=True),
    )
    table = ReportTable("published_vs_reproduced", "Published vs reproduced", data, columns)
    table.write(tables_dir, comments)
    return [
        "## Published vs reproduced",
        "",
        "Published numbers (percent) of the suite's methods and, where this run has a dataset of the same kind"
        " with pretrained weights, the reproduced mean over seeds (and over the run's datasets of that kind)"
        " with Δ = reproduced − published in percentage points. `mvtec:` datasets match MVTec AD entries"
        " (VisA when a folder of the path is named `visa`); the smartphone study's F1 matches `ltfm` only on a"
        ' `manifest:` dataset whose `dataset.json` says `"published_reference": "smartphone-study"`;'
        " random-weights and substitute-backbone cells are never comparable; LTFM's numbers only when the cell"
        " started from the authors' expert checkpoint; AnomalyGPT's never (this suite's encoder is open_clip and"
        " it has no LLM). The rules are `benchmarks.published.comparability`. Protocol differences that remain:",
        "",
        *(f"- {DATASET_KIND_NAMES[kind]}: {md_escape(text)}" for kind, text in PROTOCOL_CAVEATS.items()),
        "",
        table.to_markdown(),
        "Sources:",
        "",
        *(f"{i}. {md_escape(paper)}" for i, paper in enumerate(papers, start=1)),
        "",
    ]


def _published_row(
    entry: PublishedResult,
    summary: pd.DataFrame,
    source: int,
    provenance: dict[tuple[str, str, str], list[dict[str, object]]],
) -> dict[str, object]:
    """The entry beside the run's matching rows; `comparability` decides which rows may stand there."""
    ran = summary[(summary["method"] == entry.method) & summary["variant"].isin(entry.variants)]
    reasons = [
        comparability(entry, kind=row["kind"], weights=row["weights"],
                      provenance=provenance.get((row["dataset"], row["method"], row["variant"]), []))
        for _, row in ran.iterrows()
    ]
    usable = ran.loc[np.array([r is None for r in reasons], dtype=bool)]
    usable = usable[usable[entry.metric].notna()]
    same_kind = [r for r, kind in zip(reasons, ran["kind"], strict=True) if kind == entry.dataset_kind]
    reproduced = delta = None
    if entry.never_comparable:
        status = f"not comparable: {entry.never_comparable}"
    elif ran.empty:
        status = "not run"
    elif not usable.empty:
        reproduced = 100 * float(usable[entry.metric].mean())
        delta = reproduced - entry.value
        status = f"comparable ({len(usable)} dataset{'s' if len(usable) > 1 else ''})"
    elif not same_kind:
        status = f"not comparable: different data ({', '.join(sorted(set(ran['dataset'])))})"
    else:
        status = next((r for r in same_kind if r), f"{entry.metric} not recorded")
    return {
        "method": entry.method,
        "variants": ", ".join(entry.variants),
        "metric": entry.metric,
        "protocol": entry.protocol,
        "dataset_kind": entry.dataset_kind,
        "dataset_name": entry.dataset_name,
        "published": entry.value,
        "reproduced": reproduced,
        "delta": delta,
        "status": status,
        "paper": entry.paper,
        "source": f"[{source}] {entry.table}" + (f"; {entry.note}" if entry.note else ""),
    }


def _latency_section(frame: pd.DataFrame, tables_dir: Path, comments: Sequence[str]) -> list[str]:
    data = frame[(frame["status"] == "ok") & frame["batch1_p50_ms"].notna()]
    data = data.sort_values(["dataset", "method", "variant", "seed"])
    if data.empty:
        return ["## Latency", "", "No cell recorded latency.", ""]
    columns = (
        Column("Method", _text("method"), text=True),
        Column("Variant", _text("variant"), text=True),
        Column("Seed", _number("seed", 0)),
        Column("Dataset", _text("dataset"), text=True),
        Column("Device", _text("device"), text=True),
        Column("p50 (ms)", _number("batch1_p50_ms", 1)),
        Column("p95 (ms)", _number("batch1_p95_ms", 1)),
        Column("Mean (ms)", _number("batch1_mean_ms", 1)),
        Column("Throughput (img/s)", _number("throughput_ips", 1)),
        Column("Batch", _number("throughput_batch_size", 0)),
        Column("Fit (s)", _number("fit_s", 1)),
        Column("Peak mem (MB)", _memory),
    )
    keep = [
        "method",
        "variant",
        "dataset",
        "seed",
        "device",
        "batch1_p50_ms",
        "batch1_p95_ms",
        "batch1_mean_ms",
        "throughput_ips",
        "throughput_batch_size",
        "fit_s",
        "predict_s",
        "peak_mem_mb",
        "peak_mem_kind",
    ]
    table = ReportTable(
        "latency", "Latency (batch 1 per image; throughput at the best batch size)", data[keep], columns
    )
    table.write(tables_dir, comments)
    return ["## Latency", "", f"{table.title}.", "", table.to_markdown()]


def _failed_section(frame: pd.DataFrame, tables_dir: Path, comments: Sequence[str]) -> list[str]:
    data = frame[frame["status"] != "ok"].sort_values(["dataset", "method", "variant", "seed"])
    if data.empty:
        return []

    def error(row: pd.Series) -> Rendered | None:
        text = row["error"]
        if text is None or pd.isna(text):
            return None
        text = one_line(str(text))
        return (text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 1] + "…"), ""

    columns = (
        Column("Dataset", _text("dataset"), text=True),
        Column("Method", _text("method"), text=True),
        Column("Variant", _text("variant"), text=True),
        Column("Seed", _number("seed", 0)),
        Column("Status", _text("status"), text=True),
        Column("Error", error, text=True),
    )
    keep = ["cell_key", "dataset", "method", "variant", "seed", "status", "error"]
    table = ReportTable("cells_without_results", "Cells without results", data[keep], columns)
    table.write(tables_dir, comments)
    return ["## Cells without results", "", table.to_markdown()]


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
