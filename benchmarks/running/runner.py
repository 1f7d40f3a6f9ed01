"""The runner: expand the grid, skip finished cells, run each cell in its own process, store results.

Each cell runs in its own process (forked from a preloaded fork server) with a wall-clock limit (the preset's
`cell_timeout_s`): a crashing, hanging or memory-exhausted plugin fails its cell only.
The runner appends one line per cell to `runs.jsonl` as soon as the cell ends.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm import tqdm

from benchmarks.plugins.registry import BASELINES, load_plugins, plugin_modules
from benchmarks.plugins.weights import WeightsResolver
from benchmarks.results.models import SavedModel
from benchmarks.results.record import CellResult
from benchmarks.results.stamp import weights_tag
from benchmarks.results.store import RunStore
from benchmarks.running import environment
from benchmarks.running.cell import CellOutcome, run_cell
from benchmarks.running.config import CellSpec, RunConfig, declared_weights, shard_cells

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    """What a run did: per-cell status lines, for the printed table and the exit status."""

    run_dir: Path
    ran: list[CellResult] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[CellResult]:
        return [r for r in self.ran if r.status == "failed"]


def expand_grid(config: RunConfig) -> list[CellSpec]:
    """Cells for every method x its variants (default ones unless `config.variants`) x dataset x seed."""
    cells = []
    for method in config.methods:
        meta = BASELINES.get(method).meta
        variants = [v for v in (config.variants or meta.default_variants) if v in meta.variants]
        if config.variants and not variants:
            raise ValueError(
                f"{method} has none of the variants {', '.join(config.variants)}; "
                f"known: {', '.join(meta.variants)}"
            )
        for variant in variants:
            for dataset in config.datasets:
                for seed in config.seeds:
                    cells.append(CellSpec(method, variant, dataset, seed))
    return shard_cells(cells, config.shard)


def run(config: RunConfig, on_cell: Callable[[CellResult], None] | None = None) -> RunSummary:
    """Run every cell of `config` not already finished in `config.out` (all of them with `force`)."""
    load_plugins()
    store = RunStore(config.out)
    summary = RunSummary(run_dir=config.out)
    cells = expand_grid(config)
    with store.lock():
        previous = store.latest()
        run_id = _run_id(previous)
        store.write_json("run.json", _run_metadata(config, run_id, cells))
        todo = []
        resolver = WeightsResolver(mode=config.weights, weights_dir=config.weights_dir)  # type: ignore[arg-type]
        probes: dict[str, list[str]] = {}
        for cell in cells:
            meta = BASELINES.get(cell.method).meta
            if cell.method not in probes:
                probes[cell.method] = resolver.probe(meta.weight_specs)
            digest = config.cell_hash(cell, meta.to_json(), probes[cell.method])
            done = previous.get(cell.key)
            if not config.force and done and done.status in ("ok", "skipped") and done.config_hash == digest:
                summary.resumed.append(cell.key)
                continue
            todo.append((cell, digest))
        if config.executor == "ray":
            from benchmarks.running.ray_executor import ray_outcomes

            finished = ray_outcomes(config, todo)
        else:
            finished = _local_outcomes(config, todo)
        for cell, digest, started, outcome in finished:
            result = _result(config, cell, digest, run_id, outcome, started)
            record = store.write_cell(result, outcome.scores, outcome.maps, _saved_model(config, result, outcome))
            summary.ran.append(record)
            if on_cell:
                on_cell(record)
    return summary


FinishedCell = tuple[CellSpec, str, datetime, CellOutcome]


def _local_outcomes(config: RunConfig, todo: list[tuple[CellSpec, str]]) -> Iterator[FinishedCell]:
    """Cells one after another, each in its own process (the 2-core default; no oversubscription)."""
    bar = tqdm(todo, desc="cells", unit="cell")
    for cell, digest in bar:
        bar.set_postfix_str(cell.key)
        started = datetime.now(timezone.utc)
        yield cell, digest, started, _execute(config, cell)


def _execute(config: RunConfig, cell: CellSpec) -> CellOutcome:
    """Run the cell in a spawned process with a timeout; turn a dead or hung child into a failure."""
    method = BASELINES.get(cell.method)
    context = _process_context()
    parent_end, child_end = context.Pipe(duplex=False)
    process = context.Process(
        target=_child,
        args=(config, cell, method.__module__, child_end, os.getpid()),
        name=f"cell-{cell.key}",
        daemon=False,
    )
    process.start()
    child_end.close()
    timeout = config.preset.cell_timeout_s
    deadline = None if timeout is None else time.monotonic() + timeout
    outcome: CellOutcome | None = None
    while outcome is None:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        if parent_end.poll(timeout=1.0 if remaining is None else min(1.0, remaining)):
            try:
                outcome = parent_end.recv()
            except EOFError:
                break
        elif not process.is_alive():
            break
        elif remaining is not None and remaining <= 0:
            process.kill()
            process.join()
            return CellOutcome(
                "failed",
                f"TimeoutError: cell exceeded {timeout:.0f} s and was stopped",
                declared_weights(config),
                (),
            )
    process.join(timeout=30)
    if process.is_alive():
        process.kill()
        process.join()
    if outcome is None:
        code = process.exitcode
        reason = "killed (out of memory?)" if code == -9 else f"exit code {code}"
        return CellOutcome(
            "failed", f"cell process died without a result: {reason}", declared_weights(config), ()
        )
    return outcome


def _process_context() -> Any:
    """A fork server that has imported the harness and the built-in plugins once.

    Each cell is forked from it: a clean process (no parent threads or CUDA state) that starts in
    milliseconds instead of re-importing torch/anomalib (~10-20 s on 2 cores) for every cell.
    """
    context = mp.get_context("forkserver")
    context.set_forkserver_preload(["benchmarks.running.cell", *plugin_modules()])
    return context


def _child(config: RunConfig, cell: CellSpec, module: str, conn: Any, runner_pid: int) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _exit_with_runner(runner_pid)
    outcome = run_cell(config, cell, module, config.out)
    conn.send(outcome)
    conn.close()


RUNNER_POLL_S = 0.5


def _exit_with_runner(runner_pid: int) -> None:
    """Stop this cell process when the runner that waits for it is gone (SIGKILL, SIGTERM, crash).

    A fork-server child's parent is the fork server, not the runner, so neither PR_SET_PDEATHSIG
    nor getppid() tell us; a daemon thread polls the runner's pid instead. The cell's partial work
    is thrown away: the next run recomputes the cell, nothing is appended twice.
    """

    def watch() -> None:
        while _alive(runner_pid):
            time.sleep(RUNNER_POLL_S)
        os._exit(3)

    threading.Thread(target=watch, name="runner-watchdog", daemon=True).start()


def _alive(pid: int) -> bool:
    """Whether `pid` is a running process (a zombie, i.e. dead but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):  # gone, or the pid now belongs to another user
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs (macOS): existence is all we can tell
    return stat.rpartition(")")[2].split()[0] != "Z"


def _result(
    config: RunConfig, cell: CellSpec, digest: str, run_id: str, outcome: CellOutcome, started: datetime
) -> CellResult:
    """The cell's record: what the cell process measured, and what the runner knows about the cell."""
    meta = BASELINES.get(cell.method).meta
    finished = datetime.now(timezone.utc)
    return CellResult(
        run_id=run_id,
        cell_key=cell.key,
        method=cell.method,
        variant=cell.variant,
        dataset=cell.dataset,
        seed=cell.seed,
        status=outcome.status,
        error=outcome.error,
        weights=outcome.weights,
        weights_tag=weights_tag(outcome.weights, list(outcome.weights_detail)),
        metrics=outcome.metrics,
        latency=outcome.latency,
        config_hash=digest,
        versions=environment.versions(),
        hardware={**environment.hardware(config.device), "gemm_path": outcome.gemm_path},
        breakdowns=outcome.breakdowns or {},
        hard_negative=outcome.hard_negative,
        text_metrics=outcome.text_metrics,
        counts=outcome.counts,
        timing=outcome.timing,
        roi=outcome.roi,
        weights_detail=outcome.weights_detail,
        method_meta=meta.record_json(),
        options=config.method_options.get(cell.method, {}),
        preset=config.preset.name,
        dataset_root=outcome.dataset_root,
        provenance=outcome.provenance or {},
        model_note=outcome.model_note,
        started_at=started.isoformat(),
        finished_at=finished.isoformat(),
        duration_s=(finished - started).total_seconds(),
    )


def _saved_model(config: RunConfig, result: CellResult, outcome: CellOutcome) -> tuple[bytes, SavedModel] | None:
    """The fitted model to store beside the cell's line, with its stamp (`--save-models`)."""
    fitted = outcome.fitted
    if fitted is None or not result.ok or result.metrics is None:
        return None
    stamp = SavedModel(
        cell_key=result.cell_key, method=result.method, variant=result.variant, dataset=result.dataset,
        seed=int(result.seed or 0), preset=config.preset.name, options=dict(result.options),
        weights=str(result.weights), weights_tag=str(result.weights_tag), weights_detail=result.weights_detail,
        threshold=result.metrics.threshold, threshold_source=str(result.metrics.threshold_source),
        val_normal_scores=fitted.val_normal_scores, val_anomaly_scores=fitted.val_anomaly_scores,
        class_name=fitted.class_name, description=fitted.description, info=fitted.info,
        roi_pooling=fitted.roi_pooling,
    )
    return fitted.tensors, stamp


def _run_id(previous: dict[str, CellResult]) -> str:
    """Keep the folder's run id across resumes; a fresh folder gets a new one."""
    for record in previous.values():
        if record.run_id:
            return record.run_id
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def _run_metadata(config: RunConfig, run_id: str, cells: list[CellSpec]) -> dict[str, Any]:
    data = asdict(config)
    data["out"] = str(config.out)
    return {
        "run_id": run_id,
        "config": data,
        "cells": [c.key for c in cells],
        "versions": environment.versions(),
        "hardware": environment.hardware(config.device),
    }
