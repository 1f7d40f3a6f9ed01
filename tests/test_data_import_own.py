"""`data import` on a researcher's own data: class folders told which is normal, images at any depth,
masks by stem; COCO / Labelme / YOLO annotations drawn into masks; the study's cross-generation
protocol (years, test years, generated and hard-negative folders). Fixtures are drawn here and in
`phone_study.py`; every mask carries a pattern unique to its image so a mask given to the wrong image,
or drawn on the wrong axis, is seen pixel for pixel.
"""

from __future__ import annotations

import base64
import io
import json
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import phone_study
import pytest
from PIL import Image, ImageDraw

from benchmarks.cli import main
from benchmarks.data.images import load_mask
from benchmarks.data.importer import import_dataset
from benchmarks.data.importer.pipeline import ImportResult, describe
from benchmarks.data.manifest import load_manifest

H, W = 30, 44  # not square: a polygon filled on the wrong axis lands elsewhere


def _noise(path: Path, size: tuple[int, int] = (H, W), mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(zlib.crc32(path.as_posix().encode()))
    pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    image.convert(mode).save(path, **({"quality": 95} if path.suffix == ".jpg" else {}))
    return path


def _pattern(key: str, size: tuple[int, int] = (H, W)) -> np.ndarray:
    """(H, W) bool: a rectangle whose place and size follow `key` (one per image)."""
    k = zlib.crc32(key.encode())
    y0, x0 = 2 + k % (size[0] // 2), 2 + (k // 7) % (size[1] // 2)
    pixels = np.zeros(size, bool)
    pixels[y0:y0 + 3 + k % 5, x0:x0 + 4 + (k // 3) % 6] = True
    return pixels


def _write_mask(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8) * 255).save(path)
    return path


def _table(out: Path) -> pd.DataFrame:
    load_manifest(out / "manifest.csv")
    return pd.read_csv(out / "manifest.csv", keep_default_na=False)


def _mask_of(out: Path, row: pd.Series) -> np.ndarray:
    return load_mask(out / row["mask"]) > 0


def _refusal(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["data", "import", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


# --------------------------------------------------------------------------- class folders, told normal


def make_tiles(root: Path) -> Path:
    """Magnetic-Tile-like: `MT_<class>/Imgs/<stem>.jpg` with the mask `<stem>.png` beside; `MT_Free` the
    normals (with black masks beside); stems 1 and 10 in two classes (a prefix match would mix them)."""
    src = root / "tiles"
    for i in range(7):
        image = _noise(src / "MT_Free" / "Imgs" / f"free_{i}.jpg")
        _write_mask(image.with_suffix(".png"), np.zeros((H, W), bool))
    for cls in ("MT_Crack", "MT_Blowhole"):
        for stem in ("1", "10", "11", "2"):
            image = _noise(src / cls / "Imgs" / f"{stem}.jpg")
            _write_mask(image.with_suffix(".png"), _pattern(f"{cls}/{stem}"))
    _noise(src / "overview.jpg")  # a README figure at the root, outside every class folder
    return src


def test_class_folders_with_a_named_normal_class_import_with_their_own_masks(tmp_path: Path,
                                                                             capsys: pytest.CaptureFixture[str]) -> None:
    src = make_tiles(tmp_path)
    err = _refusal(capsys, str(src), "--out", str(tmp_path / "refused"))
    assert "MT_Free/ (7 images)" in err and "MT_Crack/ (4 images)" in err  # what it saw, with counts
    assert "--normal MT_Free" in err  # and the one flag that makes it work
    assert not (tmp_path / "refused").exists()  # nothing written on refusal

    out = tmp_path / "out"
    assert main(["data", "import", str(src), "--out", str(out), "--normal", "mt_free"]) == 0  # any case
    table = _table(out)
    normals = table[table.label == 0]
    assert sorted(normals.image) == sorted(f"images/MT_Free/Imgs/free_{i}.jpg" for i in range(7))
    assert set(normals.defect) == {"none"} and (normals["mask"] == "").all()
    anomalies = table[table.label == 1]
    assert len(anomalies) == 8 and set(anomalies.defect) == {"crack", "blowhole"}  # the shared MT_ left out
    assert not table.image.str.endswith(".png").any()  # the masks beside the images are not images
    for _, row in anomalies.iterrows():  # each mask is its own image's, pixel for pixel
        cls, stem = row.image.split("/")[1], Path(row.image).stem
        assert (_mask_of(out, row) == _pattern(f"{cls}/{stem}")).all(), row.image
    assert set(table[table.split == "train"].label) == {0}
    info = json.loads((out / "split.json").read_text())
    assert info["normal_classes"] == ["mt_free"]
    assert any("overview.jpg" in n for n in info["notes"])  # left out, and said


def test_class_folders_below_model_folders_and_parallel_masks(tmp_path: Path) -> None:
    """`<model>/{ok,dent}/...` at depth 1 (group = model), images nested deeper; masks in a parallel
    `masks/` folder of each model whose stems repeat across models and classes."""
    src = tmp_path / "phones"
    for model in ("m1", "m2"):
        for i in range(5):
            _noise(src / model / "ok" / "shots" / f"{i}.png")
        for cls in ("dent", "scratch"):
            for i in range(3):
                _noise(src / model / cls / "shots" / f"{i}.png")
                _write_mask(src / model / "masks" / cls / f"{i}_mask.png", _pattern(f"{model}/{cls}/{i}"))
    out = tmp_path / "out"
    import_dataset(src, out)
    table = _table(out)
    assert set(table.group) == {"m1", "m2"}
    anomalies = table[table.label == 1]
    assert len(anomalies) == 12 and (anomalies["mask"] != "").all()
    for _, row in anomalies.iterrows():
        model, cls, _, name = row.image.split("/")[1:]
        assert (_mask_of(out, row) == _pattern(f"{model}/{cls}/{Path(name).stem}")).all(), row.image
    assert (table[table.label == 0].image.str.contains("/ok/")).all()


# --------------------------------------------------------------------------------------- annotations


def _polygon_truth(polygon: list[float]) -> np.ndarray:
    canvas = Image.new("L", (W, H), 0)
    ImageDraw.Draw(canvas).polygon(polygon, fill=255)
    return np.asarray(canvas) > 0


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


TRIANGLE = [30.0, 3.0, 41.0, 20.0, 26.0, 14.0]  # right part of a 44x30 image: transposed it would fall outside


def make_coco(root: Path) -> Path:
    """Flat captures with two COCO files (polygons, one RLE, one bbox-only), an annotation naming an
    image that is not there and a polygon reaching outside its image."""
    src = root / "coco"
    for i in range(10):
        _noise(src / "captures" / f"cap{i}.jpg")
    polygon_images = [{"id": k, "file_name": f"cap{k}.jpg", "width": W, "height": H} for k in (0, 1)]
    first = {"images": [*polygon_images, {"id": 9, "file_name": "gone.jpg", "width": W, "height": H}],
             "categories": [{"id": 1, "name": "Scratch"}, {"id": 2, "name": "crack"}],
             "annotations": [{"id": 1, "image_id": 0, "category_id": 1, "segmentation": [TRIANGLE]},
                             {"id": 2, "image_id": 1, "category_id": 2,
                              "segmentation": [[40.0, 2.0, 50.0, 2.0, 50.0, 10.0, 40.0, 10.0]]},
                             {"id": 3, "image_id": 9, "category_id": 1, "segmentation": [TRIANGLE]}]}
    rle_pixels = _pattern("rle")
    from pycocotools import mask as coco_mask
    encoded = coco_mask.encode(np.asfortranarray(rle_pixels.astype(np.uint8)))
    second = {"images": [{"id": 1, "file_name": "captures/cap2.jpg", "width": W, "height": H},
                         {"id": 2, "file_name": "cap3.jpg", "width": W, "height": H},
                         {"id": 3, "file_name": "cap4.jpg", "width": W, "height": H}],
              "categories": [{"id": 5, "name": "dent"}],
              "annotations": [{"id": 1, "image_id": 1, "category_id": 5,
                               "segmentation": {"size": [H, W], "counts": encoded["counts"].decode()}},
                              {"id": 2, "image_id": 2, "category_id": 5, "bbox": [5, 6, 10, 4]}]}
    (src / "captures" / "a_ann.json").write_text(json.dumps(first))
    (src / "captures" / "b_ann.json").write_text(json.dumps(second))
    return src


def test_coco_polygons_rle_and_boxes_become_masks_where_they_were_drawn(tmp_path: Path) -> None:
    src = make_coco(tmp_path)
    out = tmp_path / "out"
    assert main(["data", "import", str(src), "--out", str(out), "--val-fraction", "0.3", "--test-fraction", "0.3"]) == 0
    table = _table(out).set_index("image")
    anomalies = table[table.label == 1]
    assert sorted(anomalies.index) == [f"images/captures/cap{k}.jpg" for k in (0, 1, 2, 3)]
    assert table.loc["images/captures/cap0.jpg", "defect"] == "scratch"
    assert table.loc["images/captures/cap2.jpg", "defect"] == "dent"
    triangle = _mask_of(out, table.loc["images/captures/cap0.jpg"])
    assert _iou(triangle, _polygon_truth(TRIANGLE)) > 0.8  # on the right axis: transposed it is 0
    assert (_mask_of(out, table.loc["images/captures/cap2.jpg"]) == _pattern("rle")).all()
    clipped = _mask_of(out, table.loc["images/captures/cap1.jpg"])
    assert clipped[2:10, 40:44].mean() > 0.8 and clipped.sum() < 60  # clipped to the image
    box = _mask_of(out, table.loc["images/captures/cap3.jpg"])
    assert box[6:10, 5:15].all() and box.sum() == 40
    info = json.loads((out / "split.json").read_text())
    assert info["box_masks"] == ["images/captures/cap3.jpg"]
    assert info["masks"]["drawn"] == {"box": 1, "polygon": 2, "rle": 1}
    problems = {(p["file"], p["image"]): p for p in info["annotation_problems"]}
    assert ("captures/a_ann.json", "gone.jpg") in problems  # a missing image, named
    assert problems[("captures/a_ann.json", "captures/cap1.jpg")]["what"].startswith("region(s) reach outside")
    assert table.loc["images/captures/cap4.jpg", "label"] == 0  # listed without a region: normal
    assert any("named in no annotation file" in n for n in info["notes"])  # cap5..cap9, counted


def test_coco_size_that_is_not_the_images_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_coco(tmp_path)
    content = json.loads((src / "captures" / "a_ann.json").read_text())
    content["images"][0]["width"], content["images"][0]["height"] = H, W  # swapped
    (src / "captures" / "a_ann.json").write_text(json.dumps(content))
    err = _refusal(capsys, str(src), "--out", str(tmp_path / "out"))
    assert "a_ann.json" in err and "cap0.jpg" in err and "misplaced" in err
    assert not (tmp_path / "out").exists()


def test_labelme_shapes_become_masks(tmp_path: Path) -> None:
    """One Labelme JSON per image in a separate folder (bare imagePath), polygon + rectangle + a mask
    shape; a line is reported, not drawn; an image in the `good/` folder stays normal."""
    src = tmp_path / "labelme"
    for i in range(6):
        _noise(src / "good" / f"g{i}.jpg")
    for i in range(4):
        _noise(src / "defect" / f"d{i}.jpg")
    patch = Image.fromarray((_pattern("lm-mask")[5:15, 5:20]).astype(np.uint8) * 255)
    buffer = io.BytesIO()
    patch.save(buffer, format="PNG")
    for i in range(4):
        shapes = [{"label": "chip", "shape_type": "polygon", "points": [TRIANGLE[k:k + 2] for k in range(0, 6, 2)]},
                  {"label": "chip", "shape_type": "rectangle", "points": [[2, 20], [6, 25]]},
                  {"label": "chip", "shape_type": "line", "points": [[0, 0], [5, 5]]}]
        if i == 3:
            shapes.append({"label": "stain", "shape_type": "mask", "points": [[5, 5], [19, 14]],
                           "mask": base64.b64encode(buffer.getvalue()).decode()})
        (src / "json" / f"d{i}.json").parent.mkdir(parents=True, exist_ok=True)
        (src / "json" / f"d{i}.json").write_text(json.dumps(
            {"shapes": shapes, "imagePath": f"d{i}.jpg", "imageHeight": H, "imageWidth": W}))
    out = tmp_path / "out"
    import_dataset(src, out)
    table = _table(out).set_index("image")
    drawn = _mask_of(out, table.loc["images/defect/d0.jpg"])
    truth = _polygon_truth(TRIANGLE)
    truth[20:25, 2:6] = True
    assert _iou(drawn, truth) > 0.8 and drawn[21, 3] and not drawn[3, 21]
    with_mask = _mask_of(out, table.loc["images/defect/d3.jpg"])
    assert (with_mask[5:15, 5:20] >= _pattern("lm-mask")[5:15, 5:20]).all()
    assert table.loc["images/defect/d0.jpg", "defect"] == "chip"  # a generic bad folder: the label names it
    info = json.loads((out / "split.json").read_text())
    assert info["annotation_files"] == {"src": {"labelme": 4}}
    assert sum(p["count"] for p in info["annotation_problems"] if "line shape" in p["what"]) == 4


def test_yolo_segmentation_and_boxes_become_masks(tmp_path: Path) -> None:
    """`images/` + `labels/` with a data.yaml: normalised polygons, a boxes-only file (box mask, marked),
    an empty label file (a normal image)."""
    src = tmp_path / "yolo"
    (src).mkdir()
    (src / "data.yaml").write_text("names: {0: hairline, 1: burn_in}\n")
    for i in range(8):
        _noise(src / "images" / f"p{i}.jpg")
        (src / "labels").mkdir(exist_ok=True)
        (src / "labels" / f"p{i}.txt").write_text("")
    normalised = " ".join(f"{v / (W if k % 2 == 0 else H):.6f}" for k, v in enumerate(TRIANGLE))
    (src / "labels" / "p0.txt").write_text(f"0 {normalised}\n")
    (src / "labels" / "p1.txt").write_text("1 0.5 0.5 0.2 0.4\n")
    (src / "labels" / "p2.txt").write_text(f"1 {normalised}\n")
    (src / "labels" / "p3.txt").write_text("0 0.25 0.25 0.1 0.1\n")
    out = tmp_path / "out"
    import_dataset(src, out)
    table = _table(out).set_index("image")
    assert table.loc["images/images/p0.jpg", "defect"] == "hairline" and table.loc["images/images/p1.jpg", "defect"] == "burn_in"
    assert _iou(_mask_of(out, table.loc["images/images/p0.jpg"]), _polygon_truth(TRIANGLE)) > 0.8
    box = _mask_of(out, table.loc["images/images/p1.jpg"])
    ys, xs = np.nonzero(box)
    assert (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1) == (9, 21, 17, 27)  # 0.4*30 tall, 0.2*44 wide
    info = json.loads((out / "split.json").read_text())
    assert sorted(info["box_masks"]) == ["images/images/p1.jpg", "images/images/p3.jpg"]
    assert table.loc["images/images/p5.jpg", "label"] == 0


def test_an_annotated_image_in_the_normal_folder_is_refused(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "src"
    for i in range(4):
        _noise(src / "good" / f"g{i}.jpg")
        _noise(src / "bad" / f"b{i}.jpg")
    (src / "good" / "g0.json").write_text(json.dumps(
        {"shapes": [{"label": "x", "shape_type": "polygon", "points": [[1, 1], [9, 1], [9, 9]]}],
         "imagePath": "g0.jpg", "imageHeight": H, "imageWidth": W}))
    err = _refusal(capsys, str(src), "--out", str(tmp_path / "out"))
    assert "normal class folder" in err and "good/g0.jpg" in err


# ------------------------------------------------------------------------------------ the study protocol


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return phone_study.write_study(tmp_path_factory.mktemp("study"))


def _import_study(study: Path, out: Path, *extra: str) -> int:
    return main(["data", "import", str(study / "photos"), "--out", str(out), "--years", str(study / "years.csv"),
                 "--test-years", "2024-2025", "--generated", str(study / "generated"),
                 "--hard-negatives", str(study / "hard-negatives"), *extra])


def test_study_protocol_is_cross_generation_with_generated_and_hard_negative_rows(study: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _import_study(study, out, "--supervised-train", "0.5") == 0
    table = _table(out)
    years = dict(phone_study.MODELS)
    assert (table.group.map(years) == table.year).all()  # group = the model the years table matched
    test = table[table.split == "test"]
    assert set(test.year) == set(phone_study.TEST_YEARS) and (test.source == "real").all()
    assert len(test) == sum(1 for y in years.values() if y in phone_study.TEST_YEARS) * (
        phone_study.NORMALS + phone_study.DEFECTS + phone_study.HARD_NEGATIVES)  # every image of those years
    assert not table[table.split != "test"].year.isin(phone_study.TEST_YEARS).any()
    generated = table[table.source == "generated"]
    assert len(generated) == 4 * phone_study.GENERATED and set(generated.split) == {"train"}
    assert (generated["mask"] != "").all() and set(generated.defect) == set(phone_study.DEFECT_KINDS)
    hard = table[table.hard_negative.astype(str).str.lower() == "true"]
    assert len(hard) == 6 * phone_study.HARD_NEGATIVES and set(hard.label) == {0}
    assert set(hard.split) == {"train", "val", "test"}
    real_anomalies = table[(table.label == 1) & (table.source == "real")]
    assert (real_anomalies["mask"] != "").all()  # every annotated defect has its mask
    val = table[table.split == "val"]
    assert set(val.label) == {0, 1} and (val.source == "real").all()
    assert set(real_anomalies[real_anomalies.split == "train"].year) <= {2017, 2019, 2021, 2023}
    info = json.loads((out / "split.json").read_text())
    assert info["test_years"] == [2024, 2025] and "cross-generation" in info["rule"]
    assert info["protocol_counts"]["train"]["by_source"] == {"generated": 16, "real": int((table.split == "train").sum()) - 16}
    for _, row in real_anomalies.head(4).iterrows():  # the COCO outline is where the defect was drawn
        model, name = row.image.split("/")[1:]
        index = int(Path(name).stem.rsplit("_", 1)[1])
        truth = Image.new("L", (phone_study.WIDTH, phone_study.HEIGHT), 0)
        ImageDraw.Draw(truth).polygon(phone_study.defect_polygon(model, index), fill=255)
        assert _iou(_mask_of(out, row), np.asarray(truth) > 0) > 0.6  # thin shapes: edge pixels differ


def test_study_protocol_refusals(study: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    partial = tmp_path / "years.csv"
    partial.write_text("model,year\naurora-x,2017\nborealis-2,2019\n")
    err = _refusal(capsys, str(study / "photos"), "--out", str(tmp_path / "o1"), "--years", str(partial))
    assert "no release year for" in err and "cirrus (13)" in err and "fornax-s (13)" in err
    err = _refusal(capsys, str(study / "photos"), "--out", str(tmp_path / "o2"), "--test-years", "2024")
    assert "--years FILE or --year-from" in err

    leaky = tmp_path / "generated"
    shutil_copy = (study / "photos" / "aurora-x" / "aurora-x_009.jpg").read_bytes()
    (leaky / "aurora-x" / "scratch").mkdir(parents=True)
    (leaky / "aurora-x" / "scratch" / "copy.jpg").write_bytes(shutil_copy)
    err = _refusal(capsys, str(study / "photos"), "--out", str(tmp_path / "o3"), "--years", str(study / "years.csv"),
                   "--generated", str(leaky))
    assert "byte-identical to the real image" in err and "aurora-x_009.jpg" in err

    future = tmp_path / "future"
    _noise(future / "equinox" / "scratch" / "g.png")
    err = _refusal(capsys, str(study / "photos"), "--out", str(tmp_path / "o4"), "--years", str(study / "years.csv"),
                   "--test-years", "2024-2025", "--generated", str(future))
    assert "is of 2024, a test year" in err
    assert not any((tmp_path / f"o{k}").exists() for k in range(1, 5))


def _import_model_years(tmp_path: Path) -> ImportResult:
    """`model_<year>/{good,crack}/` for 2018, 2020 and 2024 (4 + 3 images each), imported with the year read from
    the folder name and 2024 held out for test."""
    src = tmp_path / "src"
    for year in (2018, 2020, 2024):
        for i in range(4):
            _noise(src / f"model_{year}" / "good" / f"{i}.png")
        for i in range(3):
            _noise(src / f"model_{year}" / "crack" / f"{i}.png")
    return import_dataset(src, tmp_path / "out", year_from=r"model_(?P<year>\d{4})", test_years="2024")


def test_year_from_a_path_pattern(tmp_path: Path) -> None:
    table = _table(_import_model_years(tmp_path).manifest.parent)
    assert set(table[table.split == "test"].year) == {2024}
    assert set(table[table.split != "test"].year) == {2018, 2020}


def test_imported_study_runs_the_ltfm_ablation_with_no_other_step(study: Path, tmp_path: Path) -> None:
    out = tmp_path / "imported"
    assert _import_study(study, out, "--supervised-train", "0.5") == 0
    run_dir = tmp_path / "run"
    assert main(["run", "--methods", "ltfm", "--datasets", f"manifest:{out}/manifest.csv", "--out", str(run_dir),
                 "--weights", "random", "--no-report", "--option", "ltfm.init=scratch",
                 "--option", "ltfm.epochs=1", "--option", "ltfm.tower=dinov2-tiny", "--option", "ltfm.dim=64"]) == 0
    cells = {c["variant"]: c for c in map(json.loads, (run_dir / "runs.jsonl").read_text().splitlines())}
    assert set(cells) == {"base", "ft-real", "ft-real-gen"}
    assert all(c["status"] == "ok" for c in cells.values()), [c["error"] for c in cells.values()]
    assert cells["ft-real-gen"]["counts"]["n_train"] > cells["ft-real"]["counts"]["n_train"]  # + generated rows
    for cell in cells.values():
        assert set(cell["breakdowns"]["year"]) == {"2024", "2025"}  # the cross-generation breakdown
        assert cell["metrics"]["pixel_auroc"] is not None


def test_roi_per_group_or_one_for_all(study: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rois = tmp_path / "rois"
    rois.mkdir()
    for model in phone_study.MODELS:
        screen = np.zeros((phone_study.HEIGHT * 2, phone_study.WIDTH * 2), np.uint8)  # any resolution, same aspect
        screen[30:-30, 16:-16] = 255
        Image.fromarray(screen).save(rois / f"{model}.png")
    out = tmp_path / "out"
    assert _import_study(study, out, "--roi", str(rois)) == 0
    table = _table(out)
    assert (table["roi"] == "roi/" + table["group"] + ".png").all()
    assert load_manifest(out / "manifest.csv").has_roi

    (rois / "cirrus.png").unlink()
    err = _refusal(capsys, str(study / "photos"), "--out", str(tmp_path / "o1"), "--years", str(study / "years.csv"),
                   "--roi", str(rois))
    assert "no mask for the group(s) cirrus (13)" in err
    wide = tmp_path / "wide.png"
    Image.fromarray(np.full((10, 40), 255, np.uint8)).save(wide)
    err = _refusal(capsys, str(study / "photos"), "--out", str(tmp_path / "o2"), "--roi", str(wide))
    assert "another aspect ratio" in err and not (tmp_path / "o2").exists()


# --------------------------------------------------------------------------- protocol rules, one by one

from benchmarks.data.importer import protocol  # noqa: E402
from benchmarks.data.importer.items import Drawing, Item  # noqa: E402


def _item(rel: str, image: Path | None = None, **fields: object) -> Item:
    base: dict[str, object] = {"label": 0, "defect": "none", "group": rel.split("/")[0]}
    return Item(image=image or Path(rel), rel=rel, **(base | fields))  # type: ignore[arg-type]


def test_years_table_columns_rows_and_every_problem_by_line(tmp_path: Path) -> None:
    table = tmp_path / "years.csv"
    table.write_text("Notes,Model,Release_Year\nflagship,Aurora-X,2017\n,Borealis,2019.0\nNA,NA,2020\n")
    rule = protocol.read_years_table(table)
    assert rule.table == {"aurora-x": 2017, "borealis": 2019, "na": 2020}  # "NA" is a name, not a missing value
    assert rule.described == str(table) and rule.pattern is None and rule.part is None
    first = tmp_path / "first.csv"  # no known name column: the first column that is not the year
    first.write_text("handset,year\nCirrus,2021\n")
    assert protocol.read_years_table(first).table == {"cirrus": 2021}
    bad = tmp_path / "bad.csv"
    bad.write_text("model,year\na,20x5\nb,1800\n,2020\nc,2019\nC,2020\nd,2021\n")
    with pytest.raises(ValueError) as refused:
        protocol.read_years_table(bad)
    assert str(refused.value) == (f"--years {bad}: line 2: year '20x5' is not a number; line 3: year 1800 is not a "
                                  "release year; line 4: empty name; line 6: C is given 2020 and 2019")
    edges = tmp_path / "edges.csv"
    edges.write_text("model,year\nold,1900\nnew,2100\n")
    assert protocol.read_years_table(edges).table == {"old": 1900, "new": 2100}
    one = tmp_path / "one.csv"
    one.write_text("year\n2020\n")
    with pytest.raises(ValueError, match=r"needs a name column and a year column \(year, release_year, released\); "
                                         r"has year$"):
        protocol.read_years_table(one)
    no_year = tmp_path / "no_year.csv"
    no_year.write_text("model,launch\na,2020\n")
    with pytest.raises(ValueError, match="has model, launch$"):
        protocol.read_years_table(no_year)
    with pytest.raises(FileNotFoundError, match=f"--years {tmp_path / 'nope.csv'} does not exist"):
        protocol.read_years_table(tmp_path / "nope.csv")


def test_year_from_a_folder_index_or_a_pattern() -> None:
    by_part = protocol.year_rule_from(" 1 ")
    assert by_part.part == 1 and by_part.described == "folder  1  below the root"
    assert by_part.year_of("phones/pixel-2019/good/a.png") == (2019, None)
    assert by_part.year_of("phones/pixel/good/a.png") == (None, None)  # no year in that folder's name
    assert by_part.year_of("a.png") == (None, None)  # not that deep
    assert protocol.year_rule_from("0").year_of("2021_run/x.png") == (2021, None)
    by_pattern = protocol.year_rule_from(r"(?P<group>[a-z]+)-(?P<year>\d{4})")
    assert by_pattern.described == r"(?P<group>[a-z]+)-(?P<year>\d{4})"
    assert by_pattern.year_of("x/pixel-2022/a.png") == (2022, "pixel")
    assert protocol.year_rule_from(r"y(\d{4})").year_of("y2020/a.png") == (2020, None)
    assert protocol.year_rule_from(r"20\d\d").year_of("m/2023/a.png") == (2023, None)
    with pytest.raises(ValueError, match=r"matched 'abcd' in m/abcd/a.png: not a year"):
        protocol.year_rule_from(r"m/(\w+)/").year_of("m/abcd/a.png")
    with pytest.raises(ValueError, match=r"^--year-from '\(' is not a regular expression: "):
        protocol.year_rule_from("(")


def test_years_table_takes_the_deepest_folder_name_as_the_group_and_refuses_two_years() -> None:
    rule = protocol.YearRule(table={"aurora": 2017, "aurora-x": 2017, "borealis": 2019})
    assert rule.year_of("Aurora/Aurora-X/good/a.png") == (2017, "Aurora-X")
    assert rule.year_of("unknown/a.png") == (None, None)
    with pytest.raises(ValueError, match=r"aurora/borealis/a.png: its folders name different years .*aurora=2017, "
                                         r"borealis=2019"):
        rule.year_of("aurora/borealis/a.png")


def test_test_years_ranges_lists_and_refusals() -> None:
    assert protocol.parse_test_years("2024 - 2025") == {2024, 2025}
    assert protocol.parse_test_years("2021,2023-2024, ") == {2021, 2023, 2024}
    assert protocol.parse_test_years("2024") == {2024}
    with pytest.raises(ValueError, match="2025-2024 runs backwards"):
        protocol.parse_test_years("2025-2024")
    with pytest.raises(ValueError, match="write years as"):
        protocol.parse_test_years("24-25")
    with pytest.raises(ValueError, match="--test-years is empty"):
        protocol.parse_test_years(" , ")


def test_assign_years_strips_the_extra_roots_and_names_every_folder_without_a_year() -> None:
    rule = protocol.YearRule(table={"aurora": 2017})
    items = [_item("aurora/a.png"), _item("generated/aurora/g.png", source="generated")]
    done = protocol.assign_years(items, rule, {"generated/": None}, required=True)
    assert [(i.year, i.group) for i in done] == [(2017, "aurora"), (2017, "aurora")]
    many = [_item(f"m{k:02d}/x/{j}.png") for k in range(14) for j in range(k + 1)] + [_item("root.png")]
    with pytest.raises(ValueError) as refused:
        protocol.assign_years(many, rule, {}, required=True)
    text = str(refused.value)
    assert text.startswith(f"no release year for {len(many)} image(s), in: m13/x (14), m12/x (13), ")
    assert "m02/x (3) and 3 more folder(s); add their folder or model names to the years table" in text
    assert "m01/x" not in text
    few = [_item("z/a.png"), _item("a.png")]
    with pytest.raises(ValueError, match=r"in: z \(1\), \(the root\) \(1\); --year-from 'folder 0' finds no year"):
        protocol.assign_years(few, protocol.YearRule(part=0, described="folder 0"), {}, required=True)
    kept = protocol.assign_years(few + [_item("g/a.png", source="generated")], rule, {}, required=False)
    assert [i.year for i in kept] == [None, None, None]
    generated_only = protocol.assign_years([_item("g/a.png", source="generated")], rule, {}, required=True)
    assert generated_only[0].year is None  # only the real set must have years


def test_hard_negative_and_generated_folders_rewrite_their_items() -> None:
    drawn = _item("hn/smudge/a.png", label=1, defect="smudge", mask=Path("m.png"), drawing=Drawing((), ("a.json",), (H, W), "smudge"))
    (hard,) = protocol.hard_negative_items([drawn])
    assert (hard.label, hard.defect, hard.mask, hard.drawing, hard.hard_negative, hard.from_normal_folder) == (
        0, "none", None, None, True, True)
    assert hard.rel == drawn.rel and hard.image == drawn.image
    (gen,) = protocol.generated_items([drawn])
    assert gen.source == "generated" and (gen.label, gen.defect, gen.mask) == (1, "smudge", Path("m.png"))


def test_roi_for_every_image_or_per_group_with_refusals(tmp_path: Path) -> None:
    one = _write_mask(tmp_path / "roi.png", np.ones((15, 22), bool))  # half of 30 x 44: same aspect ratio
    images = [_item("a/x.png", _noise(tmp_path / "a" / "x.png"), group="A"),
              _item("b/y.png", _noise(tmp_path / "b" / "y.png"), group="b")]
    assert protocol.regions_of_interest(images, one) == {"a/x.png": one, "b/y.png": one}
    folder = tmp_path / "rois"
    a = _write_mask(folder / "a.png", np.ones((H, W), bool))
    b = _write_mask(folder / "B.png", np.ones((H, W), bool))
    (folder / "notes.txt").write_text("not a mask")
    assert protocol.regions_of_interest(images, folder) == {"a/x.png": a, "b/y.png": b}
    groups = [_item(f"g{k}/x.png", images[0].image, group=f"g{k:02d}") for k in range(14) for _ in range(k + 1)]
    with pytest.raises(ValueError) as refused:
        protocol.regions_of_interest(groups, folder)
    assert str(refused.value).startswith(f"--roi {folder}: no mask for the group(s) g13 (14), g12 (13), ")
    assert "g02 (3); name them <group>.png (found: a, b)" in str(refused.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"\(found: none\)"):
        protocol.regions_of_interest(images, tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match=f"--roi {tmp_path / 'none.png'} does not exist"):
        protocol.regions_of_interest(images, tmp_path / "none.png")
    wide = _write_mask(tmp_path / "wide.png", np.ones((H, 2 * W), bool))
    many = [_item(f"{k}.png", images[0].image) for k in range(4)]
    with pytest.raises(ValueError) as refused:
        protocol.regions_of_interest(many, wide)
    assert str(refused.value) == ("--roi: 4 image(s) have another aspect ratio than their region of interest (e.g. "
                                  "0.png (44x30) with wide.png (88x30); 1.png (44x30) with wide.png (88x30); "
                                  "2.png (44x30) with wide.png (88x30))")


# --------------------------------------------------------------------------- annotation readers, unit by unit

from benchmarks.data.importer import annotations as ann  # noqa: E402


def _labelme(path: Path, image_path: str | None, shapes: list[dict[str, object]], **declared: int) -> Path:
    content: dict[str, object] = {"shapes": shapes, **({"imagePath": image_path} if image_path is not None else {})}
    content |= {f"image{k.capitalize()}": v for k, v in declared.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))
    return path


def test_labelme_circle_is_a_64_gon_of_the_radius_to_its_edge_point() -> None:
    points = ann._circle((10.0, 20.0), (13.0, 24.0))
    xs, ys = np.array(points[0::2]), np.array(points[1::2])
    assert len(xs) == 64 and np.allclose(np.hypot(xs - 10, ys - 20), 5.0)
    assert (xs[0], ys[0]) == pytest.approx((15.0, 20.0))  # angle 0 first
    assert len({(round(x, 6), round(y, 6)) for x, y in zip(xs, ys, strict=True)}) == 64  # no repeated closing point
    assert ann._circle((0.0, 0.0), (0.0, 2.0), sides=4) == pytest.approx((2.0, 0.0, 0.0, 2.0, -2.0, 0.0, 0.0, -2.0))


def test_labelme_mask_shape_lands_at_its_box_and_is_clipped(tmp_path: Path) -> None:
    patch = np.zeros((4, 6), np.uint8)
    patch[1:3, 2:5] = 255
    buffer = io.BytesIO()
    Image.fromarray(patch).save(buffer, format="PNG")
    encoded = base64.b64encode(buffer.getvalue()).decode()
    shape = ann._labelme_mask(encoded, [(40.0, 20.0), (45.0, 23.0)], "stain", (H, W))
    pixels = ann.shape_pixels(shape, (H, W))
    expected = np.zeros((H, W), bool)
    expected[21:23, 42:44] = True  # the patch's columns 2-4 from x 40 are clipped at W = 44
    assert (pixels == expected).all() and shape.category == "stain" and shape.kind == "rle"
    corner = ann._labelme_mask(encoded, [(0.0, 0.0), (5.0, 3.0)], "stain", (H, W))
    expected = np.zeros((H, W), bool)
    expected[1:3, 2:5] = True
    assert (ann.shape_pixels(corner, (H, W)) == expected).all()
    outside = ann._labelme_mask(encoded, [(50.0, 40.0), (55.0, 43.0)], "stain", (H, W))
    assert not ann.shape_pixels(outside, (H, W)).any()


def test_labelme_files_find_their_image_and_read_every_shape_kind(tmp_path: Path) -> None:
    root = tmp_path / "set"
    a = _noise(root / "imgs" / "A.png")
    b = _noise(root / "other" / "b.jpg")
    c = _noise(root / "third" / "c.png")
    _labelme(root / "labels" / "a.json", "..\\imgs\\A.png", [  # Windows separators, resolved beside the JSON
        {"shape_type": "polygon", "label": "scratch", "points": [[1, 1], [9, 1], [9, 6]]},
        {"shape_type": "rectangle", "label": "", "points": [[20, 12], [14, 8]]},  # corners in any order
        {"shape_type": "circle", "label": "dent", "points": [[30, 15], [33, 15]]},
        {"shape_type": "line", "label": "x", "points": [[1, 1], [5, 5]]},
        {"shape_type": "point", "label": "x", "points": [[1, 1]]},
        {"shape_type": "circle", "label": "x", "points": [[1, 1]]},
    ], height=H, width=W)
    _labelme(root / "other" / "b.json", None, [{"label": "crack", "points": [[1, 1], [8, 1], [8, 8]]}])  # by stem
    _labelme(root / "elsewhere" / "c.json", "c.png", [{"label": "crack", "points": [[1, 1], [8, 1], [8, 8]]}])
    _labelme(root / "orphans" / "z.json", None, [{"label": "crack", "points": [[1, 1], [8, 1], [8, 8]]}])
    found = ann.read_annotations(root, [a, b, c])
    assert found.files == {"labelme": 4}
    drawing = found.drawings[a]
    assert [s.kind for s in drawing.shapes] == ["polygon", "box", "polygon"]
    assert [s.category for s in drawing.shapes] == ["scratch", "defect", "dent"]  # an empty label is "defect"
    assert drawing.shapes[1].points == (14.0, 8.0, 20.0, 12.0)
    assert len(drawing.shapes[2].points) == 128 and drawing.files == ("labels/a.json",)
    assert set(found.drawings) == {a, b, c}
    problems = {(p.file, p.image, p.count, p.what) for p in found.problems}
    assert ("labels/a.json", "imgs/A.png", 1, "line shape(s) without an area: not drawn") in problems
    assert ("labels/a.json", "imgs/A.png", 1, "point shape(s) without an area: not drawn") in problems
    assert ("labels/a.json", "imgs/A.png", 1, "circle shape(s) without an area: not drawn") in problems
    assert ("orphans/z.json", "z", 1, "names no image (no imagePath, no image of its stem): not used") in problems
    assert len(problems) == 4


def test_labelme_declared_size_must_be_the_images(tmp_path: Path) -> None:
    root = tmp_path / "set"
    a = _noise(root / "a.png")
    _labelme(root / "a.json", "a.png", [], height=H, width=W + 1)
    with pytest.raises(ValueError, match=rf"a.json: declares a.png as {W + 1}x{H} but the image is {W}x{H}"):
        ann.read_annotations(root, [a])
    _labelme(root / "a.json", "a.png", [], height=W, width=H)
    with pytest.raises(ValueError, match="the annotation follows the stored pixels; the image has an EXIF rotation"):
        ann.read_annotations(root, [a])
    _labelme(root / "a.json", "a.png", [], height=H, width=W)
    assert ann.read_annotations(root, [a]).unannotated == {a}  # listed with no region: an annotated normal


def test_yolo_names_from_the_nearest_name_file_up_to_the_root(tmp_path: Path) -> None:
    root = tmp_path / "set"
    labels = root / "train" / "labels"
    labels.mkdir(parents=True)
    label = labels / "x.txt"
    label.write_text("")
    assert ann._yolo_names(label, root) is None
    (tmp_path / "classes.txt").write_text("above-the-root\n")
    assert ann._yolo_names(label, root) is None  # not read above the set's root
    (root / "data.yml").write_text("names:\n  10: ten\n  2: two\n  1: one\n")
    assert ann._yolo_names(label, root) == ["one", "two", "ten"]  # keys in numeric order, not text order
    (root / "train" / "obj.names").write_text("a\n\n b \n")
    assert ann._yolo_names(label, root) == ["a", "b"]  # the nearest folder wins, blank lines dropped
    (labels / "dataset.yaml").write_text("names: [p, q]\n")
    assert ann._yolo_names(label, root) == ["p", "q"]
    (labels / "data.yaml").write_text("nc: 2\n")  # no names: the next name file of that folder
    assert ann._yolo_names(label, root) == ["p", "q"]


def test_yolo_boxes_and_polygons_scale_to_the_image(tmp_path: Path) -> None:
    root = tmp_path / "set"
    image = _noise(root / "images" / "x.png")
    (root / "labels").mkdir()
    (root / "labels" / "x.txt").write_text("0 0.5 0.5 0.25 0.2\n1 0.1 0.1 0.3 0.1 0.3 0.4\n\n7 0.5 0.5\nq 1 2 3 4\n")
    (root / "classes.txt").write_text("scratch\ncrack\n")
    found = ann.read_annotations(root, [image])
    shapes = found.drawings[image].shapes
    assert [(s.kind, s.category) for s in shapes] == [("box", "scratch"), ("polygon", "crack")]
    assert shapes[0].points == pytest.approx((0.375 * W, 0.4 * H, 0.625 * W, 0.6 * H))
    assert shapes[1].points == pytest.approx((0.1 * W, 0.1 * H, 0.3 * W, 0.1 * H, 0.3 * W, 0.4 * H))
    (problem,) = found.problems
    assert (problem.file, problem.image, problem.count) == ("labels/x.txt", "images/x.png", 2)
    assert found.files == {"yolo": 1}


def test_the_printed_summary_gives_each_splits_counts_years_and_notes(tmp_path: Path) -> None:
    result = _import_model_years(tmp_path)
    lines = describe(result)
    assert lines[0] == f"imported per-class: 21 images into {result.manifest}"
    assert lines[1].startswith("  train      6 normal      0 anomalous; years 2018-2020")
    assert lines[3] == "  test       4 normal      3 anomalous (crack 3); year 2024"
    assert lines[-2:] == [f"split rule, seed, counts and content hashes: {result.split_file}",
                          f"next: python -m benchmarks run --all --datasets manifest:{result.manifest}"]


def test_coco_file_names_are_matched_by_tail_folder_or_identical_bytes_and_problems_counted(tmp_path: Path) -> None:
    root = tmp_path / "set"
    a1 = _noise(root / "lot1" / "a.png")
    a2 = _noise(root / "lot2" / "a.png")
    b1 = _noise(root / "lot1" / "b.png")
    b2 = root / "lot2" / "b.png"
    b2.write_bytes(b1.read_bytes())  # byte-identical copies: both get the regions
    c1 = _noise(root / "x" / "c.png")
    c2 = _noise(root / "y" / "c.png")
    d = _noise(root / "d.png")
    coco = {"images": [{"id": 1, "file_name": "LOT2\\A.png"}, {"id": 2, "file_name": "b.png"},
                       {"id": 3, "file_name": "c.png"}, {"id": 4, "file_name": "gone.png"},
                       {"id": 5, "file_name": "d.png", "height": H}],
            "categories": [{"id": 7, "name": "Scratch Mark"}],
            "annotations": [{"image_id": 1, "category_id": 7, "bbox": [1, 2, 5, 4]},
                            {"image_id": 2, "category_id": 9, "segmentation": [[1, 1, 9, 1, 9, 6]]},
                            {"image_id": 3, "bbox": [1, 1, 3, 3]},
                            {"image_id": 5, "segmentation": {"size": [H, W], "counts": [0, 3, H * W - 3]}},
                            {"image_id": 5, "category_id": 7},
                            {"image_id": 99, "bbox": [0, 0, 1, 1]}, {"image_id": 99, "bbox": [0, 0, 1, 1]},
                            {"image_id": 2, "segmentation": [[1, 1, 2, 2]]}]}
    (root / "ann.json").write_text(json.dumps(coco))
    found = ann.read_annotations(root, [a1, a2, b1, b2, c1, c2, d])
    assert set(found.drawings) == {a2, b1, b2, d}  # lot2's a by its tail; c is ambiguous; gone is absent
    assert [(s.kind, s.category, s.points) for s in found.drawings[a2].shapes] == [
        ("box", "Scratch Mark", (1.0, 2.0, 6.0, 6.0))]
    assert found.drawings[b1].shapes == found.drawings[b2].shapes
    assert found.drawings[b1].shapes[0].category == "9"  # an unknown category id is named by its number
    rle = found.drawings[d].shapes[0]
    assert rle.kind == "rle" and ann.shape_pixels(rle, (H, W)).sum() == 3
    problems = {(p.file, p.image, p.count, p.what) for p in found.problems}
    assert ("ann.json", "image_id 99", 2, "annotation(s) name an image id not in 'images'") in problems
    assert ("ann.json", "gone.png", 1, "names an image that is not in the set: its regions are not used") in problems
    assert ("ann.json", "c.png", 1, "names an image that matches 2 different files (x/c.png, y/c.png): its "
            "regions are not used") in problems
    assert ("ann.json", "d.png", 1, "annotation(s) with neither segmentation nor bbox: not drawn") in problems
    for copy in ("lot1/b.png", "lot2/b.png"):
        assert ("ann.json", copy, 1, "polygon(s) with fewer than 3 points: no area, not drawn") in problems
    assert len(problems) == 6
    (root / "bad.json").write_text("{not json")
    broken = ann.read_annotations(root, [d])
    assert any(p.file == "bad.json" and p.what.startswith("not readable as JSON (") for p in broken.problems)


def test_regions_reaching_outside_are_counted_and_clipped_and_the_main_category_is_the_largest() -> None:
    shape = ann.Shape("polygon", "a", (0.0, -0.5, 10.0, -0.5, 10.0, 5.0))
    assert not ann._reaches_outside(shape, H, W)  # within the one-pixel tolerance
    assert ann._reaches_outside(ann.Shape("polygon", "a", (0.0, -2.0, 10.0, 0.0, 10.0, 5.0)), H, W)
    assert ann._reaches_outside(ann.Shape("polygon", "a", (0.0, 0.0, 10.0, H + 2.0, 10.0, 5.0)), H, W)
    assert ann._reaches_outside(ann.Shape("rle", "a", rle_size=(H, W + 1), rle_counts=(0, 1)), H, W)
    assert not ann._reaches_outside(ann.Shape("rle", "a", rle_size=(H, W), rle_counts=(0, 1)), H, W)
    box = ann.shape_pixels(ann.Shape("box", "a", (1.5, 2.5, 4.2, 3.1)), (H, W))
    expected = np.zeros((H, W), bool)
    expected[2:4, 1:5] = True  # floor of the start, ceil of the end
    assert (box == expected).all()
    big, small = ann.Shape("box", "zeta", (0, 0, 10, 10)), ann.Shape("box", "alpha", (0, 0, 2, 2))
    assert ann._main_category([small, big], (H, W)) == "zeta"
    assert ann._main_category([ann.Shape("box", "zeta", (0, 0, 2, 2)), small], (H, W)) == "alpha"  # a tie: by name


def test_protocol_edges_numeric_names_the_deepest_group_and_the_folder_list_cut() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "years.csv"
        table.write_text("model,year\n007,2019\n")
        assert protocol.read_years_table(table).table == {"007": 2019}  # names stay text, leading zeros and all
    rule = protocol.YearRule(table={"beta": 2018, "alpha": 2018})
    assert rule.year_of("beta/Alpha/x.png") == (2018, "Alpha")  # the deepest folder, not the last by name
    for folders, tail in ((12, ""), (13, " and 1 more folder(s)")):
        items = [_item(f"f{k:02d}/x.png") for k in range(folders)]
        with pytest.raises(ValueError) as refused:
            protocol.assign_years(items, protocol.YearRule(table={}), {}, required=True)
        assert str(refused.value).split(";")[0].endswith("f11 (1)" + tail)  # twelve listed, the rest counted
    with pytest.raises(ValueError, match=r"^--test-years is empty$"):
        protocol.parse_test_years(",")
