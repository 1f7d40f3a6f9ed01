"""Few-shot curves: image AUROC against the number of normal shots k, beside published points."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from benchmarks.reporting.figures.common import DatasetView, set_title
from benchmarks.reporting.plot_style import MARKERS, SINGLE_COLUMN_IN, plain
from benchmarks.reporting.published import DATASET_KIND_NAMES, declarations

KSHOT_VARIANT = re.compile(r"k(\d+)")


def _shot_position(k: int) -> float:
    """x position on the "log2-ish" k axis: 0 shots at 0, then 1, 2, 4, ... one unit apart."""
    return 0.0 if k == 0 else float(np.log2(k)) + 1.0


def draw_kshot(view: DatasetView) -> list[Path]:
    """`kshot_<dataset>`: image AUROC vs k for methods with two or more `k<N>` variants.

    Mean over seeds with the CI band (with several seeds, the envelope of their CIs); hollow
    markers are the papers' published numbers when this dataset is of the published kind.
    """
    kind = "kshot"
    summary = view.summary
    rows = summary[summary["variant"].str.fullmatch(KSHOT_VARIANT.pattern) & summary["image_auroc"].notna()]
    rows = rows.assign(k=rows["variant"].str[1:].astype(int))
    methods = sorted(m for m, group in rows.groupby("method") if group["k"].nunique() >= 2)
    if not methods:
        return view.skip(kind, "no method has two or more k<N> few-shot variants")
    rows = rows[rows["method"].isin(methods)]
    shown = [c for c in view.cells if c.method in methods and KSHOT_VARIANT.fullmatch(c.variant)]
    fig = view.figure(shown, SINGLE_COLUMN_IN, 3.1)
    ax = fig.add_subplot()
    reference = view.kind if view.kind in ("mvtec", "visa") else None
    declared = declarations(shown)
    handles: list[Line2D | Patch] = []
    for i, method in enumerate(methods):
        group = rows[rows["method"] == method].sort_values("k")
        x = group["k"].map(_shot_position).to_numpy()
        color, marker = view.colors[method], MARKERS[i % len(MARKERS)]
        ax.fill_between(
            x,
            group["image_auroc_lo"].to_numpy(float),
            group["image_auroc_hi"].to_numpy(float),
            color=color,
            alpha=0.18,
            linewidth=0,
            zorder=1,
        )
        handles.append(
            ax.plot(x, group["image_auroc"], marker=marker, color=color, label=plain(method), zorder=3)[0]
        )
        published = declared.get(method, ((), None))[0] if reference else ()
        for entry in [e for e in published if e.dataset_kind == reference and e.metric == "image_auroc"]:
            shots = [int(m.group(1)) for v in entry.variants if (m := KSHOT_VARIANT.fullmatch(v))]
            if shots:
                ax.plot(
                    [_shot_position(shots[0])],
                    [entry.value / 100],
                    marker=marker,
                    color=color,
                    markerfacecolor="white",
                    markersize=5,
                    linestyle="none",
                    zorder=4,
                )
    handles.append(Patch(color="0.5", alpha=0.3, label="95 % CI"))
    handles.append(ax.axhline(0.5, color="0.6", ls=":", lw=0.8, zorder=0, label="chance (0.500)"))
    if reference:
        handles.append(
            Line2D(
                [],
                [],
                marker="o",
                color="0.3",
                markerfacecolor="white",
                linestyle="none",
                label=f"published ({DATASET_KIND_NAMES[reference]})",
            )
        )
    ticks = sorted(set(rows["k"]))
    ax.set_xticks([_shot_position(k) for k in ticks], [str(k) for k in ticks])
    ax.set_xlim(_shot_position(ticks[0]) - 0.3, _shot_position(ticks[-1]) + 0.3)
    low = float(np.nanmin(rows[["image_auroc", "image_auroc_lo"]].to_numpy(float)))
    ax.set_ylim(min(0.45, low - 0.03), 1.0)
    ax.set(xlabel="Normal shots k (log2 scale; 0 = zero-shot)", ylabel="Image AUROC (test)")
    set_title(ax, "Few-shot AUROC", view.dataset)
    seeds = int(rows["seeds"].max())
    note = f"mean of up to {seeds} seeds; band: envelope of their CIs" if seeds > 1 else None
    fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=6, title=note, title_fontsize=6)
    return view.save(fig, kind)
