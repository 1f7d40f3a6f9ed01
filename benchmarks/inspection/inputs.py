"""What `inspect` reads: image files, folders of images, a manifest, or a run's own test split."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from benchmarks.data.loaders import load_dataset
from benchmarks.inspection.readings import InspectedImage
from benchmarks.results.record import CellResult
from benchmarks.running.cell import cap_eval
from benchmarks.running.presets import get_preset

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MANIFEST_SUFFIXES = (".csv", ".parquet")


def images_from_arguments(arguments: Sequence[str]) -> list[InspectedImage]:
    """Files as given (whatever their content: a broken one gets an error row), folders' image
    files in name order, and every row of a manifest (`.csv` / `.parquet`, or `manifest:PATH`)."""
    found: list[InspectedImage] = []
    for argument in arguments:
        path = Path(argument.removeprefix("manifest:"))
        if argument.startswith("manifest:") or (path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES):
            dataset = load_dataset(f"manifest:{path}")
            found += [InspectedImage(r.image_id, r.image, r.label, r.mask, r.defect) for r in dataset.records]
        elif path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            found += [InspectedImage(str(p.relative_to(path)), p) for p in files]
        else:
            found.append(InspectedImage(path.name, path))  # a missing file becomes a row saying so
    return found


def test_split_images(cell: CellResult) -> list[InspectedImage]:
    """The test images the cell was scored on (its dataset at its preset's scale and caps), with masks."""
    preset = get_preset(cell.preset or "default")
    dataset = load_dataset(cell.dataset, scale=preset.data_scale)
    return [InspectedImage(r.image_id, r.image, r.label, r.mask, r.defect)
            for r in cap_eval(dataset.split("test"), preset.max_eval_images)]
