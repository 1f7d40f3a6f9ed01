"""The result store of one run folder (SPEC 9).

Layout: `runs.jsonl` (one `benchmarks.results.record.CellResult` per line, appended atomically: a
single `write` of a whole line on an O_APPEND descriptor, then fsync), `scores/<cell_key>.parquet`
and `maps/<cell_key>.npz` (written to a temporary file, then renamed), `run.lock` (one writer at
a time). Only the process that holds the lock writes (the runner, or `merge`): cell processes
hand their scores and maps back instead of writing them. Readers take the last line per cell key
and skip a torn last line left by a crash, or any line that is not a cell, saying which.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from benchmarks.results.models import SavedModel, write_model
from benchmarks.results.record import RUNS_FILE, CellResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredCells:
    """What a run folder's `runs.jsonl` holds: every readable cell line in file order, and what was skipped."""

    lines: tuple[CellResult, ...]
    problems: tuple[str, ...] = ()

    def latest(self) -> dict[str, CellResult]:
        """The last line per cell key, in the order of those last lines."""
        cells: dict[str, CellResult] = {}
        for cell in self.lines:
            cells.pop(cell.cell_key, None)  # a re-written cell moves to its latest position
            cells[cell.cell_key] = cell
        return cells


@dataclass(frozen=True)
class CellMaps:
    """Test anomaly maps a cell hands to the store: `(N,)` image ids and `(N, H, W)` maps."""

    image_ids: tuple[str, ...]
    maps: np.ndarray


class RunLockedError(RuntimeError):
    """Another process holds the run folder's lock."""


class RunStore:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)

    @property
    def runs_path(self) -> Path:
        return self.run_dir / RUNS_FILE

    def scores_path(self, cell_key: str) -> Path:
        return self.run_dir / "scores" / f"{cell_key}.parquet"

    def maps_path(self, cell_key: str) -> Path:
        return self.run_dir / "maps" / f"{cell_key}.npz"

    def prepare(self) -> None:
        """Create the folder; fail clearly when it is not writable."""
        try:
            (self.run_dir / "scores").mkdir(parents=True, exist_ok=True)
            (self.run_dir / "maps").mkdir(parents=True, exist_ok=True)
            probe = self.run_dir / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise OSError(f"cannot write to the output folder {self.run_dir}: {exc.strerror or exc}") from exc

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold `run.lock` for the duration; a second writer gets RunLockedError at once."""
        self.prepare()
        handle: IO[str] = open(self.run_dir / "run.lock", "a+")  # noqa: SIM115
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EACCES):
                    raise RunLockedError(
                        f"another run is writing to {self.run_dir} (run.lock is held); "
                        "wait for it to finish or use --out to choose another folder"
                    ) from None
                raise
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            yield
        finally:
            handle.close()

    def write_cell(
        self, result: CellResult, scores: pd.DataFrame | None, maps: CellMaps | None,
        model: tuple[bytes, SavedModel] | None = None,
    ) -> CellResult:
        """Write the cell's per-image scores, maps and saved model, then append its line; returns the line."""
        if model is not None:
            folder = write_model(self.run_dir, result.cell_key, *model)
            result = replace(result, model_dir=str(folder.relative_to(self.run_dir)))
        if scores is not None:
            result = replace(result, scores_file=str(self.write_scores(result.cell_key, scores).relative_to(self.run_dir)))
        if maps is not None:
            path = self.write_maps(result.cell_key, list(maps.image_ids), maps.maps)
            result = replace(result, maps_file=str(path.relative_to(self.run_dir)))
        self.append(result)
        return result

    def append(self, result: CellResult) -> None:
        """Append one cell line atomically (one write call, fsync).

        Keys of a line read from an older or newer suite that this version does not know are kept.
        """
        record = {**result.raw, **result.to_json()}
        line = (json.dumps(finite_json(record), allow_nan=False, default=_json_default) + "\n").encode()
        self._repair_torn_tail()
        fd = os.open(self.runs_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            _write_line(fd, line, self.runs_path)
        finally:
            os.close(fd)

    def _repair_torn_tail(self) -> None:
        """Cut a torn last line (no trailing newline) left by a crash, so appends start on a fresh line."""
        if not self.runs_path.is_file():
            return
        with open(self.runs_path, "rb+") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            if size == 0:
                return
            handle.seek(size - 1)
            if handle.read(1) == b"\n":
                return
            handle.seek(0)
            data = handle.read()
            keep = data.rfind(b"\n") + 1
            log.warning(
                "%s: dropping a torn last line (%d bytes) from an interrupted run",
                self.runs_path,
                size - keep,
            )
            handle.truncate(keep)

    def read(self) -> StoredCells:
        """Every cell line in file order; a torn last line or a line that is no cell is skipped and named."""
        if not self.runs_path.is_file():
            return StoredCells(())
        text = self.runs_path.read_text(encoding="utf-8")
        lines = text.split("\n")
        torn_tail = text != "" and not text.endswith("\n")
        cells: list[CellResult] = []
        problems: list[str] = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                if torn_tail and number == len(lines):
                    raise ValueError("no newline at the end: the write was interrupted")
                cells.append(CellResult.from_json(json.loads(line)))
            except (json.JSONDecodeError, ValueError, TypeError) as err:
                what = "torn last line" if torn_tail and number == len(lines) else "unreadable line"
                problems.append(f"{RUNS_FILE} line {number}: {what} ignored ({short(str(err))})")
        return StoredCells(tuple(cells), tuple(problems))

    def records(self) -> tuple[CellResult, ...]:
        """Every readable cell line, in order (problems are logged)."""
        stored = self.read()
        for problem in stored.problems:
            log.warning("%s: %s", self.run_dir, problem)
        return stored.lines

    def latest(self) -> dict[str, CellResult]:
        """The last line per cell key."""
        return self.read().latest()

    def write_scores(self, cell_key: str, frame: pd.DataFrame) -> Path:
        path = self.scores_path(cell_key)
        with _atomic_path(path) as tmp:
            frame.to_parquet(tmp, index=False)
        return path

    def write_maps(self, cell_key: str, image_ids: list[str], maps: np.ndarray) -> Path:
        path = self.maps_path(cell_key)
        with _atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez_compressed(
                handle, image_ids=np.asarray(image_ids, dtype=str), maps=maps.astype(np.float16)
            )
        return path

    def write_json(self, name: str, data: Mapping[str, Any]) -> Path:
        path = self.run_dir / name
        with _atomic_path(path) as tmp:
            Path(tmp).write_text(json.dumps(data, indent=2, default=_json_default))
        return path


def _write_line(fd: int, line: bytes, path: Path) -> None:
    """One `write` of the whole line (O_APPEND makes it atomic against other appenders), then fsync."""
    written = os.write(fd, line)
    if written != len(line):
        raise OSError(f"short write to {path} ({written} of {len(line)} bytes)")
    os.fsync(fd)


@contextmanager
def _atomic_path(path: Path) -> Iterator[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def finite_json(value: Any) -> Any:
    """Replace NaN/inf floats by None, recursively: JSON has no NaN and readers expect null."""
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(v) for v in value]
    return value


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def short(message: str, limit: int = 120) -> str:
    """`message` cut to `limit` characters with an ellipsis (for problems listed in reports)."""
    return message if len(message) <= limit else message[: limit - 1] + "…"
