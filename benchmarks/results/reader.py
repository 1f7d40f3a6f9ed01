"""Read a run folder (`runs.jsonl` + per-image score and map files) into typed cells and a pandas frame.

The store format is the runner's contract (SPEC 9) and its record is `benchmarks.results.record.CellResult`,
read by `benchmarks.results.store`: the last line of a `cell_key` wins (a re-run with `--force` appends);
a torn last line (a crash mid-write), or any other line that is not a cell, is ignored with a
warning and listed in `RunResults.problems`.
"""

from __future__ import annotations

import re
import typing
import warnings
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.results.record import (
    RUNS_FILE,
    AnswerMetrics,
    CellLatency,
    CellMetrics,
    CellResult,
    CellTiming,
    HardNegativeRate,
    RoiScoring,
)
from benchmarks.results.stamp import weights_tag
from benchmarks.results.store import RunStore

SCORE_COLUMNS = ("image_id", "label", "split", "score")


class RunStoreWarning(UserWarning):
    """A line of `runs.jsonl` was unreadable and ignored."""


@dataclass(frozen=True)
class RunResults:
    """All cells of one run folder, in file order of their winning line.

    `problems` lists what was ignored while reading (torn or invalid lines), for the report.
    """

    run_dir: Path
    cells: tuple[CellResult, ...]
    problems: tuple[str, ...] = ()

    @property
    def datasets(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c.dataset for c in self.cells))

    @property
    def any_random_weights(self) -> bool:
        return any(c.random_weights for c in self.cells)

    @property
    def all_pretrained(self) -> bool:
        """Every cell ran on its method's own pretrained weights (no weights column needed)."""
        return all(c.weights == "pretrained" for c in self.cells)

    def for_dataset(self, dataset: str, *, ok_only: bool = False) -> tuple[CellResult, ...]:
        """Cells of `dataset` sorted by method, variant, seed."""
        cells = [c for c in self.cells if c.dataset == dataset and (c.ok or not ok_only)]
        return tuple(sorted(cells, key=_cell_order))

    def labels(self) -> dict[str, str]:
        """cell_key -> display label "method/variant", with " s<seed>" only where seeds differ and
        " (<origin>)" where the cell's provenance names one (a `base` from a synthetic source)."""
        seeds = Counter((c.method, c.variant, c.dataset) for c in self.cells)
        return {
            c.cell_key: f"{c.method}/{c.variant}"
            + (f" ({origin})" if isinstance(origin := c.provenance.get("origin"), str) and origin else "")
            + (f" s{c.seed}" if seeds[(c.method, c.variant, c.dataset)] > 1 else "")
            for c in self.cells
        }

    def frame(self) -> pd.DataFrame:
        """One row per cell with flat columns (metric, `<metric>_lo`/`_hi` CI bounds, latency, ...)."""
        rows = [_flat_row(c) for c in self.cells]
        frame = pd.DataFrame(rows, columns=FRAME_COLUMNS)
        for name, kind in FRAME_COLUMN_TYPES.items():
            if kind is int:
                frame[name] = frame[name].astype("Int64")
            elif kind is float:
                frame[name] = frame[name].astype("float64")
        return frame

    def scores(self, cell: CellResult) -> pd.DataFrame:
        """Per-image scores of `cell` (val and test rows) from its Parquet file."""
        path = self._member(cell, cell.scores_file, "scores_file")
        scores = pd.read_parquet(path)
        missing = [c for c in SCORE_COLUMNS if c not in scores.columns]
        if missing:
            raise ValueError(f"{path}: scores of cell {cell.cell_key} lack columns {missing}")
        return scores

    def maps(self, cell: CellResult) -> tuple[np.ndarray, np.ndarray]:
        """Test anomaly maps of `cell` from its npz: `(N,)` image ids and `(N, H, W)` float32 maps."""
        path = self._member(cell, cell.maps_file, "maps_file")
        with np.load(path, allow_pickle=False) as stored:
            if "image_ids" not in stored or "maps" not in stored:
                raise ValueError(f"{path}: maps of cell {cell.cell_key} lack `image_ids` or `maps`")
            ids, maps = stored["image_ids"].astype(str), stored["maps"].astype(np.float32)
        if maps.ndim != 3 or len(ids) != len(maps):
            raise ValueError(f"{path}: {len(ids)} image ids for maps of shape {maps.shape}")
        return ids, maps

    def _member(self, cell: CellResult, relative: str | None, key: str) -> Path:
        if not relative:
            raise FileNotFoundError(f"cell {cell.cell_key} ({cell.status}) has no {key}")
        root = self.run_dir.resolve()
        path = (root / relative).resolve()
        if not path.is_relative_to(root):
            raise ValueError(f"cell {cell.cell_key}: {key} {relative!r} points outside the run folder")
        if not path.is_file():
            raise FileNotFoundError(f"cell {cell.cell_key}: {key} {path} does not exist")
        return path


def load_run(run_dir: str | Path) -> RunResults:
    """Read `<run_dir>/runs.jsonl`; the last line of each cell_key wins, unreadable lines warn."""
    run_dir = Path(run_dir)
    if not (run_dir / RUNS_FILE).is_file():
        where = "does not exist" if not run_dir.exists() else f"has no {RUNS_FILE}"
        raise FileNotFoundError(
            f"{run_dir} {where}; a run folder is what `python -m benchmarks run --out DIR` writes"
        )
    stored = RunStore(run_dir).read()
    for problem in stored.problems:
        warnings.warn(f"{run_dir / RUNS_FILE}: {problem}", RunStoreWarning, stacklevel=2)
    cells = tuple(_with_tag(cell) for cell in stored.latest().values())
    return RunResults(run_dir=run_dir, cells=cells, problems=stored.problems)


def _with_tag(cell: CellResult) -> CellResult:
    """Lines from before the weights stamp existed get it derived from their weights detail."""
    if cell.weights_tag:
        return cell
    return replace(cell, weights_tag=weights_tag(cell.weights, list(cell.weights_detail)))


def strata_order(names: Collection[str]) -> list[str]:
    """Stratum names in display order: numeric ones (years) numerically, then the rest alphabetically."""

    def key(name: str) -> tuple[int, float, str]:
        try:
            return (0, float(name), "")
        except ValueError:
            return (1, 0.0, name)

    return sorted(names, key=key)


def slugify(name: str) -> str:
    """A file-name-safe form of a dataset name (`manifest:/a/b.csv` -> `manifest-a-b.csv`)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "dataset"


def dataset_slugs(datasets: tuple[str, ...]) -> dict[str, str]:
    """Unique file-name slugs for `datasets`; colliding slugs get a numeric suffix."""
    slugs: dict[str, str] = {}
    for name in datasets:
        slug, n = slugify(name), 2
        while slug in slugs.values():
            slug, n = f"{slugify(name)}-{n}", n + 1
        slugs[name] = slug
    return slugs


IDENTITY_COLUMNS = (
    "cell_key", "run_id", "dataset", "method", "variant", "seed", "status", "error", "weights",
    "weights_tag", "preset", "config_hash",
)  # fmt: skip
HARD_NEGATIVE_COLUMNS = {"fpr": "hard_negative_fpr", "normal_fpr": "normal_fpr", "n_hard_negative": "n_hard_negative"}
FILE_COLUMNS = ("scores_file", "maps_file")


def _flat_columns() -> dict[str, type]:
    """Column name -> scalar type of `RunResults.frame()`, derived from the record's dataclasses."""
    columns: dict[str, type] = {name: str for name in IDENTITY_COLUMNS} | {"seed": int}
    for part in (CellMetrics, CellLatency, AnswerMetrics, CellTiming):
        hints = typing.get_type_hints(part)
        for spec in fields(part):
            kind = typing.get_args(hints[spec.name])[0]
            if spec.name.endswith("_ci"):
                stem = spec.name[: -len("_ci")]
                columns |= {f"{stem}_lo": float, f"{stem}_hi": float}
            else:
                columns[spec.name] = kind
    hints = typing.get_type_hints(HardNegativeRate)
    columns |= {column: typing.get_args(hints[name])[0] for name, column in HARD_NEGATIVE_COLUMNS.items()}
    hints = typing.get_type_hints(RoiScoring)
    for spec in fields(RoiScoring):
        name = roi_column(spec.name)
        if name.endswith("_ci"):
            columns |= {f"{name[:-3]}_lo": float, f"{name[:-3]}_hi": float}
        else:
            columns[name] = typing.get_args(hints[spec.name])[0]
    return columns | {"duration_s": float} | {name: str for name in FILE_COLUMNS}


def roi_column(field_name: str) -> str:
    """The frame column of a `RoiScoring` field: `roi_` before it (once: `roi_auroc` stays)."""
    return field_name if field_name.startswith("roi_") else f"roi_{field_name}"


FRAME_COLUMN_TYPES = _flat_columns()
FRAME_COLUMNS = list(FRAME_COLUMN_TYPES)


def _flat_row(cell: CellResult) -> dict[str, Any]:
    row: dict[str, Any] = {name: getattr(cell, name) for name in (*IDENTITY_COLUMNS, *FILE_COLUMNS)}
    metrics = cell.metrics or CellMetrics()
    for spec in fields(metrics):
        value = getattr(metrics, spec.name)
        if spec.name.endswith("_ci"):
            stem = spec.name[: -len("_ci")]
            row[f"{stem}_lo"], row[f"{stem}_hi"] = (value.lo, value.hi) if value else (None, None)
        else:
            row[spec.name] = value
    row |= {f.name: getattr(cell.latency or CellLatency(), f.name) for f in fields(CellLatency)}
    row |= {f.name: getattr(cell.text_metrics or AnswerMetrics(), f.name) for f in fields(AnswerMetrics)}
    row |= {f.name: getattr(cell.timing or CellTiming(), f.name) for f in fields(CellTiming)}
    row["duration_s"] = cell.duration_s
    hard = cell.hard_negative or HardNegativeRate()
    row |= {column: getattr(hard, name) for name, column in HARD_NEGATIVE_COLUMNS.items()}
    roi = cell.roi or RoiScoring()
    for spec in fields(RoiScoring):
        name, value = roi_column(spec.name), getattr(roi, spec.name)
        if name.endswith("_ci"):
            row[f"{name[:-3]}_lo"], row[f"{name[:-3]}_hi"] = (value.lo, value.hi) if value else (None, None)
        else:
            row[name] = value
    return row


def _cell_order(cell: CellResult) -> tuple[str, str, int]:
    return (cell.method, cell.variant, cell.seed if cell.seed is not None else -1)
