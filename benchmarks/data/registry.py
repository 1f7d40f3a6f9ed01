"""The dataset registry: what a loader receives, and the names loaders register under."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from benchmarks.data.schema import Dataset
from benchmarks.plugins.registry import Registry


@dataclass(frozen=True)
class DatasetRequest:
    """What a loader gets: the part after `kind:` (or None) and the embedded-size multiplier."""

    argument: str | None = None
    scale: float = 1.0


DatasetLoader = Callable[[DatasetRequest], Dataset]
DATASETS: Registry[DatasetLoader] = Registry("dataset")
PATH_KINDS = ("manifest", "folder", "mvtec")
