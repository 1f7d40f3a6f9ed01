"""The report's tables of one run: main metrics, operating point, paired comparison, breakdowns, answers, latency, failures."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from benchmarks.data.schema import NORMAL_DEFECT
from benchmarks.reporting.statistics import BestComparison
from benchmarks.reporting.tables import (
    WORSE_MARK,
    Column,
    Rendered,
    ReportTable,
    milliseconds,
    number,
    one_line,
    text_of,
    with_ci,
)
from benchmarks.results.reader import RunResults, strata_order
from benchmarks.results.record import STAGES

ERROR_CHARS = 300


def _latency_pair(row: pd.Series) -> Rendered | None:
    p50, p95 = row.get("batch1_p50_ms"), row.get("batch1_p95_ms")
    if pd.isna(p50):
        return None
    return milliseconds(p50), "" if pd.isna(p95) else f" / {milliseconds(p95)}"


def _memory(row: pd.Series) -> Rendered | None:
    mb, kind = row.get("peak_mem_mb"), row.get("peak_mem_kind")
    if pd.isna(mb):
        return None
    return f"{mb:.0f}", "" if kind is None or pd.isna(kind) else f" ({kind})"


def _key_columns(show_seed: bool, show_weights: bool = False) -> list[Column]:
    columns = [Column("Method", text_of("method"), text=True), Column("Variant", text_of("variant"), text=True)]
    if show_seed:
        columns.append(Column("Seed", number("seed", 0)))
    if show_weights:
        columns.append(Column("Weights", text_of("weights_tag"), text=True))
    return columns


def main_table(
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
    columns = [Column("Method", text_of("method"), text=True), Column("Variant", text_of("variant"), text=True)]
    if show_seeds:
        columns.append(Column("Seeds", number("seeds", 0)))
    if show_weights:
        columns.append(Column("Weights", text_of("weights_tag"), text=True))
    if data["image_score"].notna().any():
        columns.append(Column("Image score", text_of("image_score"), text=True))
    columns += [
        Column(f"AUROC{spread} (95 % CI)", _mean("image_auroc", ci=True, mark=True), "image_auroc"),
        Column("AUPR", _mean("aupr"), "aupr"),
        Column("F1@val", _mean("f1"), "f1"),
        Column("F1-max", _mean("f1_max"), "f1_max"),
        Column("Pixel AUROC", _mean("pixel_auroc"), "pixel_auroc"),
        Column("AUPRO", _mean("aupro"), "aupro"),
        Column("Val AUROC (val − test)", _val_gap, "val_image_auroc"),
        Column("p50 / p95 (ms)", _latency_pair, rank("batch1_p50_ms"), higher_is_better=False, decimals=2),
        Column("Throughput (img/s)", number("throughput_ips", 1), rank("throughput_ips"), decimals=1),
        Column(
            "Peak mem (MB)",
            number("peak_mem_mb", 0),
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
        "image_score",
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


def comparison_table(comparisons: Sequence[BestComparison], summary: pd.DataFrame, slug: str) -> ReportTable:
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
        Column("AUROC", number("image_auroc")),
        Column("Δ AUROC vs best", lambda r: None if pd.isna(r["delta"]) else (f"{r['delta']:+.3f}", "")),
        Column("p (DeLong)", p_value("p_value")),
        Column("p (Holm)", p_value("p_holm")),
        Column("Test images", number("n_images", 0)),
        Column("Seed pairs", number("n_pairs", 0)),
        Column("Result", text_of("result"), text=True),
    )
    title = f"Paired comparison with the best method/variant, {best[0]}/{best[1]} (DeLong, test images)"
    return ReportTable(f"paired_{slug}", title, data, columns)


def _verdict(comparison: BestComparison) -> str:
    if comparison.p_holm is None:
        return f"not tested: {comparison.undefined_reason or 'no p-value'}"
    if comparison.significantly_worse:
        return f"significantly worse {WORSE_MARK}"
    return "not significantly different"


def operating_table(data: pd.DataFrame, slug: str, show_seed: bool) -> ReportTable:
    columns = [
        *_key_columns(show_seed),
        Column("Threshold", lambda r: None if pd.isna(r["threshold"]) else (f"{r['threshold']:.4g}", "")),
        Column("Source", text_of("threshold_source"), text=True),
        Column("Precision", number("precision"), "precision"),
        Column("Recall", number("recall"), "recall"),
        Column("F1@val (95 % CI)", with_ci("f1"), "f1"),
        Column("F1-max (95 % CI)", with_ci("f1_max"), "f1_max"),
        Column("AUPR (95 % CI)", with_ci("aupr"), "aupr"),
        Column("FPR normal", number("normal_fpr"), "normal_fpr", higher_is_better=False),
        Column("FPR hard neg.", number("hard_negative_fpr"), "hard_negative_fpr", higher_is_better=False),
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


def answers_table(data: pd.DataFrame, slug: str, show_seed: bool) -> ReportTable:
    rows = data[data["decision_f1"].notna() | data["location_accuracy"].notna()]
    columns = [
        *_key_columns(show_seed),
        Column("Decision F1", number("decision_f1"), "decision_f1"),
        Column("Decision accuracy", number("decision_accuracy"), "decision_accuracy"),
        Column("Location accuracy (3x3)", number("location_accuracy"), "location_accuracy"),
        Column("Unparsed answers", number("n_failed_answers", 0)),
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


def breakdown_tables(results: RunResults, dataset: str, slug: str) -> list[ReportTable]:
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
        columns = [Column("Method/variant", text_of("cell"), text=True)]
        for i, name in enumerate(strata):
            found = [s for c in cells if (s := c.breakdowns.get(kind, {}).get(name))]
            # a defect stratum also holds every normal: its own size is its anomaly count
            n = next((s.n_anomalous if kind == "defect" else s.n for s in found if s.n), None)
            header = f"{name} (n={n})" if n else name
            render = _auroc_recall(i) if kind == "defect" else number(f"auroc_{i}")
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


def breakdown_long(results: RunResults) -> pd.DataFrame:
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


CELL_COLUMNS = (
    Column("Method", text_of("method"), text=True),
    Column("Variant", text_of("variant"), text=True),
    Column("Seed", number("seed", 0)),
    Column("Dataset", text_of("dataset"), text=True),
)
"""Which cell a row is: the first columns of the per-cell latency and time tables."""


def latency_section(frame: pd.DataFrame, tables_dir: Path, comments: Sequence[str]) -> list[str]:
    data = frame[(frame["status"] == "ok") & frame["batch1_p50_ms"].notna()]
    data = data.sort_values(["dataset", "method", "variant", "seed"])
    if data.empty:
        return ["## Latency", "", "No cell recorded latency.", ""]
    columns = (
        *CELL_COLUMNS,
        Column("Device", text_of("device"), text=True),
        Column("p50 (ms)", number("batch1_p50_ms", 1)),
        Column("p95 (ms)", number("batch1_p95_ms", 1)),
        Column("Mean (ms)", number("batch1_mean_ms", 1)),
        Column("Throughput (img/s)", number("throughput_ips", 1)),
        Column("Batch", number("throughput_batch_size", 0)),
        Column("Fit (s)", number("fit_s", 1)),
        Column("Peak mem (MB)", _memory),
        Column("GFLOP/img", number("gflop_per_image", 2)),
        Column("GFLOP/s", number("achieved_gflops", 1)),
        Column("% GEMM peak", _share("gemm_efficiency")),
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
        "gflop_per_image",
        "achieved_gflops",
        "gemm_peak_gflops",
        "gemm_efficiency",
    ]
    table = ReportTable(
        "latency", "Latency (batch 1 per image; throughput at the best batch size; GFLOP counted by torch's "
        "FLOP counter, so work outside torch such as a faiss search is not in it; % GEMM peak = GFLOP/s over "
        "this machine's best fp32 matrix-product rate)", data[keep], columns
    )
    table.write(tables_dir, comments)
    return ["## Latency", "", f"{table.title}.", "", table.to_markdown(), *_time_section(data, tables_dir, comments)]


def _time_section(data: pd.DataFrame, tables_dir: Path, comments: Sequence[str]) -> list[str]:
    """Where each cell's wall time went, beside the floor of its predictions at the GEMM peak."""
    data = data[data["duration_s"].notna() & data["data_s"].notna()]
    if data.empty:
        return []
    stages = list(STAGES)
    data = data.assign(startup_s=data["duration_s"] - data[stages].fillna(0.0).sum(axis=1))
    columns = (
        *CELL_COLUMNS,
        Column("Wall (s)", number("duration_s", 1)),
        Column("Start-up", number("startup_s", 1)),
        Column("Data", number("data_s", 1)),
        Column("Setup", number("setup_s", 1)),
        Column("Fit", number("fitting_s", 1)),
        Column("Predict", number("predicting_s", 1)),
        Column("Floor", number("predict_floor_s", 2)),
        Column("Metrics", number("metrics_s", 1)),
        Column("Latency runs", number("latency_runs_s", 1)),
        Column("FLOP count", number("flop_count_s", 1)),
        Column("Save", number("saving_s", 1)),
    )
    keep = ["method", "variant", "dataset", "seed", "duration_s", "startup_s", *stages, "predict_floor_s"]
    numbers = keep[4:]
    total = pd.DataFrame([{"method": "all cells", **{name: data[name].sum(min_count=1) for name in numbers}}])
    table = ReportTable("time", "Where each cell's wall time went (seconds; Floor: its val + test predictions at "
                        "this machine's fp32 GEMM peak, torch FLOPs only; Start-up: process start and hand-over; "
                        "last row: the sums over cells)",
                        pd.concat([data[keep], total], ignore_index=True), columns)
    table.write(tables_dir, comments)
    return ["", f"{table.title}.", "", table.to_markdown()]


def _share(name: str) -> Callable[[pd.Series], Rendered | None]:
    def render(row: pd.Series) -> Rendered | None:
        value = row.get(name)
        return None if value is None or pd.isna(value) else (f"{100 * value:.1f}", "")

    return render


def failed_section(frame: pd.DataFrame, tables_dir: Path, comments: Sequence[str]) -> list[str]:
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
        Column("Dataset", text_of("dataset"), text=True),
        Column("Method", text_of("method"), text=True),
        Column("Variant", text_of("variant"), text=True),
        Column("Seed", number("seed", 0)),
        Column("Status", text_of("status"), text=True),
        Column("Error", error, text=True),
    )
    keep = ["cell_key", "dataset", "method", "variant", "seed", "status", "error"]
    table = ReportTable("cells_without_results", "Cells without results", data[keep], columns)
    table.write(tables_dir, comments)
    return ["## Cells without results", "", table.to_markdown()]


def roi_table(data: pd.DataFrame, slug: str, show_seed: bool) -> ReportTable | None:
    """ROI-guided image scores beside the method's own score, cell by cell (None without any ROI)."""
    rows = data[data["roi_mode"].notna()].copy()
    if rows.empty:
        return None
    rows["roi_delta"] = rows["roi_auroc"] - rows["roi_own_auroc"]
    rows["roi_choice"] = [
        ("ROI" if used else "own score") + f": {reason}" if isinstance(reason, str) else None
        for used, reason in zip(rows["roi_used"].fillna(False).astype(bool), rows["roi_reason"], strict=True)
    ]

    def signed(name: str) -> Callable[[pd.Series], Rendered | None]:
        def render(row: pd.Series) -> Rendered | None:
            value = row.get(name)
            return None if pd.isna(value) else (f"{value:+.3f}", "")

        return render

    columns = [
        *_key_columns(show_seed),
        Column("Pooling", text_of("roi_pooling"), text=True),
        Column("Used for the main table (chosen on val)", text_of("roi_choice"), text=True),
        Column("Val AUROC own / ROI", _pair("roi_val_auroc_own", "roi_val_auroc_roi")),
        Column("AUROC own", number("roi_own_auroc"), "roi_own_auroc"),
        Column("AUROC map, whole image", number("roi_map_auroc"), "roi_map_auroc"),
        Column("AUROC ROI (95 % CI)", with_ci("roi_auroc"), "roi_auroc"),
        Column("Δ ROI − own", signed("roi_delta")),
        Column("DeLong p", number("roi_delong_p", 3)),
        Column("F1@val own / ROI", _pair("roi_own_f1", "roi_f1")),
        Column("FPR normals own / ROI", _pair("roi_own_fpr", "roi_fpr")),
        Column("Normal peaks outside ROI", number("roi_normal_peaks_outside", 2)),
    ]
    keep = ["method", "variant", "seed", "roi_mode", "roi_used", "roi_reason", "roi_pooling",
            "roi_val_auroc_own", "roi_val_auroc_map", "roi_val_auroc_roi", "roi_own_auroc", "roi_map_auroc",
            "roi_auroc", "roi_auroc_lo", "roi_auroc_hi", "roi_delta", "roi_delong_p", "roi_own_f1", "roi_map_f1",
            "roi_f1", "roi_own_fpr", "roi_map_fpr", "roi_fpr", "roi_normal_peaks_outside", "roi_n_empty_roi",
            "roi_choice"]
    title = ("ROI-guided image scores (test split): the method's own score, its map pooled over the whole "
             "image, and inside the region of interest; F1 and FPR at each scoring's own validation threshold")
    return ReportTable(f"roi_{slug}", title, rows[keep], tuple(columns))


def _pair(first: str, second: str) -> Callable[[pd.Series], Rendered | None]:
    def render(row: pd.Series) -> Rendered | None:
        a, b = row.get(first), row.get(second)
        if pd.isna(a) and pd.isna(b):
            return None
        return ("n/a" if pd.isna(a) else f"{a:.3f}") + " / " + ("n/a" if pd.isna(b) else f"{b:.3f}"), ""

    return render


def roi_defect_table(results: RunResults, dataset: str, slug: str) -> ReportTable | None:
    """Test AUROC per defect type (each against all normals) with the method's own score and inside
    the ROI, from the per-image scores; None where no cell measured both."""
    from sklearn.metrics import roc_auc_score

    labels = results.labels()
    rows: list[dict[str, object]] = []
    defects: list[str] = []
    for cell in results.for_dataset(dataset, ok_only=True):
        if cell.roi is None or cell.roi.roi_auroc is None:
            continue
        scores = results.scores(cell)
        test = scores[scores["split"] == "test"]
        if not {"score_own", "score_roi"} <= set(test.columns):
            continue
        normals = test[test["label"] == 0]
        if normals.empty:
            continue
        row: dict[str, object] = {"cell": labels[cell.cell_key], "method": cell.method, "variant": cell.variant}
        for defect, group in test[test["label"] == 1].groupby("defect"):
            both = pd.concat([normals, group])
            name = str(defect)
            if name not in defects:
                defects.append(name)
            for column, key in (("score_own", "own"), ("score_roi", "roi")):
                row[f"{key}[{name}]"] = float(roc_auc_score(both["label"], both[column]))
        rows.append(row)
    if not rows or not defects:
        return None
    defects = strata_order(defects)
    data = pd.DataFrame(rows)
    columns = [Column("Method/variant", text_of("cell"), text=True)]
    columns += [Column(f"{d} own / ROI", _pair(f"own[{d}]", f"roi[{d}]")) for d in defects]
    title = "ROI-guided scores by defect type: test AUROC of each defect type against all normals, own score / ROI"
    return ReportTable(f"roi_by_defect_{slug}", title, data, tuple(columns))
