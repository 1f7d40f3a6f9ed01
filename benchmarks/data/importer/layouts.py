"""Folder layouts `data import` reads: each scanner lists a set's items (image, label, defect type,
mask, the split the set publishes if any, group) as `Item`s; `detect_layout` picks one.

Class folders (`per-class`) are found at any depth once a normal class is known (`--normal`, else
`items.NORMAL_NAMES`): the depth of the normal folder is the class level, every folder at that level
is a class, images are read at any depth below it, and the folders above it name the group (a phone
model in `SRC/<model>/{good,scratch}/`). Sets labelled by annotation files alone (`annotated`) read
every image: annotated = anomalous, the rest normal.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pandas as pd

from benchmarks.data.images import load_image
from benchmarks.data.importer.annotations import Annotations
from benchmarks.data.importer.items import (
    GENERIC_DEFECT,
    MASK_FOLDERS,
    NORMAL_NAMES,
    Item,
    Scan,
    child,
    defect_name,
    find_mask,
    images_below,
    images_in,
    is_image_file,
    mask_key,
    path_in,
    rel,
    skipped_folder,
)
from benchmarks.data.loaders import IMAGE_SUFFIXES
from benchmarks.data.schema import NORMAL_DEFECT

LAYOUTS = ("per-class", "annotated", "mvtec-ad", "mvtec-ad2", "visa", "btad", "kolektorsdd2")
CATEGORY_LAYOUTS = ("mvtec-ad", "mvtec-ad2", "visa", "btad")
MAX_DEPTH = 6
"""Folders deeper than this below SRC are not searched for class folders."""
IMAGE_CONTAINERS = ("images", "imgs", "img", "image", "jpegimages", "data", "pictures", "photos")
"""Folders that only hold a class's images: never a defect type."""
NORMAL_HINTS = ("free", "good", "normal", "ok", "clean", "pass", "nodefect", "no_defect", "defectless")

LOOKED_FOR = (
    "kolektorsdd2 (train/ and test/ holding <id>.png with <id>_GT.png beside)",
    "visa (split_csv/1cls.csv, or CATEGORY/Data/Images/{Normal,Anomaly})",
    "mvtec-ad2 (CATEGORY/{train/good,validation/good,test_public})",
    "btad (NN/{train/ok,test/{ok,ko}})",
    "mvtec-ad (CATEGORY/{train/good,test/<defect>,ground_truth/<defect>})",
    "per-class (a normal class folder, at any depth, beside <defect>/ folders)",
    "annotated (COCO, Labelme or YOLO annotation files naming the images)",
)


@dataclass(frozen=True)
class LayoutRequest:
    """What a scanner is told: the folder, the category to pick, the normal class names (lower-case),
    and the annotation files already read there."""

    src: Path
    category: str | None = None
    normal: tuple[str, ...] = NORMAL_NAMES
    annotations: Annotations = field(default_factory=Annotations)


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


def published_reference(layout: str, category: str | None) -> str | None:
    kind, categories = PUBLISHED_CATEGORIES.get(layout, (None, frozenset()))
    return kind if category is not None and category.lower() in categories else None


def _class_items(src: Path, folder: Path, published: str | None, group: str,
                 mask_folders: Callable[[str], Sequence[Path | None]], defect: str | None = None) -> list[Item]:
    """Items of one class folder; normals get no mask, anomalies the first mask found."""
    normal = folder.name.lower() in NORMAL_NAMES
    label_defect = NORMAL_DEFECT if normal else (defect or defect_name(folder.name))
    items = []
    for image in images_in(folder):
        mask = None if normal else find_mask(image, mask_folders(folder.name))
        items.append(Item(image, rel(src, image), 0 if normal else 1, label_defect, group, mask, published))
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
    return path_in(folder, "train", "good") is not None and child(folder, "test") is not None \
        and child(folder, "test_public") is None


def _is_mvtec2(folder: Path) -> bool:
    return child(folder, "test_public") is not None and child(folder, "train") is not None


def _is_btad(folder: Path) -> bool:
    return path_in(folder, "train", "ok") is not None and child(folder, "test") is not None


def _is_visa_raw(folder: Path) -> bool:
    return path_in(folder, "Data", "Images", "Normal") is not None


def _visa_csv(src: Path) -> Path | None:
    csv = src / "split_csv" / "1cls.csv"
    return csv if csv.is_file() else None


def _is_ksdd2(folder: Path) -> bool:
    train, test = child(folder, "train"), child(folder, "test")
    return train is not None and test is not None and any(
        p.stem.lower().endswith("_gt") for p in train.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def scan_mvtec_ad(src: Path, category: str | None) -> Scan:
    """MVTec AD: `CATEGORY/{train/good, test/{good,<defect>}, ground_truth/<defect>/<stem>_mask.png}`.

    A `val/` or `validation/` folder beside them (the `folder:` layout) is read as a published val."""
    root = _category_dir(src, "mvtec-ad", _is_mvtec, category)
    gt = child(root, "ground_truth")
    items: list[Item] = []
    known = {"train", "val", "validation", "test", "ground_truth"}
    notes = [f"ignored {p.name}/: not part of the MVTec AD layout" for p in sorted(root.iterdir())
             if p.is_dir() and p.name.lower() not in known]
    for split_name, split in (("train", "train"), ("val", "val"), ("validation", "val"), ("test", "test")):
        split_dir = child(root, split_name)
        if split_dir is None:
            continue
        for folder in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            items += _class_items(src, folder, split, root.name, lambda name: [child(gt, name) if gt else None])
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
        split_dir = child(root, split_name)
        if split_dir is None:
            continue
        gt = child(split_dir, "ground_truth")

        def masks_of(name: str, ground_truth: Path | None = gt) -> list[Path | None]:
            return [child(ground_truth, name)]

        for folder in sorted(p for p in split_dir.iterdir() if p.is_dir() and p != gt):
            items += _class_items(src, folder, split, root.name, masks_of)
    return Scan("mvtec-ad2", "published train/validation/test_public", items, root.name,
                root.name.replace("_", " "), published=True, notes=notes)


def scan_btad(src: Path, category: str | None) -> Scan:
    """BTAD: `NN/{train/ok, test/{ok,ko}, ground_truth/ko/<stem>.png}` (images .bmp or .png)."""
    root = _category_dir(src, "btad", _is_btad, category)
    gt = child(root, "ground_truth")
    items: list[Item] = []
    for split in ("train", "test"):
        split_dir = child(root, split)
        if split_dir is None:
            continue
        for folder in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            items += _class_items(src, folder, split, root.name, lambda name: [child(gt, name) if gt else None])
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
        folder = child(src, split)
        assert folder is not None
        for image in images_in(folder):
            mask = find_mask(image, [folder])
            if mask is None:
                raise ValueError(f"{image}: no {image.stem}_GT.png beside it (KolektorSDD2 labels come from masks)")
            anomalous = bool(load_image(mask).max() > 0)
            items.append(Item(image, rel(src, image), int(anomalous), GENERIC_DEFECT if anomalous else NORMAL_DEFECT,
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
    images = path_in(root, "Data", "Images")
    masks = path_in(root, "Data", "Masks", "Anomaly")
    defects = _visa_defects(root)
    items: list[Item] = []
    for name, label in (("Normal", 0), ("Anomaly", 1)):
        folder = child(images, name) if images is not None else None
        for image in images_in(folder) if folder is not None else []:
            defect = NORMAL_DEFECT if label == 0 else defects.get(_visa_key(image), GENERIC_DEFECT)
            mask = find_mask(image, [masks]) if label else None
            items.append(Item(image, rel(src, image), label, defect, root.name, mask, None))
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
    return {_visa_key(PurePosixPath(r["image"])): defect_name(r["label"]) for r in table.to_dict("records")
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
        items.append(Item(image, rel(src, image), label, defect, str(name), mask, split))
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


# ---------------------------------------------------------------------------------- class folders


def _folders(src: Path) -> list[Path]:
    """Folders under `src` (not `src`), outside mask/annotation/hidden folders, up to `MAX_DEPTH`, sorted."""
    found: list[Path] = []
    for top, dirs, _ in os.walk(src):
        depth = len(Path(top).relative_to(src).parts)
        dirs[:] = sorted(d for d in dirs if not skipped_folder(d)) if depth < MAX_DEPTH else []
        found += [Path(top) / d for d in dirs]
    return sorted(found)


def _depth(src: Path, folder: Path) -> int:
    return len(folder.relative_to(src).parts) - 1


def _class_level(src: Path, normal: Sequence[str]) -> int | None:
    """The depth of the normal class folders that hold images; None if there are none."""
    levels: dict[int, list[str]] = {}
    for folder in _folders(src):
        if folder.name.lower() in normal and images_below(folder):
            levels.setdefault(_depth(src, folder), []).append(rel(src, folder))
    if len(levels) > 1:
        seen = "; ".join(f"depth {d}: {', '.join(names[:3])}" for d, names in sorted(levels.items()))
        raise ValueError(f"normal class folders of {src} lie at different depths ({seen}): class folders must be "
                         "siblings at one level")
    return next(iter(levels)) if levels else None


class ParallelMasks:
    """Masks in mask folders (`items.MASK_FOLDERS`) anywhere in SRC, found for an image by stem.

    For an image, each ancestor folder A (nearest first) is tried: a mask folder M in A holds the
    image's mask when the mask's stem (less a mask tail) is the image's stem and every folder between
    M and the mask is also a folder between A and the image (so `ground_truth/crack/7.png` never
    serves `scratch/7.png`). The nearest A wins; two equally good masks are refused."""

    def __init__(self, src: Path) -> None:
        self.src = src
        self.index: dict[Path, dict[str, list[Path]]] = {}

    def _masks(self, folder: Path) -> dict[str, list[Path]]:
        if folder not in self.index:
            by_key: dict[str, list[Path]] = {}
            for path in sorted(folder.rglob("*")):
                if is_image_file(path):
                    by_key.setdefault(mask_key(path), []).append(path)
            self.index[folder] = by_key
        return self.index[folder]

    def find(self, image: Path) -> Path | None:
        beside = find_mask(image, [image.parent])
        if beside is not None:
            return beside
        stem = image.stem.lower()
        for ancestor in [image.parent, *image.parent.parents]:
            if ancestor != self.src and self.src not in ancestor.parents:
                break
            between = {p.lower() for p in image.parent.relative_to(ancestor).parts}
            ranked: list[tuple[int, Path]] = []
            for mask_folder in (p for p in sorted(ancestor.iterdir()) if p.is_dir() and p.name.lower() in MASK_FOLDERS):
                for mask in self._masks(mask_folder).get(stem, []):
                    parts = {p.lower() for p in mask.parent.relative_to(mask_folder).parts}
                    if parts <= between:
                        ranked.append((len(parts), mask))
            if ranked:
                best = max(n for n, _ in ranked)
                top = [m for n, m in ranked if n == best]
                if len(top) > 1:
                    raise ValueError(f"{rel(self.src, image)}: {len(top)} masks fit it equally "
                                     f"({', '.join(rel(self.src, m) for m in top[:3])}); keep one")
                return top[0]
        return None


def _shared_prefix(names: Sequence[str]) -> str:
    """A word all class folder names start with (`MT_` of `MT_Crack`, `MT_Free`): left out of defect types."""
    if len(names) < 2:
        return ""
    prefix = os.path.commonprefix([n.lower() for n in names])
    cut = max(prefix.rfind("_"), prefix.rfind("-"))
    return names[0][:cut + 1] if cut > 0 else ""


def scan_per_class(request: LayoutRequest) -> Scan:
    """Class folders at one level of SRC, the normal one(s) named by `request.normal`; images at any depth
    below a class folder; masks beside (`<stem>_mask.png`, `<stem>.png` beside `<stem>.jpg`, ...) or in
    a parallel mask folder (`ParallelMasks`). No published split."""
    src = request.src
    _no_category("per-class", request.category)
    level = _class_level(src, request.normal)
    if level is None:
        raise ValueError(nothing_recognised(src, request, "per-class"))
    masks = ParallelMasks(src)
    items: list[Item] = []
    notes: list[str] = []
    folders = _folders(src)
    classes = [f for f in folders if _depth(src, f) == level]
    shared = _shared_prefix([f.name for f in classes])
    for folder in classes:
        normal = folder.name.lower() in request.normal
        images = images_below(folder)
        if not images:
            notes.append(f"ignored {rel(src, folder)}/: no images below it")
            continue
        above = folder.relative_to(src).parts[:-1]
        group = "/".join(above) if above else src.name
        defect = NORMAL_DEFECT if normal else defect_name(folder.name[len(shared):])
        for image in images:
            mask = None if normal else masks.find(image)
            items.append(Item(image, rel(src, image), 0 if normal else 1, defect, group, mask,
                              from_normal_folder=normal))
    outside = [*images_in(src), *(i for f in folders if _depth(src, f) < level for i in images_in(f))]
    if outside:
        notes.append(f"ignored {len(outside)} image(s) outside the class folders (e.g. {rel(src, outside[0])})")
    return Scan("per-class", f"class folders at depth {level} (no published split)", items, src.name,
                src.name.replace("_", " "), published=False, notes=notes)


def scan_annotated(request: LayoutRequest) -> Scan:
    """Every image in a folder that holds an annotated image, labelled by the annotation files: an image
    with a region is anomalous (its defect type the category covering most area), any other normal.
    Folders without one annotated image (README figures, stray copies) are left out and named. Group =
    the image's first folder below SRC."""
    src = request.src
    _no_category("annotated", request.category)
    drawings = request.annotations.drawings
    if not drawings:
        raise ValueError(nothing_recognised(src, request, "annotated"))
    annotated_folders = {image.parent for image in drawings} | {i.parent for i in request.annotations.unannotated}
    items: list[Item] = []
    unlisted = 0
    left_out: Counter[str] = Counter()
    listed = set(drawings) | request.annotations.unannotated
    for image in images_below(src):
        if image.parent not in annotated_folders:
            left_out[rel(src, image.parent) if image.parent != src else "."] += 1
            continue
        parts = image.relative_to(src).parts
        group = parts[0] if len(parts) > 1 else src.name
        drawing = drawings.get(image)
        unlisted += image not in listed
        items.append(Item(image, rel(src, image), int(drawing is not None),
                          drawing.defect if drawing else NORMAL_DEFECT, group, drawing=drawing))
    notes = [f"{unlisted} image(s) named in no annotation file: read as normal"] if unlisted else []
    if left_out:
        notes.append(f"left out {sum(left_out.values())} image(s) in folder(s) without any annotated image: "
                     + ", ".join(f"{name}/ ({n})" for name, n in left_out.most_common(6)))
    return Scan("annotated", f"labels from annotation files ({request.annotations.summary()})", items, src.name,
                src.name.replace("_", " "), published=False, notes=notes)


def nothing_recognised(src: Path, request: LayoutRequest, layout: str | None = None) -> str:
    """The refusal when no layout fits: what was looked for, what SRC holds, and the flag that would work."""
    def counted(folder: Path, skip: bool) -> dict[Path, int]:
        """The folder's sub-folders that hold images (mask and annotation folders left out with `skip`),
        with their image counts, each counted once."""
        found = {p: len(images_below(p)) for p in sorted(folder.iterdir())
                 if p.is_dir() and not (skip and skipped_folder(p.name))}
        return {p: n for p, n in found.items() if n}

    candidates = counted(src, skip=True)
    if len(candidates) == 1:
        inner = counted(next(iter(candidates)), skip=False)
        candidates = inner or candidates
    seen = ", ".join(f"{rel(src, p)}/ ({n} images)" for p, n in list(candidates.items())[:12]) or "no class folders"
    hint = ""
    if candidates:
        named = [p.name for p in candidates if any(h in p.name.lower() for h in NORMAL_HINTS)]
        hint = f"; name the defect-free class folder(s) with --normal {named[0] if named else 'NAME'}"
    elif not request.annotations.found:
        hint = "; lay the images out in class folders, or put annotation files (COCO, Labelme, YOLO) beside them"
    what = f"cannot read {src} as {layout}" if layout else f"cannot recognise the layout of {src}"
    normal = ", ".join(request.normal[:6]) + ("..." if len(request.normal) > 6 else "")
    return (f"{what}: no normal images (no class folder named {normal}) and no annotated "
            f"images; saw {seen}; annotation files: {request.annotations.summary()}; layouts looked for: "
            f"{'; '.join(LOOKED_FOR)}{hint}")


Scanner = Callable[[LayoutRequest], Scan]
SCANNERS: dict[str, Scanner] = {
    "per-class": scan_per_class,
    "annotated": scan_annotated,
    "mvtec-ad": lambda r: scan_mvtec_ad(r.src, r.category),
    "mvtec-ad2": lambda r: scan_mvtec_ad2(r.src, r.category),
    "visa": lambda r: scan_visa(r.src, r.category),
    "btad": lambda r: scan_btad(r.src, r.category),
    "kolektorsdd2": lambda r: scan_kolektorsdd2(r.src, r.category),
}


def detect_layout(request: LayoutRequest) -> str:
    """The first layout whose markers SRC has (in `LOOKED_FOR` order); a refusal naming what SRC holds."""
    src = request.src

    def has(is_category: Callable[[Path], bool]) -> bool:
        return bool(_categories(src, is_category))

    if _is_ksdd2(src):
        return "kolektorsdd2"
    if _visa_csv(src) is not None or has(_is_visa_raw):
        return "visa"
    for layout, test in (("mvtec-ad2", _is_mvtec2), ("btad", _is_btad), ("mvtec-ad", _is_mvtec)):
        if has(test):
            return layout
    if _class_level(src, request.normal) is not None:
        return "per-class"
    if request.annotations.drawings:
        return "annotated"
    raise ValueError(nothing_recognised(src, request))


def scan_extra(root: Path, prefix: str, request: LayoutRequest) -> list[Item]:
    """A folder added to a set (`--generated`, `--hard-negatives`), read loosely: every image below it;
    normal if a folder on its path is a normal class name, else anomalous, its defect type from its
    annotation, else from its nearest folder below `root` that is not an image container (`images/`,
    `Imgs/`, ...), else `defect`; masks as for class folders.
    Rows get `prefix` before their path (`generated/...`), and the first folder below `root` (or its
    name) as group."""
    masks = ParallelMasks(root)
    items: list[Item] = []
    for image in images_below(root):
        folders = image.relative_to(root).parts[:-1]
        normal = any(f.lower() in request.normal for f in folders)
        drawing = None if normal else request.annotations.drawings.get(image)
        mask = None if normal or drawing is not None else masks.find(image)
        named = [f for f in folders if f.lower() not in IMAGE_CONTAINERS]
        defect = NORMAL_DEFECT if normal else drawing.defect if drawing else \
            defect_name(named[-1]) if named else GENERIC_DEFECT
        items.append(Item(image, prefix + rel(root, image), 0 if normal else 1, defect,
                          folders[0] if folders else root.name, mask, drawing=drawing, from_normal_folder=normal))
    if not items:
        raise ValueError(f"{root}: no images found below it")
    return items
