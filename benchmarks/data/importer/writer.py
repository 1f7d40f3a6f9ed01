"""The last stage of `data import`: files into DIR, masks drawn or rewritten, `manifest.csv` rows.

Images and mask files are kept as the files they are (hard links, or copies); the loader converts
greyscale, 16-bit, palette and EXIF-rotated images. Only a mask whose defect pixels are all at or
below the loader's mask threshold (0/1-valued masks, which would read as empty) is rewritten as a
0/255 PNG, and regions from annotation files are rasterised into one 0/255 PNG per image at the
image's displayed size (`masks/<image path>.png`).
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.data.images import load_image
from benchmarks.data.importer.annotations import rasterise
from benchmarks.data.importer.checking import Checked
from benchmarks.data.importer.items import Item
from benchmarks.data.schema import SPLITS, ImageRecord


@dataclass
class Written:
    """What the writer put in DIR, for the manifest and `split.json`."""

    records: list[ImageRecord] = field(default_factory=list)
    files: Counter[str] = field(default_factory=Counter)
    rescaled: list[str] = field(default_factory=list)
    drawn: Counter[str] = field(default_factory=Counter)
    box_masks: list[str] = field(default_factory=list)


def place(source: Path, target: Path, copy: bool) -> str:
    target.parent.mkdir(parents=True, exist_ok=True)
    if not copy:
        try:
            os.link(source, target)
            return "linked"
        except OSError:
            pass
    shutil.copyfile(source, target)
    return "copied"


def write_items(out: Path, items: list[Item], split: dict[int, str], checked: list[Checked], copy: bool,
                mask_rel: Callable[[Item], str], regions: Mapping[str, Path] | None = None) -> Written:
    """Place every assigned item's image and mask under `out` and return its manifest records (rows in
    split order, then path). `mask_rel(item)` is the mask file's path below its set's root; `regions`
    maps an item's rel path to its region-of-interest mask (placed once each under `roi/`)."""
    written = Written()
    masks_written: dict[Path, Path] = {}
    rois_written: dict[Path, Path] = {}
    for source in sorted(set((regions or {}).values())):
        target = out / "roi" / source.name
        if target.exists():  # two masks of one name from different folders: keep both apart
            target = out / "roi" / f"{len(rois_written)}-{source.name}"
        written.files[place(source, target, copy)] += 1
        rois_written[source] = target
    for row, i in enumerate(sorted(split, key=lambda i: (SPLITS.index(split[i]), items[i].rel)), start=1):
        item = items[i]
        image = out / "images" / item.rel
        written.files[place(item.image, image, copy)] += 1
        mask: Path | None = None
        image_id = f"images/{item.rel}"
        if item.mask is not None:
            mask = masks_written.get(item.mask)
            if mask is None:
                relative = mask_rel(item)
                if checked[i].mask_state == "rescale":
                    mask = (out / "masks" / relative).with_suffix(".png")
                    mask.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(((load_image(item.mask).max(axis=2) > 0) * 255).astype(np.uint8)).save(mask)
                    written.rescaled.append(relative)
                else:
                    mask = out / "masks" / relative
                    written.files[place(item.mask, mask, copy)] += 1
                masks_written[item.mask] = mask
        elif item.drawing is not None and item.label == 1:
            mask = out / "masks" / f"{item.rel}.png"
            mask.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rasterise(item.drawing)).save(mask)
            written.drawn[item.drawing.kind] += 1
            if item.drawing.kind == "box":
                written.box_masks.append(image_id)
        written.records.append(ImageRecord(
            row=row, image_id=image_id, image=image, label=item.label, split=split[i], source=item.source,
            group=item.group, defect=item.defect, hard_negative=item.hard_negative, year=item.year, mask=mask,
            roi=rois_written[regions[item.rel]] if regions else None))
    return written
