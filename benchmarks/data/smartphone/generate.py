"""Write the embedded `smartphone-synth` dataset (SPEC 3.2): images, masks, manifest, montage.

Layout of a generated folder (all paths in the manifest are relative to it):
    manifest.csv      the SPEC 3.1 columns, one row per image
    annotations.csv   per-image extras: severity, artefact kind, screen, base image of generated rows,
                      the capture's scale (mm_per_px)
    capture.json      how it was captured: protocol, frame size, JPEG quality, renderer version, seed
    images/{split}/{index:04d}.jpg   JPEG captures (file names carry no label)
    masks/{split}/{index:04d}.png    0/255 defect masks, anomalies only
    roi/{split}/{index:04d}.png      0/255 region of interest: the phone's body as rendered (no background)
    montage.png       a labelled contact sheet to eyeball the data

Every image is rendered from its own seed (dataset seed, image index), so the bytes do not depend
on the worker count or the order of rendering. The folder is written beside `out_dir` under a
temporary name and renamed at the end, so an interrupted run never leaves a half dataset.
"""

from __future__ import annotations

import csv
import json
import math
import multiprocessing
import os
import shutil
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from benchmarks.data.augment import build_augmenter
from benchmarks.data.schema import NORMAL_DEFECT
from benchmarks.data.smartphone.defects import DEFECT_KINDS, HARD_NEGATIVE_KINDS
from benchmarks.data.smartphone.designs import PhoneDesign, designs_for_years
from benchmarks.data.smartphone.render import PROTOCOLS, CaptureProtocol, render_capture

RENDERER_VERSION = "v3"  # bump whenever the rendered bytes change, to invalidate caches
TRAIN_YEARS = tuple(range(2017, 2024))
TEST_YEARS = (2024, 2025)
MANIFEST_COLUMNS = ("image", "label", "split", "source", "year", "group", "defect", "hard_negative", "mask", "roi")
ANNOTATION_COLUMNS = ("image", "severity", "artefact", "screen", "base_image", "mm_per_px")
DATASET_PROTOCOLS = {"smartphone-synth": "qc", "smartphone-synth-wild": "wild"}  # name -> capture protocol
_GENERATED = "generated"  # plan marker: the augmenter decides the defect or artefact
_SMALL_DATASET = 80  # images; below this a process pool costs more than it saves


@dataclass(frozen=True)
class SplitCounts:
    """Images of one (split, source): `normal` includes the `hard_negative` normals."""

    normal: int
    hard_negative: int
    anomaly: int


DEFAULT_COUNTS: dict[tuple[str, str], SplitCounts] = {
    ("train", "real"): SplitCounts(normal=150, hard_negative=15, anomaly=40),
    ("train", "generated"): SplitCounts(normal=20, hard_negative=20, anomaly=60),
    ("val", "real"): SplitCounts(normal=40, hard_negative=8, anomaly=30),
    ("test", "real"): SplitCounts(normal=80, hard_negative=20, anomaly=80),
}


def scaled_counts(scale: float) -> dict[tuple[str, str], SplitCounts]:
    """DEFAULT_COUNTS times `scale`, keeping every split usable.

    Test keeps both classes, at least one hard negative and one anomaly per defect kind; every
    other (split, source) keeps at least one image of each class it has.
    """
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    counts = {}
    for (split, source), c in DEFAULT_COUNTS.items():
        test, generated = split == "test", source == _GENERATED
        if generated and c.normal != c.hard_negative:  # the generator makes no plain generated normals
            raise ValueError(f"DEFAULT_COUNTS[{split}, {source}]: every generated normal is a hard negative, "
                             f"so normal ({c.normal}) must equal hard_negative ({c.hard_negative})")
        hard = round(c.hard_negative * scale)
        if test or generated:
            hard = max(1, hard)
        normal = hard if generated else max(hard + 1, 2 if test else 1, round(c.normal * scale))
        anomaly = max(len(DEFECT_KINDS) if test else 1, round(c.anomaly * scale))
        counts[split, source] = SplitCounts(normal=normal, hard_negative=hard, anomaly=anomaly)
    return counts


@dataclass(frozen=True)
class PlannedImage:
    """One image to render. defect / hard_negative are a kind, "none", or "generated"."""

    index: int
    split: str
    source: str
    design: PhoneDesign
    defect: str
    hard_negative: str
    severity: float
    base_index: int | None = None  # generated rows: the real normal they start from

    @property
    def image(self) -> str:
        return f"images/{self.split}/{self.index:04d}.jpg"

    @property
    def mask(self) -> str:
        return f"masks/{self.split}/{self.index:04d}.png"

    @property
    def roi(self) -> str:
        return f"roi/{self.split}/{self.index:04d}.png"


@dataclass(frozen=True)
class RenderedRow:
    """What the writer learned rendering one image: its manifest and annotation fields."""

    plan: PlannedImage
    defect: str
    hard_negative: bool
    has_mask: bool
    artefact: str
    screen: str
    region: tuple[int, int, int, int] | None  # x0, y0, x1, y1 of the defect or artefact
    mm_per_px: float = 0.0  # the capture's scale (render.body_mm over the body's captured height)

    @property
    def label(self) -> int:
        return int(self.defect != NORMAL_DEFECT)

    def manifest_row(self) -> list[str]:
        p = self.plan
        return [
            p.image,
            str(self.label),
            p.split,
            p.source,
            str(p.design.year),
            p.design.group,
            self.defect,
            "true" if self.hard_negative else "false",
            p.mask if self.has_mask else "",
            p.roi,
        ]

    def annotation_row(self) -> list[str]:
        p = self.plan
        severity = f"{p.severity:.3f}" if p.defect in DEFECT_KINDS else ""
        base = f"images/train/{p.base_index:04d}.jpg" if p.base_index is not None else ""
        return [p.image, severity, self.artefact, self.screen, base, f"{self.mm_per_px:.5f}"]


def _balanced(rng: np.random.Generator, items: Sequence, n: int) -> list:
    """`n` items cycling through shuffled copies of `items`, so every item appears n/len +- 1 times."""
    out: list = []
    while len(out) < n:
        out.extend(items[i] for i in rng.permutation(len(items)))
    return out[:n]


def _balanced_designs(rng: np.random.Generator, designs: Sequence[PhoneDesign], n: int) -> list[PhoneDesign]:
    """Like `_balanced`, but also interleaving years, so any prefix is balanced over years too."""
    years = sorted({d.year for d in designs})
    out: list[PhoneDesign] = []
    while len(out) < n:
        queues = {y: [d for d in designs if d.year == y] for y in years}
        queues = {y: [q[i] for i in rng.permutation(len(q))] for y, q in queues.items()}
        for k in range(max(len(q) for q in queues.values())):
            out.extend(queues[years[i]][k] for i in rng.permutation(len(years)) if k < len(queues[years[i]]))
    return out[:n]


def plan_dataset(seed: int = 0, scale: float = 1.0) -> list[PlannedImage]:
    """Every image of the dataset in manifest order, with its design, defect and severity."""
    rng = np.random.default_rng([seed, 0x5EED])
    counts = scaled_counts(scale)
    known = designs_for_years(TRAIN_YEARS)
    unseen = designs_for_years(TEST_YEARS)
    plan: list[PlannedImage] = []

    def add(split: str, source: str, designs: Sequence[PhoneDesign], c: SplitCounts) -> None:
        if source == _GENERATED:
            bases = [
                p
                for p in plan
                if p.split == "train"
                and p.source == "real"
                and p.defect == "none"
                and p.hard_negative == "none"
            ]
            for k, base in enumerate(_balanced(rng, bases, c.hard_negative + c.anomaly)):
                marker = ("none", _GENERATED) if k < c.hard_negative else (_GENERATED, "none")
                plan.append(
                    PlannedImage(len(plan), split, source, base.design, marker[0], marker[1], 0.0, base.index)
                )
            return
        hard = _balanced(rng, HARD_NEGATIVE_KINDS, c.hard_negative) + ["none"] * (c.normal - c.hard_negative)
        hard = [hard[i] for i in rng.permutation(len(hard))]
        for design, kind in zip(_balanced_designs(rng, designs, c.normal), hard, strict=True):
            plan.append(PlannedImage(len(plan), split, source, design, "none", kind, 0.0))
        kinds = _balanced(rng, DEFECT_KINDS, c.anomaly)
        for design, kind in zip(_balanced_designs(rng, designs, c.anomaly), kinds, strict=True):
            plan.append(
                PlannedImage(len(plan), split, source, design, kind, "none", float(rng.uniform(0.05, 1.0)))
            )

    add("train", "real", known, counts["train", "real"])
    add("train", _GENERATED, known, counts["train", _GENERATED])
    add("val", "real", known, counts["val", "real"])
    add("test", "real", unseen, counts["test", "real"])
    return plan


def _box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    if not mask.any():
        return None
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _render_one(job: tuple[PlannedImage, int, str, Path, str]) -> RenderedRow:
    """Render and write one planned image (runs in a worker process)."""
    item, seed, augmenter_name, root, protocol_name = job
    protocol = PROTOCOLS[protocol_name]
    artefact = item.hard_negative if item.hard_negative != "none" else item.defect
    if item.base_index is None:
        cap = render_capture(
            item.design, (seed, item.index), item.defect, item.severity, item.hard_negative, protocol=protocol
        )
        image, mask, screen = cap.image, cap.mask, cap.screen
        region = _box(cap.mask if item.defect != "none" else cap.region)
        defect = item.defect
    else:
        cap = render_capture(item.design, (seed, item.base_index), protocol=protocol)
        augmenter = build_augmenter(augmenter_name)
        rng = np.random.default_rng([seed, item.index])
        screen = cap.screen
        if item.defect == _GENERATED:
            result = augmenter.augment(cap.image, rng)
            image, mask, defect = result.image, result.mask, result.defect_type
            artefact, region = f"{augmenter_name}:{defect}", _box(mask)
        else:
            image, mask, defect = augmenter.hard_negative(cap.image, rng), None, "none"
            artefact, region = f"{augmenter_name}:hard_negative", None
    Image.fromarray(image).save(root / item.image, format="JPEG", quality=protocol.jpeg_quality)
    assert cap.roi is not None and cap.mm_per_px is not None
    Image.fromarray(cap.roi.astype(np.uint8) * 255, "L").save(root / item.roi, format="PNG")
    if defect != "none":
        assert mask is not None and mask.any(), f"{item.image}: anomaly without mask pixels"
        Image.fromarray(mask.astype(np.uint8) * 255, "L").save(root / item.mask, format="PNG")
    hard = item.hard_negative != "none"
    return RenderedRow(item, defect, hard, defect != "none", artefact, screen, region, cap.mm_per_px)


def _worker_count(workers: int | None, jobs: int) -> int:
    """Processes to use; by default one per available CPU, and none for small datasets."""
    if workers is None:
        if jobs < _SMALL_DATASET:
            return 1
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(workers, jobs))


def _pool(workers: int) -> ProcessPoolExecutor:
    """Workers forked from a clean server process that has imported this module once.

    forkserver rather than fork: the caller may already run threads (torch), which fork does not
    survive; the preload spares each worker the imports.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return ProcessPoolExecutor(workers, mp_context=context)


def generate_smartphone_synth(
    out_dir: Path,
    seed: int = 0,
    scale: float = 1.0,
    augmenter: str = "procedural",
    workers: int | None = None,
    protocol: str = "qc",
) -> Path:
    """Render the dataset into `out_dir` (which must not exist or be empty); return the manifest path.

    `scale` multiplies every count of DEFAULT_COUNTS (see `scaled_counts`); `augmenter` names the
    AUGMENTERS entry that makes the generated training rows; `protocol` names the capture protocol
    (render.PROTOCOLS: "qc" for `smartphone-synth`, "wild" for `smartphone-synth-wild`); `workers`
    processes render in parallel (None: one per available CPU, or this process alone below 80
    images; 1: this process). Output is byte-identical for the same (seed, scale, augmenter,
    protocol) whatever `workers` is.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown capture protocol {protocol!r}; expected one of {sorted(PROTOCOLS)}")
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} exists and is not empty; refusing to overwrite it")
    build_augmenter(augmenter)  # fail before rendering anything on an unknown name
    plan = plan_dataset(seed, scale)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        for split in {p.split for p in plan}:
            (tmp / "images" / split).mkdir(parents=True)
            (tmp / "masks" / split).mkdir(parents=True)
            (tmp / "roi" / split).mkdir(parents=True)
        jobs = [(p, seed, augmenter, tmp, protocol) for p in plan]
        n = _worker_count(workers, len(jobs))
        if n == 1:
            rows = [_render_one(job) for job in jobs]
        else:
            with _pool(n) as pool:
                rows = list(pool.map(_render_one, jobs, chunksize=max(1, math.ceil(len(jobs) / (4 * n)))))
        _write_csv(tmp / "manifest.csv", MANIFEST_COLUMNS, [r.manifest_row() for r in rows])
        _write_csv(tmp / "annotations.csv", ANNOTATION_COLUMNS, [r.annotation_row() for r in rows])
        _write_capture_card(tmp / "capture.json", PROTOCOLS[protocol], seed, scale, augmenter)
        write_montage(tmp, rows, tmp / "montage.png")
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir / "manifest.csv"


def _write_capture_card(path: Path, protocol: CaptureProtocol, seed: int, scale: float, augmenter: str) -> None:
    card = {
        "protocol": protocol.name,
        "description": protocol.description,
        "width": protocol.width,
        "height": protocol.height,
        "phone_height_fraction": list(protocol.phone_height),
        "jpeg_quality": protocol.jpeg_quality,
        "renderer_version": RENDERER_VERSION,
        "seed": seed,
        "scale": scale,
        "augmenter": augmenter,
    }
    path.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")


def _write_csv(path: Path, header: Sequence[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def cached_smartphone_synth(
    seed: int = 0, scale: float = 1.0, cache_dir: Path | None = None, protocol: str = "qc"
) -> Path:
    """Manifest path of the cached dataset, generating it on first use.

    Cache root: `cache_dir`, else $BENCHMARKS_CACHE, else ~/.cache/smartphone-benchmarks; the
    folder is smartphone-synth/{RENDERER_VERSION}-{protocol}-seed{seed}-scale{scale}.
    """
    root = Path(
        cache_dir or os.environ.get("BENCHMARKS_CACHE") or "~/.cache/smartphone-benchmarks"
    ).expanduser()
    folder = root / "smartphone-synth" / f"{RENDERER_VERSION}-{protocol}-seed{seed}-scale{float(scale)}"
    manifest = folder / "manifest.csv"
    if manifest.exists():
        return manifest
    try:
        return generate_smartphone_synth(folder, seed=seed, scale=scale, protocol=protocol)
    except OSError:
        if manifest.exists():  # another process finished the same dataset first
            return manifest
        raise


# ---------------------------------------------------------------- montage

_CELL_W, _CELL_H, _CAPTION, _LABEL_W, _COLUMNS = 128, 256, 14, 96, 6
_OUTLINE = (0, 255, 0)


def _outlined(image: np.ndarray, mask: np.ndarray | None, width: int = 1) -> np.ndarray:
    """Draw the boundary of `mask`, grown by 2 px so the defect itself stays visible inside it."""
    if mask is None or not mask.any():
        return image
    grown = ndimage.binary_dilation(mask, iterations=2)
    edge = grown & ~ndimage.binary_erosion(grown, iterations=width)
    out = image.copy()
    out[edge] = _OUTLINE
    return out


def _crop(image: np.ndarray, box: tuple[int, int, int, int] | None) -> np.ndarray:
    """A full-resolution _CELL_W x _CELL_H window on `box`: centred when it fits, else on its
    top-left corner (a protector edge or a keyboard ghost spans the whole screen)."""
    h, w = image.shape[:2]
    if box is None:
        cx, cy = w // 2, h // 2
    else:
        cx = (box[0] + box[2]) // 2 if box[2] - box[0] <= _CELL_W else box[0] + _CELL_W // 2 - 8
        cy = (box[1] + box[3]) // 2 if box[3] - box[1] <= _CELL_H else box[1] + _CELL_H // 2 - 8
    x0 = min(max(0, cx - _CELL_W // 2), w - _CELL_W)
    y0 = min(max(0, cy - _CELL_H // 2), h - _CELL_H)
    return image[y0 : y0 + _CELL_H, x0 : x0 + _CELL_W]


def _cell(image: np.ndarray, caption: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> Image.Image:
    cell = Image.new("RGB", (_CELL_W, _CELL_H + _CAPTION), (20, 20, 20))
    tile = Image.fromarray(image)
    if tile.size != (_CELL_W, _CELL_H):  # a whole capture, shrunk to fit with its aspect kept
        fit = min(_CELL_W / tile.width, _CELL_H / tile.height)
        tile = tile.resize((round(tile.width * fit), round(tile.height * fit)), Image.Resampling.BOX)
    cell.paste(tile, ((_CELL_W - tile.width) // 2, _CAPTION + (_CELL_H - tile.height) // 2))
    ImageDraw.Draw(cell).text((3, 1), caption, fill=(235, 235, 235), font=font)
    return cell


def write_montage(root: Path, rows: Sequence[RenderedRow], path: Path) -> None:
    """Contact sheet: a row per generation year (normals of its models), rows per defect kind
    (the whole capture with the mask outlined in green, then a full-resolution crop as captured,
    without the outline, so the faintest defect is seen as it is; low to high severity), hard
    negatives, and generated anomalies."""
    font = ImageFont.load_default(size=11)

    def load(row: RenderedRow) -> tuple[np.ndarray, np.ndarray | None]:
        image = np.asarray(Image.open(root / row.plan.image).convert("RGB"))
        mask = np.asarray(Image.open(root / row.plan.mask)) > 0 if row.has_mask else None
        return image, mask

    def pair(row: RenderedRow, caption: str) -> list[Image.Image]:
        image, mask = load(row)
        shown = _outlined(image, mask, width=2)
        return [
            _cell(shown, caption, font),
            _cell(_crop(image, row.region), "crop 1:1, as captured", font),
        ]

    sections: list[tuple[str, list[Image.Image]]] = []
    real = [r for r in rows if r.plan.source == "real"]
    for year in sorted({r.plan.design.year for r in real}):
        normals = [r for r in real if r.plan.design.year == year and r.label == 0 and not r.hard_negative]
        by_group = sorted({r.plan.design.group for r in normals})
        picks = [next(r for r in normals if r.plan.design.group == g) for g in by_group]
        picks += [r for r in normals if r not in picks][: _COLUMNS - len(picks)]
        sections.append(
            (str(year), [_cell(load(r)[0], f"{r.plan.design.group} {r.screen}", font) for r in picks])
        )
    for kind in DEFECT_KINDS:
        found = sorted((r for r in real if r.defect == kind), key=lambda r: r.plan.severity)
        picks = [found[i] for i in sorted({0, len(found) // 2, len(found) - 1})] if found else []
        cells = [c for r in picks for c in pair(r, f"{r.plan.design.group[6:]} s={r.plan.severity:.2f}")]
        sections.append((kind, cells))
    hard = [next((r for r in real if r.plan.hard_negative == k), None) for k in HARD_NEGATIVE_KINDS]
    hard_cells = [c for r in hard if r is not None for c in pair(r, r.plan.hard_negative)]
    sections.append(("hard neg.", hard_cells))
    generated = [r for r in rows if r.plan.source == _GENERATED and r.label == 1]
    seen: dict[str, RenderedRow] = {}
    for r in generated:
        seen.setdefault(r.defect, r)
    sections.append(("generated", [c for r in list(seen.values())[:3] for c in pair(r, f"gen {r.defect}")]))

    lines: list[tuple[str, list[Image.Image]]] = []
    for title, cells in sections:
        for k in range(0, max(1, len(cells)), _COLUMNS):
            lines.append((title if k == 0 else "", cells[k : k + _COLUMNS]))
    row_h = _CELL_H + _CAPTION + 4
    sheet = Image.new("RGB", (_LABEL_W + _COLUMNS * (_CELL_W + 4), len(lines) * row_h), (0, 0, 0))
    draw = ImageDraw.Draw(sheet)
    title_font = ImageFont.load_default(size=15)
    for i, (title, cells) in enumerate(lines):
        draw.text((6, i * row_h + row_h // 2 - 8), title, fill=(255, 255, 255), font=title_font)
        for j, cell in enumerate(cells):
            sheet.paste(cell, (_LABEL_W + j * (_CELL_W + 4), i * row_h))
    sheet.save(path, format="PNG")
