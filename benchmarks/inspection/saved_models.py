"""Finding a run's saved model and bringing it back to life in this process."""

from __future__ import annotations

import tempfile
from pathlib import Path

from benchmarks.plugins.contract import Baseline, MethodContext
from benchmarks.plugins.registry import load_method
from benchmarks.plugins.weights import WeightsResolver
from benchmarks.results.models import SavedModel, read_model
from benchmarks.results.record import CellResult
from benchmarks.results.store import RunStore
from benchmarks.running import compute
from benchmarks.running.presets import get_preset


def saved_cell(run_dir: Path, method: str, variant: str | None = None, seed: int | None = None) -> CellResult:
    """The run's finished cell of `method` (and `variant` / `seed` where given) that saved a model.

    Raises ValueError naming what the run holds when there is none or the choice is ambiguous.
    """
    cells = [c for c in RunStore(run_dir).latest().values() if c.method == method and c.ok
             and (variant is None or c.variant == variant) and (seed is None or c.seed == seed)]
    saved = [c for c in cells if c.model_dir]
    if not saved:
        notes = "; ".join(f"{c.cell_key}: {c.model_note or 'run without --save-models'}" for c in cells)
        raise ValueError(f"{run_dir} has no saved {method}{'/' + variant if variant else ''} model"
                         + (f" ({notes})" if notes else " (no finished cell of it)"))
    if len(saved) > 1:
        raise ValueError(f"{run_dir} has several saved {method} models: "
                         f"{', '.join(c.cell_key for c in saved)}; choose one with --variant / --seed")
    return saved[0]


def load_saved(run_dir: Path, cell: CellResult, *, device: str = "cpu",
               weights_dir: Path | None = None) -> tuple[Baseline, SavedModel]:
    """The plugin of `cell`, constructed as the cell was and given its saved fitted state.

    The backbone is resolved again with the cell's weights mode (random backbones travel in the
    saved state; real ones must be on this machine, checked by fingerprint).
    """
    assert cell.model_dir is not None
    state, stamp = read_model(Path(run_dir) / cell.model_dir)
    cls = load_method(stamp.method)
    context = MethodContext(
        variant=stamp.variant, seed=stamp.seed, device=device,
        weights=WeightsResolver(mode=stamp.weights, weights_dir=weights_dir),  # type: ignore[arg-type]
        preset=get_preset(stamp.preset), class_name=stamp.class_name, description=stamp.description,
        work_dir=Path(tempfile.mkdtemp(prefix="inspect-")), options=dict(stamp.options),
        gemm_path=compute.gemm_path(device).path,
    )
    plugin = cls(context)
    plugin.load_fitted_state(state)
    return plugin, stamp
