"""`data import SRC --out DIR`: the stages in order, and the summary the command prints.

layouts (what the folders say) -> annotations (regions from COCO / Labelme / YOLO files) -> protocol
(years, generated and hard-negative folders) -> checking (every file decoded) -> split rule -> writer
(`DIR/manifest.csv`, `images/`, `masks/`, `dataset.json`, `split.json`), then the manifest is loaded
back. Nothing is written before every check has passed.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from benchmarks.data.images import MASK_THRESHOLD
from benchmarks.data.importer.annotations import Annotations, read_annotations
from benchmarks.data.importer.checking import check_all
from benchmarks.data.importer.items import GENERIC_DEFECT, NORMAL_NAMES, Item, Scan, images_below, rel
from benchmarks.data.importer.layouts import (
    CATEGORY_LAYOUTS,
    LAYOUTS,
    SCANNERS,
    LayoutRequest,
    detect_layout,
    published_reference,
    scan_extra,
)
from benchmarks.data.importer.protocol import (
    YearRule,
    assign_years,
    generated_items,
    hard_negative_items,
    parse_test_years,
    read_years_table,
    regions_of_interest,
    year_rule_from,
)
from benchmarks.data.importer.split_rule import (
    SplitSettings,
    assert_sound,
    assign,
    deduplicate,
    describe_rule,
)
from benchmarks.data.importer.writer import write_items
from benchmarks.data.manifest import load_manifest, records_to_table
from benchmarks.data.schema import SPLITS, Dataset, ImageRecord

DEFAULT_VAL_FRACTION = 0.2
DEFAULT_TEST_FRACTION = 0.2
GENERATED_PREFIX = "generated/"
HARD_NEGATIVE_PREFIX = "hard-negatives/"


@dataclass(frozen=True)
class ImportResult:
    manifest: Path
    split_file: Path
    layout: str
    category: str | None
    counts: dict[str, dict[str, dict[str, int]]]
    notes: tuple[str, ...]
    dataset: Dataset


@dataclass(frozen=True)
class _Source:
    """One folder the import reads (SRC, or a --generated / --hard-negatives folder) and its row prefix."""

    root: Path
    prefix: str
    annotations: Annotations


def _counts(records: list[ImageRecord]) -> dict[str, dict[str, dict[str, int]]]:
    counts: dict[str, dict[str, dict[str, int]]] = {s: {"normal": {}, "anomalous": {}} for s in SPLITS}
    for (split, label, defect), n in sorted(Counter((r.split, r.label, r.defect) for r in records).items()):
        counts[split]["anomalous" if label else "normal"][defect] = n
    return counts


def _protocol_counts(records: list[ImageRecord]) -> dict[str, dict[str, object]]:
    """Per split: rows by source, hard negatives, and rows per release year."""
    table: dict[str, dict[str, object]] = {}
    for split in SPLITS:
        rows = [r for r in records if r.split == split]
        table[split] = {
            "by_source": dict(sorted(Counter(r.source for r in rows).items())),
            "hard_negatives": sum(r.hard_negative for r in rows),
            "by_year": {str(y): n for y, n in sorted(Counter(r.year for r in rows if r.year is not None).items())},
        }
    return table


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


def _with_annotations(scan: Scan, annotations: Annotations, src: Path) -> tuple[list[Item], list[str]]:
    """The scan's items with their annotated regions: an anomalous image without a mask file gets its
    drawing (and, from a generic `bad/` folder, the drawing's defect type). An annotated image in a
    normal class folder is refused; regions of images the layout did not read are counted."""
    items: list[Item] = []
    notes: list[str] = []
    contradicting: list[str] = []
    both = 0
    used: set[Path] = set()
    for item in scan.items:
        drawing = annotations.drawings.get(item.image)
        if drawing is None or item.drawing is not None:
            items.append(item)
            used.add(item.image)
            continue
        used.add(item.image)
        if item.label == 0:
            contradicting.append(item.rel)
            continue
        if item.mask is not None:
            both += 1
            items.append(item)
            continue
        defect = drawing.defect if item.defect == GENERIC_DEFECT else item.defect
        items.append(replace(item, drawing=drawing, defect=defect))
    if contradicting:
        raise ValueError(f"{len(contradicting)} image(s) in a normal class folder have annotated defect regions "
                         f"(e.g. {', '.join(contradicting[:3])}): move them to a defect folder or remove the regions")
    if both:
        notes.append(f"{both} anomalous image(s) have a mask file and annotated regions: the mask file is used")
    unread = [image for image in annotations.drawings if image not in used]
    if unread:
        notes.append(f"{len(unread)} annotated image(s) are outside what the {scan.layout} layout reads "
                     f"(e.g. {rel(src, unread[0])}): not imported")
    return items, notes


def _year_rule(years: Path | None, year_from: str | None) -> YearRule | None:
    if years is not None and year_from is not None:
        raise ValueError("give --years or --year-from, not both")
    if years is not None:
        return read_years_table(Path(years))
    return year_rule_from(year_from) if year_from is not None else None


def _extra_sources(folders: list[Path], prefix: str, src: Path, out: Path) -> list[_Source]:
    sources = []
    for number, folder in enumerate(folders):
        root = Path(folder).resolve()
        flag = "--generated" if prefix == GENERATED_PREFIX else "--hard-negatives"
        if not root.is_dir():
            raise FileNotFoundError(f"{flag} {root} does not exist")
        if root == src or src in root.parents or root in src.parents or root == out or out in root.parents:
            raise ValueError(f"{flag} {root} overlaps SRC {src} or --out {out}: give a folder beside them")
        tag = prefix if len(folders) == 1 else f"{prefix.rstrip('/')}-{number + 1}/"
        sources.append(_Source(root, tag, read_annotations(root, images_below(root))))
    return sources


def import_dataset(src: Path, out: Path, layout: str = "auto", category: str | None = None, seed: int = 0,
                   val_fraction: float = DEFAULT_VAL_FRACTION, test_fraction: float | None = None,
                   supervised_train: float = 0.0, copy: bool = False, command: str | None = None,
                   normal: list[str] | tuple[str, ...] | None = None, years: Path | None = None,
                   year_from: str | None = None, test_years: str | None = None,
                   generated: list[Path] | tuple[Path, ...] = (),
                   hard_negatives: list[Path] | tuple[Path, ...] = (), roi: Path | None = None) -> ImportResult:
    """Import the published set at `src` into `out` (new or empty); see `split_rule` for the split.

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
    normal_names = tuple(n.strip().lower() for n in normal) if normal else NORMAL_NAMES
    rule = _year_rule(years, year_from)
    held_out = parse_test_years(test_years) if test_years is not None else None
    if held_out is not None and rule is None:
        raise ValueError("--test-years needs each image's release year: give --years FILE or --year-from PATTERN")

    annotations = read_annotations(src, images_below(src))
    request = LayoutRequest(src, category, normal_names, annotations)
    chosen = detect_layout(request) if layout == "auto" else layout
    scan = SCANNERS[chosen](request)
    if normal and chosen not in ("per-class", "annotated"):
        raise ValueError(f"--normal applies to class folders; {src} is read as {chosen}, whose normal folders "
                         "are fixed by the layout")
    if scan.published and (held_out is not None or hard_negatives):
        flag = "--test-years" if held_out is not None else "--hard-negatives"
        raise ValueError(f"{flag} needs a set without a published split; {src} ({chosen}) publishes its own")
    _check_fractions(scan.published, val_fraction, test_fraction, supervised_train)
    items, notes = _with_annotations(scan, annotations, src)
    notes = list(scan.notes) + notes

    extras = _extra_sources(list(generated), GENERATED_PREFIX, src, out) \
        + _extra_sources(list(hard_negatives), HARD_NEGATIVE_PREFIX, src, out)
    for extra in extras:
        found = scan_extra(extra.root, extra.prefix, replace(request, src=extra.root, annotations=extra.annotations))
        items += generated_items(found) if extra.prefix.startswith(GENERATED_PREFIX) else hard_negative_items(found)
    roots = {extra.prefix: extra.root for extra in extras}
    if rule is not None:
        items = assign_years(items, rule, roots, required=True)

    where = f"{src} ({chosen}" + (f" category {scan.group}" if chosen in CATEGORY_LAYOUTS else "") + ")"
    real = [i for i in items if i.source == "real"]
    if not any(i.label == 0 for i in real):
        raise ValueError(f"no normal images in {where}: nothing to train a one-class method on")
    if not any(i.label == 1 for i in real):
        raise ValueError(f"no anomalous images in {where}: val and test cannot hold both classes, so no "
                         "threshold or AUROC can be computed")
    repeated = [name for name, n in Counter(i.rel for i in items).items() if n > 1]
    if repeated:
        raise ValueError(f"two images would be written to images/{repeated[0]}: rename the folder of one "
                         "(SRC and the added folders share that path)")
    regions = regions_of_interest(items, Path(roi).resolve()) if roi is not None else {}
    checked = check_all(items)
    keep, dropped = deduplicate(items, checked)
    settings = SplitSettings(seed, val_fraction, DEFAULT_TEST_FRACTION if test_fraction is None else test_fraction,
                             supervised_train, held_out)
    split = assign(items, keep, scan.published, settings)
    assert_sound(items, checked, split, settings)

    def mask_rel(item: Item) -> str:
        assert item.mask is not None
        for prefix, root in roots.items():
            if item.rel.startswith(prefix):
                return prefix + rel(root, item.mask)
        return rel(src, item.mask)

    out.mkdir(parents=True, exist_ok=True)
    written = write_items(out, items, split, checked, copy, mask_rel, regions)
    records = written.records
    manifest = out / "manifest.csv"
    records_to_table(records, out).to_csv(manifest, index=False)
    sidecar: dict[str, str] = {"class_name": scan.class_name, "description": f"imported from {src} ({chosen})"}
    reference = published_reference(chosen, scan.group if chosen in CATEGORY_LAYOUTS else None)
    if reference is not None and not supervised_train:  # labelled training anomalies: another protocol
        sidecar["published_reference"] = reference
    (out / "dataset.json").write_text(json.dumps(sidecar, indent=2) + "\n")
    hashes = {s: {f"images/{items[i].rel}": checked[i].sha256 for i in sorted(split) if split[i] == s}
              for s in SPLITS}
    counts = _counts(records)
    problems = [p for source in [annotations, *(e.annotations for e in extras)] for p in source.problems]
    if dropped:
        notes.append(f"dropped {len(dropped)} byte-identical duplicate image(s) (listed in split.json)")
    if written.rescaled:
        notes.append(f"rewrote {len(written.rescaled)} mask(s) with defect pixels at or below {MASK_THRESHOLD} as 0/255")
    if written.drawn:
        notes.append("drew masks from annotation files: " + ", ".join(f"{n} {k}" for k, n in sorted(written.drawn.items()))
                     + (" (box masks: the annotation gives boxes only)" if written.box_masks else ""))
    if problems:
        notes.append(f"{sum(p.count for p in problems)} annotation problem(s) in {len({p.file for p in problems})} "
                     f"file(s), listed in split.json (e.g. {problems[0]})")
    empty = [items[i].rel for i in sorted(split) if items[i].label == 1 and checked[i].mask_state == "empty"]
    if empty:
        notes.append(f"{len(empty)} anomalous image(s) have an all-black mask (e.g. {empty[0]}): kept; their "
                     "pixels count as normal in pixel metrics")
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
        "test_fraction": None if scan.published or held_out is not None else settings.test_fraction,
        "supervised_train": supervised_train,
        "published_split": scan.published,
        "normal_classes": list(normal_names),
        "rule": describe_rule(scan.published, settings, any(i.source == "generated" for i in items)),
        "test_years": sorted(held_out) if held_out is not None else None,
        "roi": None if roi is None else {"source": str(roi), "masks": sorted({p.name for p in regions.values()})},
        "years_from": None if rule is None else rule.described,
        "added_folders": {prefix.rstrip("/"): str(root) for prefix, root in roots.items()},
        "counts": counts,
        "protocol_counts": _protocol_counts(records),
        "notes": notes,
        "files": dict(written.files),
        "masks": {"from_files": sum(1 for r in records if r.mask is not None) - sum(written.drawn.values()),
                  "drawn": dict(written.drawn)},
        "box_masks": written.box_masks,
        "annotation_files": {source.prefix or "src": dict(source.annotations.files)
                             for source in [_Source(src, "", annotations), *extras] if source.annotations.found},
        "annotation_problems": [vars(p) for p in problems],
        "dropped_duplicates": dropped,
        "rescaled_masks": written.rescaled,
        "overlap": {"by_path": 0, "by_content": 0,
                    "guarantee": "no image path or image content (sha256) is in two splits"},
        "sha256": hashes,
    }
    split_file = out / "split.json"
    split_file.write_text(json.dumps(info, indent=2) + "\n")
    dataset = load_manifest(manifest)
    category_name = scan.group if chosen in CATEGORY_LAYOUTS else None
    return ImportResult(manifest, split_file, chosen, category_name, counts, tuple(notes), dataset)


def describe(result: ImportResult) -> list[str]:
    """The summary lines `data import` prints."""
    what = f"{result.layout}" + (f" category {result.category}" if result.category else "")
    lines = [f"imported {what}: {len(result.dataset.records)} images into {result.manifest}"]
    for split in SPLITS:
        rows = result.dataset.split(split)
        normal = sum(result.counts[split]["normal"].values())
        anomalous = result.counts[split]["anomalous"]
        defects = ", ".join(f"{d} {n}" for d, n in anomalous.items())
        extra = []
        generated = sum(r.source == "generated" for r in rows)
        hard = sum(r.hard_negative for r in rows)
        years = sorted({r.year for r in rows if r.year is not None})
        if generated:
            extra.append(f"{generated} generated")
        if hard:
            extra.append(f"{hard} hard negatives")
        if years:
            extra.append(f"years {years[0]}-{years[-1]}" if len(years) > 1 else f"year {years[0]}")
        lines.append(f"  {split:<5} {normal:>6} normal {sum(anomalous.values()):>6} anomalous"
                     + (f" ({defects})" if defects else "") + (f"; {', '.join(extra)}" if extra else ""))
    lines += [f"  note: {n}" for n in result.notes]
    lines.append(f"split rule, seed, counts and content hashes: {result.split_file}")
    lines.append(f"next: python -m benchmarks run --all --datasets manifest:{result.manifest}")
    return lines
