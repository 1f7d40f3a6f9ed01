"""When a reproduced number may stand beside a published one: dataset kinds and the comparability rules.

Each method declares its own published numbers in its meta (`MethodMeta.published`, values in
percent as printed, with paper and table); this module knows no method. A reproduced number is
comparable only on a dataset of the paper's kind (`dataset_kind`), with pretrained weights and
the provenance the entry requires (`comparability`). MVTec AD / VisA entries are means over all
categories of the full test set; the suite's `mvtec:` loader moves 20 % of each category's test
images to validation, so even a matching run differs slightly in protocol (`PROTOCOL_CAVEATS`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Literal

from benchmarks.plugins.contract import Ablation, MethodMeta, PublishedResult
from benchmarks.results.record import CellResult

DatasetKind = Literal["mvtec", "visa", "smartphone-study"]
# `dataset.json` beside a manifest marks it as the study's own data: {"published_reference": "smartphone-study"}.
SIDECAR = "dataset.json"
SIDECAR_KEY = "published_reference"
DATASET_KIND_NAMES: dict[str, str] = {
    "mvtec": "MVTec AD",
    "visa": "VisA",
    "smartphone-study": "the study's real smartphone set",
}
PROTOCOL_CAVEATS: dict[str, str] = {
    "mvtec": "published: mean over the 15 categories, full test set; here: 20 % of test moved to val",
    "visa": "published: mean over the 12 categories, full test set; here: 20 % of test moved to val",
    "smartphone-study": "F1 at the study's threshold; here: F1 at the validation threshold",
}


def declarations(cells: Iterable[CellResult]) -> dict[str, tuple[tuple[PublishedResult, ...], Ablation | None]]:
    """Method -> (its published numbers, its ablation), as declared in its meta.

    Read from the meta stored with the run's cells (what the run was compared with); a line
    written before methods declared them falls back to the installed plugin's current meta.
    """
    found: dict[str, tuple[tuple[PublishedResult, ...], Ablation | None]] = {}
    missing: set[str] = set()
    for cell in cells:
        meta = cell.method_meta
        if cell.method in found:
            continue
        if "published" not in meta:
            missing.add(cell.method)
            continue
        ablation = meta.get("ablation")
        found[cell.method] = (
            tuple(PublishedResult.from_json(entry, cell.method) for entry in meta["published"]),
            Ablation.from_json(ablation) if isinstance(ablation, Mapping) else None,
        )
    for method in sorted(missing - set(found)):
        installed = _installed_meta(method)
        if installed is not None:
            found[method] = (tuple(replace(e, method=method) for e in installed.published), installed.ablation)
    return found


def published_results(cells: Iterable[CellResult]) -> tuple[PublishedResult, ...]:
    """Every published number declared by the methods of `cells`, in method order."""
    return tuple(entry for _, (entries, _) in sorted(declarations(cells).items()) for entry in entries)


def _installed_meta(method: str) -> MethodMeta | None:
    from benchmarks.plugins.registry import UnknownNameError, load_method

    try:
        return load_method(method).meta
    except (UnknownNameError, ValueError, RuntimeError):
        return None


def comparability(
    entry: PublishedResult, *, kind: str | None, weights: str | None, provenance: list[dict[str, object]]
) -> str | None:
    """None when a reproduced number may stand beside `entry`; else the reason it may not.

    The rules, in order: the method can reproduce the paper at all (`never_comparable`); the
    dataset is of the paper's kind; the weights are the paper's (`pretrained`: substitute and
    random never compare); every cell reports the provenance facts the entry `requires` (e.g.
    LTFM started from the authors' expert checkpoint).
    """
    if entry.never_comparable:
        return f"not comparable: {entry.never_comparable}"
    if kind != entry.dataset_kind:
        return "not comparable: different data"
    if weights != "pretrained":
        return {"random": "not comparable: random weights", "substitute": "not comparable: substitute backbone"}.get(
            str(weights), f"not comparable: weights {weights}")
    missing = [key for key in entry.requires if not provenance or not all(p.get(key) for p in provenance)]
    if missing:
        return f"not comparable: the cell does not report {', '.join(missing)}"
    return None


def dataset_kind(dataset: str, dataset_root: str | Path | None = None) -> DatasetKind | None:
    """The published dataset kind a run's dataset matches, or None.

    `mvtec:PATH/CATEGORY` is MVTec AD, or VisA when a folder of PATH is named like `visa`. A
    `manifest:` dataset is of a kind only when its `dataset.json` (in `dataset_root`, the
    manifest's folder) says so: `"published_reference": "smartphone-study"` (the study's own
    data, set by hand), `"mvtec"` or `"visa"` (written by `data import` for those layouts).
    """
    kind, _, argument = dataset.partition(":")
    if kind == "mvtec" and argument:
        parts = [p.lower() for p in re.split(r"[\\/]+", argument) if p]
        return "visa" if any(p == "visa" or p.startswith("visa_") for p in parts[:-1]) else "mvtec"
    if kind == "manifest" and dataset_root is not None:
        sidecar = Path(dataset_root) / SIDECAR
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        reference = meta.get(SIDECAR_KEY) if isinstance(meta, dict) else None
        if reference in DATASET_KIND_NAMES:
            return reference  # type: ignore[return-value]
    return None
