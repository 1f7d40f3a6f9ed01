"""Statistics over the cells of a run: the mean over seeds, and paired DeLong tests with Holm's correction.

The bootstrap CIs of one cell are computed in the cell (`benchmarks.metrics.bootstrap`); here
the cells of several seeds and methods are combined for tables and figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.results.reader import RunResults
from benchmarks.results.record import CI_METRICS, CellResult
from benchmarks.results.store import short

# Metrics averaged over seeds by `aggregate_seeds` (latency columns take the median instead).
SEED_METRICS = (
    "image_auroc", "aupr", "f1", "f1_max", "precision", "recall", "pixel_auroc", "aupro", "val_image_auroc",
    "normal_fpr", "hard_negative_fpr", "decision_f1", "decision_accuracy", "location_accuracy",
)  # fmt: skip
SEED_LATENCY = ("batch1_p50_ms", "batch1_p95_ms", "throughput_ips", "peak_mem_mb")
SIGNIFICANCE_LEVEL = 0.05


def aggregate_seeds(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, method, variant) of the ok cells in `frame` (a `RunResults.frame()`).

    `<metric>` is the mean over seeds and `<metric>_sd` their standard deviation (NaN with one
    seed); `<metric>_lo` / `_hi` is the cell's bootstrap CI with one seed and the envelope of
    the seeds' CIs with several; latency columns are medians; `weights` (and `weights_tag`) is
    "random" when any seed ran with random weights; `seeds` counts the cells.
    """
    ok = frame[frame["status"] == "ok"]
    rows = []
    for (dataset, method, variant), group in ok.groupby(["dataset", "method", "variant"], sort=True):
        weights = sorted(set(group["weights"].dropna()))
        tags = sorted(set(group["weights_tag"].dropna()))
        row: dict[str, Any] = {
            "dataset": dataset,
            "method": method,
            "variant": variant,
            "seeds": len(group),
            "weights": "random" if "random" in weights else ", ".join(weights) or None,
            "weights_tag": "random" if "random" in weights else ", ".join(tags) or None,
            "device": ", ".join(sorted(set(group["device"].dropna()))) or None,
            "image_score": image_score_words(group),
        }
        for name in SEED_METRICS:
            values = group[name].dropna()
            row[name] = values.mean() if len(values) else np.nan
            row[f"{name}_sd"] = values.std(ddof=1) if len(values) > 1 else np.nan
        for name in CI_METRICS:
            row[f"{name}_lo"] = group[f"{name}_lo"].min()
            row[f"{name}_hi"] = group[f"{name}_hi"].max()
        for name in SEED_LATENCY:
            row[name] = group[name].median()
        rows.append(row)
    columns = ["dataset", "method", "variant", "seeds", "weights", "weights_tag", "device", "image_score"]
    columns += [f"{m}{suffix}" for m in SEED_METRICS for suffix in ("", "_sd")]
    columns += [f"{m}_{end}" for m in CI_METRICS for end in ("lo", "hi")]
    return pd.DataFrame(rows, columns=[*columns, *SEED_LATENCY])


def image_score_words(cells: pd.DataFrame) -> str | None:
    """What the cells' image scores are, in the table's words: "ROI: <pooling>" where the ROI scores
    were used, "whole image" where the dataset has an ROI that was not used, None without any ROI."""
    if cells["roi_mode"].isna().all():
        return None
    used = cells["roi_used"].fillna(False).astype(bool)
    if used.all():
        return f"ROI: {cells['roi_pooling'].dropna().iloc[0]}" if cells["roi_pooling"].notna().any() else "ROI"
    return "whole image" if not used.any() else f"ROI in {int(used.sum())} of {len(used)} seeds"


@dataclass(frozen=True)
class BestComparison:
    """Image AUROC of one method/variant against the dataset's best, on the test images both scored.

    DeLong's paired test (`benchmarks.metrics.paired_auroc_test`) runs once per seed: each seed
    against the best's same seed, or its first seed when that seed did not run. `delta` (this
    minus best) is the mean over those pairs, `p_value` the largest of their two-sided p-values
    (a difference must hold in every seed), `p_holm` that p after Holm's correction over every
    comparison of the dataset. None with `undefined_reason` when no pair could be tested.
    """

    method: str
    variant: str
    best_method: str
    best_variant: str
    delta: float | None
    p_value: float | None
    p_holm: float | None
    n_images: int | None
    n_pairs: int
    undefined_reason: str | None = None

    @property
    def significantly_worse(self) -> bool:
        return (
            self.p_holm is not None
            and self.p_holm < SIGNIFICANCE_LEVEL
            and self.delta is not None
            and self.delta < 0
        )


def compare_with_best(results: RunResults, dataset: str) -> list[BestComparison]:
    """Paired DeLong tests of every method/variant of `dataset` against the one of highest mean AUROC.

    Empty when fewer than two method/variants have an image AUROC.
    """
    groups: dict[tuple[str, str], list[CellResult]] = {}
    for cell in results.for_dataset(dataset, ok_only=True):
        if cell.metrics is not None and cell.metrics.image_auroc is not None:
            groups.setdefault((cell.method, cell.variant), []).append(cell)
    if len(groups) < 2:
        return []
    mean_auroc = {
        key: float(np.mean([c.metrics.image_auroc for c in cells if c.metrics]))
        for key, cells in groups.items()
    }
    best = max(groups, key=lambda key: mean_auroc[key])
    best_by_seed = {c.seed: c for c in groups[best]}
    test_scores: dict[str, pd.DataFrame | str] = {}

    def scores(cell: CellResult) -> pd.DataFrame | str:
        if cell.cell_key not in test_scores:
            try:
                frame = results.scores(cell)
            except (OSError, ValueError) as err:
                test_scores[cell.cell_key] = short(str(err))
            else:
                test_scores[cell.cell_key] = frame.loc[
                    frame["split"] == "test", ["image_id", "label", "score"]
                ]
        return test_scores[cell.cell_key]

    compared = []
    for key, cells in groups.items():
        if key == best:
            continue
        pairs = [(cell, best_by_seed.get(cell.seed, groups[best][0])) for cell in cells]
        deltas, p_values, sizes, reasons = [], [], [], []
        for cell, partner in pairs:
            outcome = _paired_test(scores(cell), scores(partner))
            if isinstance(outcome, str):
                reasons.append(f"{cell.cell_key}: {outcome}")
            else:
                deltas.append(outcome[0])
                p_values.append(outcome[1])
                sizes.append(outcome[2])
        tested = len(deltas) == len(pairs)
        compared.append(
            BestComparison(
                method=key[0],
                variant=key[1],
                best_method=best[0],
                best_variant=best[1],
                delta=float(np.mean(deltas)) if tested else None,
                p_value=max(p_values) if tested else None,
                p_holm=None,
                n_images=min(sizes) if tested else None,
                n_pairs=len(pairs),
                undefined_reason=None if tested else "; ".join(reasons),
            )
        )
    adjusted = holm([c.p_value for c in compared])
    return [replace(c, p_holm=p) for c, p in zip(compared, adjusted, strict=True)]


def _paired_test(a: pd.DataFrame | str, b: pd.DataFrame | str) -> tuple[float, float, int] | str:
    """(delta, p, shared images) of DeLong on the test images both frames scored, or why not."""
    from benchmarks.metrics import paired_auroc_test  # imports torch (pixel metrics): only when needed

    if isinstance(a, str) or isinstance(b, str):
        return a if isinstance(a, str) else str(b)
    shared = a.merge(b, on="image_id", suffixes=("_a", "_b"))
    if (shared["label_a"] != shared["label_b"]).any():
        return "the two score files disagree on the labels of shared test images"
    try:
        result = paired_auroc_test(shared["score_a"], shared["score_b"], shared["label_a"])
    except ValueError as err:
        return short(str(err))
    if result.delta is None or result.p_value is None:
        return result.undefined_reason or "DeLong test undefined"
    return result.delta, result.p_value, len(shared)


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values (None stays None and does not count as a test)."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        adjusted[i] = running
    return adjusted
