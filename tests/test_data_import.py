"""`data import`: published layouts -> a manifest with a declared, seeded split that runs end to end.

Every fixture is drawn here: tiny noise images (so no two are byte-identical unless a test makes
them so) in each layout, with greyscale, 16-bit, palette, EXIF-rotated and odd-sized images.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import zlib
from pathlib import Path

import dummy_plugins  # noqa: F401  (registers mean-brightness for the cell processes)
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from benchmarks.cli import IMPORT_LAYOUTS, main
from benchmarks.data.images import load_image, load_mask
from benchmarks.data.importer import LAYOUTS, import_dataset
from benchmarks.data.manifest import load_manifest, read_table, validate_table
from benchmarks.reporting.published import dataset_kind

SIZE = (24, 32)  # (H, W)
ODD = (23, 31)


def _noise(path: Path, size: tuple[int, int]) -> np.ndarray:
    rng = np.random.default_rng(zlib.crc32(path.as_posix().encode()))
    return rng.integers(0, 256, (*size, 3), dtype=np.uint8)


def _image(path: Path, size: tuple[int, int] = SIZE, kind: str = "rgb") -> Path:
    """A noise image unique to its path; `kind` grey, 16bit, palette, or exif (stored turned a quarter)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = _noise(path, size)
    if kind == "grey":
        Image.fromarray(rgb[..., 0]).save(path)
    elif kind == "16bit":
        Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(path)
    elif kind == "palette":
        Image.fromarray(rgb).convert("P").save(path)
    elif kind == "exif":  # stored W x H swapped, EXIF orientation 6: shown as `size`
        exif = Image.Exif()
        exif[0x0112] = 6
        Image.fromarray(_noise(path, (size[1], size[0]))).save(path, exif=exif)
    else:
        Image.fromarray(rgb).save(path)
    return path


def _mask(path: Path, size: tuple[int, int] = SIZE, value: int = 255, empty: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.zeros(size, np.uint8)
    if not empty:
        pixels[size[0] // 4: size[0] // 2, size[1] // 4: size[1] // 2] = value
    Image.fromarray(pixels).save(path)
    return path


def make_per_class(root: Path) -> Path:
    """good/ (incl. greyscale, 16-bit, palette), scratch/ and crack/ with masks in parallel folders
    (ground_truth/scratch/<stem>_mask.png, masks/crack/<stem>.png); one anomaly an EXIF-rotated JPEG."""
    src = root / "phones"
    for i in range(8):
        _image(src / "good" / f"{i:03d}.png")
    for kind in ("grey", "16bit", "palette"):
        _image(src / "good" / f"{kind}.png", kind=kind)
    for i in range(4):
        _image(src / "scratch" / f"s{i}.png")
        _mask(src / "ground_truth" / "scratch" / f"s{i}_mask.png")
        _image(src / "crack" / f"c{i}.png")
        _mask(src / "masks" / "crack" / f"c{i}.png")
    _image(src / "scratch" / "turned.jpg", kind="exif")
    _mask(src / "ground_truth" / "scratch" / "turned_mask.png")  # the shown orientation
    return src


def make_flat(root: Path) -> Path:
    """ok/ and ng/ with masks beside the images in four spellings."""
    src = root / "flat"
    for i in range(6):
        _image(src / "ok" / f"{i}.png")
    for i, tail in enumerate(("_mask", "_GT", ".mask", "-mask")):
        _image(src / "ng" / f"n{i}.png")
        _mask(src / "ng" / f"n{i}{tail}.png")
    return src


def make_mvtec(root: Path, categories: tuple[str, ...] = ("bottle", "cable")) -> Path:
    src = root / "mvtec_ad"
    for category in categories:
        c = src / category
        for i in range(6):
            _image(c / "train" / "good" / f"{i:03d}.png")
        for i in range(4):
            _image(c / "test" / "good" / f"{i:03d}.png")
        for defect in ("broken", "crack"):
            for i in range(3):
                _image(c / "test" / defect / f"{i:03d}.png")
                _mask(c / "ground_truth" / defect / f"{i:03d}_mask.png")
    src.joinpath("license.txt").write_text("CC BY-NC-SA 4.0\n")
    return src


def make_mvtec2(root: Path) -> Path:
    src = root / "mvtec_ad_2"
    c = src / "can"
    for i in range(6):
        _image(c / "train" / "good" / f"{i:03d}_regular.png")
    for i in range(3):
        _image(c / "validation" / "good" / f"{i:03d}_regular.png")
    for i in range(4):
        _image(c / "test_public" / "good" / f"{i:03d}_regular.png")
        _image(c / "test_public" / "bad" / f"{i:03d}_regular.png")
        _mask(c / "test_public" / "ground_truth" / "bad" / f"{i:03d}_regular_mask.png")
    for private in ("test_private", "test_private_mixed"):
        for i in range(2):
            _image(c / private / f"{i:03d}_regular.png")
    return src


def make_visa(root: Path) -> Path:
    """split_csv/1cls.csv over candle and pcb1 (JPEGs, 0/1-valued masks as VisA ships them), image_anno.csv."""
    src = root / "VisA"
    rows = ["object,split,label,image,mask"]
    for category, normals, anomalies in (("candle", 10, 6), ("pcb1", 6, 2)):
        anno = ["image,label,mask"]
        for i in range(normals):
            image = f"{category}/Data/Images/Normal/{i:04d}.JPG"
            _image(src / image)
            rows.append(f"{category},{'train' if i < normals - 4 else 'test'},normal,{image},")
            anno.append(f"{image},normal,")
        for i in range(anomalies):
            image, mask = f"{category}/Data/Images/Anomaly/{i:03d}.JPG", f"{category}/Data/Masks/Anomaly/{i:03d}.png"
            _image(src / image)
            _mask(src / mask, value=1)
            rows.append(f"{category},test,anomaly,{image},{mask}")
            anno.append(f"{image},{'chunk of wax missing' if i % 2 else 'wax melded out of the candle'},{mask}")
        (src / category / "image_anno.csv").write_text("\n".join(anno) + "\n")
    (src / "split_csv").mkdir(parents=True)
    (src / "split_csv" / "1cls.csv").write_text("\n".join(rows) + "\n")
    return src


def make_btad(root: Path) -> Path:
    """01 and 02: BMP images of an odd size, masks as ground_truth/ko/<stem>.png."""
    src = root / "BTAD"
    for category in ("01", "02"):
        c = src / category
        for i in range(6):
            _image(c / "train" / "ok" / f"{i:04d}.bmp", ODD)
        for i in range(4):
            _image(c / "test" / "ok" / f"{i:04d}.bmp", ODD)
            _image(c / "test" / "ko" / f"{i:04d}.bmp", ODD)
            _mask(c / "ground_truth" / "ko" / f"{i:04d}.png", ODD)
    return src


def make_ksdd2(root: Path) -> Path:
    """train/ and test/ with <id>_GT.png beside every image; normals' masks are black."""
    src = root / "KolektorSDD2"
    for split, first, n, positives in (("train", 10000, 8, 2), ("test", 20000, 6, 3)):
        for i in range(n):
            _image(src / split / f"{first + i}.png")
            _mask(src / split / f"{first + i}_GT.png", empty=i >= positives)
    return src


def make_visa_raw(root: Path) -> Path:
    src = make_visa(root)
    shutil.rmtree(src / "split_csv")
    return src / "candle"


def _import(src: Path, out: Path, *args: str) -> None:
    assert main(["data", "import", str(src), "--out", str(out), *args]) == 0


def _table(out: Path) -> pd.DataFrame:
    table = read_table(out / "manifest.csv")
    table["label"] = table["label"].astype(int)
    return table


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _assert_sound(out: Path, supervised: bool = False) -> pd.DataFrame:
    """The guarantees on a written import: loads, train normal only, val/test both classes, no leak."""
    dataset = load_manifest(out / "manifest.csv")
    table = _table(out)
    assert set(table.split) == {"train", "val", "test"}
    for split in ("val", "test"):
        assert set(table[table.split == split].label) == {0, 1}, split
    if not supervised:
        assert set(table[table.split == "train"].label) == {0}
    paths = {s: set(table[table.split == s].image) for s in ("train", "val", "test")}
    hashes = {s: {_sha(out / p) for p in ps} for s, ps in paths.items()}
    for a, b in (("test", "train"), ("test", "val"), ("val", "train")):
        assert not paths[a] & paths[b] and not hashes[a] & hashes[b], (a, b)
    info = json.loads((out / "split.json").read_text())
    assert {s: set(h.values()) for s, h in info["sha256"].items()} == hashes
    assert {s: set(h) for s, h in info["sha256"].items()} == paths
    for split in ("train", "val", "test"):  # counts recorded = counts written
        rows = table[table.split == split]
        recorded = info["counts"][split]
        assert sum(recorded["normal"].values()) == int((rows.label == 0).sum())
        assert recorded["anomalous"] == rows[rows.label == 1].defect.value_counts().to_dict()
    for record in dataset.records:  # what a cell does: every mask fits its image as loaded
        if record.mask is not None:
            assert load_mask(record.mask, load_image(record.image).shape[:2]).any(), record.image_id
        assert not (out / record.image_id).is_symlink()
    return table


# layout -> (split.json's layout_detail, dataset.json's class_name)
LAYOUT_WORDS = {
    "per-class": ("class folders at depth 0 (no published split)", "phones"),
    "flat": ("class folders at depth 0 (no published split)", "flat"),
    "mvtec-ad": ("published train/test (no validation split)", "bottle"),
    "mvtec-ad2": ("published train/validation/test_public", "can"),
    "visa": ("published split_csv/1cls.csv (train/test)", "candle"),
    "visa-raw": ("raw VisA folders (no published split)", "candle"),
    "btad": ("published train/test (no validation split)", "product 01"),
    "kolektorsdd2": ("published train/test; labels from the _GT masks", "surface"),
}
# layout -> (group, defects, normals, anomalies, published split, train images start with)
LAYOUT_CONTENT = {
    "per-class": ("phones", {"crack", "scratch"}, 11, 9, False, "images/good/"),
    "flat": ("flat", {"defect"}, 6, 4, False, "images/ok/"),
    "mvtec-ad": ("bottle", {"broken", "crack"}, 10, 6, True, "images/bottle/train/good/"),
    "mvtec-ad2": ("can", {"defect"}, 13, 4, True, "images/can/train/good/"),
    "visa": ("candle", {"chunk_of_wax_missing", "wax_melded_out_of_the_candle"}, 10, 6, True,
             "images/candle/Data/Images/Normal/"),
    "visa-raw": ("candle", {"chunk_of_wax_missing", "wax_melded_out_of_the_candle"}, 10, 6, False,
                 "images/Data/Images/Normal/"),
    "btad": ("01", {"defect"}, 10, 4, True, "images/01/train/ok/"),
    "kolektorsdd2": ("KolektorSDD2", {"defect"}, 9, 5, True, "images/train/"),
}


def _layout_sources(tmp_path: Path) -> dict[str, tuple[Path, tuple[str, ...]]]:
    src = tmp_path / "src"
    return {
        "per-class": (make_per_class(src), ()),
        "flat": (make_flat(src), ()),
        "mvtec-ad": (make_mvtec(src), ("--category", "bottle")),
        "mvtec-ad2": (make_mvtec2(src), ()),
        "visa": (make_visa(src), ("--category", "candle")),
        "visa-raw": (make_visa_raw(tmp_path / "raw"), ()),
        "btad": (make_btad(src), ("--category", "01")),
        "kolektorsdd2": (make_ksdd2(src), ()),
    }


def test_every_layout_reads_its_fixtures_groups_defects_splits_and_masks(tmp_path: Path) -> None:
    """What each layout's scanner reads from its fixture, exactly: the group, the defect names, every
    image once with its label, the published train kept as train, and each anomaly's own mask (the
    fixture's rectangle at the image's displayed size, 0/255 even where the set ships 0/1 masks)."""
    sources = _layout_sources(tmp_path)
    (sources["mvtec-ad"][0] / "bottle" / "readme.txt").write_text("a file beside the split folders")
    for name, (source, args) in sources.items():
        group, defects, normals, anomalies, published, train_prefix = LAYOUT_CONTENT[name]
        out = tmp_path / "imported" / name
        _import(source, out, *args)
        table = _table(out)
        info = json.loads((out / "split.json").read_text())
        assert (info["layout_detail"], json.loads((out / "dataset.json").read_text())["class_name"]) == \
            LAYOUT_WORDS[name], name
        if name not in ("mvtec-ad2", "visa", "visa-raw"):
            assert info["notes"] == [], (name, info["notes"])  # a stray file is no folder to ignore
        assert set(table.group) == {group}, name
        assert set(table[table.label == 1].defect) == defects and set(table[table.label == 0].defect) == {"none"}, name
        assert ((table.label == 0).sum(), (table.label == 1).sum()) == (normals, anomalies), name
        assert info["published_split"] is published, name
        assert info["rule"].startswith("train = the published train normals" if published else "no published split")
        train = table[table.split == "train"]
        assert train.image.str.startswith(train_prefix).all() and (train.label == 0).all(), name
        for row in table[table.label == 1].itertuples():
            mask = np.asarray(Image.open(out / row.mask))  # as written: 0/255 PNG
            shape = load_image(out / row.image).shape[:2]
            expected = np.zeros(shape, bool)
            expected[shape[0] // 4: shape[0] // 2, shape[1] // 4: shape[1] // 2] = True
            assert mask.shape == shape and ((mask > 0) == expected).all() and set(np.unique(mask)) == {0, 255}, \
                (name, row.image)
    notes = json.loads((tmp_path / "imported" / "mvtec-ad2" / "split.json").read_text())["notes"]
    assert notes == ["ignored test_private/: no published labels", "ignored test_private_mixed/: no published labels"]
    visa = json.loads((tmp_path / "imported" / "visa" / "split.json").read_text())["notes"]
    assert visa == ["rewrote 6 mask(s) with defect pixels at or below 127 as 0/255"]
    published = _table(tmp_path / "imported" / "visa")
    assert set(published[published.split == "train"].image) == {  # the 1cls.csv train rows, exactly
        f"images/candle/Data/Images/Normal/{i:04d}.JPG" for i in range(6)}
    ksdd2 = _table(tmp_path / "imported" / "kolektorsdd2")
    assert set(ksdd2[ksdd2.split != "train"].image.str.split("/").str[1]) == {"train", "test"}  # train positives
    assert set(ksdd2[ksdd2.image.str.startswith("images/test/")].split) <= {"val", "test"}  # go to evaluation


def test_every_layout_imports_with_one_call_and_runs_end_to_end(tmp_path: Path) -> None:
    imports = _layout_sources(tmp_path)
    manifests = []
    for name, (source, args) in imports.items():
        out = tmp_path / "imported" / name
        _import(source, out, *args)
        table = _assert_sound(out)
        anomalies = table[table.label == 1]
        assert (anomalies["mask"] != "").all(), name  # every fixture anomaly has a mask: all were found
        assert (table[table.label == 0]["mask"] == "").all()
        manifests.append(f"manifest:{out}/manifest.csv")
    layouts = {n: json.loads((tmp_path / "imported" / n / "split.json").read_text())["layout"] for n in imports}
    assert layouts == {**{n: n for n in imports}, "flat": "per-class", "visa-raw": "visa"}
    run_dir = tmp_path / "run"
    assert main(["run", "--methods", "mean-brightness", "--datasets", ",".join(manifests), "--out", str(run_dir),
                 "--preset", "smoke", "--weights", "random", "--no-report"]) == 0
    cells = [json.loads(line) for line in (run_dir / "runs.jsonl").read_text().splitlines()]
    assert len(cells) == len(imports)
    assert all(c["status"] == "ok" for c in cells), [c["error"] for c in cells]
    assert all(c["metrics"]["pixel_auroc"] is not None for c in cells)  # masks reached the metrics


def test_mvtec_train_is_the_published_train_and_val_comes_from_test(tmp_path: Path) -> None:
    src = make_mvtec(tmp_path)
    out = tmp_path / "out"
    import_dataset(src, out, category="cable", seed=3)
    table = _assert_sound(out)
    published_train = {f"images/cable/train/good/{i:03d}.png" for i in range(6)}
    assert set(table[table.split == "train"].image) == published_train
    evaluated = table[table.split != "train"]
    assert evaluated.image.str.startswith("images/cable/test/").all()
    assert len(evaluated) == 4 + 6  # every published test image is in val or test, once
    val = table[table.split == "val"]
    assert sorted(val.label) == [0, 1]  # 0.2 of 4 normals and of 6 anomalies, at least one each
    assert set(table.group) == {"cable"}
    info = json.loads((out / "split.json").read_text())
    assert info["layout"] == "mvtec-ad" and info["category"] == "cable" and info["seed"] == 3
    assert "published test" in info["rule"] and info["published_split"] is True
    sidecar = json.loads((out / "dataset.json").read_text())
    assert sidecar["class_name"] == "cable"
    # MVTec AD's own category: the report may set the paper's numbers beside it (with the val caveat)
    assert sidecar["published_reference"] == "mvtec"
    assert dataset_kind(f"manifest:{out / 'manifest.csv'}", out) == "mvtec"
    own = tmp_path / "own"
    import_dataset(src, own, category="cable", supervised_train=0.5)  # another protocol: not comparable
    assert "published_reference" not in json.loads((own / "dataset.json").read_text())


def test_a_published_val_is_kept_and_nothing_is_carved_from_test(tmp_path: Path) -> None:
    """The `folder:` layout (train/val/test) imports as mvtec-ad: its val stays val, its test stays test;
    a train/<defect>/ folder's anomalies go to val, not train."""
    src = tmp_path / "folder"
    for split, n in (("train", 5), ("val", 2), ("test", 3)):
        for i in range(n):
            _image(src / split / "good" / f"{i}.png")
            _image(src / split / "crack" / f"{i}.png")
    out = tmp_path / "out"
    import_dataset(src, out)
    table = _assert_sound(out)
    for split in ("val", "test"):
        expected = {f"images/{split}/{c}/{i}.png" for c in ("good", "crack") for i in range(2 if split == "val" else 3)}
        if split == "val":
            expected |= {f"images/train/crack/{i}.png" for i in range(5)}
        assert set(table[table.split == split].image) == expected, split
    info = json.loads((out / "split.json").read_text())
    assert info["layout_detail"] == "published train/test and val"
    assert not any(note.startswith("ignored") for note in info["notes"]), info["notes"]  # val is part of the layout


def test_published_duplicates_are_kept_in_the_earliest_split_only(tmp_path: Path) -> None:
    src = make_mvtec(tmp_path, ("bottle",))
    shutil.copyfile(src / "bottle/train/good/000.png", src / "bottle/test/good/copy.png")
    shutil.copyfile(src / "bottle/test/good/001.png", src / "bottle/test/good/copy2.png")
    out = tmp_path / "out"
    import_dataset(src, out)
    table = _assert_sound(out)
    assert "images/bottle/test/good/copy.png" not in set(table.image)  # its content is in train
    assert len({_sha(out / p) for p in table.image}) == len(table)
    dropped = json.loads((out / "split.json").read_text())["dropped_duplicates"]
    assert {d["image"] for d in dropped} == {"bottle/test/good/copy.png", "bottle/test/good/copy2.png"}


def test_unpublished_split_is_stratified_and_normal_only_in_train(tmp_path: Path) -> None:
    src = make_per_class(tmp_path)
    out = tmp_path / "out"
    import_dataset(src, out)
    table = _assert_sound(out)
    normals = table[table.label == 0]
    assert normals.split.value_counts().to_dict() == {"train": 7, "val": 2, "test": 2}  # 0.6/0.2/0.2 of 11
    anomalies = table[table.label == 1]
    assert anomalies.split.value_counts().to_dict() == {"val": 4, "test": 5}  # 9 anomalies, 1:1
    for defect in ("scratch", "crack"):  # every defect type in both val and test
        assert set(anomalies[anomalies.defect == defect].split) == {"val", "test"}, defect
    info = json.loads((out / "split.json").read_text())
    assert info["published_split"] is False and info["test_fraction"] == 0.2
    assert "stratified by (label, defect, hard negative)" in info["rule"]


def test_split_is_stratified_by_defect_type(tmp_path: Path) -> None:
    """Defect types of 6, 4 and 2 anomalies halved between val and test: 3, 2, 1 on each side, every seed
    (a plain shuffle gives that for all five seeds with odds of about 1 in 1000)."""
    flat, tile = tmp_path / "strata", tmp_path / "mvtec" / "tile"
    for i in range(10):
        _image(flat / "good" / f"{i}.png")
        _image(tile / ("train" if i < 6 else "test") / "good" / f"{i}.png")
    for defect, n in (("dent", 6), ("scratch", 4), ("burn", 2)):
        for i in range(n):
            _image(flat / defect / f"{i}.png")
            _image(tile / "test" / defect / f"{i}.png")
    for seed in range(5):
        for src, fraction in ((flat, 0.2), (tile, 0.5)):  # unpublished: val:test 1:1; published: carve half
            out = tmp_path / f"out-{src.name}-{seed}"
            import_dataset(src, out, seed=seed, val_fraction=fraction)
            table = _table(out)
            for split in ("val", "test"):
                rows = table[(table.split == split) & (table.label == 1)]
                assert rows.defect.value_counts().to_dict() == {"dent": 3, "scratch": 2, "burn": 1}, (src, seed)


def test_kolektorsdd2_labels_come_from_the_masks(tmp_path: Path) -> None:
    out = tmp_path / "out"
    import_dataset(make_ksdd2(tmp_path), out)
    table = _assert_sound(out)
    positive = {f"images/train/{i}.png" for i in (10000, 10001)} | {f"images/test/{i}.png" for i in (20000, 20001, 20002)}
    assert set(table[table.label == 1].image) == positive
    assert set(table[table.label == 1].split) == {"val", "test"}  # published train anomalies: val, not train
    assert set(table[table.split == "test"].image) <= {f"images/test/{i}.png" for i in range(20000, 20006)}
    assert not list((out / "masks").rglob("1000[2-7]_GT.png"))  # black masks of normals are not written


def test_mvtec_ad2_val_normals_from_validation_and_private_test_ignored(tmp_path: Path, capsys:
                                                                        pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    _import(make_mvtec2(tmp_path), out)
    table = _assert_sound(out)
    val = table[table.split == "val"]
    assert set(val[val.label == 0].image) == {f"images/can/validation/good/{i:03d}_regular.png" for i in range(3)}
    assert val[val.label == 1].image.str.startswith("images/can/test_public/bad/").all()
    assert not table.image.str.contains("test_private").any()
    printed = capsys.readouterr().out
    assert "test_private/: no published labels" in printed and "split.json" in printed
    assert f"--datasets manifest:{out / 'manifest.csv'}" in printed


def test_visa_csv_category_defects_and_rescaled_masks(tmp_path: Path) -> None:
    out = tmp_path / "out"
    import_dataset(make_visa(tmp_path), out, category="candle")
    table = _assert_sound(out)
    assert len(table) == 16 and set(table.group) == {"candle"}
    assert set(table[table.label == 1].defect) == {"chunk_of_wax_missing", "wax_melded_out_of_the_candle"}
    assert set(table[table.split == "train"].image) == {f"images/candle/Data/Images/Normal/{i:04d}.JPG"
                                                        for i in range(6)}
    info = json.loads((out / "split.json").read_text())
    assert len(info["rescaled_masks"]) == 6  # 0/1 masks would read as empty: written as 0/255


def test_same_seed_same_split_other_seed_other_split(tmp_path: Path) -> None:
    src = make_per_class(tmp_path)
    tables = []
    for run, seed in enumerate((0, 0, 1)):
        import_dataset(src, tmp_path / f"out{run}", seed=seed)
        tables.append(_table(tmp_path / f"out{run}").sort_values("image").reset_index(drop=True))
    pd.testing.assert_frame_equal(tables[0], tables[1])
    assert not tables[0].split.equals(tables[2].split)
    mvtec = make_mvtec(tmp_path, ("bottle",))
    carved = []  # the val carved out of the published test follows the seed too
    for seed in (0, 0, 1, 2):
        out = tmp_path / f"mvtec{len(carved)}"
        import_dataset(mvtec, out, seed=seed)
        table = _table(out)
        carved.append(tuple(sorted(table[table.split == "val"].image)))
    assert carved[0] == carved[1] and len(set(carved)) > 1


def test_supervised_train_puts_anomalies_in_train_only_when_asked(tmp_path: Path) -> None:
    src = make_per_class(tmp_path)
    out = tmp_path / "out"
    _import(src, out, "--supervised-train", "0.34")
    table = _assert_sound(out, supervised=True)
    train = table[table.split == "train"]
    assert int(train.label.sum()) == 3  # round(0.34 * 9)
    info = json.loads((out / "split.json").read_text())
    assert info["supervised_train"] == 0.34 and "--supervised-train 0.34" in info["command"]
    mvtec = tmp_path / "mvtec"
    import_dataset(make_mvtec(tmp_path), mvtec, category="bottle", supervised_train=0.5)
    table = _assert_sound(mvtec, supervised=True)
    assert int(table[table.split == "train"].label.sum()) == 3


def test_files_are_linked_by_default_copied_on_request_and_kept_as_they_are(tmp_path: Path) -> None:
    src = make_per_class(tmp_path)
    linked, copied = tmp_path / "linked", tmp_path / "copied"
    import_dataset(src, linked)
    import_dataset(src, copied, copy=True)
    for kind in ("grey", "16bit", "palette"):
        source = src / "good" / f"{kind}.png"
        assert (linked / "images/good" / f"{kind}.png").stat().st_ino == source.stat().st_ino
        assert (copied / "images/good" / f"{kind}.png").stat().st_ino != source.stat().st_ino
        assert _sha(copied / "images/good" / f"{kind}.png") == _sha(source)
    assert json.loads((copied / "split.json").read_text())["files"] == {"copied": 11 + 9 + 9}
    shutil.rmtree(src)  # self-contained: the manifest does not need the source any more
    _assert_sound(copied)


def test_manifest_mask_size_check_follows_exif_orientation(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _image(root / "turned.jpg", kind="exif")
    _mask(root / "shown.png")  # the size load_image returns
    _mask(root / "stored.png", (SIZE[1], SIZE[0]))  # the size in the JPEG's header
    assert load_image(root / "turned.jpg").shape[:2] == SIZE
    rows = [{"image": "turned.jpg", "label": "1", "split": "test", "source": "real", "group": "g",
             "defect": "scratch", "hard_negative": "false", "mask": mask} for mask in ("shown.png", "stored.png")]
    _, problems = validate_table(pd.DataFrame(rows[:1]), root)
    assert not [p for p in problems if p.severity == "error"]
    _, problems = validate_table(pd.DataFrame(rows[1:]), root)
    assert [str(p) for p in problems if p.column == "mask"] == ["error: row 1 [mask]: mask is 24x32 but the image is 32x24"]


def test_layout_choices_match() -> None:
    assert IMPORT_LAYOUTS == LAYOUTS


def _refusal(src: Path, out: Path, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["data", "import", str(src), "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_refusals_name_the_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    defects_only = tmp_path / "defects_only"
    for i in range(3):
        _image(defects_only / "scratch" / f"{i}.png")
    assert "no normal images" in _refusal(defects_only, out, capsys, "--layout", "per-class")

    normals_only = tmp_path / "normals_only"
    for i in range(5):
        _image(normals_only / "good" / f"{i}.png")
    err = _refusal(normals_only, out, capsys)
    assert "no anomalous images" in err and "val and test cannot hold both classes" in err

    tiny = tmp_path / "tiny"
    for i in range(2):
        _image(tiny / "good" / f"{i}.png")
    _image(tiny / "dent" / "0.png")
    assert "too few images" in _refusal(tiny, out, capsys)

    unknown = tmp_path / "unknown"
    _image(unknown / "pictures" / "a.png")
    err = _refusal(unknown, out, capsys)
    assert "cannot recognise the layout" in err and all(n in err for n in LAYOUTS)

    mismatch = make_flat(tmp_path / "mismatch")
    _mask(mismatch / "ng" / "n0_mask.png", (20, 20))
    err = _refusal(mismatch, out, capsys)
    assert "n0_mask.png is 20x20" in err and "n0.png is 32x24" in err

    turned = make_per_class(tmp_path / "turned")
    _mask(turned / "ground_truth" / "scratch" / "turned_mask.png", (SIZE[1], SIZE[0]))  # stored, not shown
    assert "turned_mask.png is 24x32" in _refusal(turned, out, capsys)

    broken = make_flat(tmp_path / "broken")
    (broken / "ok" / "3.png").write_bytes(b"not a png")
    (broken / "ok" / "4.png").write_bytes((broken / "ok" / "5.png").read_bytes()[:60])
    err = _refusal(broken, out, capsys)
    assert "ok/3.png" in err and "1 more unusable file" in err

    mvtec = make_mvtec(tmp_path)
    err = _refusal(mvtec, out, capsys)
    assert "--category" in err and "bottle, cable" in err
    err = _refusal(mvtec, out, capsys, "--category", "screw")
    assert "no category 'screw'" in err and "bottle, cable" in err
    err = _refusal(make_visa(tmp_path), out, capsys, "--category", "pcb9")
    assert "no category 'pcb9'" in err and "candle, pcb1" in err
    assert "--category applies to" in _refusal(make_flat(tmp_path), out, capsys, "--category", "x")
    for layout in ("kolektorsdd2", "mvtec-ad", "btad"):
        assert f"does not look like {layout}" in _refusal(tmp_path / "flat", out, capsys, "--layout", layout)
    assert "--test-fraction applies only" in _refusal(mvtec, out, capsys, "--category", "bottle",
                                                      "--test-fraction", "0.3")

    conflict = make_flat(tmp_path / "conflict")
    shutil.copyfile(conflict / "ok" / "0.png", conflict / "ng" / "dup.png")
    assert "byte-identical but labelled" in _refusal(conflict, out, capsys)
    assert not out.exists()  # nothing was written by any refusal

    out.mkdir()
    (out / "old.csv").write_text("x")
    assert "not an empty folder" in _refusal(make_flat(tmp_path / "fine"), out, capsys)


# --------------------------------------------------------------------------- the split rule, unit by unit

from collections import Counter  # noqa: E402

from benchmarks.data.importer import split_rule  # noqa: E402
from benchmarks.data.importer.checking import Checked  # noqa: E402
from benchmarks.data.importer.items import Item  # noqa: E402


def _items(spec: list[tuple[int, int, int | None, str | None]], defect: str = "scratch") -> list[Item]:
    """(count, label, year, published) -> items named by their position."""
    out: list[Item] = []
    for count, label, year, published in spec:
        for _ in range(count):
            rel = f"img/{len(out):03d}.png"
            out.append(Item(Path("/set") / rel, rel, label, defect if label else "none", "g", published=published,
                            year=year))
    return out


def _assign(items: list[Item], published: bool = False, **settings: object) -> dict[int, str]:
    return split_rule.assign(items, list(range(len(items))), published, split_rule.SplitSettings(**settings))


def test_cross_generation_test_is_the_test_years_and_val_spreads_over_the_known_years() -> None:
    items = _items([(5, 0, year, None) for year in range(2017, 2022)] + [(2, 1, year, None) for year in range(2017, 2022)]
                   + [(3, 0, 2024, None), (2, 1, 2025, None)])
    split = _assign(items, test_years=frozenset({2024, 2025}), seed=4)
    assert {i for i, s in split.items() if s == "test"} == {i for i, it in enumerate(items) if it.year in (2024, 2025)}
    val_normals = [items[i].year for i, s in split.items() if s == "val" and items[i].label == 0]
    assert sorted(val_normals) == list(range(2017, 2022))  # 0.2 of 25 normals: one per known year
    assert Counter(s for i, s in split.items() if items[i].label == 1 and items[i].year < 2024) == {"val": 10}
    sup = _assign(items, test_years=frozenset({2024, 2025}), seed=4, supervised=0.5)
    trained = [items[i].year for i, s in sup.items() if s == "train" and items[i].label == 1]
    assert sorted(trained) == list(range(2017, 2022))  # half of the known anomalies, one per year
    assert Counter(s for i, s in sup.items() if items[i].label == 1 and items[i].year < 2024) == {"train": 5, "val": 5}


def test_cross_generation_refusals_name_the_years_and_the_counts() -> None:
    items = _items([(2, 0, 2018, None), (1, 1, 2018, None), (1, 0, 2024, None), (1, 1, 2024, None)])
    assert Counter(_assign(items, test_years=frozenset({2024})).values()) == {"train": 1, "val": 2, "test": 2}
    few = _items([(1, 0, 2018, None), (1, 1, 2018, None), (1, 0, 2024, None), (1, 1, 2024, None)])
    with pytest.raises(ValueError, match=r"^too few images outside the test years 2024 to give train normals and val "
                                         r"both classes: have 1 normal and 1 anomalous image\(s\)$"):
        _assign(few, test_years=frozenset({2024}))
    with pytest.raises(ValueError, match=r"^--test-years 2021,2024: no anomalous image of those years \(1 normal and 0 "
                                         r"anomalous image\(s\) in them\)"):
        _assign(_items([(3, 0, 2018, None), (2, 1, 2018, None), (1, 0, 2024, None)]),
                test_years=frozenset({2021, 2024}))
    with pytest.raises(ValueError, match=r"^--test-years 2023-2024: no normal image"):
        _assign(_items([(3, 0, 2018, None), (2, 1, 2018, None), (1, 1, 2024, None)]), test_years=frozenset({2023, 2024}))


def test_unpublished_split_counts_and_the_smallest_set_it_accepts() -> None:
    items = _items([(10, 0, None, None), (6, 1, None, None)])
    split = _assign(items)
    assert Counter((items[i].label, s) for i, s in split.items()) == {
        (0, "train"): 6, (0, "val"): 2, (0, "test"): 2, (1, "val"): 3, (1, "test"): 3}
    sup = _assign(items, supervised=0.5)
    assert Counter((items[i].label, s) for i, s in sup.items() if items[i].label == 1) == {
        (1, "train"): 3, (1, "val"): 2, (1, "test"): 1}
    smallest = _items([(3, 0, None, None), (2, 1, None, None)])
    assert Counter(_assign(smallest).values()) == {"train": 1, "val": 2, "test": 2}
    with pytest.raises(ValueError, match=r"have 2 normal and 2 anomalous image\(s\), need at least 3 normal and 2 "
                                         r"anomalous \(more with small fractions\)$"):
        _assign(_items([(2, 0, None, None), (2, 1, None, None)]))
    with pytest.raises(ValueError, match="need at least 3 normal and 3 anomalous"):
        _assign(_items([(3, 0, None, None), (1, 1, None, None)]), supervised=0.5)
    with pytest.raises(ValueError, match="need at least 3 normal and 2 anomalous"):
        _assign(_items([(3, 0, None, None), (1, 1, None, None)]))


def test_published_split_keeps_train_carves_val_from_test_and_moves_train_anomalies_first() -> None:
    items = _items([(4, 0, None, "train"), (2, 1, None, "train"), (3, 0, None, "test"), (4, 1, None, "test")])
    split = _assign(items, published=True, val_fraction=0.9)
    assert [split[i] for i in range(6)] == ["train"] * 4 + ["val"] * 2  # the published train anomalies: val
    test_normals = [split[i] for i in range(6, 9)]
    assert Counter(test_normals) == {"val": 2, "test": 1}  # 0.9 of 3, but one is left for test
    assert Counter(split[i] for i in range(9, 13)) == {"test": 4}  # val already holds anomalies
    sup = _assign(items, published=True, supervised=0.25)
    assert sorted(i for i, s in sup.items() if s == "train" and items[i].label == 1) in ([4, 5], [4], [5])
    assert sum(1 for i, s in sup.items() if s == "train" and items[i].label == 1) == 2  # 0.25 of 6: the two train ones
    none = _assign(items, published=True, supervised=0.0)
    assert not any(s == "train" and items[i].label == 1 for i, s in none.items())
    with pytest.raises(ValueError, match=r"--supervised-train 0.99 leaves no anomalies for val and test \(6 "):
        _assign(items, published=True, supervised=0.99)


def test_published_split_refusals_say_what_is_missing() -> None:
    with pytest.raises(ValueError, match=r"^too few images: the published test has 1 anomalous image\(s\) left, need 2 to "
                                         r"give val and test one each \(6 normal and 1 anomalous image\(s\) in all\)$"):
        _assign(_items([(4, 0, None, "train"), (2, 0, None, "test"), (1, 1, None, "test")]), published=True)
    with pytest.raises(ValueError, match=r"^too few images: no normal image is left for train \(2 normal and 2 "):
        _assign(_items([(2, 0, None, "test"), (2, 1, None, "test")]), published=True)
    with pytest.raises(ValueError, match=r"^too few images: no normal image is left for test \(3 normal and 3 "):
        _assign(_items([(2, 0, None, "train"), (1, 0, None, "val"), (1, 1, None, "val"), (2, 1, None, "test")]),
                published=True)


def test_generated_rows_go_to_train_and_never_of_a_test_year() -> None:
    items = _items([(3, 0, 2018, None), (2, 1, 2018, None), (1, 0, 2024, None), (1, 1, 2024, None)])
    generated = [Item(Path("/gen/a.png"), "generated/a.png", 1, "scratch", "g", year=2018, source="generated")]
    split = _assign(items + generated, test_years=frozenset({2024}))
    assert split[len(items)] == "train"
    late = [Item(Path("/gen/b.png"), "generated/b.png", 1, "scratch", "g", year=2024, source="generated")]
    with pytest.raises(ValueError, match=r"generated image /gen/b.png is of 2024, a test year"):
        _assign(items + late, test_years=frozenset({2024}))
    plain = _items([(3, 0, None, None), (2, 1, None, None)])
    assert _assign(plain + late)[len(plain)] == "train"  # no test years: any year is fine


def test_deduplicate_keeps_real_then_the_earliest_split_then_the_path() -> None:
    items = [Item(Path("/s/b.png"), "b.png", 0, "none", "g", published="test"),
             Item(Path("/s/a.png"), "a.png", 0, "none", "g", published="test"),
             Item(Path("/s/c.png"), "c.png", 0, "none", "g", published="train"),
             Item(Path("/s/d.png"), "d.png", 1, "scratch", "g")]
    checked = [Checked("same", None), Checked("same", None), Checked("same", None), Checked("other", None)]
    keep, dropped = split_rule.deduplicate(items, checked)
    assert keep == [2, 3] and dropped == [{"image": "a.png", "same_as": "c.png"}, {"image": "b.png", "same_as": "c.png"}]
    keep, dropped = split_rule.deduplicate(items[:2], checked[:2])
    assert keep == [1] and dropped == [{"image": "b.png", "same_as": "a.png"}]
    mixed = [Item(Path("/s/x.png"), "x.png", 0, "none", "g"), Item(Path("/s/y.png"), "y.png", 1, "scratch", "g")]
    with pytest.raises(ValueError, match=r"/s/y.png and /s/x.png are byte-identical but labelled anomalous and normal"):
        split_rule.deduplicate(mixed, [Checked("same", None)] * 2)
    generated = [Item(Path("/g/z.png"), "generated/z.png", 0, "none", "g", source="generated"), mixed[0]]
    with pytest.raises(ValueError, match=r"generated image /g/z.png is byte-identical to the real image /s/x.png"):
        split_rule.deduplicate(generated, [Checked("same", None)] * 2)


def test_assert_sound_catches_each_broken_guarantee() -> None:
    items = _items([(2, 0, 2018, None), (2, 1, 2018, None), (1, 0, 2024, None), (1, 1, 2024, None)])
    checked = [Checked(str(i), None) for i in range(len(items))]
    good = {0: "train", 1: "val", 2: "val", 3: "val", 4: "test", 5: "test"}
    split_rule.assert_sound(items, checked, good, split_rule.SplitSettings(test_years=frozenset({2024})))
    cases = [
        ({**good, 2: "train"}, split_rule.SplitSettings(), "anomalous /set/img/002.png assigned to train"),
        ({**good, 4: "val", 0: "test"}, split_rule.SplitSettings(test_years=frozenset({2024})), r"/set/img/000.png of 2018 assigned to test \(test years \[2024\]\)"),
        ({**good, 1: "train"}, split_rule.SplitSettings(),
         "the val split does not hold both classes"),
    ]
    for split, settings, message in cases:
        with pytest.raises(RuntimeError, match=message):
            split_rule.assert_sound(items, checked, split, settings)
    split_rule.assert_sound(items, checked, {**good, 2: "train", 3: "val"}, split_rule.SplitSettings(supervised=0.5))
    twins = [Checked("same" if i in (0, 4) else str(i), None) for i in range(len(items))]
    with pytest.raises(RuntimeError, match=r"/set/img/004.png is in test and its content in train"):
        split_rule.assert_sound(items, twins, good, split_rule.SplitSettings())
    generated = items + [Item(Path("/g/a.png"), "generated/a.png", 1, "scratch", "g", source="generated")]
    with pytest.raises(RuntimeError, match="generated /g/a.png assigned to val"):
        split_rule.assert_sound(generated, checked + [Checked("g", None)], {**good, 6: "val"}, split_rule.SplitSettings())


def test_the_rule_in_words() -> None:
    settings = split_rule.SplitSettings(val_fraction=0.25, test_fraction=0.3, supervised=0.1)
    assert split_rule.describe_rule(False, settings, generated=True) == (
        "no published split: seeded and stratified by (label, defect, hard negative), 0.25 of the normals go to val, "
        "0.3 to test and the rest to train; the anomalies go to val and test in the ratio 0.25:0.3. Train also holds "
        "a seeded 0.1 of the anomalies (label 1, stratified by defect type; --supervised-train). Generated images "
        "(--generated) are in train only, as source=generated rows. Byte-identical images are kept once, in the "
        "earliest of train, val, test.")
    assert split_rule.describe_rule(True, split_rule.SplitSettings(), generated=False) == (
        "train = the published train normals; val = what the set publishes as validation, plus its published train "
        "anomalies, plus, for each class val still lacks, a seeded 0.2 of the published test images of that class "
        "stratified by defect type; test = the rest of the published test (so test is smaller than the published "
        "one). Train holds normals only. Byte-identical images are kept once, in the earliest of train, val, test.")
    assert "(label 1, stratified by defect type, the published train anomalies first; --supervised-train)" in (
        split_rule.describe_rule(True, settings, generated=False))
    assert split_rule.describe_rule(False, split_rule.SplitSettings(test_years=frozenset({2025, 2024})), False) == (
        "cross-generation: test = every real image of the release years 2024,2025 (--test-years); of the other years, "
        "a seeded 0.2 of the normals (stratified by defect, hard negative and year) go to val and the rest to train, "
        "and the anomalies go to val. Train holds normals only. Byte-identical images are kept once, in the earliest "
        "of train, val, test.")
    assert split_rule.counts_text(_items([(2, 0, None, None), (3, 1, None, None)]), [0, 1, 2, 3, 4]) == (
        "2 normal and 3 anomalous image(s)")
    assert split_rule.at_least_one(0.2, 2) == 1 and split_rule.at_least_one(0.5, 5) == 2
    assert split_rule.at_least_one(0.0, 9) == 0 and split_rule.at_least_one(0.3, 10) == 3


def test_writer_orders_rows_by_split_then_path_and_keeps_same_named_rois_apart(tmp_path: Path) -> None:
    from benchmarks.data.importer.writer import write_items

    src = tmp_path / "src"
    names = ["b/z.png", "a/y.png", "c/x.png", "a/w.png"]
    items = [Item(_image(src / n), n, int(n.startswith("c")), "scratch" if n.startswith("c") else "none", "g")
             for n in names]
    roi_a, roi_b = _mask(src / "rois" / "one" / "roi.png"), _mask(src / "rois" / "two" / "roi.png")
    regions = {"b/z.png": roi_a, "a/y.png": roi_b, "c/x.png": roi_a, "a/w.png": roi_b}
    split = {0: "test", 1: "train", 2: "test", 3: "val"}
    checked = [Checked(str(i), None) for i in range(4)]
    out = tmp_path / "out"
    written = write_items(out, items, split, checked, copy=True, mask_rel=lambda item: item.rel, regions=regions)
    rows = [(r.row, r.image_id, r.split) for r in written.records]
    assert rows == [(1, "images/a/y.png", "train"), (2, "images/a/w.png", "val"), (3, "images/b/z.png", "test"),
                    (4, "images/c/x.png", "test")]
    rois = {r.image_id: r.roi for r in written.records}
    assert rois["images/b/z.png"] == out / "roi" / "roi.png" and rois["images/a/y.png"] == out / "roi" / "1-roi.png"
    assert (out / "roi" / "1-roi.png").read_bytes() == roi_b.read_bytes()
    assert written.files == {"copied": 6}  # 4 images and 2 ROI masks, copied as asked
    assert all((out / r.image_id).read_bytes() == items[names.index(r.image_id[7:])].image.read_bytes()
               for r in written.records)


def test_supervised_cross_generation_draws_the_train_anomalies_evenly_over_the_years() -> None:
    items = _items([(5, 0, year, None) for year in range(2017, 2022)] + [(4, 1, year, None) for year in range(2017, 2022)]
                   + [(3, 0, 2024, None), (2, 1, 2024, None)])
    for seed in range(5):  # a draw blind to the year would hit one per year by chance 7 % of the time
        split = _assign(items, test_years=frozenset({2024}), seed=seed, supervised=0.25)
        trained = sorted(items[i].year for i, s in split.items() if s == "train" and items[i].label == 1)
        assert trained == list(range(2017, 2022)), seed


def test_published_set_without_anomalies_and_identical_images_are_refused_in_words() -> None:
    with pytest.raises(ValueError, match=r"^too few images: the published test has 0 anomalous image\(s\) left"):
        _assign(_items([(4, 0, None, "train"), (3, 0, None, "test")]), published=True, supervised=0.0)
    mixed = [Item(Path("/s/x.png"), "x.png", 1, "scratch", "g"), Item(Path("/s/y.png"), "y.png", 0, "none", "g")]
    with pytest.raises(ValueError) as refused:
        split_rule.deduplicate(mixed, [Checked("same", None)] * 2)
    assert str(refused.value) == ("/s/y.png and /s/x.png are byte-identical but labelled normal and anomalous: fix the "
                                  "set before importing")
    generated = [Item(Path("/g/z.png"), "generated/z.png", 0, "none", "g", source="generated"), mixed[1]]
    with pytest.raises(ValueError) as refused:
        split_rule.deduplicate(generated, [Checked("same", None)] * 2)
    assert str(refused.value) == ("generated image /g/z.png is byte-identical to the real image /s/y.png: a generated "
                                  "image must be new content (a copy would put a real image in train)")


def test_out_must_be_new_or_an_empty_folder_and_published_sets_keep_their_own_protocol(tmp_path: Path) -> None:
    src = make_mvtec(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    import_dataset(src, empty, category="bottle")  # an existing empty folder is fine
    assert (empty / "manifest.csv").is_file()
    for taken in (empty, tmp_path / "file.txt"):
        if not taken.exists():
            taken.write_text("x")
        with pytest.raises(ValueError, match=rf"^--out {taken} is not an empty folder: choose a new one"):
            import_dataset(src, taken, category="bottle")
    hard = tmp_path / "hard"
    _image(hard / "smudge" / "a.png")
    with pytest.raises(ValueError, match=rf"^--hard-negatives needs a set without a published split; {src} \(mvtec-ad\)"):
        import_dataset(src, tmp_path / "o1", category="bottle", hard_negatives=hard)
    with pytest.raises(ValueError, match=r"^--test-years needs a set without a published split"):
        import_dataset(src, tmp_path / "o2", category="bottle", year_from="0", test_years="2024")
