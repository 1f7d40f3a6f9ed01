"""Merging shard run folders (`run --shard I/N`) into one: cells merge by cell key."""

from __future__ import annotations

import shutil
from pathlib import Path

from benchmarks.results.record import CellResult
from benchmarks.results.store import RunStore


def merge_runs(sources: list[Path], target: Path) -> int:
    """Copy every source's latest cell lines and their score/map files and saved models into `target`.

    For a cell present in several sources the last finished one (by `finished_at`) wins; a
    cell already in `target` with the same config hash and status `ok` is kept as it is.
    Returns the number of cells appended.
    """
    store = RunStore(target)
    with store.lock():
        existing = store.latest()
        chosen: dict[str, tuple[CellResult, Path]] = {}
        for source in sources:
            if Path(source).resolve() == Path(target).resolve():
                continue
            for key, record in RunStore(source).latest().items():
                best = chosen.get(key)
                if best is None or (record.finished_at or "") >= (best[0].finished_at or ""):
                    chosen[key] = (record, Path(source))
        appended = 0
        for key, (record, source) in sorted(chosen.items()):
            kept = existing.get(key)
            if kept and kept.ok and kept.config_hash == record.config_hash:
                continue
            for name in (record.scores_file, record.maps_file):
                if name:
                    destination = target / name
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(source / name, destination)
            if record.model_dir:
                shutil.copytree(source / record.model_dir, target / record.model_dir, dirs_exist_ok=True)
            store.append(record)
            appended += 1
    return appended
