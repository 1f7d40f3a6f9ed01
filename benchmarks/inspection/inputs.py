"""What `inspect` reads: image files, folders of images, a manifest, or a run's own test split; and
the labelled regions its defect-kind guesses are read against (the run's validation anomalies)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from benchmarks.data.images import load_image, load_mask
from benchmarks.data.loaders import load_dataset
from benchmarks.data.schema import Dataset, ImageRecord
from benchmarks.inspection.defect_kinds import KindReferences, RegionDescriber
from benchmarks.inspection.readings import InspectedImage
from benchmarks.results.record import CellResult
from benchmarks.running.cell import cap_eval
from benchmarks.running.presets import get_preset

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MANIFEST_SUFFIXES = (".csv", ".parquet")
SCALE_FILE = "annotations.csv"
"""Beside a manifest: a table with `image` and `mm_per_px` columns gives each capture's scale."""


def capture_scales(dataset: Dataset) -> dict[str, float]:
    """image id -> mm per pixel, where the dataset records its captures' scale (`SCALE_FILE`)."""
    path = dataset.root / SCALE_FILE
    if not path.is_file():
        return {}
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    if not {"image", "mm_per_px"} <= set(table.columns):
        return {}
    scales = pd.to_numeric(table["mm_per_px"], errors="coerce")
    return {str(image): float(scale) for image, scale in zip(table["image"], scales, strict=True) if scale > 0}


def unit_of(name: str, pattern: re.Pattern[str] | None) -> str | None:
    """The unit an image shows: the pattern's group `unit` (or first group, or whole match) in its name."""
    if pattern is None:
        return None
    match = pattern.search(name)
    if match is None:
        return None
    return match.groupdict().get("unit") or (match.group(1) if match.re.groups else match.group(0))


def _inspected(records: Sequence[ImageRecord], dataset: Dataset, unit: re.Pattern[str] | None) -> list[InspectedImage]:
    scales = capture_scales(dataset)
    return [InspectedImage(r.image_id, r.image, r.label, r.mask, r.defect, r.roi, scales.get(r.image_id),
                           unit_of(r.image_id, unit)) for r in records]


def images_from_arguments(arguments: Sequence[str], unit: re.Pattern[str] | None = None,
                          roi: Path | None = None) -> list[InspectedImage]:
    """Files as given (whatever their content: a broken one gets an error row), folders' image
    files in name order, and every row of a manifest (`.csv` / `.parquet`, or `manifest:PATH`, with
    its regions of interest and capture scales). `roi` is the region of interest of files and
    folders (a mask of the captures' aspect ratio, as on a fixture)."""
    found: list[InspectedImage] = []
    for argument in arguments:
        path = Path(argument.removeprefix("manifest:"))
        if argument.startswith("manifest:") or (path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES):
            dataset = load_dataset(f"manifest:{path}")
            found += _inspected(dataset.records, dataset, unit)
        elif path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            found += [InspectedImage(str(p.relative_to(path)), p, roi_path=roi,
                                     unit=unit_of(str(p.relative_to(path)), unit)) for p in files]
        else:
            found.append(InspectedImage(path.name, path, roi_path=roi, unit=unit_of(path.name, unit)))
    return found


def cell_dataset(cell: CellResult) -> Dataset:
    """The cell's dataset at its preset's scale."""
    return load_dataset(cell.dataset, scale=get_preset(cell.preset or "default").data_scale)


def test_split_images(cell: CellResult, unit: re.Pattern[str] | None = None) -> list[InspectedImage]:
    """The test images the cell was scored on (its dataset at its preset's scale and caps), with masks,
    regions of interest and capture scales."""
    dataset = cell_dataset(cell)
    return _inspected(cap_eval(dataset.split("test"), get_preset(cell.preset or "default").max_eval_images),
                      dataset, unit)


def kind_references(dataset: Dataset, describer: RegionDescriber | None = None) -> KindReferences:
    """The validation anomalies with masks, as the labelled regions defect kinds are guessed from."""
    regions = []
    for record in dataset.split("val"):
        if record.label == 1 and record.mask is not None:
            pixels = load_image(record.image)
            regions.append((record.image_id, record.defect, pixels, load_mask(record.mask, pixels.shape[:2]) > 0))
    return KindReferences.build(describer or RegionDescriber(), regions)
