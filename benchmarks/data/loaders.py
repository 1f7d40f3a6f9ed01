"""Dataset loaders, registered by name: `smartphone-synth`, `smartphone-synth-wild`, `elpv`,
`elpv-stratified`, `elpv-mono`, and the path-taking kinds `manifest:PATH`, `folder:PATH`, `mvtec:PATH/CATEGORY`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks.data.manifest import build_dataset, load_manifest, records_to_table
from benchmarks.data.registry import DATASETS, PATH_KINDS, DatasetLoader, DatasetRequest
from benchmarks.data.schema import NORMAL_DEFECT, Dataset, ImageRecord

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
NORMAL_FOLDERS = ("good", "normal", "ok")




def load_dataset(spec: str, scale: float = 1.0) -> Dataset:
    """Load `spec` (a registered name or `kind:PATH`); raises UnknownNameError / ManifestError."""
    kind, _, argument = spec.partition(":")
    if kind in PATH_KINDS:
        if not argument:
            raise ValueError(f"dataset {spec!r} needs a path: {kind}:PATH")
        dataset = DATASETS.get(kind)(DatasetRequest(argument, scale))
    else:
        dataset = DATASETS.get(spec)(DatasetRequest(None, scale))
    return dataset


def dataset_names() -> list[str]:
    return [n for n in DATASETS.names() if n not in PATH_KINDS] + [f"{k}:PATH" for k in PATH_KINDS]


def _smartphone(name: str, description: str, summary: str) -> DatasetLoader:
    def load(request: DatasetRequest) -> Dataset:
        from benchmarks.data.smartphone.generate import DATASET_PROTOCOLS, cached_smartphone_synth

        manifest = cached_smartphone_synth(seed=0, scale=request.scale, protocol=DATASET_PROTOCOLS[name])
        return _rename(load_manifest(manifest, name=name), name, "smartphone", description)

    load.__doc__ = f"Embedded smartphone benchmark, {summary} (rendered once, cached; docs/datacard-smartphone-synth.md)."
    return load


DATASETS.register("smartphone-synth")(
    _smartphone("smartphone-synth", "a QC-station photo of a smartphone's display and frame",
                "QC-station captures at 384x768")
)
DATASETS.register("smartphone-synth-wild")(
    _smartphone("smartphone-synth-wild", "a front-view photo of a smartphone display and frame",
                "consumer photos at 512x768")
)


@DATASETS.register("manifest")
def manifest_dataset(request: DatasetRequest) -> Dataset:
    """A user's own table (CSV/Parquet) in the manifest schema."""
    assert request.argument is not None
    return load_manifest(Path(request.argument), name=f"manifest:{request.argument}")


@DATASETS.register("folder")
def folder_dataset(request: DatasetRequest) -> Dataset:
    """`PATH/{train,val,test}/{good|normal|ok|<defect>}/*` with optional `PATH/ground_truth/<defect>/<stem>*`.

    Missing `val` is an error here (no threshold data): use `mvtec:` for MVTec-style folders.
    """
    assert request.argument is not None
    root = Path(request.argument).resolve()
    records = _scan_folder(root, ("train", "val", "test"))
    return _validated(root, records, name=f"folder:{request.argument}", class_name=root.name)


@DATASETS.register("mvtec")
def mvtec_dataset(request: DatasetRequest) -> Dataset:
    """MVTec AD layout `PATH/CATEGORY/{train/good, test/<defect>, ground_truth/<defect>}`.

    MVTec has no validation split. To keep the threshold off the test images, a seeded,
    stratified 20 % of the test images (per defect type) becomes `val` and is removed from test;
    published numbers use the full test set, so compare AUROC with that caveat.
    """
    assert request.argument is not None
    root = Path(request.argument).resolve()
    records = _scan_folder(root, ("train", "test"))
    rng = np.random.default_rng(0)
    by_defect: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        if r.split == "test":
            by_defect.setdefault(r.defect, []).append(i)
    moved: set[int] = set()
    for indices in by_defect.values():
        take = max(1, round(0.2 * len(indices))) if len(indices) > 1 else 0
        moved.update(rng.choice(indices, size=take, replace=False).tolist())
    records = [_with_split(r, "val") if i in moved else r for i, r in enumerate(records)]
    return _validated(root, records, name=f"mvtec:{request.argument}", class_name=root.name.replace("_", " "))


def _scan_folder(root: Path, splits: tuple[str, ...]) -> list[ImageRecord]:
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {root} does not exist")
    records: list[ImageRecord] = []
    for split in splits:
        split_dir = root / split
        if not split_dir.is_dir():
            raise FileNotFoundError(f"{root}: expected a {split}/ folder")
        for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            normal = class_dir.name.lower() in NORMAL_FOLDERS
            for image in sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
                mask = None if normal else _find_mask(root, class_dir.name, image.stem)
                records.append(
                    ImageRecord(
                        row=len(records) + 1,
                        image_id=image.relative_to(root).as_posix(),
                        image=image,
                        label=0 if normal else 1,
                        split=split,
                        source="real",
                        group=root.name,
                        defect=NORMAL_DEFECT if normal else class_dir.name.lower(),
                        hard_negative=False,
                        mask=mask,
                    )
                )
    return records


def _find_mask(root: Path, defect: str, stem: str) -> Path | None:
    """`ground_truth/<defect>/<stem>.<ext>` or `<stem>_<suffix>.<ext>` (MVTec's `000_mask.png`);
    never another image's mask whose name merely starts with the stem (`1.png` is not `10_mask.png`)."""
    folder = root / "ground_truth" / defect
    if not folder.is_dir():
        return None
    for candidate in sorted(folder.glob(f"{stem}*")):
        rest = candidate.stem[len(stem):]
        if candidate.suffix.lower() in IMAGE_SUFFIXES and (not rest or rest[0] in "_-."):
            return candidate
    return None


def _with_split(record: ImageRecord, split: str) -> ImageRecord:
    return replace(record, split=split)


def _validated(root: Path, records: list[ImageRecord], name: str, class_name: str) -> Dataset:
    """Check scanned records with the manifest validator, so every loader applies the same rules."""
    return build_dataset(records_to_table(records, root), root, name=name, source=name, class_name=class_name)


def _rename(dataset: Dataset, name: str, class_name: str, description: str) -> Dataset:
    return replace(dataset, name=name, class_name=class_name, description=description or dataset.description)


# Registers `elpv`, `elpv-stratified` and `elpv-mono` on import (elpv imports only the registry).
from benchmarks.data import elpv as _elpv  # noqa: E402,F401

__all__ = ["DATASETS", "PATH_KINDS", "DatasetLoader", "DatasetRequest", "dataset_names", "load_dataset"]
