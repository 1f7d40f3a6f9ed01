"""`data import SRC --out DIR`: a defect dataset as it is published -> a manifest with a declared split.

One job: recognise the folder layout of SRC, list its items (image, label, defect type, mask, the
split the set publishes if any, group), assign a seeded split, and write `DIR/manifest.csv`,
`DIR/split.json` (the rule, seed, counts and content hashes), `DIR/dataset.json` and the images
(hard links, or copies) so that DIR is self-contained and loads with `manifest:DIR/manifest.csv`.

The split rule (SPEC 3.1: train normal only, val with both classes, test unseen):
- A set that publishes train/test (MVTec AD, MVTec AD 2, VisA's split_csv, BTAD, KolektorSDD2):
  train = the published train normals. val = everything published as validation, the published
  train's anomalies (KolektorSDD2, a train/<defect>/ folder), and for each class val still lacks a
  seeded `val_fraction` of the published test images of that class, stratified by defect type.
  test = the rest of the published test. Deviation from the published protocols: none of MVTec AD, VisA, BTAD or
  KolektorSDD2 publishes a validation split, so val is carved out of the published test (MVTec AD
  2's validation/ holds normals only, so its val anomalies come from test_public): the remaining
  test is smaller than the published one, and AUROC on it is not the published full-test number.
  KolektorSDD2's published train anomalies are not trained on (one-class protocol) unless
  `supervised_train` asks for them.
- A set that publishes no split (per-class folders, raw VisA): every image is split, seeded and
  stratified by (label, defect): `val_fraction` and `test_fraction` of the normals go to val and
  test, the rest to train; the anomalies go to val and test in the ratio of those two fractions.
- `supervised_train` (opt-in) moves that fraction of the anomalies, stratified by defect type, into
  train as label-1 rows (the published train's anomalies first).
- Byte-identical images are one image: the copy in the earliest of train, val, test is kept and the
  others are dropped (listed in split.json), so no image content is in two splits; identical bytes
  with different labels are refused.

Images and masks are kept as the files they are (the loader converts greyscale, 16-bit, palette and
EXIF-rotated images); only a mask whose defect pixels are all at or below the loader's mask
threshold (e.g. 0/1-valued masks, which would read as empty) is rewritten as a 0/255 PNG.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
from PIL import Image

from benchmarks.data.images import MASK_THRESHOLD, ImageDecodeError, image_size, load_image, verify_image
from benchmarks.data.loaders import IMAGE_SUFFIXES, NORMAL_FOLDERS
from benchmarks.data.manifest import load_manifest, records_to_table
from benchmarks.data.schema import NORMAL_DEFECT, SPLITS, Dataset, ImageRecord

LAYOUTS = ("per-class", "mvtec-ad", "mvtec-ad2", "visa", "btad", "kolektorsdd2")
CATEGORY_LAYOUTS = ("mvtec-ad", "mvtec-ad2", "visa", "btad")
BAD_FOLDERS = ("bad", "ng", "nok", "ko", "defect", "defects", "defective", "anomaly", "anomalous", "abnormal")
"""Folders of anomalies without a defect type: their rows get defect `GENERIC_DEFECT`."""
GENERIC_DEFECT = "defect"
MASK_FOLDERS = ("masks", "mask", "ground_truth", "groundtruth", "gt")
MASK_TAILS = ("_mask", "-mask", ".mask", "_gt", "-gt", ".gt")
"""A file `<stem><tail>.<ext>` beside an image (or in a mask folder) is that image's mask."""
DEFAULT_VAL_FRACTION = 0.2
DEFAULT_TEST_FRACTION = 0.2
CHECK_THREADS = 4

LOOKED_FOR = (
    "kolektorsdd2 (train/ and test/ holding <id>.png with <id>_GT.png beside)",
    "visa (split_csv/1cls.csv, or CATEGORY/Data/Images/{Normal,Anomaly})",
    "mvtec-ad2 (CATEGORY/{train/good,validation/good,test_public})",
    "btad (NN/{train/ok,test/{ok,ko}})",
    "mvtec-ad (CATEGORY/{train/good,test/<defect>,ground_truth/<defect>})",
    "per-class ({good|normal|ok}/ beside <defect>/ or bad/ folders)",
)


PUBLISHED_CATEGORIES: dict[str, tuple[str, frozenset[str]]] = {
    "mvtec-ad": ("mvtec", frozenset({"bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut",
                                     "pill", "screw", "tile", "toothbrush", "transistor", "wood", "zipper"})),
    "visa": ("visa", frozenset({"candle", "capsules", "cashew", "chewinggum", "fryum", "macaroni1", "macaroni2",
                                "pcb1", "pcb2", "pcb3", "pcb4", "pipe_fryum"})),
}
"""A category of MVTec AD or VisA in its own layout is marked in `dataset.json` as of that kind, so the
report may set the papers' numbers beside it (`benchmarks.reporting.published`; one category, val
carved out of the published test as the `mvtec:` loader does, with the same caveat). A user's own
folders in MVTec's layout are not: their category names are not MVTec's."""


def _published_reference(layout: str, category: str | None) -> str | None:
    kind, categories = PUBLISHED_CATEGORIES.get(layout, (None, frozenset()))
    return kind if category is not None and category.lower() in categories else None


@dataclass(frozen=True)
class Item:
    """One image as the published set describes it; `published` is its published split (or None)."""

    image: Path
    rel: str
    label: int
    defect: str
    group: str
    mask: Path | None = None
    published: str | None = None


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


@dataclass(frozen=True)
class ImportResult:
    manifest: Path
    split_file: Path
    layout: str
    category: str | None
    counts: dict[str, dict[str, dict[str, int]]]
    notes: tuple[str, ...]
    dataset: Dataset


# ----------------------------------------------------------------------------------------- scanning


def _images(folder: Path) -> list[Path]:
    """Image files directly in `folder` (not masks beside them, not hidden files), sorted by name."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                  and p.suffix.lower() in IMAGE_SUFFIXES and not _is_mask_name(p))


def _is_mask_name(path: Path) -> bool:
    return path.stem.lower().endswith(MASK_TAILS)


def _child(folder: Path, *names: str) -> Path | None:
    """The sub-folder of `folder` named any of `names`, ignoring case (first match in `names` order)."""
    if not folder.is_dir():
        return None
    children = {p.name.lower(): p for p in sorted(folder.iterdir()) if p.is_dir()}
    for name in names:
        if name.lower() in children:
            return children[name.lower()]
    return None


def _path(folder: Path, *parts: str) -> Path | None:
    """`folder/parts...` matched case-insensitively, or None."""
    current: Path | None = folder
    for part in parts:
        current = _child(current, part) if current is not None else None
    return current


def _defect_name(text: str) -> str:
    name = re.sub(r"[^a-z0-9+]+", "_", text.strip().lower()).strip("_")
    if not name or name in BAD_FOLDERS or name == NORMAL_DEFECT:
        return GENERIC_DEFECT
    return name


def _find_mask(image: Path, folders: Sequence[Path | None]) -> Path | None:
    """The image's mask in the first of `folders` that has one: `<stem><tail>.<ext>` (a tail of
    `MASK_TAILS`), or in a folder other than the image's own also `<stem>.<ext>`."""
    stem = image.stem.lower()
    tails = {stem + tail for tail in MASK_TAILS}
    for folder in folders:
        if folder is None or not folder.is_dir():
            continue
        wanted = tails if folder == image.parent else tails | {stem}
        for candidate in sorted(folder.iterdir()):
            if candidate.suffix.lower() in IMAGE_SUFFIXES and candidate.stem.lower() in wanted:
                return candidate
    return None


def _rel(src: Path, path: Path) -> str:
    return path.relative_to(src).as_posix()


def _class_items(src: Path, folder: Path, published: str | None, group: str,
                 mask_folders: Callable[[str], Sequence[Path | None]], defect: str | None = None) -> list[Item]:
    """Items of one class folder; normals get no mask, anomalies the first mask found."""
    normal = folder.name.lower() in NORMAL_FOLDERS
    label_defect = NORMAL_DEFECT if normal else (defect or _defect_name(folder.name))
    items = []
    for image in _images(folder):
        mask = None if normal else _find_mask(image, mask_folders(folder.name))
        items.append(Item(image, _rel(src, image), 0 if normal else 1, label_defect, group, mask, published))
    return items


def _categories(src: Path, is_category: Callable[[Path], bool]) -> list[Path]:
    if is_category(src):
        return [src]
    return sorted(p for p in src.iterdir() if p.is_dir() and is_category(p))


def _pick_category(src: Path, layout: str, found: list[str], category: str | None) -> str | None:
    """The one category to import; a root holding several needs `--category` (one-class methods fit one)."""
    if not found:
        raise ValueError(f"{src} does not look like {layout}: no category folder found")
    if category is not None:
        if category not in found:
            raise ValueError(f"no category {category!r} in {src} ({layout}); choices: {', '.join(found)}")
        return category
    if len(found) > 1:
        raise ValueError(f"{src} holds {len(found)} {layout} categories and one-class methods fit one at a "
                         f"time: name it with --category (choices: {', '.join(found)})")
    return found[0]


def _category_dir(src: Path, layout: str, is_category: Callable[[Path], bool], category: str | None) -> Path:
    if is_category(src):
        if category is not None and category != src.name:
            raise ValueError(f"{src} is the {layout} category {src.name!r} itself; --category {category!r} "
                             f"does not match (choices: {src.name})")
        return src
    found = [p.name for p in _categories(src, is_category)]
    return src / str(_pick_category(src, layout, found, category))


def _is_mvtec(folder: Path) -> bool:
    return _path(folder, "train", "good") is not None and _child(folder, "test") is not None \
        and _child(folder, "test_public") is None


def _is_mvtec2(folder: Path) -> bool:
    return _child(folder, "test_public") is not None and _child(folder, "train") is not None


def _is_btad(folder: Path) -> bool:
    return _path(folder, "train", "ok") is not None and _child(folder, "test") is not None


def _is_visa_raw(folder: Path) -> bool:
    return _path(folder, "Data", "Images", "Normal") is not None


def _visa_csv(src: Path) -> Path | None:
    csv = src / "split_csv" / "1cls.csv"
    return csv if csv.is_file() else None


def _is_ksdd2(folder: Path) -> bool:
    train, test = _child(folder, "train"), _child(folder, "test")
    return train is not None and test is not None and any(
        p.stem.lower().endswith("_gt") for p in train.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _is_per_class(folder: Path) -> bool:
    return any(_images(p) for p in folder.iterdir() if p.is_dir() and p.name.lower() in NORMAL_FOLDERS)


def scan_per_class(src: Path, category: str | None) -> Scan:
    """`SRC/{good|normal|ok|<defect>|bad|ng|defect}/*`, masks beside (`<stem>_mask.png`, `<stem>_GT.png`,
    `<stem>.mask.png`) or in `SRC/{masks,ground_truth,gt}/<defect>/<stem>*`. No published split."""
    _no_category("per-class", category)
    mask_roots = [p for p in sorted(src.iterdir()) if p.is_dir() and p.name.lower() in MASK_FOLDERS]
    items: list[Item] = []
    notes: list[str] = []
    for folder in sorted(p for p in src.iterdir() if p.is_dir() and p not in mask_roots):
        found = _class_items(src, folder, None, src.name,
                             lambda name, f=folder: [f, *(_child(root, name) for root in mask_roots)])
        if not found:
            notes.append(f"ignored {folder.name}/: no images directly inside")
        if any(p.is_dir() for p in folder.iterdir()):
            notes.append(f"ignored the sub-folders of {folder.name}/ (class folders are read one level deep)")
        items.extend(found)
    return Scan("per-class", "class folders (no published split)", items, src.name, src.name.replace("_", " "),
                published=False, notes=notes)


def scan_mvtec_ad(src: Path, category: str | None) -> Scan:
    """MVTec AD: `CATEGORY/{train/good, test/{good,<defect>}, ground_truth/<defect>/<stem>_mask.png}`.

    A `val/` or `validation/` folder beside them (the `folder:` layout) is read as a published val."""
    root = _category_dir(src, "mvtec-ad", _is_mvtec, category)
    gt = _child(root, "ground_truth")
    items: list[Item] = []
    known = {"train", "val", "validation", "test", "ground_truth"}
    notes = [f"ignored {p.name}/: not part of the MVTec AD layout" for p in sorted(root.iterdir())
             if p.is_dir() and p.name.lower() not in known]
    for split_name, split in (("train", "train"), ("val", "val"), ("validation", "val"), ("test", "test")):
        split_dir = _child(root, split_name)
        if split_dir is None:
            continue
        for folder in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            items += _class_items(src, folder, split, root.name, lambda name: [_child(gt, name) if gt else None])
    detail = "published train/test" + (" and val" if any(i.published == "val" for i in items) else
                                          " (no validation split)")
    return Scan("mvtec-ad", detail, items, root.name,
                root.name.replace("_", " "), published=True, notes=notes)


def scan_mvtec_ad2(src: Path, category: str | None) -> Scan:
    """MVTec AD 2: `CATEGORY/{train/good, validation/good, test_public/{good,bad,ground_truth/bad}}`.

    test_private* folders publish no labels and are ignored."""
    root = _category_dir(src, "mvtec-ad2", _is_mvtec2, category)
    items: list[Item] = []
    notes = [f"ignored {p.name}/: no published labels" for p in sorted(root.iterdir())
             if p.is_dir() and p.name.lower().startswith("test_private")]
    for split_name, split in (("train", "train"), ("validation", "val"), ("test_public", "test")):
        split_dir = _child(root, split_name)
        if split_dir is None:
            continue
        gt = _child(split_dir, "ground_truth")
        for folder in sorted(p for p in split_dir.iterdir() if p.is_dir() and p != gt):
            items += _class_items(src, folder, split, root.name, lambda name, g=gt: [_child(g, name) if g else None])
    return Scan("mvtec-ad2", "published train/validation/test_public", items, root.name,
                root.name.replace("_", " "), published=True, notes=notes)


def scan_btad(src: Path, category: str | None) -> Scan:
    """BTAD: `NN/{train/ok, test/{ok,ko}, ground_truth/ko/<stem>.png}` (images .bmp or .png)."""
    root = _category_dir(src, "btad", _is_btad, category)
    gt = _child(root, "ground_truth")
    items: list[Item] = []
    for split in ("train", "test"):
        split_dir = _child(root, split)
        if split_dir is None:
            continue
        for folder in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            items += _class_items(src, folder, split, root.name, lambda name: [_child(gt, name) if gt else None])
    return Scan("btad", "published train/test (no validation split)", items, root.name, f"product {root.name}",
                published=True)


def scan_kolektorsdd2(src: Path, category: str | None) -> Scan:
    """KolektorSDD2: `{train,test}/<id>.png` with `<id>_GT.png` beside; label = the mask has a nonzero pixel.

    The published train holds anomalies too; they are not trained on (one-class) unless asked."""
    _no_category("kolektorsdd2", category)
    if not _is_ksdd2(src):
        raise ValueError(f"{src} does not look like kolektorsdd2: expected train/ and test/ holding <id>.png "
                         "with <id>_GT.png beside")
    items: list[Item] = []
    for split in ("train", "test"):
        folder = _child(src, split)
        assert folder is not None
        for image in _images(folder):
            mask = _find_mask(image, [folder])
            if mask is None:
                raise ValueError(f"{image}: no {image.stem}_GT.png beside it (KolektorSDD2 labels come from masks)")
            anomalous = bool(load_image(mask).max() > 0)
            items.append(Item(image, _rel(src, image), int(anomalous), GENERIC_DEFECT if anomalous else NORMAL_DEFECT,
                              src.name, mask if anomalous else None, split))
    return Scan("kolektorsdd2", "published train/test; labels from the _GT masks", items, src.name,
                "surface", published=True)


def scan_visa(src: Path, category: str | None) -> Scan:
    """VisA: `split_csv/1cls.csv` (object,split,label,image,mask) when present, else the raw
    `CATEGORY/Data/{Images/{Normal,Anomaly},Masks/Anomaly}` (no published split). Defect types come
    from `CATEGORY/image_anno.csv` where it is there, else `defect`."""
    csv = _visa_csv(src)
    if csv is not None:
        return _scan_visa_csv(src, csv, category)
    root = _category_dir(src, "visa", _is_visa_raw, category)
    images = _path(root, "Data", "Images")
    masks = _path(root, "Data", "Masks", "Anomaly")
    defects = _visa_defects(root)
    items: list[Item] = []
    for name, label in (("Normal", 0), ("Anomaly", 1)):
        folder = _child(images, name) if images is not None else None
        for image in _images(folder) if folder is not None else []:
            defect = NORMAL_DEFECT if label == 0 else defects.get(_visa_key(image), GENERIC_DEFECT)
            mask = _find_mask(image, [masks]) if label else None
            items.append(Item(image, _rel(src, image), label, defect, root.name, mask, None))
    return Scan("visa", "raw VisA folders (no published split)", items, root.name, root.name.replace("_", " "),
                published=False)


def _visa_key(path: Path | PurePosixPath) -> str:
    return "/".join(path.parts[-2:]).lower()


def _visa_defects(category: Path) -> dict[str, str]:
    anno = category / "image_anno.csv"
    if not anno.is_file():
        return {}
    table = pd.read_csv(anno, dtype=str, keep_default_na=False)
    if not {"image", "label"} <= set(table.columns):
        return {}
    return {_visa_key(PurePosixPath(r["image"])): _defect_name(r["label"]) for r in table.to_dict("records")
            if r["label"].strip().lower() not in ("normal", "")}


def _scan_visa_csv(src: Path, csv: Path, category: str | None) -> Scan:
    table = pd.read_csv(csv, dtype=str, keep_default_na=False)
    table.columns = [c.strip().lower() for c in table.columns]
    missing = {"object", "split", "label", "image", "mask"} - set(table.columns)
    if missing:
        raise ValueError(f"{csv}: missing column(s) {', '.join(sorted(missing))}")
    name = _pick_category(src, "visa", sorted(set(table["object"])), category)
    defects = _visa_defects(src / str(name))
    items: list[Item] = []
    for row, raw in enumerate(table.to_dict("records"), start=1):
        if raw["object"] != name:
            continue
        label = {"normal": 0, "anomaly": 1}.get(raw["label"].strip().lower())
        split = {"train": "train", "test": "test", "val": "val"}.get(raw["split"].strip().lower())
        if label is None or split is None:
            raise ValueError(f"{csv} row {row}: label must be normal/anomaly and split train/test, got "
                             f"{raw['label']!r}/{raw['split']!r}")
        image = _inside(src, raw["image"], csv, row)
        mask = _inside(src, raw["mask"], csv, row) if label and raw["mask"].strip() else None
        defect = NORMAL_DEFECT if label == 0 else defects.get(_visa_key(image), GENERIC_DEFECT)
        items.append(Item(image, _rel(src, image), label, defect, str(name), mask, split))
    return Scan("visa", "published split_csv/1cls.csv (train/test)", items, str(name), str(name).replace("_", " "),
                published=True)


def _inside(src: Path, text: str, csv: Path, row: int) -> Path:
    pure = PurePosixPath(text.strip().replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts:
        raise ValueError(f"{csv} row {row}: {text!r} is not a path inside {src}")
    path = src / Path(*pure.parts)
    if not path.is_file():
        raise FileNotFoundError(f"{csv} row {row}: {path} does not exist")
    return path


def _no_category(layout: str, category: str | None) -> None:
    if category is not None:
        raise ValueError(f"--category applies to {', '.join(CATEGORY_LAYOUTS)}; a {layout} set has no categories")


SCANNERS: dict[str, Callable[[Path, str | None], Scan]] = {
    "per-class": scan_per_class, "mvtec-ad": scan_mvtec_ad, "mvtec-ad2": scan_mvtec_ad2, "visa": scan_visa,
    "btad": scan_btad, "kolektorsdd2": scan_kolektorsdd2,
}


def detect_layout(src: Path) -> str:
    """The first layout whose markers SRC has (in `LOOKED_FOR` order); a clear error naming them all."""
    def has(is_category: Callable[[Path], bool]) -> bool:
        return bool(_categories(src, is_category))

    if _is_ksdd2(src):
        return "kolektorsdd2"
    if _visa_csv(src) is not None or has(_is_visa_raw):
        return "visa"
    for layout, test in (("mvtec-ad2", _is_mvtec2), ("btad", _is_btad), ("mvtec-ad", _is_mvtec)):
        if has(test):
            return layout
    if _is_per_class(src):
        return "per-class"
    raise ValueError(f"cannot recognise the layout of {src}: looked for {'; '.join(LOOKED_FOR)}; "
                     "name one with --layout")


# ------------------------------------------------------------------------------------------ checking


@dataclass(frozen=True)
class _Checked:
    sha256: str
    mask_state: str | None  # "keep", "rescale" (all defect pixels <= MASK_THRESHOLD) or "empty"


def _check(item: Item) -> _Checked:
    """Decode the image in full and its mask; the mask must have the image's size as `load_image` shows it."""
    verify_image(item.image)
    digest = hashlib.sha256(item.image.read_bytes()).hexdigest()
    if item.mask is None:
        return _Checked(digest, None)
    pixels = load_image(item.mask).max(axis=2)
    height, width = image_size(item.image)
    if pixels.shape != (height, width):
        raise ValueError(f"mask {item.mask} is {pixels.shape[1]}x{pixels.shape[0]} but its image {item.image} "
                         f"is {width}x{height} (as the loader shows it, EXIF orientation applied)")
    top = int(pixels.max())
    return _Checked(digest, "keep" if top > MASK_THRESHOLD else "rescale" if top > 0 else "empty")


def _check_all(items: list[Item]) -> list[_Checked]:
    def safe(item: Item) -> _Checked | str:
        try:
            return _check(item)
        except (ImageDecodeError, ValueError, OSError) as exc:
            return str(exc)

    with ThreadPoolExecutor(max_workers=CHECK_THREADS) as pool:
        results = list(pool.map(safe, items))
    errors = [r for r in results if isinstance(r, str)]
    if errors:
        more = f" (and {len(errors) - 1} more unusable file(s))" if len(errors) > 1 else ""
        raise ValueError(f"{errors[0]}{more}")
    return [r for r in results if isinstance(r, _Checked)]


PUBLISHED_ORDER = {"train": 0, "val": 1, "test": 2, None: 3}


def _deduplicate(items: list[Item], checked: list[_Checked]) -> tuple[list[int], list[dict[str, str]]]:
    """Indices to keep (one per image content: the earliest published split, then path) and the dropped."""
    first: dict[str, int] = {}
    dropped: list[dict[str, str]] = []
    order = sorted(range(len(items)), key=lambda i: (PUBLISHED_ORDER[items[i].published], items[i].rel))
    for i in order:
        digest = checked[i].sha256
        if digest not in first:
            first[digest] = i
            continue
        kept = items[first[digest]]
        if kept.label != items[i].label:
            raise ValueError(f"{items[i].image} and {kept.image} are byte-identical but labelled "
                             f"{'anomalous' if items[i].label else 'normal'} and "
                             f"{'anomalous' if kept.label else 'normal'}: fix the set before importing")
        dropped.append({"image": items[i].rel, "same_as": kept.rel})
    return sorted(first.values()), dropped


# ------------------------------------------------------------------------------------------ splitting


def _stratified_order(indices: list[int], items: list[Item], rng: np.random.Generator) -> list[int]:
    """`indices` in a seeded order that spreads every (label, defect) stratum evenly along it.

    Each stratum is shuffled and its members placed at (rank + offset) / size, offset seeded per
    stratum; so any prefix of the order holds about the same share of every stratum."""
    strata: dict[tuple[int, str], list[int]] = {}
    for i in indices:
        strata.setdefault((items[i].label, items[i].defect), []).append(i)
    keyed: list[tuple[float, float, int]] = []
    for key in sorted(strata):
        members = strata[key]
        offset = float(rng.random())
        for rank, j in enumerate(rng.permutation(len(members))):
            keyed.append(((rank + offset) / len(members), float(rng.random()), members[int(j)]))
    return [i for *_, i in sorted(keyed)]


def _at_least_one(fraction: float, n: int) -> int:
    return max(1, int(round(fraction * n))) if fraction > 0 else 0


def _counts_text(items: list[Item], indices: list[int]) -> str:
    normal = sum(1 for i in indices if items[i].label == 0)
    return f"{normal} normal and {len(indices) - normal} anomalous image(s)"


def _split_unpublished(items: list[Item], keep: list[int], rng: np.random.Generator, val_fraction: float,
                       test_fraction: float, supervised: float) -> dict[int, str]:
    split: dict[int, str] = {}
    normals = [i for i in keep if items[i].label == 0]
    anomalies = [i for i in keep if items[i].label == 1]
    n_val, n_test = _at_least_one(val_fraction, len(normals)), _at_least_one(test_fraction, len(normals))
    n_sup = _at_least_one(supervised, len(anomalies))
    rest = len(anomalies) - n_sup
    a_val = max(1, int(round(rest * val_fraction / (val_fraction + test_fraction))))
    if len(normals) - n_val - n_test < 1 or rest - a_val < 1:
        need = "3 normal and " + ("3" if supervised else "2") + " anomalous"
        raise ValueError(f"too few images to give train normals and val and test both classes: have "
                         f"{_counts_text(items, keep)}, need at least {need} (more with small fractions)")
    for position, i in enumerate(_stratified_order(normals, items, rng)):
        split[i] = "val" if position < n_val else "test" if position < n_val + n_test else "train"
    for position, i in enumerate(_stratified_order(anomalies, items, rng)):
        split[i] = "train" if position < n_sup else "val" if position < n_sup + a_val else "test"
    return split


def _split_published(items: list[Item], keep: list[int], rng: np.random.Generator, val_fraction: float,
                     supervised: float) -> dict[int, str]:
    split: dict[int, str] = {}
    train_anomalies = [i for i in keep if items[i].published == "train" and items[i].label == 1]
    test = [i for i in keep if items[i].published == "test"]
    for i in keep:
        if items[i].published == "train":
            split[i] = "train" if items[i].label == 0 else "val"
        elif items[i].published == "val":
            split[i] = "val"
    if supervised > 0:
        test_anomalies = [i for i in test if items[i].label == 1]
        n_sup = _at_least_one(supervised, len(train_anomalies) + len(test_anomalies))
        order = _stratified_order(train_anomalies, items, rng) + _stratified_order(test_anomalies, items, rng)
        if n_sup >= len(order):
            raise ValueError(f"--supervised-train {supervised} leaves no anomalies for val and test "
                             f"({len(order)} anomalous image(s))")
        moved = set(order[:n_sup])
        for i in moved:
            split[i] = "train"
        test = [i for i in test if i not in moved]
    for label, word in ((0, "normal"), (1, "anomalous")):
        if any(split.get(i) == "val" and items[i].label == label for i in keep):
            continue
        pool = [i for i in test if items[i].label == label]
        if len(pool) < 2:
            raise ValueError(f"too few images: the published test has {len(pool)} {word} image(s) left, "
                             f"need 2 to give val and test one each ({_counts_text(items, keep)} in all)")
        take = min(_at_least_one(val_fraction, len(pool)), len(pool) - 1)
        for i in _stratified_order(pool, items, rng)[:take]:
            split[i] = "val"
    for i in test:
        split.setdefault(i, "test")
    for name, label, word in (("train", 0, "normal"), ("test", 0, "normal"), ("test", 1, "anomalous")):
        if not any(s == name and items[i].label == label for i, s in split.items()):
            raise ValueError(f"too few images: no {word} image is left for {name} ({_counts_text(items, keep)} "
                             f"in all; the published train gives train its normals, the published test gives test)")
    return split


def _rule(scan: Scan, val_fraction: float, test_fraction: float, supervised: float) -> str:
    sup = (f" Train also holds a seeded {supervised:g} of the anomalies (label 1, stratified by defect type"
           f"{', the published train anomalies first' if scan.published else ''}; --supervised-train)."
           if supervised else " Train holds normals only.")
    dedup = " Byte-identical images are kept once, in the earliest of train, val, test."
    if scan.published:
        return ("train = the published train normals; val = what the set publishes as validation, plus its "
                "published train anomalies, plus, for each class val still lacks, a seeded "
                f"{val_fraction:g} of the published test images of that class stratified by defect type; "
                "test = the rest of the published test (so test is smaller than the published one)." + sup + dedup)
    return (f"no published split: seeded and stratified by (label, defect), {val_fraction:g} of the normals go "
            f"to val, {test_fraction:g} to test and the rest to train; the anomalies go to val and test in the "
            f"ratio {val_fraction:g}:{test_fraction:g}." + sup + dedup)


# ------------------------------------------------------------------------------------------- writing


def _place(source: Path, target: Path, copy: bool) -> str:
    target.parent.mkdir(parents=True, exist_ok=True)
    if not copy:
        try:
            os.link(source, target)
            return "linked"
        except OSError:
            pass
    shutil.copyfile(source, target)
    return "copied"


def _counts(records: list[ImageRecord]) -> dict[str, dict[str, dict[str, int]]]:
    counts: dict[str, dict[str, dict[str, int]]] = {s: {"normal": {}, "anomalous": {}} for s in SPLITS}
    for (split, label, defect), n in sorted(Counter((r.split, r.label, r.defect) for r in records).items()):
        counts[split]["anomalous" if label else "normal"][defect] = n
    return counts


def _check_fractions(published: bool, val_fraction: float, test_fraction: float | None, supervised: float) -> None:
    if not 0 < val_fraction < 1:
        raise ValueError(f"--val-fraction must be between 0 and 1, got {val_fraction}")
    if not 0 <= supervised < 1:
        raise ValueError(f"--supervised-train must be at least 0 and below 1, got {supervised}")
    if published and test_fraction is not None:
        raise ValueError("--test-fraction applies only to sets that publish no split; this one publishes its test")
    if test_fraction is not None and not (0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"--test-fraction must be above 0 with --val-fraction + --test-fraction below 1, got "
                         f"{test_fraction} and {val_fraction}")


def import_dataset(src: Path, out: Path, layout: str = "auto", category: str | None = None, seed: int = 0,
                   val_fraction: float = DEFAULT_VAL_FRACTION, test_fraction: float | None = None,
                   supervised_train: float = 0.0, copy: bool = False, command: str | None = None) -> ImportResult:
    """Import the published set at `src` into `out` (new or empty); see the module docstring for the rule.

    Raises ValueError / FileNotFoundError with a one-line reason for anything that cannot be made sound;
    nothing is written before every check has passed, and the written manifest is loaded back."""
    src, out = Path(src).resolve(), Path(out).resolve()
    if not src.is_dir():
        raise FileNotFoundError(f"dataset folder {src} does not exist")
    if out == src or src in out.parents:
        raise ValueError(f"--out {out} lies inside SRC {src}: choose a folder outside it")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"--out {out} is not an empty folder: choose a new one (an import never mixes with "
                         "earlier files)")
    if layout != "auto" and layout not in SCANNERS:
        raise ValueError(f"unknown layout {layout!r}; choose from auto, {', '.join(LAYOUTS)}")
    chosen = detect_layout(src) if layout == "auto" else layout
    scan = SCANNERS[chosen](src, category)
    _check_fractions(scan.published, val_fraction, test_fraction, supervised_train)
    tests = DEFAULT_TEST_FRACTION if test_fraction is None else test_fraction
    items = scan.items
    where = f"{src} ({chosen}" + (f" category {scan.group}" if chosen in CATEGORY_LAYOUTS else "") + ")"
    if not any(i.label == 0 for i in items):
        raise ValueError(f"no normal images in {where}: nothing to train a one-class method on")
    if not any(i.label == 1 for i in items):
        raise ValueError(f"no anomalous images in {where}: val and test cannot hold both classes, so no "
                         "threshold or AUROC can be computed")
    checked = _check_all(items)
    keep, dropped = _deduplicate(items, checked)
    rng = np.random.default_rng(seed)
    if scan.published:
        split = _split_published(items, keep, rng, val_fraction, supervised_train)
    else:
        split = _split_unpublished(items, keep, rng, val_fraction, tests, supervised_train)
    _assert_sound(items, checked, split, supervised_train > 0)

    out.mkdir(parents=True, exist_ok=True)
    records: list[ImageRecord] = []
    placed: Counter[str] = Counter()
    masks_written: dict[Path, Path] = {}
    rescaled: list[str] = []
    for row, i in enumerate(sorted(split, key=lambda i: (SPLITS.index(split[i]), items[i].rel)), start=1):
        item = items[i]
        image = out / "images" / item.rel
        placed[_place(item.image, image, copy)] += 1
        mask = None
        if item.mask is not None:
            mask = masks_written.get(item.mask)
            if mask is None:
                mask_rel = _rel(src, item.mask)
                if checked[i].mask_state == "rescale":
                    mask = (out / "masks" / mask_rel).with_suffix(".png")
                    mask.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(((load_image(item.mask).max(axis=2) > 0) * 255).astype(np.uint8)).save(mask)
                    rescaled.append(mask_rel)
                else:
                    mask = out / "masks" / mask_rel
                    placed[_place(item.mask, mask, copy)] += 1
                masks_written[item.mask] = mask
        records.append(ImageRecord(row=row, image_id=f"images/{item.rel}", image=image, label=item.label,
                                   split=split[i], source="real", group=item.group, defect=item.defect,
                                   hard_negative=False, mask=mask))
    manifest = out / "manifest.csv"
    records_to_table(records, out).to_csv(manifest, index=False)
    sidecar: dict[str, str] = {"class_name": scan.class_name, "description": f"imported from {src} ({chosen})"}
    reference = _published_reference(chosen, scan.group if chosen in CATEGORY_LAYOUTS else None)
    if reference is not None and not supervised_train:  # labelled training anomalies: another protocol
        sidecar["published_reference"] = reference
    (out / "dataset.json").write_text(json.dumps(sidecar, indent=2) + "\n")
    hashes = {s: {f"images/{items[i].rel}": checked[i].sha256 for i in sorted(split) if split[i] == s}
              for s in SPLITS}
    counts = _counts(records)
    notes = list(scan.notes)
    if dropped:
        notes.append(f"dropped {len(dropped)} byte-identical duplicate image(s) (listed in split.json)")
    if rescaled:
        notes.append(f"rewrote {len(rescaled)} mask(s) with defect pixels at or below {MASK_THRESHOLD} as 0/255")
    no_mask = sum(1 for r in records if r.label == 1 and r.mask is None)
    if no_mask:
        notes.append(f"{no_mask} anomalous image(s) have no mask: pixel metrics use the others")
    info = {
        "layout": chosen,
        "layout_detail": scan.detail,
        "source": str(src),
        "category": scan.group if chosen in CATEGORY_LAYOUTS else None,
        "command": command,
        "seed": seed,
        "val_fraction": val_fraction,
        "test_fraction": None if scan.published else tests,
        "supervised_train": supervised_train,
        "published_split": scan.published,
        "rule": _rule(scan, val_fraction, tests, supervised_train),
        "counts": counts,
        "notes": notes,
        "files": dict(placed),
        "dropped_duplicates": dropped,
        "rescaled_masks": rescaled,
        "overlap": {"by_path": 0, "by_content": 0,
                    "guarantee": "no image path or image content (sha256) is in two splits"},
        "sha256": hashes,
    }
    split_file = out / "split.json"
    split_file.write_text(json.dumps(info, indent=2) + "\n")
    dataset = load_manifest(manifest)
    category_name = scan.group if chosen in CATEGORY_LAYOUTS else None
    return ImportResult(manifest, split_file, chosen, category_name, counts, tuple(notes), dataset)


def _assert_sound(items: list[Item], checked: list[_Checked], split: dict[int, str], supervised: bool) -> None:
    """The guarantees, checked on the final assignment (a bug here must never reach a manifest)."""
    seen: dict[str, str] = {}
    for i, name in split.items():
        other = seen.setdefault(checked[i].sha256, name)
        if other != name:
            raise RuntimeError(f"internal error: {items[i].image} is in {name} and its content in {other}")
        if name == "train" and items[i].label == 1 and not supervised:
            raise RuntimeError(f"internal error: anomalous {items[i].image} assigned to train")
    for name in ("val", "test"):
        labels = {items[i].label for i, s in split.items() if s == name}
        if labels != {0, 1}:
            raise RuntimeError(f"internal error: the {name} split does not hold both classes")


def describe(result: ImportResult) -> list[str]:
    """The summary lines `data import` prints."""
    what = f"{result.layout}" + (f" category {result.category}" if result.category else "")
    lines = [f"imported {what}: {len(result.dataset.records)} images into {result.manifest}"]
    for split in SPLITS:
        normal = sum(result.counts[split]["normal"].values())
        anomalous = result.counts[split]["anomalous"]
        defects = ", ".join(f"{d} {n}" for d, n in anomalous.items())
        lines.append(f"  {split:<5} {normal:>6} normal {sum(anomalous.values()):>6} anomalous"
                     + (f" ({defects})" if defects else ""))
    lines += [f"  note: {n}" for n in result.notes]
    lines.append(f"split rule, seed, counts and content hashes: {result.split_file}")
    lines.append(f"next: python -m benchmarks run --all --datasets manifest:{result.manifest}")
    return lines


__all__ = ["LAYOUTS", "ImportResult", "Item", "Scan", "describe", "detect_layout", "import_dataset"]
