"""The one manifest schema every dataset is converted to (SPEC 3.1), and its typed row."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

SPLITS = ("train", "val", "test")
SOURCES = ("real", "generated")
REQUIRED_COLUMNS = ("image", "label", "split", "source", "group", "defect", "hard_negative")
OPTIONAL_COLUMNS = ("year", "mask", "roi")
NORMAL_DEFECT = "none"


@dataclass(frozen=True)
class ImageRecord:
    """One validated manifest row.

    `row` is the 1-based data-row number in the manifest (the header is not counted), used in
    every message about this image. `image_id` is the manifest's relative path, unique per dataset.
    """

    row: int
    image_id: str
    image: Path
    label: int
    split: str
    source: str
    group: str
    defect: str
    hard_negative: bool
    year: int | None = None
    mask: Path | None = None
    roi: Path | None = None
    """Where inspection happens (a screen outline, a fixture's window): a mask image, any resolution
    of the image's aspect ratio; the harness forms ROI-guided image scores inside it (SPEC 7)."""

    @property
    def is_anomalous(self) -> bool:
        return self.label == 1


@dataclass(frozen=True)
class Dataset:
    """A validated dataset: its records plus the words methods need to describe it."""

    name: str
    root: Path
    records: tuple[ImageRecord, ...]
    class_name: str = "object"
    description: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def split(self, name: str) -> tuple[ImageRecord, ...]:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")
        return tuple(r for r in self.records if r.split == name)

    def select(self, split: str, sources: Iterable[str] = SOURCES) -> tuple[ImageRecord, ...]:
        allowed = set(sources)
        return tuple(r for r in self.split(split) if r.source in allowed)

    @property
    def has_masks(self) -> bool:
        return any(r.mask is not None for r in self.split("test"))

    @property
    def has_roi(self) -> bool:
        """True when every val and test image has a region of interest (ROI scoring needs them all)."""
        evaluated = [r for r in self.records if r.split in ("val", "test")]
        return bool(evaluated) and all(r.roi is not None for r in evaluated)
