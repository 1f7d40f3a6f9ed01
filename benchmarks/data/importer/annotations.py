"""Annotation files as researchers have them -> the regions of each image (`Drawing`), and their rasterising.

Read: COCO instance JSON (polygons, RLE, or a bbox where an annotation has no segmentation; several
files per set, images matched by file name), Labelme JSON (one per image: polygon, rectangle, circle
and mask shapes) and YOLO `.txt` labels (segmentation polygons or boxes, normalised to the image;
class names from a `data.yaml`/`dataset.yaml` `names:` or a `classes.txt`/`obj.names` above them).
Coordinates are taken in the image's displayed frame (EXIF orientation applied), as labelling tools
draw them. Polygons and RLE are rasterised by pycocotools, the COCO reference code, so every format
fills pixels by one rule.

Nothing is dropped unreported: an annotation naming an image that is not in the set, a region outside
the image (clipped), a shape without area (line, point), an unreadable file, each becomes an
`AnnotationProblem` (file, image, count) that the import prints and writes to `split.json`. A
declared image size that differs from the image is refused (the mask would be misplaced).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import yaml
from PIL import Image
from pycocotools import mask as coco_mask

from benchmarks.data.images import image_size
from benchmarks.data.importer.items import Drawing, Shape, defect_name, rel

EDGE_TOLERANCE = 1.0
"""Pixels a vertex may lie past the image border before the region counts as reaching outside."""
YOLO_NAME_FILES = ("data.yaml", "dataset.yaml", "data.yml", "classes.txt", "obj.names", "classes.names")


@dataclass(frozen=True)
class AnnotationProblem:
    """Something found in an annotation file that did not become (all of) a mask."""

    file: str
    image: str
    count: int
    what: str

    def __str__(self) -> str:
        return f"{self.file}: {self.what} ({self.image}: {self.count})"


@dataclass
class Annotations:
    """Every annotation file under a folder, joined to the images found there."""

    drawings: dict[Path, Drawing] = field(default_factory=dict)
    unannotated: set[Path] = field(default_factory=set)
    """Images an annotation file lists with no region (read as annotated normal)."""
    files: Counter[str] = field(default_factory=Counter)
    problems: list[AnnotationProblem] = field(default_factory=list)

    @property
    def found(self) -> bool:
        return bool(sum(self.files.values()))

    def summary(self) -> str:
        return ", ".join(f"{n} {kind}" for kind, n in sorted(self.files.items())) or "none"


class _Collector:
    """Regions per image across files, then one `Drawing` each."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.shapes: dict[Path, list[Shape]] = {}
        self.files: dict[Path, list[str]] = {}
        self.sizes: dict[Path, tuple[int, int]] = {}
        self.listed: set[Path] = set()
        self.result = Annotations()

    def size(self, image: Path) -> tuple[int, int]:
        if image not in self.sizes:
            self.sizes[image] = image_size(image)
        return self.sizes[image]

    def check_declared(self, file: Path, image: Path, height: object, width: object) -> None:
        """A declared (H, W) that differs from the image's displayed size is refused."""
        if not height or not width:
            return
        declared = (int(float(str(height))), int(float(str(width))))
        shown = self.size(image)
        if declared != shown:
            turned = " (the annotation follows the stored pixels; the image has an EXIF rotation)" \
                if declared == shown[::-1] else ""
            raise ValueError(f"{file}: declares {rel(self.root, image)} as {declared[1]}x{declared[0]} but the "
                             f"image is {shown[1]}x{shown[0]} as the loader shows it{turned}: its masks would be "
                             "misplaced")

    def add(self, file: Path, image: Path, shapes: Sequence[Shape]) -> None:
        self.listed.add(image)
        name = rel(self.root, file)
        height, width = self.size(image)
        outside = sum(1 for s in shapes if _reaches_outside(s, height, width))
        if outside:
            self.problem(file, image, outside, "region(s) reach outside the image: clipped to it")
        if shapes:
            self.shapes.setdefault(image, []).extend(shapes)
            if name not in self.files.setdefault(image, []):
                self.files[image].append(name)

    def problem(self, file: Path, image: Path | str, count: int, what: str) -> None:
        shown = image if isinstance(image, str) else rel(self.root, image)
        self.result.problems.append(AnnotationProblem(rel(self.root, file), shown, count, what))

    def finish(self) -> Annotations:
        for image, shapes in self.shapes.items():
            size = self.size(image)
            self.result.drawings[image] = Drawing(tuple(shapes), tuple(self.files[image]), size,
                                                  _main_category(shapes, size))
        self.result.unannotated = self.listed - set(self.shapes)
        return self.result


def read_annotations(root: Path, images: Sequence[Path]) -> Annotations:
    """Every COCO, Labelme and YOLO file under `root`, joined to `images` (paths under `root`)."""
    collector = _Collector(root)
    by_name: dict[str, list[Path]] = {}
    for image in images:
        by_name.setdefault(image.name.lower(), []).append(image)
    for path in sorted(root.rglob("*.json")):
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        try:
            content = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            collector.problem(path, "-", 1, f"not readable as JSON ({exc}): not used")
            continue
        if isinstance(content, dict) and {"images", "annotations"} <= set(content):
            collector.result.files["coco"] += 1
            _read_coco(collector, path, content, by_name)
        elif isinstance(content, dict) and "shapes" in content:
            collector.result.files["labelme"] += 1
            _read_labelme(collector, path, content, by_name)
    _read_yolo_files(collector, images)
    return collector.finish()


# -------------------------------------------------------------------------------------------- COCO


def _match(collector: _Collector, file: Path, name: str, by_name: dict[str, list[Path]]) -> list[Path]:
    """The image(s) a file name in an annotation means: by base name; among several, the one whose path
    ends with the name, then the one below the annotation file's folder; several byte-identical copies
    all. Nothing (reported) otherwise."""
    pure = PurePosixPath(name.replace("\\", "/"))
    candidates = by_name.get(pure.name.lower(), [])
    if len(candidates) > 1:
        tail = "/".join(pure.parts[-2:]).lower() if len(pure.parts) > 1 else None
        narrowed = [c for c in candidates if tail and c.as_posix().lower().endswith("/" + tail)]
        if len(narrowed) != 1:
            narrowed = [c for c in (narrowed or candidates) if file.parent in c.parents]
        candidates = narrowed if len(narrowed) == 1 else candidates
    if len(candidates) == 1 or (candidates and len({_digest(c) for c in candidates}) == 1):
        return candidates
    what = ("names an image that is not in the set" if not candidates else
            f"names an image that matches {len(candidates)} different files "
            f"({', '.join(rel(collector.root, c) for c in candidates[:3])})")
    collector.problem(file, name, 1, what + ": its regions are not used")
    return []


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_coco(collector: _Collector, file: Path, content: dict[str, Any], by_name: dict[str, list[Path]]) -> None:
    categories = {c.get("id"): str(c.get("name", c.get("id"))) for c in content.get("categories") or []}
    entries: dict[object, list[Path]] = {}
    for entry in content.get("images") or []:
        images = _match(collector, file, str(entry.get("file_name", "")), by_name)
        entries[entry.get("id")] = images
        for image in images:
            collector.check_declared(file, image, entry.get("height"), entry.get("width"))
            collector.add(file, image, [])
    shapes: dict[Path, list[Shape]] = {}
    dangling: Counter[object] = Counter()
    for ann in content.get("annotations") or []:
        image_id = ann.get("image_id")
        if image_id not in entries:
            dangling[image_id] += 1
            continue
        category = categories.get(ann.get("category_id"), str(ann.get("category_id", "defect")))
        for image in entries[image_id]:
            shapes.setdefault(image, []).extend(_coco_shapes(collector, file, image, ann, category))
    for image_id, count in dangling.items():
        collector.problem(file, f"image_id {image_id}", count, "annotation(s) name an image id not in 'images'")
    for image, found in shapes.items():
        collector.add(file, image, found)


def _coco_shapes(collector: _Collector, file: Path, image: Path, ann: dict[str, Any], category: str) -> list[Shape]:
    segmentation = ann.get("segmentation")
    if isinstance(segmentation, list) and segmentation:
        polygons = [tuple(float(v) for v in poly) for poly in segmentation]
        short = [p for p in polygons if len(p) < 6 or len(p) % 2]
        if short:
            collector.problem(file, image, len(short), "polygon(s) with fewer than 3 points: no area, not drawn")
        return [Shape("polygon", category, p) for p in polygons if p not in short]
    if isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
        counts = segmentation["counts"]
        size = (int(segmentation["size"][0]), int(segmentation["size"][1]))
        return [Shape("rle", category, rle_size=size,
                      rle_counts=counts if isinstance(counts, str) else tuple(int(c) for c in counts))]
    box = ann.get("bbox")
    if isinstance(box, list) and len(box) == 4:
        x, y, w, h = (float(v) for v in box)
        return [Shape("box", category, (x, y, x + w, y + h))]
    collector.problem(file, image, 1, "annotation(s) with neither segmentation nor bbox: not drawn")
    return []


# ------------------------------------------------------------------------------------------ Labelme


def _read_labelme(collector: _Collector, file: Path, content: dict[str, Any], by_name: dict[str, list[Path]]) -> None:
    for image in _labelme_images(collector, file, content, by_name):
        collector.check_declared(file, image, content.get("imageHeight"), content.get("imageWidth"))
        shapes: list[Shape] = []
        no_area: Counter[str] = Counter()
        for raw in content.get("shapes") or []:
            kind = str(raw.get("shape_type") or "polygon")
            points = [(float(x), float(y)) for x, y in raw.get("points") or []]
            category = str(raw.get("label") or "defect")
            if kind == "polygon" and len(points) >= 3:
                shapes.append(Shape("polygon", category, tuple(v for p in points for v in p)))
            elif kind == "rectangle" and len(points) == 2:
                (x0, y0), (x1, y1) = points
                shapes.append(Shape("box", category, (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))))
            elif kind == "circle" and len(points) == 2:
                shapes.append(Shape("polygon", category, _circle(points[0], points[1])))
            elif kind == "mask" and raw.get("mask") and len(points) == 2:
                shapes.append(_labelme_mask(raw["mask"], points, category, collector.size(image)))
            else:
                no_area[kind] += 1
        for kind, count in no_area.items():
            collector.problem(file, image, count, f"{kind} shape(s) without an area: not drawn")
        collector.add(file, image, shapes)


def _labelme_images(collector: _Collector, file: Path, content: dict[str, Any], by_name: dict[str, list[Path]]) -> list[Path]:
    """`imagePath` resolved beside the JSON; else the image of that name (or of the JSON's stem) in the
    JSON's folder; else the image of that name anywhere in the set (`_match`)."""
    named = str(content.get("imagePath") or "").replace("\\", "/")
    if named:
        candidate = (file.parent / named).resolve()
        for image in by_name.get(candidate.name.lower(), []):
            if image.resolve() == candidate:
                return [image]
    beside = [image for images in by_name.values() for image in images if image.parent == file.parent
              and (image.name.lower() == PurePosixPath(named).name.lower() or image.stem.lower() == file.stem.lower())]
    if len(beside) == 1:
        return beside
    if named:
        return _match(collector, file, PurePosixPath(named).name, by_name)
    stem = [image for images in by_name.values() for image in images if image.stem.lower() == file.stem.lower()]
    if len(stem) == 1:
        return stem
    collector.problem(file, file.stem, 1, "names no image (no imagePath, no image of its stem): not used")
    return []


def _circle(centre: tuple[float, float], edge: tuple[float, float], sides: int = 64) -> tuple[float, ...]:
    radius = float(np.hypot(edge[0] - centre[0], edge[1] - centre[1]))
    angles = np.linspace(0, 2 * np.pi, sides, endpoint=False)
    return tuple(v for a in angles for v in (centre[0] + radius * np.cos(a), centre[1] + radius * np.sin(a)))


def _labelme_mask(encoded: str, points: list[tuple[float, float]], category: str,
                  size: tuple[int, int]) -> Shape:
    """Labelme's `mask` shape (a PNG of the box between its two points) as an RLE of the whole image."""
    patch = np.asarray(Image.open(io.BytesIO(base64.b64decode(encoded))).convert("L")) > 0
    full = np.zeros(size, np.uint8)
    x0, y0 = (int(round(min(p[i] for p in points))) for i in (0, 1))
    h = max(0, min(patch.shape[0], size[0] - y0))
    w = max(0, min(patch.shape[1], size[1] - x0))
    full[y0:y0 + h, x0:x0 + w] = patch[:h, :w]
    rle = coco_mask.encode(np.asfortranarray(full))
    return Shape("rle", category, rle_size=size, rle_counts=rle["counts"].decode("ascii"))


# --------------------------------------------------------------------------------------------- YOLO


def _yolo_label_file(image: Path) -> Path | None:
    """`<stem>.txt` beside the image, or in the `labels/` folder parallel to its `images/` folder."""
    beside = image.with_suffix(".txt")
    if beside.is_file():
        return beside
    parts = list(image.parts)
    for index in range(len(parts) - 2, -1, -1):
        if parts[index].lower() == "images":
            swapped = Path(*parts[:index], "labels", *parts[index + 1:]).with_suffix(".txt")
            if swapped.is_file():
                return swapped
    return None


def _yolo_names(label_file: Path, root: Path) -> list[str] | None:
    """Class names from the nearest name file at or above the label file's folder (up to `root`)."""
    for folder in [label_file.parent, *label_file.parent.parents]:
        for name in YOLO_NAME_FILES:
            path = folder / name
            if path.is_file():
                if path.suffix in (".yaml", ".yml"):
                    names = (yaml.safe_load(path.read_text()) or {}).get("names")
                    if isinstance(names, dict):
                        return [str(names[k]) for k in sorted(names, key=int)]
                    if isinstance(names, list):
                        return [str(n) for n in names]
                else:
                    return [line.strip() for line in path.read_text().splitlines() if line.strip()]
        if folder == root:
            break
    return None


def _read_yolo_files(collector: _Collector, images: Iterable[Path]) -> None:
    for image in images:
        label_file = _yolo_label_file(image)
        if label_file is None:
            continue
        collector.result.files["yolo"] += 1
        names = _yolo_names(label_file, collector.root)
        height, width = collector.size(image)
        shapes: list[Shape] = []
        bad = 0
        for line in label_file.read_text().splitlines():
            values = line.split()
            if not values:
                continue
            try:
                cls, coords = int(float(values[0])), [float(v) for v in values[1:]]
            except ValueError:
                bad += 1
                continue
            category = names[cls] if names is not None and 0 <= cls < len(names) else str(cls)
            if len(coords) == 4:
                cx, cy, w, h = coords
                shapes.append(Shape("box", category, ((cx - w / 2) * width, (cy - h / 2) * height,
                                                      (cx + w / 2) * width, (cy + h / 2) * height)))
            elif len(coords) >= 6 and len(coords) % 2 == 0:
                shapes.append(Shape("polygon", category, tuple(
                    v * (width if k % 2 == 0 else height) for k, v in enumerate(coords))))
            else:
                bad += 1
        if bad:
            collector.problem(label_file, image, bad, "line(s) that are neither a box nor a polygon: not drawn")
        collector.add(label_file, image, shapes)


# ---------------------------------------------------------------------------------------- geometry


def _reaches_outside(shape: Shape, height: int, width: int) -> bool:
    if shape.kind == "rle":
        return shape.rle_size != (height, width)
    xs, ys = np.asarray(shape.points[0::2]), np.asarray(shape.points[1::2])
    return bool((xs < -EDGE_TOLERANCE).any() or (ys < -EDGE_TOLERANCE).any()
                or (xs > width + EDGE_TOLERANCE).any() or (ys > height + EDGE_TOLERANCE).any())


def _rle_object(shape: Shape) -> dict[str, Any]:
    """pycocotools' RLE object of an "rle" shape (an uncompressed run list is encoded first)."""
    height, width = shape.rle_size
    if isinstance(shape.rle_counts, str):
        return {"size": [height, width], "counts": shape.rle_counts.encode("ascii")}
    encoded: dict[str, Any] = coco_mask.frPyObjects({"size": [height, width], "counts": list(shape.rle_counts)},
                                                    height, width)
    return encoded


def shape_pixels(shape: Shape, size: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: the pixels the region covers, clipped to the image."""
    height, width = size
    if shape.kind == "box":
        x0, y0, x1, y1 = shape.points
        pixels = np.zeros(size, bool)
        pixels[max(0, int(np.floor(y0))):max(0, int(np.ceil(y1))), max(0, int(np.floor(x0))):max(0, int(np.ceil(x1)))] = True
        return pixels
    if shape.kind == "rle":
        decoded = np.asarray(coco_mask.decode(_rle_object(shape))).astype(bool)
        pixels = np.zeros(size, bool)
        h, w = min(height, decoded.shape[0]), min(width, decoded.shape[1])
        pixels[:h, :w] = decoded[:h, :w]
        return pixels
    rles = coco_mask.frPyObjects([list(shape.points)], height, width)
    return np.asarray(coco_mask.decode(coco_mask.merge(rles))).astype(bool)


def rasterise(drawing: Drawing) -> np.ndarray:
    """(H, W) uint8 0/255: the union of the drawing's regions at the image's displayed size."""
    pixels = np.zeros(drawing.size, bool)
    for shape in drawing.shapes:
        pixels |= shape_pixels(shape, drawing.size)
    return pixels.astype(np.uint8) * 255


def _main_category(shapes: Sequence[Shape], size: tuple[int, int]) -> str:
    """The defect type of an image: the category whose regions cover most pixels (ties by name)."""
    area: Counter[str] = Counter()
    for shape in shapes:
        area[defect_name(shape.category)] += int(shape_pixels(shape, size).sum())
    return min(area, key=lambda c: (-area[c], c))
