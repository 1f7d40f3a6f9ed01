"""The "published vs reproduced" section: every published number beside the run's number where comparable."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.reporting.published import (
    DATASET_KIND_NAMES,
    PROTOCOL_CAVEATS,
    PublishedResult,
    comparability,
    dataset_kind,
    published_results,
)
from benchmarks.reporting.statistics import aggregate_seeds
from benchmarks.reporting.tables import Column, Rendered, ReportTable, md_escape, number, text_of
from benchmarks.results.reader import RunResults


def published_section(
    results: RunResults, frame: pd.DataFrame, tables_dir: Path, comments: Sequence[str]
) -> list[str]:
    """Every published number the run's methods declare, beside the run's number where comparable."""
    summary = aggregate_seeds(frame)
    roots = {c.dataset: c.dataset_root for c in results.cells}
    summary["kind"] = [dataset_kind(d, roots.get(d)) for d in summary["dataset"]]
    provenance: dict[tuple[str, str, str], list[dict[str, object]]] = {}
    for cell in results.cells:
        if cell.ok:
            provenance.setdefault((cell.dataset, cell.method, cell.variant), []).append(dict(cell.provenance))
    published = published_results(results.cells)
    if not published:
        return ["## Published vs reproduced", "", "No method of this run declares published numbers.", ""]
    papers = list(dict.fromkeys(entry.paper for entry in published))
    data = pd.DataFrame(
        [_published_row(entry, summary, papers.index(entry.paper) + 1, provenance) for entry in published]
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
        Column("Method", text_of("method"), text=True),
        Column("Variant", text_of("variants"), text=True),
        Column("Metric", text_of("metric"), text=True),
        Column("Protocol", text_of("protocol"), text=True),
        Column("Dataset", text_of("dataset_name"), text=True),
        Column("Published", percent("published")),
        Column("Reproduced", number("reproduced", 2)),
        Column("Δ (pp)", lambda r: None if pd.isna(r["delta"]) else (f"{r['delta']:+.2f}", "")),
        Column("Status", text_of("status"), text=True),
        Column("Source", text_of("source"), text=True),
    )
    table = ReportTable("published_vs_reproduced", "Published vs reproduced", data, columns)
    table.write(tables_dir, comments)
    return [
        "## Published vs reproduced",
        "",
        "Published numbers (percent) that the run's methods declare in their meta and, where this run has a"
        " dataset of the same kind with pretrained weights, the reproduced mean over seeds (and over the run's"
        " datasets of that kind) with Δ = reproduced − published in percentage points. `mvtec:` datasets match"
        " MVTec AD entries (VisA when a folder of the path is named `visa`); the smartphone study's entries"
        ' match only a `manifest:` dataset whose `dataset.json` says `"published_reference": "smartphone-study"`;'
        " random-weights and substitute-backbone cells are never comparable; an entry that requires provenance"
        " facts (e.g. the authors' expert checkpoint) compares only when every cell reports them; an entry its"
        " method declares never comparable (a stand-in for the paper's model) is shown for reference. The rules"
        " are `benchmarks.reporting.published.comparability`. Protocol differences that remain:",
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
        "dataset_name": DATASET_KIND_NAMES.get(entry.dataset_kind, entry.dataset_kind),
        "published": entry.value,
        "reproduced": reproduced,
        "delta": delta,
        "status": status,
        "paper": entry.paper,
        "source": f"[{source}] {entry.table}" + (f"; {entry.note}" if entry.note else ""),
    }
