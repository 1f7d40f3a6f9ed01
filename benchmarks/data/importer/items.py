"""What every stage of `data import` passes on: one `Item` per image, a layout's `Scan`, and the
file helpers the layouts share (image listing, case-insensitive folders, mask matching by stem)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.data.loaders import IMAGE_SUFFIXES
from benchmarks.data.schema import NORMAL_DEFECT

NORMAL_NAMES = ("good", "normal", "ok", "free", "defect_free", "defect-free", "no_defect", "nodefect",
                "non_defective", "clean")
"""Class folders read as defect-free unless `--normal` names others (compared ignoring case)."""
BAD_FOLDERS = ("bad", "ng", "nok", "ko", "defect", "defects", "defective", "anomaly", "anomalous", "abnormal")
"""Folders of anomalies without a defect type: their rows get defect `GENERIC_DEFECT`."""
GENERIC_DEFECT = "defect"
MASK_FOLDERS = ("masks", "mask", "ground_truth", "groundtruth", "gt", "label_masks", "masks_png")
"""Folders that hold masks, never images to import (at any depth)."""
ANNOTATION_FOLDERS = ("labels", "label", "annotations", "anns", "json")
"""Folders that hold annotation files; images are not looked for inside them."""
MASK_TAILS = ("_mask", "-mask", ".mask", "_gt", "-gt", ".gt", "_label", "_seg")
"""A file `<stem><tail>.<ext>` beside an image (or in a mask folder) is that image's mask."""
PARTNER_MASK_SUFFIX = ".png"
"""`<stem>.png` beside a non-PNG `<stem>.jpg` (Magnetic Tile's `Imgs/`) is that image's mask."""


@dataclass(frozen=True)
class Shape:
    """One annotated region in image pixels (x right, y down, the image as the loader shows it).

    kind "polygon": `points` is (x1, y1, x2, y2, ...); "box": (x0, y0, x1, y1); "rle": a COCO RLE of
    `rle_size` (H, W) with `rle_counts` (a run-length list, or COCO's compressed string)."""

    kind: str
    category: str
    points: tuple[float, ...] = ()
    rle_size: tuple[int, int] = (0, 0)
    rle_counts: tuple[int, ...] | str = ()


@dataclass(frozen=True)
class Drawing:
    """The regions annotation files give one image, rasterised by the writer into a 0/255 PNG mask."""

    shapes: tuple[Shape, ...]
    files: tuple[str, ...]
    size: tuple[int, int]  # (H, W) as the loader shows the image
    defect: str  # the category covering most area

    @property
    def kind(self) -> str:
        """"box" when every region is a box (boxes-only annotations), else "polygon" or "rle"."""
        kinds = {s.kind for s in self.shapes}
        return "box" if kinds == {"box"} else "rle" if "rle" in kinds else "polygon"


@dataclass(frozen=True)
class Item:
    """One image as the published set describes it; `published` is its published split (or None).

    `mask` is a mask file; `drawing` regions from annotation files (used where there is no mask file)."""

    image: Path
    rel: str
    label: int
    defect: str
    group: str
    mask: Path | None = None
    published: str | None = None
    year: int | None = None
    source: str = "real"
    hard_negative: bool = False
    drawing: Drawing | None = None
    from_normal_folder: bool = False


@dataclass
class Scan:
    """What a layout scanner found."""

    layout: str
    detail: str
    items: list[Item]
    group: str
    class_name: str
    published: bool
    notes: list[str] = field(default_factory=list)


def is_mask_name(path: Path) -> bool:
    return path.stem.lower().endswith(MASK_TAILS)


def mask_key(path: Path) -> str:
    """The image stem a mask file belongs to: its stem without a `MASK_TAILS` tail, lower-case."""
    stem = path.stem.lower()
    for tail in MASK_TAILS:
        if stem.endswith(tail):
            return stem[: -len(tail)]
    return stem


def is_image_file(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES


def partner_masks(files: Iterable[Path]) -> set[Path]:
    """PNG files of one folder that share their stem with a non-PNG image there: masks, not images."""
    by_stem: dict[str, list[Path]] = {}
    for path in files:
        if path.suffix.lower() in IMAGE_SUFFIXES:
            by_stem.setdefault(path.stem.lower(), []).append(path)
    partners = set()
    for same in by_stem.values():
        pngs = [p for p in same if p.suffix.lower() == PARTNER_MASK_SUFFIX]
        if pngs and len(pngs) < len(same):
            partners.update(pngs)
    return partners


def images_in(folder: Path) -> list[Path]:
    """Image files directly in `folder` (not masks beside them, not hidden files), sorted by name."""
    if not folder.is_dir():
        return []
    files = [p for p in folder.iterdir() if is_image_file(p)]
    partners = partner_masks(files)
    return sorted(p for p in files if not is_mask_name(p) and p not in partners)


def skipped_folder(name: str) -> bool:
    low = name.lower()
    return low.startswith(".") or low in MASK_FOLDERS or low in ANNOTATION_FOLDERS


def images_below(folder: Path) -> list[Path]:
    """Image files at any depth below `folder`, outside mask and annotation folders, sorted by path."""
    found = images_in(folder)
    for child in sorted(p for p in folder.iterdir() if p.is_dir() and not skipped_folder(p.name)):
        found += images_below(child)
    return found


def child(folder: Path | None, *names: str) -> Path | None:
    """The sub-folder of `folder` named any of `names`, ignoring case (first match in `names` order)."""
    if folder is None or not folder.is_dir():
        return None
    children = {p.name.lower(): p for p in sorted(folder.iterdir()) if p.is_dir()}
    for name in names:
        if name.lower() in children:
            return children[name.lower()]
    return None


def path_in(folder: Path, *parts: str) -> Path | None:
    """`folder/parts...` matched case-insensitively, or None."""
    current: Path | None = folder
    for part in parts:
        current = child(current, part)
    return current


def defect_name(text: str) -> str:
    name = re.sub(r"[^a-z0-9+]+", "_", text.strip().lower()).strip("_")
    if not name or name in BAD_FOLDERS or name == NORMAL_DEFECT:
        return GENERIC_DEFECT
    return name


def rel(src: Path, path: Path) -> str:
    return path.relative_to(src).as_posix()


def find_mask(image: Path, folders: Sequence[Path | None]) -> Path | None:
    """The image's mask in the first of `folders` that has one: `<stem><tail>.<ext>` (a tail of
    `MASK_TAILS`), beside a non-PNG image also `<stem>.png`, and in a folder other than the image's
    own also `<stem>.<ext>`. Never another image's mask: the stems must be equal, not merely share a prefix."""
    stem = image.stem.lower()
    for folder in folders:
        if folder is None or not folder.is_dir():
            continue
        for candidate in sorted(folder.iterdir()):
            if candidate == image or not is_image_file(candidate):
                continue
            if folder == image.parent:
                tailed = candidate.stem.lower() != stem and mask_key(candidate) == stem
                partner = (candidate.stem.lower() == stem and candidate.suffix.lower() == PARTNER_MASK_SUFFIX
                           and image.suffix.lower() != PARTNER_MASK_SUFFIX)
                if tailed or partner:
                    return candidate
            elif mask_key(candidate) == stem:
                return candidate
    return None
