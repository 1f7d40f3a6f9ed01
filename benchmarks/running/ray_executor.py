"""`--executor ray`: cells as Ray tasks (optional extra `ray`), results stored by the same runner.

Each cell is one task with resource hints (`num_cpus` = the machine's cores / the cells that may
run at once is left to Ray; one GPU per cell with `--device cuda`). The per-cell timeout is
enforced by cancelling the task. Ray connects to `RAY_ADDRESS` when set (a cluster), otherwise
starts a local instance.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timezone

from benchmarks.plugins.registry import BASELINES
from benchmarks.running.cell import CellOutcome, run_cell
from benchmarks.running.config import CellSpec, RunConfig, declared_weights


def _task(config: RunConfig, cell: CellSpec, module: str) -> CellOutcome:
    return run_cell(config, cell, module, config.out)


def ray_outcomes(config: RunConfig, todo: list[tuple[CellSpec, str]]) -> Iterator[tuple]:
    try:
        import ray
    except ImportError:
        raise RuntimeError("--executor ray needs Ray: pip install -e '.[ray]'") from None

    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False)
    remote = ray.remote(num_cpus=1, num_gpus=1 if config.device.startswith("cuda") else 0, max_retries=0)(_task)
    pending = {remote.remote(config, cell, BASELINES.get(cell.method).__module__):
               (cell, digest, time.monotonic(), datetime.now(timezone.utc)) for cell, digest in todo}
    timeout = config.preset.cell_timeout_s
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1, timeout=5.0)
        for ref in done:
            cell, digest, _, started = pending.pop(ref)
            try:
                outcome = ray.get(ref)
            except Exception as exc:  # a worker that died (OOM, crash) fails its cell only
                outcome = CellOutcome("failed", f"ray task failed: {type(exc).__name__}: {exc}",
                                      declared_weights(config), ())
            yield cell, digest, started, outcome
        if timeout is not None:
            for ref, (cell, digest, submitted, started) in list(pending.items()):
                if time.monotonic() - submitted > timeout:
                    ray.cancel(ref, force=True)
                    pending.pop(ref)
                    yield cell, digest, started, CellOutcome(
                        "failed", f"TimeoutError: cell exceeded {timeout:.0f} s and was stopped",
                        declared_weights(config), ())
