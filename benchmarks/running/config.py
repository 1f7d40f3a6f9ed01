"""The run configuration (one dataclass) and the grid of cells it expands to."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.running.presets import Preset


@dataclass(frozen=True)
class CellSpec:
    """One cell of the grid: method x variant x dataset x seed."""

    method: str
    variant: str
    dataset: str
    seed: int

    @property
    def key(self) -> str:
        """File-safe, unique key (`patchcore__default__smartphone-synth__s0`)."""
        dataset = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.dataset)
        method = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.method)
        digest = hashlib.sha1(self.dataset.encode()).hexdigest()[:6] if dataset != self.dataset else ""
        return f"{method}__{self.variant}__{dataset}{'-' + digest if digest else ''}__s{self.seed}"


@dataclass(frozen=True)
class RunConfig:
    """Everything a run depends on; CLI flags and presets fill it."""

    methods: tuple[str, ...]
    datasets: tuple[str, ...]
    seeds: tuple[int, ...]
    preset: Preset
    weights: str = "auto"
    weights_dir: Path | None = None
    device: str = "cpu"
    out: Path = Path("results")
    force: bool = False
    executor: str = "local"
    shard: tuple[int, int] | None = None
    variants: tuple[str, ...] | None = None
    feature_cache: bool = True
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    save_models: bool = False
    """Keep each cell's fitted model in `<out>/models/` (`inspect` loads it)."""
    roi: str = "auto"
    """ROI-guided image scores (`roi_scoring`): auto (chosen per cell on validation), on, off."""

    def cell_hash(self, cell: CellSpec, method_meta: dict[str, Any], weights_probe: list[str] | None = None) -> str:
        """Hash of what determines a cell's numbers (not the output folder or the executor).

        `weights_probe` (`WeightsResolver.probe` of the method's weight specs) says which weight
        files are there now: a cell computed on a substitute or random backbone is recomputed,
        not resumed, once the real weights appear.
        """
        payload = {
            "cell": asdict(cell),
            "preset": asdict(self.preset),
            "weights": self.weights,
            "weights_found": weights_probe or [],
            "device": self.device,
            "meta": method_meta,
            "options": self.method_options.get(cell.method, {}),
            # only when asked: a run that saves models recomputes cells finished without saving
            **({"save_models": True} if self.save_models else {}),
            **({"roi": self.roi} if self.roi != "auto" else {}),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def declared_weights(config: RunConfig) -> str:
    """The stamp of a cell that died before it could say what it loaded: a claim that cannot
    overstate (only `pretrained` guarantees real weights; other modes may have fallen back to random)."""
    return "pretrained" if config.weights == "pretrained" else "random"


def shard_cells(cells: list[CellSpec], shard: tuple[int, int] | None) -> list[CellSpec]:
    """Deterministic slice `i` of `n` (1-based) over the cells sorted by key."""
    if shard is None:
        return cells
    index, count = shard
    ordered = sorted(cells, key=lambda c: c.key)
    return [c for position, c in enumerate(ordered) if position % count == index - 1]


def parse_shard(text: str) -> tuple[int, int]:
    try:
        index_text, count_text = text.split("/")
        index, count = int(index_text), int(count_text)
    except ValueError:
        raise ValueError(f"--shard must look like I/N (e.g. 1/4), got {text!r}") from None
    if not 1 <= index <= count:
        raise ValueError(f"--shard {text}: I must be between 1 and N")
    return index, count
