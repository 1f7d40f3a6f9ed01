"""The gallery's test images and ground-truth masks, found under the cell's `dataset_root` and read."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.data.images import ImageDecodeError, load_image, load_mask
from benchmarks.data.manifest import read_table

log = logging.getLogger(__name__)


def ground_truth_masks(dataset: str, root: Path | None, test: pd.DataFrame) -> dict[str, Path]:
    """image_id -> mask file: from a `mask` column of the scores, else the manifest in `root`, else
    the MVTec / folder layout `root/ground_truth/<defect>/<stem>*`."""
    if root is None:
        return {}
    images = test["image"] if "image" in test else test["image_id"]
    if "mask" in test:
        found = dict(zip(test["image_id"], test["mask"], strict=True))
    else:
        table = _manifest_table(dataset, root)
        if table is not None and {"image", "mask"} <= set(table.columns):
            by_image = dict(zip(table["image"].astype(str), table["mask"], strict=True))
            found = {i: by_image.get(str(image)) for i, image in zip(test["image_id"], images, strict=True)}
        elif "defect" in test:
            folders = {
                i: root / "ground_truth" / str(d)
                for i, d in zip(test["image_id"], test["defect"], strict=True)
            }
            found = {
                i: next(iter(sorted(folder.glob(f"{Path(i).stem}*"))), None)
                for i, folder in folders.items()
                if folder.is_dir()
            }
        else:
            found = {}
    masks = {}
    for image_id, relative in found.items():
        if isinstance(relative, str | Path) and str(relative).strip():
            path = (root / relative).resolve()
            if path.is_relative_to(root.resolve()) and path.is_file():
                masks[str(image_id)] = path
    return masks


def _manifest_table(dataset: str, root: Path) -> pd.DataFrame | None:
    kind, _, argument = dataset.partition(":")
    names = ([Path(argument).name] if kind == "manifest" and argument else []) + [
        "manifest.csv",
        "manifest.parquet",
    ]
    for name in names:
        if (root / name).is_file():
            try:
                return read_table(root / name)
            except (OSError, ValueError) as err:
                log.info("%s: cannot read %s for gallery masks: %s", dataset, root / name, err)
    return None


def gallery_pixels(
    root: Path | None, row: pd.Series, mask_path: Path | None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The image (RGB uint8) and its mask at the image's size; None where unreadable."""
    relative = row.get("image", row.name)
    image = mask = None
    if root is not None and isinstance(relative, str):
        path = (root / relative).resolve()
        try:
            if path.is_relative_to(root.resolve()):
                image = load_image(path)
            if mask_path is not None:
                mask = load_mask(mask_path)
        except (ImageDecodeError, OSError) as err:
            log.info("gallery: %s", err)
    return image, mask
