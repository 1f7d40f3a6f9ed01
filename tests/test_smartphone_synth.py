"""The embedded smartphone-synth dataset: determinism, the cross-generation protocol, masks."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from benchmarks.data.schema import SOURCES, SPLITS
from benchmarks.data.smartphone import generate
from benchmarks.data.smartphone.defects import DEFECT_KINDS, HARD_NEGATIVE_KINDS
from benchmarks.data.smartphone.designs import PHONE_DESIGNS, phone_design
from benchmarks.data.smartphone.generate import (
    MANIFEST_COLUMNS,
    RENDERER_VERSION,
    TEST_YEARS,
    TRAIN_YEARS,
    cached_smartphone_synth,
    generate_smartphone_synth,
    plan_dataset,
)
from benchmarks.data.smartphone.render import PROTOCOLS, QC, STATION_PROGRAMME, WILD, render_capture
from benchmarks.data.smartphone.screens import QC_SCREENS, WILD_SCREENS
from benchmarks.plugins.registry import UnknownNameError

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


@pytest.mark.parametrize("protocol", ["qc", "wild"])
@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_rendered_defect_changes_only_its_mask(kind: str, protocol: str) -> None:
    design = PHONE_DESIGNS[DEFECT_KINDS.index(kind) * 4]
    screen = STATION_PROGRAMME[kind][0] if protocol == "qc" else None
    clean = render_capture(design, (9, 1), screen=screen, protocol=PROTOCOLS[protocol]).image.astype(int)
    capture = render_capture(design, (9, 1), defect=kind, severity=0.8, screen=screen, protocol=PROTOCOLS[protocol])
    diff = np.abs(capture.image.astype(int) - clean).max(axis=-1)
    assert capture.image.shape == (PROTOCOLS[protocol].height, PROTOCOLS[protocol].width, 3)
    assert capture.mask.any()
    assert diff[~ndimage.binary_dilation(capture.mask)].max() <= 3  # smooth mura tails only
    assert diff[capture.mask].max() >= 20


@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_least_severe_defect_spans_several_pixels_and_shows(kind: str) -> None:
    """At the lowest default severity (0.05) every kind still spans several captured pixels and
    changes some of them by several grey levels: small, but there for a person at 1:1. A dead-pixel
    cluster may be as compact as 2 x 2 pixels, at full contrast."""
    design = PHONE_DESIGNS[DEFECT_KINDS.index(kind) * 3 + 2]
    screen = STATION_PROGRAMME[kind][0]
    clean = render_capture(design, (4, 4), screen=screen).image.astype(int)
    capture = render_capture(design, (4, 4), defect=kind, severity=0.05, screen=screen)
    ys, xs = np.nonzero(capture.mask)
    extent = max(ys.max() - ys.min(), xs.max() - xs.min()) + 1
    diff = np.abs(capture.image.astype(int) - clean).max(axis=-1)[capture.mask]
    if kind == "dead_pixels":
        assert extent >= 2 and (diff >= 60).sum() >= 4
    else:
        assert extent >= 4 and (diff >= 6).sum() >= 3


@pytest.mark.parametrize("kind", ["scratch", "burn_in", "mura", "crack"])
def test_severity_controls_contrast(kind: str) -> None:
    design = PHONE_DESIGNS[3]
    screen = STATION_PROGRAMME[kind][0]
    clean = render_capture(design, (5, 2), screen=screen).image.astype(int)
    strength = []
    for severity in (0.05, 1.0):
        capture = render_capture(design, (5, 2), defect=kind, severity=severity, screen=screen)
        strength.append(np.abs(capture.image.astype(int) - clean).sum())
    assert strength[0] * 3 < strength[1]


def test_station_programme_shows_each_defect_where_qc_looks_and_screens_carry_no_label() -> None:
    rng = np.random.default_rng(0)
    for kind in DEFECT_KINDS:
        assert {QC.screen_for(kind, rng) for _ in range(60)} == set(STATION_PROGRAMME[kind])
    # normals draw a kind, then its screen: the same screen mixture as the anomalies
    n = 6000
    normal = Counter(QC.screen_for("none", rng) for _ in range(n))
    anomalous = Counter(QC.screen_for(DEFECT_KINDS[i % len(DEFECT_KINDS)], rng) for i in range(n))
    assert set(normal) == set(anomalous) == set(QC_SCREENS)
    for screen in QC_SCREENS:
        assert abs(normal[screen] - anomalous[screen]) / n < 0.03, screen
    assert {WILD.screen_for("scratch", rng) for _ in range(200)} == set(WILD_SCREENS)


def test_qc_fixture_keeps_the_phone_in_place() -> None:
    """Across captures of one model the lit display moves by under 4 % of the frame height."""

    def display_box(seed: int) -> np.ndarray:
        capture = render_capture(PHONE_DESIGNS[12], (seed, 0), screen="white")
        ys, xs = np.nonzero(capture.image.mean(axis=-1) > 150)
        return np.array([xs.min(), ys.min(), xs.max(), ys.max()])

    boxes = np.stack([display_box(seed) for seed in range(4)])
    assert (boxes.max(axis=0) - boxes.min(axis=0)).max() <= 0.04 * QC.height


def test_generation_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_render = generate._render_one
    calls = []

    def flaky(job):  # type: ignore[no-untyped-def]
        calls.append(job)
        if len(calls) == 5:
            raise RuntimeError("power cut")
        return real_render(job)

    monkeypatch.setattr(generate, "_render_one", flaky)
    with pytest.raises(RuntimeError, match="power cut"):
        generate_smartphone_synth(tmp_path / "out", scale=0.05, workers=1)
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_overwrite_and_unknown_augmenter(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError):
        generate_smartphone_synth(tmp_path / "full", scale=0.05, workers=1)
    with pytest.raises(UnknownNameError, match="diffusers"):
        generate_smartphone_synth(tmp_path / "new", scale=0.05, augmenter="dalle", workers=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]


def test_cache_generates_once(tmp_path: Path) -> None:
    manifest = cached_smartphone_synth(seed=2, scale=0.05, cache_dir=tmp_path)
    assert manifest == tmp_path / "smartphone-synth" / f"{RENDERER_VERSION}-qc-seed2-scale0.05" / "manifest.csv"
    stamp = manifest.stat().st_mtime_ns
    assert cached_smartphone_synth(seed=2, scale=0.05, cache_dir=tmp_path) == manifest
    assert manifest.stat().st_mtime_ns == stamp
    assert (manifest.parent / "montage.png").exists()


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


def test_the_data_card_split_table_is_the_generator_plan() -> None:
    """The protocol's constants (counts per split and source, train and test years, the kinds)
    as the data card states them are what `plan_dataset` draws: a changed constant fails here."""
    card = (Path(__file__).resolve().parents[1] / "docs" / "datacard-smartphone-synth.md").read_text(encoding="utf-8")
    table = card.split("## Splits", 1)[1].split("\n\n", 2)[1]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()[2:]]
    plan = plan_dataset(seed=0, scale=1.0)
    assert len(rows) == len({(p.split, p.source) for p in plan}) == 4
    for split, source, designs, normals, anomalies in rows:
        mine = [p for p in plan if (p.split, p.source) == (split, source)]
        normal = [p for p in mine if p.defect == "none"]
        hard = [p for p in normal if p.hard_negative != "none"]
        assert normals == f"{len(normal)} ({len(hard)})", (split, source)
        assert anomalies == str(len(mine) - len(normal)), (split, source)
        years = sorted({p.design.year for p in mine})
        assert f"{years[0]}-{years[-1]}" in designs, (split, source, years)
        assert years == list(range(years[0], years[-1] + 1))
        assert set(years) <= set(TEST_YEARS if split == "test" else TRAIN_YEARS)
    stated = sum(int(r[3].split()[0]) + int(r[4]) for r in rows)
    assert stated == len(plan) == 500
    assert f"{len(plan)} images" in card
    assert {p.defect for p in plan if p.split == "test"} - {"none"} == set(DEFECT_KINDS)
    kinds_table = card.split("| kind | where |", 1)[1].split("\n\n", 1)[0].splitlines()[2:]
    kinds = {line.strip("|").split("|")[0].strip().replace("-", "_").replace(" ", "_") for line in kinds_table}
    assert kinds == set(DEFECT_KINDS)
    assert set(HARD_NEGATIVE_KINDS) == {"smudge", "dust", "reflection", "protector_edge"}  # the card's four, in words


def test_the_data_card_capture_table_is_each_datasets_protocol() -> None:
    """The card's capture table (frame size, JPEG quality, phone height) per dataset name is the
    protocol `generate.DATASET_PROTOCOLS` gives that name: the default set is the QC station."""
    card = (Path(__file__).resolve().parents[1] / "docs" / "datacard-smartphone-synth.md").read_text(encoding="utf-8")
    header, *body = [line for line in card.splitlines() if line.startswith("| ")][:9]
    names = [cell.strip().strip("`").split("`")[0] for cell in header.strip("|").split("|")[1:]]
    rows = {r.strip("|").split("|")[0].strip(): [c.strip() for c in r.strip("|").split("|")[1:]] for r in body}
    assert names == ["smartphone-synth", "smartphone-synth-wild"] and set(names) == set(generate.DATASET_PROTOCOLS)
    for column, name in enumerate(names):
        protocol = PROTOCOLS[generate.DATASET_PROTOCOLS[name]]
        assert rows["frame"][column].startswith(f"{protocol.width} x {protocol.height} px, JPEG q{protocol.jpeg_quality}")
        low, high = (round(100 * v) for v in protocol.phone_height)
        assert rows["phone height"][column].startswith(f"{low}-{high} %"), (name, rows["phone height"][column])
    assert generate.DATASET_PROTOCOLS["smartphone-synth"] == QC.name and rows["capture"][0].startswith("QC station")
