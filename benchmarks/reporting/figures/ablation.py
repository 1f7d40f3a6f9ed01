"""A method's declared ablation (`MethodMeta.ablation`, e.g. LTFM's base / ft-real / ft-real-gen) beside
the published numbers of the same variants, overall and per test release year and device group."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.colors import to_rgb

from benchmarks.plugins.contract import Ablation
from benchmarks.reporting.figures.common import (
    HEATMAP_KINDS,
    DatasetView,
    chance_level,
    set_title,
    short_name,
    whiskers,
)
from benchmarks.reporting.plot_style import DOUBLE_COLUMN_IN, SINGLE_COLUMN_IN, plain
from benchmarks.reporting.published import DATASET_KIND_NAMES, declarations
from benchmarks.results.reader import strata_order


def _lighter(color: tuple[float, float, float], amount: float) -> tuple[float, float, float]:
    """`color` blended towards white by `amount` (0 = unchanged, 1 = white)."""
    r, g, b = to_rgb(color)
    return (r + (1 - r) * amount, g + (1 - g) * amount, b + (1 - b) * amount)


def _seed_note(seeds: int) -> str | None:
    return f"mean of up to {seeds} seeds; whiskers: envelope of their CIs" if seeds > 1 else None


def draw_ablations(view: DatasetView) -> list[Path]:
    """Both ablation figures of every method of the dataset that declares an ablation."""
    paths: list[Path] = []
    for method, (published, ablation) in sorted(declarations(view.cells).items()):
        if ablation is not None:
            reference = {e.variants[0]: e.value for e in published
                         if e.dataset_kind == ablation.reference_kind and e.metric == ablation.reference_metric}
            paths += draw_ablation(view, method, ablation, reference)
            paths += draw_ablation_cross_generation(view, method, ablation)
    return paths


def draw_ablation(view: DatasetView, method: str, ablation: Ablation, published: dict[str, float]) -> list[Path]:
    """`ablation_<method>_<dataset>`: F1@val (95 % CI) and F1-max of the ablation's variants, in %.

    The published number of each variant (`published`, of the ablation's reference kind) stands
    beside it; unless this dataset is of that kind (`benchmarks.reporting.published.dataset_kind`),
    the legend says it is another dataset. With several seeds, bars are means and whiskers the
    envelope of the seeds' CIs.
    """
    kind = f"ablation_{method}"
    variants = ablation.variants
    summary = view.summary
    rows = summary[(summary["method"] == method) & summary["variant"].isin(variants)].set_index("variant")
    if rows.empty:
        return view.skip(kind, f"no {method} {' / '.join(variants)} cell")
    shown = [c for c in view.cells if c.method == method and c.variant in variants]
    color = view.colors[method]
    fig = view.figure(shown, SINGLE_COLUMN_IN, 3.9)
    ax = fig.add_subplot()
    x = np.arange(len(variants), dtype=float)
    width = 0.27
    series = (
        ("F1 at the validation threshold", "f1", {"color": color, "edgecolor": "black"}),
        (
            "F1-max (best threshold on test)",
            "f1_max",
            {"color": _lighter(color, 0.6), "edgecolor": color, "hatch": "////"},
        ),
    )
    for offset, (label, metric, style) in zip((-width, 0.0), series, strict=True):
        values, errors = [], []
        for variant in variants:
            row = rows.loc[variant] if variant in rows.index else None
            value = np.nan if row is None or pd.isna(row[metric]) else 100 * float(row[metric])
            lo, hi = (
                (np.nan, np.nan) if row is None else (100 * row[f"{metric}_lo"], 100 * row[f"{metric}_hi"])
            )
            values.append(value)
            errors.append(whiskers(value, lo, hi) if np.isfinite([value, lo, hi]).all() else (0.0, 0.0))
        ax.bar(x + offset, values, width, label=label, linewidth=0.6, zorder=2, **style)
        ax.errorbar(
            x + offset,
            values,
            yerr=np.array(errors).T,
            fmt="none",
            ecolor="black",
            elinewidth=0.8,
            capsize=2,
            zorder=3,
        )
        for xi, value, (_, up) in zip(x + offset, values, errors, strict=True):
            if np.isfinite(value):
                ax.text(
                    xi, value + up + 1.0, f"{value:.1f}", ha="center", va="bottom", fontsize=6, zorder=4
                )
            else:
                ax.text(xi, 2, "not run", ha="center", va="bottom", rotation=90, fontsize=6, color="0.4")
    study = [published.get(v, np.nan) for v in variants]
    ax.bar(
        x + width,
        study,
        width,
        color="0.85",
        edgecolor="0.35",
        hatch="....",
        linewidth=0.6,
        zorder=2,
        label=ablation.reference_label,
    )
    for xi, value in zip(x + width, study, strict=True):
        ax.text(
            xi, value + 1.0, f"{value:.2f}", ha="center", va="bottom", fontsize=6, color="0.25", zorder=4
        )
    chance, _ = chance_level("f1", shown)
    if chance is not None:
        label = f"chance: flag all ({100 * chance:.1f})"
        ax.axhline(100 * chance, color="0.3", ls="--", lw=0.8, zorder=1, label=label)
    notes = [_seed_note(int(rows["seeds"].max()))]
    if published and view.kind != ablation.reference_kind:
        name = plain(short_name(view.dataset))
        where = DATASET_KIND_NAMES.get(str(ablation.reference_kind), str(ablation.reference_kind))
        notes.append(f"Published bars were measured on {where},\na different dataset from {name}: not comparable")
    title = "\n".join(n for n in notes if n) or None
    fig.legend(loc="outside lower center", ncols=1, fontsize=6, title=title, title_fontsize=6)
    notes = {v: view.origin(method, v) or ablation.notes.get(v) for v in variants}
    ax.set_xticks(x, [f"{v}\n({plain(notes[v])})" if notes[v] else v for v in variants])
    ax.set(ylim=(0, 109), ylabel="F1 on the test split (%)")
    ax.grid(axis="x", visible=False)
    set_title(ax, f"{plain(ablation.subject)} ablation", view.dataset)
    return view.save(fig, kind)


def draw_ablation_cross_generation(view: DatasetView, method: str, ablation: Ablation) -> list[Path]:
    """`ablation_<method>_cross_generation_<dataset>`: F1@val of each ablation variant per test year and group.

    One panel per breakdown kind; bars are means over seeds, whiskers their range.
    """
    kind = f"ablation_{method}_cross_generation"
    cells = [c for c in view.cells if c.method == method and c.variant in ablation.variants]
    panels = [(key, name) for key, name in HEATMAP_KINDS.items() if any(c.breakdowns.get(key) for c in cells)]
    if not cells or not panels:
        return view.skip(kind, f"no {method} ablation variant has year or group breakdowns")
    variants = [v for v in ablation.variants if any(c.variant == v for c in cells)]
    strata = {
        key: strata_order(list({s for c in cells for s in c.breakdowns.get(key, {})})) for key, _ in panels
    }
    widest = max(len(s) for s in strata.values())
    fig = view.figure(
        cells,
        min(DOUBLE_COLUMN_IN, max(SINGLE_COLUMN_IN, 1.0 + 0.22 * len(variants) * widest)),
        0.9 + 1.6 * len(panels),
    )
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    color = view.colors[method]
    width = 0.8 / len(variants)
    for ax, (key, name) in zip(axes, panels, strict=True):
        names = strata[key]
        x = np.arange(len(names), dtype=float)
        for j, variant in enumerate(variants):
            shade = min(2, round(2 * ablation.variants.index(variant) / max(1, len(ablation.variants) - 1)))
            means, errors = [], []
            for stratum in names:
                found = [c.breakdowns.get(key, {}).get(stratum) for c in cells if c.variant == variant]
                values = [100 * m.f1 for m in found if m is not None and m.f1 is not None]
                mean = float(np.mean(values)) if values else np.nan
                means.append(mean)
                errors.append((mean - min(values), max(values) - mean) if len(values) > 1 else (0.0, 0.0))
            offset = (j - (len(variants) - 1) / 2) * width
            ax.bar(
                x + offset,
                means,
                width,
                color=_lighter(color, (0.65, 0.3, 0.0)[shade]),
                edgecolor=color,
                hatch=("....", "////", "")[shade],
                linewidth=0.6,
                zorder=2,
                label=f"{variant} ({plain(origin)})" if (origin := view.origin(method, variant)) else variant,
            )
            if np.any(errors):
                ax.errorbar(
                    x + offset,
                    means,
                    yerr=np.array(errors).T,
                    fmt="none",
                    ecolor="black",
                    elinewidth=0.7,
                    capsize=1.5,
                    zorder=3,
                )
            for xi, mean in zip(x + offset, means, strict=True):
                if not np.isfinite(mean):
                    ax.text(xi, 2, "n/a", ha="center", va="bottom", rotation=90, fontsize=6, color="0.4")
        sizes = [
            next((m.n for c in cells if (m := c.breakdowns.get(key, {}).get(s)) and m.n), None) for s in names
        ]
        labels = [plain(s) + (f"\n(n={n})" if n else "") for s, n in zip(names, sizes, strict=True)]
        long = max(len(s) for s in names) > 8
        ax.set_xticks(
            x,
            labels,
            rotation=25 if long else 0,
            ha="right" if long else "center",
            rotation_mode="anchor",
            fontsize=6,
        )
        ax.set(ylim=(0, 105), ylabel="F1@val (%)")
        ax.grid(axis="x", visible=False)
        ax.set_title(f"by test {name}", fontsize=7)
    set_title(axes[0], f"{plain(ablation.subject)} F1 by test {panels[0][1]}", view.dataset)
    seeds = max(sum(c.variant == v for c in cells) for v in variants)
    fig.legend(
        *axes[0].get_legend_handles_labels(),
        loc="outside lower center",
        ncols=len(variants),
        fontsize=6,
        title="whiskers: range over seeds" if seeds > 1 else None,
        title_fontsize=6,
    )
    return view.save(fig, kind)
