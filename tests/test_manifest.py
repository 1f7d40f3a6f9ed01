"""Manifest validation names every bad row; loaders share the validator."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.cli import main
from benchmarks.data.loaders import load_dataset
from benchmarks.data.manifest import ManifestError, load_manifest, read_table, validate_table

HEADER = "image,label,split,source,year,group,defect,hard_negative,mask"


def _png(path: Path, size: tuple[int, int] = (16, 16), value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), value, np.uint8)).save(path)


def _write(root: Path, rows: list[str]) -> Path:
    manifest = root / "manifest.csv"
    manifest.write_text("\n".join([HEADER, *rows]) + "\n")
    return manifest


def test_every_bad_row_is_named(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for name in ("a", "b", "c", "d", "e"):
        _png(root / f"{name}.png")
    _png(root / "small_mask.png", size=(8, 8))
    (root / "empty.png").write_bytes(b"")
    outside = tmp_path / "outside.png"
    _png(outside)
    os.symlink(outside, root / "link.png")
    manifest = _write(root, [
        "a.png,0,train,real,2019,g,none,false,",              # 1 ok
        "missing.png,0,train,real,2019,g,none,false,",        # 2 missing file
        "b.png,2,train,real,2019,g,none,false,",              # 3 bad label
        "c.png,0,holdout,real,2019,g,none,false,",            # 4 unknown split
        f"{outside},0,train,real,2019,g,none,false,",          # 5 absolute path
        "../outside.png,0,train,real,2019,g,none,false,",     # 6 escape
        "link.png,0,train,real,2019,g,none,false,",           # 7 symlink leaving the folder
        "a.png,0,train,real,2019,g,none,false,",              # 8 duplicate of row 1
        "d.png,1,test,generated,2024,g,scratch,false,",       # 9 generated in test
        "e.png,1,test,real,2024,g,scratch,false,small_mask.png",  # 10 mask of the wrong size
        "empty.png,0,test,real,2024,g,none,false,",           # 11 zero-byte
        "e.png,0,val,real,twenty,g,none,maybe,",              # 12 bad year, bad hard_negative (dup of 10 too)
    ])
    _, problems = validate_table(read_table(manifest), root)
    rows = {p.row for p in problems if p.severity == "error"}
    assert rows == {*range(2, 13), None}, [str(p) for p in problems]  # None: every test row was bad
    text = "\n".join(str(p) for p in problems)
    for needle in ("does not exist", "label must be 0 or 1", "unknown split", "absolute path", "escapes",
                   "outside the dataset folder", "duplicate of row 1", "generated image in the test split",
                   "mask is 8x8 but the image is 16x16", "empty (0 bytes)", "year must be an integer",
                   "hard_negative must be true/false", "the test split is empty"):
        assert needle in text, needle
    with pytest.raises(ManifestError) as info:
        load_manifest(manifest)
    assert "row 4 [split]" in str(info.value)


def test_missing_columns_and_one_class_test(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _png(root / "a.png")
    (root / "m.csv").write_text("image,label\na.png,0\n")
    _, problems = validate_table(read_table(root / "m.csv"), root)
    assert "missing required column(s): split, source, group, defect, hard_negative" in str(problems[0])
    manifest = _write(root, ["a.png,0,test,real,2024,g,none,false,"])
    dataset = load_manifest(manifest)  # one-class test is a warning, not an error
    assert "only normal images" in dataset.extra["warnings"]


def test_data_check_cli_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "data"
    _png(root / "a.png")
    good = _write(root, ["a.png,0,train,real,,g,none,false,", "a.png,1,test,real,,g,dent,false,"])
    assert main(["data", "check", str(good)]) == 1  # duplicate row
    assert "row 2 [image]: duplicate of row 1" in capsys.readouterr().out
    _png(root / "b.png")
    good = _write(root, ["a.png,0,train,real,,g,none,false,", "b.png,1,test,real,,g,dent,false,"])
    assert main(["data", "check", str(good)]) == 0


def test_mvtec_layout_holds_out_val_from_test(tmp_path: Path) -> None:
    root = tmp_path / "bottle"
    for i in range(3):
        _png(root / "train" / "good" / f"{i:03d}.png")
    for i in range(5):
        _png(root / "test" / "good" / f"{i:03d}.png")
        _png(root / "test" / "broken" / f"{i:03d}.png")
        _png(root / "ground_truth" / "broken" / f"{i:03d}_mask.png", value=255)
    dataset = load_dataset(f"mvtec:{root}")
    assert dataset.class_name == "bottle"
    val_ids = {r.image_id for r in dataset.split("val")}
    test_ids = {r.image_id for r in dataset.split("test")}
    assert val_ids and not val_ids & test_ids
    assert {r.label for r in dataset.split("val")} == {0, 1}
    assert all(r.mask is not None for r in dataset.records if r.label == 1)


def test_folder_layout(tmp_path: Path) -> None:
    root = tmp_path / "widgets"
    for split in ("train", "val", "test"):
        _png(root / split / "good" / "0.png")
    _png(root / "val" / "scratch" / "0.png")
    _png(root / "test" / "scratch" / "0.png")
    dataset = load_dataset(f"folder:{root}")
    assert [(r.split, r.label, r.defect) for r in dataset.records] == [
        ("train", 0, "none"), ("val", 0, "none"), ("val", 1, "scratch"), ("test", 0, "none"), ("test", 1, "scratch")]


def test_folder_masks_match_their_own_image_only(tmp_path: Path) -> None:
    """`1.png` takes `1_mask.png`, never `10_mask.png` (unpadded names share prefixes)."""
    root = tmp_path / "widgets"
    for split in ("train", "val", "test"):
        _png(root / split / "good" / "0.png")
    for name in ("1", "10"):
        _png(root / "test" / "scratch" / f"{name}.png")
        _png(root / "val" / "scratch" / f"{name}.png")
    _png(root / "ground_truth" / "scratch" / "10_mask.png", value=255)
    dataset = load_dataset(f"folder:{root}")
    masks = {r.image_id: r.mask.name if r.mask else None for r in dataset.records if r.label == 1}
    assert masks == {"val/scratch/1.png": None, "val/scratch/10.png": "10_mask.png",
                     "test/scratch/1.png": None, "test/scratch/10.png": "10_mask.png"}


def test_problems_and_errors_read_as_the_user_sees_them(tmp_path: Path) -> None:
    from benchmarks.data.manifest import ManifestProblem

    assert str(ManifestProblem("the test split is empty")) == "error: table: the test split is empty"
    assert str(ManifestProblem("odd", 3, "year", "warning")) == "warning: row 3 [year]: odd"
    error = ManifestError("m.csv", [ManifestProblem("a", 2, "label"), ManifestProblem("b", None, None, "warning")])
    assert str(error) == "m.csv: 1 error(s) in the dataset table:\n  error: row 2 [label]: a\n  warning: table: b"


def _sound(root: Path) -> Path:
    for i in range(3):
        _png(root / f"n{i}.png")
    _png(root / "a.png", value=200)
    _png(root / "b.png", value=210)
    _png(root / "m.png", value=255)
    return _write(root, ["n0.png,0,train,real,2019,g,none,false,", "n1.png,0,val,real,2019,g,none,false,",
                         "a.png,1,val,real,2019,g,scratch,false,m.png", "n2.png,0,test,real,2024,g,none,false,",
                         "b.png,1,test,real,2024,g,scratch,false,m.png"])


def test_load_manifest_reads_its_sidecar_and_names_its_source(tmp_path: Path) -> None:
    root = tmp_path / "data"
    manifest = _sound(root)
    plain = load_manifest(manifest)
    assert (plain.class_name, plain.description, plain.name) == ("object", "", f"manifest:{manifest.resolve()}")
    assert plain.extra["manifest"] == str(manifest.resolve()) and plain.root == root.resolve()
    (root / "dataset.json").write_text('{"class_name": "phone", "description": "QC line 3"}')
    named = load_manifest(manifest, name="mine")
    assert (named.class_name, named.description, named.name) == ("phone", "QC line 3", "mine")
    (root / "dataset.json").write_text('["not", "a", "mapping"]')
    assert load_manifest(manifest).class_name == "object"


def test_roi_column_is_checked_for_aspect_ratio_and_readability(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _sound(root)
    _png(root / "roi_half.png", size=(8, 8))  # any resolution of the image's aspect ratio
    _png(root / "roi_wide.png", size=(8, 16))
    (root / "roi_broken.png").write_bytes(b"not a png")
    lines = (root / "manifest.csv").read_text().splitlines()
    table_text = "\n".join([lines[0] + ",roi", lines[1] + ",roi_half.png", lines[2] + ",roi_wide.png",
                            lines[3] + ",roi_broken.png", *(line + "," for line in lines[4:])]) + "\n"
    (root / "manifest.csv").write_text(table_text)
    _, problems = validate_table(read_table(root / "manifest.csv"), root)
    roi = [p for p in problems if p.column == "roi"]
    assert [(p.row, p.severity) for p in roi] == [(2, "error"), (3, "error")]
    assert roi[0].message == "roi is 16x8, not the image's aspect ratio (16x16)"
    assert roi[1].message.startswith("cannot read the size of the image or roi: ")


def test_each_problem_names_its_row_column_and_what_is_wrong_exactly(tmp_path: Path) -> None:
    """Every kind of bad row once, with the exact problem line the user reads; good rows keep their
    values (an empty group reads as "all")."""
    root = tmp_path / "data"
    for name in ("a", "b", "c", "d", "e", "f", "g", "h"):
        _png(root / f"{name}.png")
    _png(root / "m.png", value=255)
    (root / "x.gif").write_bytes(b"GIF89a")
    manifest = _write(root, [
        "a.png,0,train,real,2019,g,none,false,",
        "b.png,0,train,real,2019,,none,false,m.png",
        "c.png,1,val,real,2019,g,none,false,m.png",
        "d.png,0,val,real,2019,g,scratch,false,",
        "e.png,1,test,real,2024,g,scratch,true,m.png",
        "f.png,1,test,web,2024,g,scratch,false,m.png",
        ",0,test,real,2024,g,none,false,",
        "C:g.png,0,test,real,2024,g,none,false,",
        "x.gif,0,test,real,2024,g,none,false,",
        "g.png,yes,test,real,2024,g,none,false,",
        "h.png,0,train,real,2019,,none,false,",
        "e.png,1,val,generated,2019,g,scratch,false,nope.png",
    ])
    records, problems = validate_table(read_table(manifest), root)
    assert [str(p) for p in problems] == [
        "error: row 2 [mask]: normal image with a mask",
        "error: row 3 [defect]: anomalous image with defect 'none'; name the defect type",
        "error: row 4 [defect]: normal image with defect 'scratch'; normals use 'none'",
        "error: row 5 [hard_negative]: hard_negative is true for an anomalous image",
        "error: row 6 [source]: unknown source 'web'; expected one of real, generated",
        "error: row 7 [image]: empty path",
        "error: row 8 [image]: absolute path 'C:g.png' is not allowed; use a path relative to the manifest",
        "error: row 9 [image]: 'x.gif' is not an allowed image type (PNG, JPEG, BMP, TIFF, WEBP)",
        "error: row 10 [label]: label must be 0 or 1, got 'yes'",
        "error: row 12 [source]: generated image in the val split; val and test must be real",
        "error: row 12 [mask]: file 'nope.png' does not exist",
        "error: row 12 [image]: duplicate of row 5 (e.png)",
        "error: table [split]: the test split is empty",
        "warning: table [split]: the val split is empty: F1 at a validation threshold is undefined",
    ]
    assert [(r.row, r.group, r.source, r.label, r.split) for r in records] == [
        (1, "g", "real", 0, "train"), (11, "all", "real", 0, "train")]
