"""Merging shard run folders (`run --shard I/N`) into one: cells merge by cell key."""

from __future__ import annotations

import shutil
from pathlib import Path

from benchmarks.store import RunStore


def merge_runs(sources: list[Path], target: Path) -> int:
    """Copy every source's latest cell lines and their score/map files into `target`.

    For a cell present in several sources the last finished one (by `finished_at`) wins; a
    cell already in `target` with the same config hash and status `ok` is kept as it is.
    Returns the number of cells appended.
    """
    store = RunStore(target)
    with store.lock():
        existing = store.latest()
        chosen: dict[str, tuple[dict, Path]] = {}
        for source in sources:
            if Path(source).resolve() == Path(target).resolve():
                continue
            for key, record in RunStore(source).latest().items():
                best = chosen.get(key)
                if best is None or str(record.get("finished_at", "")) >= str(best[0].get("finished_at", "")):
                    chosen[key] = (record, Path(source))
        appended = 0
        for key, (record, source) in sorted(chosen.items()):
            kept = existing.get(key)
            if kept and kept.get("status") == "ok" and kept.get("config_hash") == record.get("config_hash"):
                continue
            for name in ("scores_file", "maps_file"):
                if record.get(name):
                    destination = target / record[name]
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(source / record[name], destination)
            store.append(record)
            appended += 1
    return appended
