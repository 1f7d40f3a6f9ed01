"""Reading and validating a manifest table (CSV or Parquet) into a `Dataset` (SPEC 3.1).

Every problem is collected with its 1-based data-row number before anything is reported, so a
user fixes a table in one pass. Errors make the table unusable; warnings (one-class test split,
empty train split) are reported but the dataset still loads.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

import pandas as pd

from benchmarks.data.images import ALLOWED_FORMATS, ImageDecodeError, image_size, verify_image
from benchmarks.data.schema import (
    NORMAL_DEFECT,
    REQUIRED_COLUMNS,
    SOURCES,
    SPLITS,
    Dataset,
    ImageRecord,
)

TRUE_WORDS = {"true", "1", "yes", "y", "t"}
FALSE_WORDS = {"false", "0", "no", "n", "f", ""}


@dataclass(frozen=True)
class ManifestProblem:
    """One problem in a manifest; `row` is the 1-based data row (None for table-level problems)."""

    message: str
    row: int | None = None
    column: str | None = None
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        where = f"row {self.row}" if self.row is not None else "table"
        col = f" [{self.column}]" if self.column else ""
        return f"{self.severity}: {where}{col}: {self.message}"


class ManifestError(ValueError):
    """A manifest with errors; `problems` lists all of them."""

    def __init__(self, source: str, problems: list[ManifestProblem]) -> None:
        self.source = source
        self.problems = problems
        errors = [p for p in problems if p.severity == "error"]
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{source}: {len(errors)} error(s) in the dataset table:\n{lines}")


def read_table(path: Path) -> pd.DataFrame:
    """Read a CSV or Parquet manifest as strings (CSV) so validation sees what the user wrote."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} does not exist")
    if path.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(path)
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def load_manifest(path: Path, name: str | None = None, check_files: bool = True) -> Dataset:
    """Load and validate the manifest at `path`; raise ManifestError listing every error.

    An optional `dataset.json` beside the manifest may give `class_name` and `description`.
    """
    path = Path(path).resolve()
    meta = _sidecar(path.parent / "dataset.json")
    return build_dataset(
        read_table(path),
        path.parent,
        name=name or f"manifest:{path}",
        source=str(path),
        class_name=str(meta.get("class_name", "object")),
        description=str(meta.get("description", "")),
        check_files=check_files,
    )


def build_dataset(
    table: pd.DataFrame,
    root: Path,
    name: str,
    source: str,
    class_name: str = "object",
    description: str = "",
    check_files: bool = True,
) -> Dataset:
    """Validate an in-memory manifest table whose paths are relative to `root` into a Dataset."""
    records, problems = validate_table(table, root, check_files=check_files)
    if any(p.severity == "error" for p in problems):
        raise ManifestError(source, problems)
    return Dataset(
        name=name,
        root=Path(root).resolve(),
        records=tuple(records),
        class_name=class_name,
        description=description,
        extra={"manifest": source, "warnings": "; ".join(str(p) for p in problems)},
    )


def _sidecar(path: Path) -> dict[str, object]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    return data if isinstance(data, dict) else {}


def validate_table(
    table: pd.DataFrame, root: Path, check_files: bool = True, decode: bool = False
) -> tuple[list[ImageRecord], list[ManifestProblem]]:
    """Check every row of `table` (paths relative to `root`); return good records and all problems.

    With `decode` (what `data check` does) every image and mask that passed the other checks is
    also decoded in full, so that truncated files, text saved as `.png` and decompression bombs
    are named with their rows; a run reads only headers here and meets a broken file in the cell
    that decodes it (which fails with the same row-naming message).
    """
    problems: list[ManifestProblem] = []
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        problems.append(ManifestProblem(f"missing required column(s): {', '.join(missing)}"))
        return [], problems
    root = Path(root).resolve()
    records: list[ImageRecord] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(table.to_dict("records"), start=1):
        row_problems: list[ManifestProblem] = []
        record = _check_row(index, raw, root, check_files, row_problems)
        if record is not None:
            first = seen.get(record.image_id)
            if first is not None:
                row_problems.append(
                    ManifestProblem(f"duplicate of row {first} ({record.image_id})", index, "image")
                )
            else:
                seen[record.image_id] = index
        problems.extend(row_problems)
        if record is not None and not row_problems:
            records.append(record)
    if decode:
        undecodable = _decode_all(records)
        problems.extend(undecodable)
        bad_rows = {p.row for p in undecodable}
        records = [r for r in records if r.row not in bad_rows]
        problems.sort(key=lambda p: (p.row is None, p.row or 0))  # stable: a row's problems stay in order
    problems.extend(_check_splits(table, records))
    return records, problems


DECODE_THREADS = 4


def _decode_all(records: list[ImageRecord]) -> list[ManifestProblem]:
    """Fully decode every image and mask; one problem per file that cannot be decoded.

    Pillow's decoders release the GIL, so a small thread pool keeps this near disk/decode speed.
    """
    jobs = [(r.row, column, path) for r in records
            for column, path in (("image", r.image), ("mask", r.mask), ("roi", r.roi)) if path is not None]

    def decode(job: tuple[int, str, Path]) -> ManifestProblem | None:
        row, column, path = job
        try:
            verify_image(path)
        except ImageDecodeError as exc:
            return ManifestProblem(str(exc), row, column)
        return None

    with ThreadPoolExecutor(max_workers=DECODE_THREADS) as pool:
        return [p for p in pool.map(decode, jobs) if p is not None]


def _text(value: object) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    return str(value).strip()


def _check_path(
    value: str, column: str, row: int, root: Path, check_files: bool, problems: list[ManifestProblem]
) -> Path | None:
    if not value:
        problems.append(ManifestProblem("empty path", row, column))
        return None
    pure = PurePosixPath(value.replace("\\", "/"))
    if pure.is_absolute() or Path(value).is_absolute() or (len(value) > 1 and value[1] == ":"):
        problems.append(
            ManifestProblem(
                f"absolute path {value!r} is not allowed; use a path relative to the manifest", row, column
            )
        )
        return None
    if ".." in pure.parts:
        problems.append(ManifestProblem(f"path {value!r} escapes the dataset folder with '..'", row, column))
        return None
    path = root / Path(*pure.parts)
    if check_files:
        if not path.exists():
            problems.append(ManifestProblem(f"file {value!r} does not exist", row, column))
            return None
        resolved = path.resolve()
        if root not in resolved.parents:
            problems.append(
                ManifestProblem(
                    f"{value!r} resolves to {resolved}, outside the dataset folder (symlink?)", row, column
                )
            )
            return None
        if path.stat().st_size == 0:
            problems.append(ManifestProblem(f"file {value!r} is empty (0 bytes)", row, column))
            return None
    return path


def _check_row(
    row: int, raw: dict[str, object], root: Path, check_files: bool, problems: list[ManifestProblem]
) -> ImageRecord | None:
    image_text = _text(raw.get("image"))
    image = _check_path(image_text, "image", row, root, check_files, problems)
    if image is not None and image.suffix.lstrip(".").upper() not in _ALLOWED_SUFFIXES:
        problems.append(
            ManifestProblem(
                f"{image_text!r} is not an allowed image type ({', '.join(ALLOWED_FORMATS)})", row, "image"
            )
        )
        image = None

    label_text = _text(raw.get("label"))
    label = {"0": 0, "1": 1, "0.0": 0, "1.0": 1}.get(label_text)
    if label is None:
        problems.append(ManifestProblem(f"label must be 0 or 1, got {label_text!r}", row, "label"))

    split = _text(raw.get("split")).lower()
    if split not in SPLITS:
        problems.append(
            ManifestProblem(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}", row, "split")
        )

    source = _text(raw.get("source")).lower()
    if source not in SOURCES:
        problems.append(
            ManifestProblem(f"unknown source {source!r}; expected one of {', '.join(SOURCES)}", row, "source")
        )
    elif source == "generated" and split in ("val", "test"):
        problems.append(
            ManifestProblem(f"generated image in the {split} split; val and test must be real", row, "source")
        )

    hard_text = _text(raw.get("hard_negative")).lower()
    hard_negative = hard_text in TRUE_WORDS
    if hard_text not in TRUE_WORDS | FALSE_WORDS:
        problems.append(
            ManifestProblem(f"hard_negative must be true/false, got {hard_text!r}", row, "hard_negative")
        )
    elif hard_negative and label == 1:
        problems.append(ManifestProblem("hard_negative is true for an anomalous image", row, "hard_negative"))

    defect = _text(raw.get("defect")).lower() or NORMAL_DEFECT
    if label == 1 and defect == NORMAL_DEFECT:
        problems.append(
            ManifestProblem("anomalous image with defect 'none'; name the defect type", row, "defect")
        )
    if label == 0 and defect != NORMAL_DEFECT:
        problems.append(
            ManifestProblem(f"normal image with defect {defect!r}; normals use 'none'", row, "defect")
        )

    year: int | None = None
    year_text = _text(raw.get("year"))
    if year_text:
        try:
            year = int(float(year_text))
        except ValueError:
            problems.append(ManifestProblem(f"year must be an integer, got {year_text!r}", row, "year"))

    mask: Path | None = None
    mask_text = _text(raw.get("mask"))
    if mask_text:
        mask = _check_path(mask_text, "mask", row, root, check_files, problems)
        if label == 0 and mask is not None:
            problems.append(ManifestProblem("normal image with a mask", row, "mask"))
        if check_files and image is not None and mask is not None:
            _check_mask_size(row, image, mask, problems)

    roi: Path | None = None
    roi_text = _text(raw.get("roi"))
    if roi_text:
        roi = _check_path(roi_text, "roi", row, root, check_files, problems)
        if check_files and image is not None and roi is not None:
            _check_roi_shape(row, image, roi, problems)

    if image is None or label is None or split not in SPLITS or source not in SOURCES:
        return None
    return ImageRecord(
        row=row,
        image_id=image_text.replace("\\", "/"),
        image=image,
        label=label,
        split=split,
        source=source,
        group=_text(raw.get("group")) or "all",
        defect=defect,
        hard_negative=hard_negative,
        year=year,
        mask=mask,
        roi=roi,
    )


ROI_ASPECT_TOLERANCE = 0.02
"""An ROI may have any resolution (it is resized to each map), but its image's aspect ratio within this share."""


def roi_fits(image_hw: tuple[int, int], roi_hw: tuple[int, int]) -> bool:
    """Whether an ROI of size `roi_hw` (H, W) has the aspect ratio of an image of `image_hw`."""
    (ih, iw), (rh, rw) = image_hw, roi_hw
    return abs((rw / rh) / (iw / ih) - 1) <= ROI_ASPECT_TOLERANCE


def _check_roi_shape(row: int, image: Path, roi: Path, problems: list[ManifestProblem]) -> None:
    """An ROI may have any resolution (it is resized to each map) but the image's aspect ratio."""
    try:
        (ih, iw), (rh, rw) = image_size(image), image_size(roi)
    except (OSError, ImageDecodeError) as exc:
        problems.append(ManifestProblem(f"cannot read the size of the image or roi: {exc}", row, "roi"))
        return
    if not roi_fits((ih, iw), (rh, rw)):
        problems.append(ManifestProblem(f"roi is {rw}x{rh}, not the image's aspect ratio ({iw}x{ih})", row, "roi"))


_ALLOWED_SUFFIXES = {"PNG", "JPG", "JPEG", "BMP", "TIF", "TIFF", "WEBP"}


def _check_mask_size(row: int, image: Path, mask: Path, problems: list[ManifestProblem]) -> None:
    try:
        image_hw, mask_hw = image_size(image), image_size(mask)
    except (OSError, ImageDecodeError) as exc:
        problems.append(ManifestProblem(f"cannot read the size of the image or mask: {exc}", row, "mask"))
        return
    if image_hw != mask_hw:
        problems.append(
            ManifestProblem(
                f"mask is {mask_hw[1]}x{mask_hw[0]} but the image is {image_hw[1]}x{image_hw[0]}", row, "mask"
            )
        )


def _check_splits(table: pd.DataFrame, records: list[ImageRecord]) -> list[ManifestProblem]:
    problems: list[ManifestProblem] = []
    if table.empty:
        return [ManifestProblem("the table has no rows")]
    by_split = {s: [r for r in records if r.split == s] for s in SPLITS}
    if not by_split["test"]:
        problems.append(ManifestProblem("the test split is empty", column="split"))
    elif len({r.label for r in by_split["test"]}) == 1:
        only = "normal" if by_split["test"][0].label == 0 else "anomalous"
        problems.append(
            ManifestProblem(
                f"the test split has only {only} images: AUROC, AUPR and F1-max will be reported as undefined",
                column="label",
                severity="warning",
            )
        )
    if not by_split["train"]:
        problems.append(
            ManifestProblem(
                "the train split is empty: only zero-shot methods can run", column="split", severity="warning"
            )
        )
    if not by_split["val"]:
        problems.append(
            ManifestProblem(
                "the val split is empty: F1 at a validation threshold is undefined",
                column="split",
                severity="warning",
            )
        )
    return problems


def records_to_table(records: list[ImageRecord], root: Path) -> pd.DataFrame:
    """Records as a manifest table with paths relative to `root`."""
    root = Path(root).resolve()
    rows = [
        {
            "image": r.image_id,
            "label": str(r.label),
            "split": r.split,
            "source": r.source,
            "year": "" if r.year is None else str(r.year),
            "group": r.group,
            "defect": r.defect,
            "hard_negative": "true" if r.hard_negative else "false",
            "mask": "" if r.mask is None else Path(r.mask).resolve().relative_to(root).as_posix(),
            "roi": "" if r.roi is None else Path(r.roi).resolve().relative_to(root).as_posix(),
        }
        for r in records
    ]
    columns = [*REQUIRED_COLUMNS, "year", "mask"] + (["roi"] if any(r.roi is not None for r in records) else [])
    return pd.DataFrame(rows, columns=columns)[columns]
