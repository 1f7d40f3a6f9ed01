"""The embedded smartphone-synth dataset: determinism, the cross-generation protocol, masks."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.data.schema import SOURCES, SPLITS
from benchmarks.data.smartphone.defects import DEFECT_KINDS, HARD_NEGATIVE_KINDS
from benchmarks.data.smartphone.designs import PHONE_DESIGNS, phone_design
from benchmarks.data.smartphone.generate import (
    MANIFEST_COLUMNS,
    RENDERER_VERSION,
    TEST_YEARS,
    TRAIN_YEARS,
    generate_smartphone_synth,
    plan_dataset,
)
from benchmarks.data.smartphone.render import QC, WILD

SCALE = 0.06


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small generation (about 30 images), rendered in this process."""
    return generate_smartphone_synth(tmp_path_factory.mktemp("a") / "synth", seed=3, scale=SCALE, workers=1)


@pytest.fixture(scope="module")
def rows(dataset: Path) -> list[dict[str, str]]:
    with dataset.open(newline="") as f:
        return list(csv.DictReader(f))


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_is_byte_identical_whatever_the_worker_count(dataset: Path, tmp_path: Path) -> None:
    again = generate_smartphone_synth(tmp_path / "again", seed=3, scale=SCALE, workers=2)
    first, second = _files(dataset.parent), _files(again.parent)
    assert first.keys() == second.keys()
    assert [name for name in first if first[name] != second[name]] == []


def test_another_seed_gives_other_images(dataset: Path, tmp_path: Path) -> None:
    other = generate_smartphone_synth(tmp_path / "other", seed=4, scale=SCALE, workers=1)
    first, second = _files(dataset.parent), _files(other.parent)
    images = [name for name in first if name.startswith("images/")]
    assert images and first.keys() == second.keys()
    assert all(first[name] != second[name] for name in images)


def test_manifest_columns_and_values(dataset: Path, rows: list[dict[str, str]]) -> None:
    with dataset.open(newline="") as f:
        assert tuple(next(csv.reader(f))) == MANIFEST_COLUMNS
    for row in rows:
        assert row["split"] in SPLITS and row["source"] in SOURCES
        assert row["label"] in ("0", "1") and row["hard_negative"] in ("true", "false")
        assert (row["label"] == "1") == (row["defect"] != "none")
        assert not Path(row["image"]).is_absolute() and ".." not in Path(row["image"]).parts
        assert row["group"] == f"phone-{row['year']}-{row['group'][-1]}"
        if row["hard_negative"] == "true":
            assert row["label"] == "0"


def test_cross_generation_protocol(rows: list[dict[str, str]]) -> None:
    def years(split: str) -> set[int]:
        return {int(r["year"]) for r in rows if r["split"] == split}

    assert years("train") <= set(TRAIN_YEARS) and years("val") <= set(TRAIN_YEARS)
    assert years("test") == set(TEST_YEARS)
    assert {r["source"] for r in rows if r["split"] != "train"} == {"real"}
    assert {r["source"] for r in rows if r["split"] == "train"} == {"real", "generated"}
    seen = {r["group"] for r in rows if r["split"] != "test"}
    assert seen.isdisjoint({r["group"] for r in rows if r["split"] == "test"})
    test = [r for r in rows if r["split"] == "test"]
    assert {r["label"] for r in test} == {"0", "1"}
    assert {r["defect"] for r in test if r["label"] == "1"} == set(DEFECT_KINDS)
    assert any(r["hard_negative"] == "true" for r in test)
    generated = [r for r in rows if r["source"] == "generated"]
    assert {r["label"] for r in generated} == {"0", "1"}
    assert all(r["hard_negative"] == "true" for r in generated if r["label"] == "0")


def test_every_anomaly_has_a_mask_and_normals_none(dataset: Path, rows: list[dict[str, str]]) -> None:
    for row in rows:
        image = Image.open(dataset.parent / row["image"])
        if row["label"] == "0":
            assert row["mask"] == ""
            continue
        mask = np.asarray(Image.open(dataset.parent / row["mask"]))
        assert mask.shape == (image.height, image.width), row["image"]
        assert set(np.unique(mask)) <= {0, 255} and (mask > 0).any(), row["image"]


def test_default_counts_and_balance() -> None:
    plan = plan_dataset(seed=0, scale=1.0)
    counts = Counter((p.split, p.source, p.defect != "none", p.hard_negative != "none") for p in plan)
    assert counts["train", "real", False, False] + counts["train", "real", False, True] == 150
    assert counts["train", "real", True, False] == 40
    assert counts["train", "generated", True, False] == 60 and counts["train", "generated", False, True] == 20
    assert counts["val", "real", False, True] == 8 and counts["val", "real", True, False] == 30
    assert counts["test", "real", False, True] == 20 and counts["test", "real", False, False] == 60
    assert counts["test", "real", True, False] == 80
    anomalies = [p for p in plan if p.split == "test" and p.defect != "none"]
    by_kind = Counter(p.defect for p in anomalies)
    assert set(by_kind) == set(DEFECT_KINDS) and max(by_kind.values()) - min(by_kind.values()) <= 1
    assert Counter(p.design.year for p in anomalies) == {2024: 40, 2025: 40}
    assert len({p.design.group for p in anomalies}) == len([d for d in PHONE_DESIGNS if d.year in TEST_YEARS])
    hard = Counter(p.hard_negative for p in plan if p.split == "test" and p.hard_negative != "none")
    assert set(hard) == set(HARD_NEGATIVE_KINDS)


@pytest.mark.parametrize("scale", [0.25, 0.1, 0.01])
def test_small_scales_keep_a_usable_test_split(scale: float) -> None:
    test = [p for p in plan_dataset(seed=0, scale=scale) if p.split == "test"]
    assert {p.defect for p in test} - {"none"} == set(DEFECT_KINDS)
    assert any(p.defect == "none" and p.hard_negative != "none" for p in test)
    assert any(p.defect == "none" and p.hard_negative == "none" for p in test)


def test_recent_designs_differ_from_older_ones() -> None:
    old = [d for d in PHONE_DESIGNS if d.year in TRAIN_YEARS]
    new = [d for d in PHONE_DESIGNS if d.year in TEST_YEARS]
    recent = [d for d in old if d.year == 2023]
    assert max(d.bezel_side for d in new) <= min(d.bezel_side for d in recent)
    assert np.mean([d.corner_radius for d in new]) > np.mean([d.corner_radius for d in old])
    assert np.mean([d.display_radius for d in new]) > max(d.display_radius for d in old)
    pills = Counter(d.year for d in PHONE_DESIGNS if d.cutout == "pill")
    assert pills[2024] + pills[2025] >= 4 and set(pills) - {2023, 2024, 2025} == set()
    assert {d.cutout for d in PHONE_DESIGNS if d.year == 2017} == {"home_button"}
    assert phone_design(2024, 1) == phone_design(2024, 1)  # designs never depend on the dataset seed


def test_capture_card_records_the_protocol_and_resolution(dataset: Path, tmp_path: Path) -> None:
    card = json.loads((dataset.parent / "capture.json").read_text())
    assert (card["protocol"], card["width"], card["height"]) == ("qc", QC.width, QC.height)
    assert card["renderer_version"] == RENDERER_VERSION and card["seed"] == 3
    with Image.open(dataset.parent / "images/test/" / sorted((dataset.parent / "images/test").iterdir())[0].name) as im:
        assert im.size == (QC.width, QC.height)
    wild = generate_smartphone_synth(tmp_path / "wild", seed=3, scale=0.02, workers=1, protocol="wild")
    card = json.loads((wild.parent / "capture.json").read_text())
    assert (card["protocol"], card["width"], card["height"]) == ("wild", WILD.width, WILD.height)
    with pytest.raises(ValueError, match="capture protocol"):
        generate_smartphone_synth(tmp_path / "nope", scale=0.02, protocol="studio")
