"""ROI-guided image scores (SPEC 7, `--roi`): the map pooled inside each image's region of interest,
chosen on validation, measured beside the method's own score, and the QC page's region inside it.

The fixture: phones (a grey body on a dark plate) whose normal and anomalous images all carry a
bright glare on the *background* in a random corner, and whose anomalies carry a smaller bright
defect on the body. `brightest-spot` (map = brightness, score = its max) then reads the glare on
every image when it looks at the whole picture (AUROC about 0.5) and the defect only inside the body.
"""

from __future__ import annotations

import json
from pathlib import Path

import dummy_plugins  # noqa: F401  (registers brightest-spot in this process and the cell processes)
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from benchmarks.cli import main
from benchmarks.data.manifest import load_manifest
from benchmarks.inspection.defect_kinds import crop_bounds, region_size
from benchmarks.inspection.readings import InspectedImage, Reading, page_accuracy, peak_region
from benchmarks.plugins.contract import MapPooling
from benchmarks.running.roi_scoring import RoiPooler, compare, roi_on_map

H, W = 48, 32
BODY = (8, 6, 40, 26)  # rows 8..40, cols 6..26


def _phone(path: Path, defect: bool, rng: np.random.Generator) -> tuple[Path, np.ndarray]:
    pixels = np.full((H, W, 3), 20, np.uint8)
    pixels[BODY[0]:BODY[2], BODY[1]:BODY[3]] = 110 + rng.integers(0, 10)
    corner_y, corner_x = int(rng.choice([0, H - 4])), int(rng.choice([0, W - 4]))
    pixels[corner_y:corner_y + 4, corner_x:corner_x + 4] = 200 + rng.integers(0, 55)  # glare, off the body
    mask = np.zeros((H, W), bool)
    if defect:
        y, x = int(rng.integers(BODY[0] + 2, BODY[2] - 4)), int(rng.integers(BODY[1] + 2, BODY[3] - 4))
        pixels[y:y + 2, x:x + 2] = 170 + rng.integers(0, 20)
        mask[y:y + 2, x:x + 2] = True
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path, mask


def write_roi_set(root: Path, with_roi: bool = True) -> Path:
    rng = np.random.default_rng(3)
    roi = np.zeros((H, W), bool)
    roi[BODY[0]:BODY[2], BODY[1]:BODY[3]] = True
    (root / "roi").mkdir(parents=True, exist_ok=True)
    Image.fromarray(roi.astype(np.uint8) * 255).save(root / "roi" / "body.png")
    rows = []
    for split, normals, anomalies in (("train", 6, 0), ("val", 8, 8), ("test", 12, 12)):
        for i in range(normals + anomalies):
            anomalous = i >= normals
            image, mask = _phone(root / "images" / split / f"{i:02d}.png", anomalous, rng)
            mask_path = ""
            if anomalous:
                mask_path = f"masks/{split}/{i:02d}.png"
                (root / "masks" / split).mkdir(parents=True, exist_ok=True)
                Image.fromarray(mask.astype(np.uint8) * 255).save(root / mask_path)
            rows.append({"image": f"images/{split}/{i:02d}.png", "label": int(anomalous), "split": split,
                         "source": "real", "group": "p", "defect": "spot" if anomalous else "none",
                         "hard_negative": "false", "mask": mask_path, "roi": "roi/body.png" if with_roi else ""})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root / "manifest.csv"


def _run(manifest: Path, out: Path, *extra: str) -> dict[str, object]:
    assert main(["run", "--methods", "brightest-spot", "--datasets", f"manifest:{manifest}", "--out", str(out),
                 "--preset", "smoke", "--weights", "random", "--no-report", *extra]) == 0
    (cell,) = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert cell["status"] == "ok", cell["error"]
    return cell


@pytest.fixture(scope="module")
def roi_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_roi_set(tmp_path_factory.mktemp("roi"))


def test_roi_scores_read_the_defect_and_auto_chooses_them_on_validation(roi_manifest: Path, tmp_path: Path) -> None:
    cell = _run(roi_manifest, tmp_path / "run")
    roi = cell["roi"]
    assert roi["mode"] == "auto" and roi["pooling"] == "max of the map"
    assert roi["val_auroc_roi"] == 1.0 and roi["val_auroc_own"] < 0.8  # the glare hides the defect
    assert roi["used"] is True and "validation AUROC" in roi["reason"]
    assert roi["roi_auroc"] == 1.0 and roi["own_auroc"] < 0.8 and roi["map_auroc"] == pytest.approx(roi["own_auroc"])
    assert cell["metrics"]["image_auroc"] == roi["roi_auroc"]  # the main metrics are the chosen scoring's
    assert roi["normal_peaks_outside"] == 1.0  # every normal's peak was the glare
    assert roi["roi_fpr"] < roi["own_fpr"] and roi["delong_p"] < 0.05
    scores = pd.read_parquet(tmp_path / "run" / cell["scores_file"])
    assert {"score_own", "score_map", "score_roi"} <= set(scores.columns)
    assert (scores["score"] == scores["score_roi"]).all()


def test_roi_off_keeps_the_own_score_and_still_measures_both(roi_manifest: Path, tmp_path: Path) -> None:
    cell = _run(roi_manifest, tmp_path / "run", "--roi", "off")
    assert cell["roi"]["used"] is False and cell["roi"]["roi_auroc"] == 1.0
    assert cell["metrics"]["image_auroc"] == cell["roi"]["own_auroc"]


def test_a_dataset_without_roi_records_none(tmp_path: Path) -> None:
    cell = _run(write_roi_set(tmp_path / "data", with_roi=False), tmp_path / "run")
    assert cell["roi"] is None


def test_the_report_states_the_image_score_and_shows_both(roi_manifest: Path, tmp_path: Path) -> None:
    _run(roi_manifest, tmp_path / "run")
    assert main(["report", str(tmp_path / "run")]) == 0
    report = (tmp_path / "run" / "report.md").read_text()
    assert "| Image score |" in report and "ROI: max of the map" in report
    assert "ROI-guided image scores" in report and "Image scores, ROI-guided" in report
    table = pd.read_csv(tmp_path / "run" / "tables" / next(
        p.name for p in (tmp_path / "run" / "tables").glob("roi_manifest*.csv") if "by_defect" not in p.name))
    assert table.loc[0, "roi_auroc"] == 1.0 and table.loc[0, "roi_used"]


def test_pooler_pools_inside_and_outside_as_declared(tmp_path: Path) -> None:
    roi = np.zeros((8, 8), bool)
    roi[2:6, 2:6] = True
    Image.fromarray(roi.astype(np.uint8) * 255).save(tmp_path / "roi.png")
    values = np.zeros((4, 4))
    values[0, 0], values[1, 1], values[2, 2] = 9.0, 3.0, 2.0  # the peak outside the ROI
    pooler = RoiPooler(MapPooling("max"))
    pooler.add([values], [tmp_path / "roi.png"])
    assert pooler.whole == [9.0] and pooler.inside == [3.0] and pooler.peak_outside == [True]
    top = RoiPooler(MapPooling("top_mean", 0.5))
    top.add([values], [tmp_path / "roi.png"])
    assert top.inside == [pytest.approx((3.0 + 2.0) / 2)]  # 4 cells inside, top half of them
    assert roi_on_map(roi, (4, 4)).sum() == 4


def test_auto_chooses_on_validation_never_on_test() -> None:
    """ROI better on val, worse on test: auto uses it (val decides); the reverse: it does not."""
    def pooler(whole: list[float], inside: list[float]) -> RoiPooler:
        p = RoiPooler(MapPooling("max"))
        p.whole, p.inside, p.peak_outside = whole, inside, [False] * len(whole)
        return p

    labels = np.array([0, 0, 1, 1])
    good, bad = [0.1, 0.2, 0.8, 0.9], [0.9, 0.8, 0.2, 0.1]
    chosen = compare("auto", MapPooling("max"), pooler(bad, good), pooler(good, bad), np.array(bad), labels,
                     np.array(good), labels, n_bootstrap=0, seed=0)
    assert chosen.used is True and chosen.roi_auroc == 0.0 and chosen.own_auroc == 1.0
    kept = compare("auto", MapPooling("max"), pooler(good, bad), pooler(bad, good), np.array(good), labels,
                   np.array(bad), labels, n_bootstrap=0, seed=0)
    assert kept.used is False


# ------------------------------------------------------------------------------------------ QC page


def test_the_region_box_comes_from_the_peak_inside_the_roi() -> None:
    values = np.zeros((24, 16))
    values[0:2, 0:2] = 5.0  # a hotter corner outside the ROI
    values[12:14, 8:10] = 2.0
    inside = np.zeros((24, 16), bool)
    inside[4:20, 3:13] = True
    x0, y0, x1, y1 = peak_region(values, (48, 32), inside)
    assert (x0, y0, x1, y1) == (16, 24, 20, 28)  # the inside spot, in image pixels (x2)
    assert peak_region(values, (48, 32))[:2] == (0, 0)  # without the ROI: the corner


def test_crop_comes_from_its_own_image_and_size_follows_the_scale(roi_manifest: Path, tmp_path: Path) -> None:
    from benchmarks.inspection.qc_page import _crop_panel

    first = np.zeros((H, W, 3), np.uint8)
    second = np.full((H, W, 3), 255, np.uint8)
    anomaly_map = np.zeros((H // 2, W // 2), np.float32)
    anomaly_map[10:12, 6:8] = 1.0
    item = InspectedImage("a", None)
    region = (12, 20, 16, 24)
    reading = Reading(item, score=1.0, region=region, size=(W, H), anomaly_map=anomaly_map, pixels=second)
    crop = np.asarray(_crop_panel(reading))
    top, bottom, left, right = crop_bounds((H, W), region)
    assert crop.shape[:2] == (bottom - top, right - left)
    assert (crop == 255).mean() > 0.5  # the second image's pixels, not the first's
    assert not (crop == first[top:bottom, left:right]).all()
    assert region_size(region, 0.25) == (4, 1.0) and region_size(region, None) == (4, None)


def test_the_page_measures_its_own_accuracy() -> None:
    truth = np.zeros((20, 20), bool)
    truth[5:10, 5:10] = True
    hit = Reading(InspectedImage("hit", None, label=1, defect="dent", mm_per_px=0.5), score=1.0, region=(4, 4, 11, 11),
                  kind="dent", size_px=7, truth=truth, pixels=np.zeros((20, 20, 3), np.uint8))
    miss = Reading(InspectedImage("miss", None, label=1, defect="dent", mm_per_px=0.5), score=1.0,
                   region=(15, 15, 20, 20), kind="crack", size_px=5, truth=truth, pixels=np.zeros((20, 20, 3), np.uint8))
    accuracy = page_accuracy([hit, miss])
    assert accuracy["box_hit_rate"] == 0.5 and accuracy["kind_accuracy"] == 0.5
    assert accuracy["size_error_px"] == pytest.approx(1.0)  # |7 - 5| and |5 - 5|: median 1
    assert accuracy["size_error_mm"] == pytest.approx(0.5)


def test_inspect_scores_inside_the_roi_and_gives_units_a_verdict(roi_manifest: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["run", "--methods", "brightest-spot", "--datasets", f"manifest:{roi_manifest}", "--out", str(out),
                 "--preset", "smoke", "--weights", "random", "--no-report", "--save-models"]) == 0
    assert main(["inspect", str(out), f"manifest:{roi_manifest}", "--method", "brightest-spot",
                 "--unit", r"images/(\w+)/", "--out", str(tmp_path / "page")]) == 0
    page = json.loads((tmp_path / "page" / "qc-brightest-spot-default.json").read_text())
    read = [i for i in page["images"] if "error" not in i]
    assert all(i["roi_scored"] for i in read)
    body_y0, body_x0, body_y1, body_x1 = BODY
    for item in read:  # every box lies on the body, never on the glare
        x0, y0, x1, y1 = item["region"]
        assert body_x0 <= x0 and x1 <= body_x1 and body_y0 <= y0 and y1 <= body_y1, item
    labels = {r.image_id: r.label for r in load_manifest(roi_manifest).records}
    test = [i for i in read if i["name"].startswith("images/test/")]
    flagged = [labels[i["name"]] for i in test if i["verdict"] == "ANOMALOUS"]
    assert flagged.count(0) == 0 and flagged.count(1) >= 11  # the glare flags no normal phone
    assert page["accuracy"]["box_hit_rate"] == 1.0
    units = {u["unit"]: u for u in page["units"]}
    assert set(units) == {"train", "val", "test"} and units["test"]["verdict"] == "ANOMALOUS"
    assert units["train"]["verdict"] == "normal" and units["test"]["images"] == 24
    html = (tmp_path / "page" / "qc-brightest-spot-default.html").read_text()
    assert "One verdict per unit" in html and "This page's accuracy" in html
    assert html.count('data-slot="capture"') == len(read) and html.count('data-slot="crop"') == len(read)


def test_a_reference_image_is_not_its_own_nearest_kind() -> None:
    """Reading a validation anomaly against the validation references: its own copy is skipped."""
    from benchmarks.inspection.defect_kinds import KindReferences

    class Fixed:
        def describe(self, crops: list[np.ndarray]) -> np.ndarray:
            return np.array([[1.0, 0.0]])

    references = KindReferences(Fixed(), ["dent", "crack"], ["val/a.png", "val/b.png"],  # type: ignore[arg-type]
                                np.array([[1.0, 0.0], [0.6, 0.8]]))
    pixels = np.zeros((8, 8, 3), np.uint8)
    assert references.guess(pixels, (0, 0, 4, 4)).kind == "dent"  # type: ignore[union-attr]
    guess = references.guess(pixels, (0, 0, 4, 4), name="val/a.png")
    assert guess is not None and guess.kind == "crack" and guess.reference == "val/b.png"
