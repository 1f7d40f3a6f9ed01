"""Published numbers declared by each method, dataset-kind matching, the comparability rules and the report's section."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from fake_run import write_fake_run

from baselines.ltfm_plugin import LTFMBaseline
from baselines.patchcore import PatchCore
from baselines.winclip import WinClip
from benchmarks.plugins.contract import Ablation, MethodMeta, Protocol, PublishedResult, VariantSpec
from benchmarks.plugins.registry import BASELINES, INSTALLED, load_plugins
from benchmarks.reporting.published import DATASET_KIND_NAMES, comparability, dataset_kind
from benchmarks.reporting.report import write_report
from benchmarks.reporting.statistics import SEED_METRICS
from benchmarks.results.reader import slugify


def _installed_published() -> list[PublishedResult]:
    load_plugins()
    return [replace(e, method=name) for name in sorted(INSTALLED) for e in BASELINES.get(name).meta.published]


def test_every_declared_entry_names_its_source_a_stored_metric_and_a_known_kind() -> None:
    published = _installed_published()
    assert {e.method for e in published} == {"winclip", "patchcore", "dino-knn", "anomalygpt", "ltfm"}
    for entry in published:
        assert entry.paper and entry.table and entry.protocol and entry.variants
        assert entry.metric in SEED_METRICS and 0 < entry.value <= 100
        assert entry.dataset_kind in DATASET_KIND_NAMES
        assert "SPEC" not in entry.paper  # a reader must be able to follow the source, not an internal spec


def test_a_declared_variant_must_exist() -> None:
    with pytest.raises(ValueError, match="undeclared variant 'k9'"):
        MethodMeta(name="m", paper="", backbone="", weights_id="", input_size=0,
                   variants={"default": VariantSpec(Protocol.FULL_SHOT)},
                   published=(PublishedResult(("k9",), "mvtec", "9-shot", "image_auroc", 90.0, "p", "t"),))


def test_dataset_kind(tmp_path: Path) -> None:
    assert dataset_kind("mvtec:/data/mvtec_ad/bottle") == "mvtec"
    assert dataset_kind("mvtec:/data/VisA/candle") == "visa"
    assert dataset_kind("mvtec:/data/visa") == "mvtec"  # the category itself is not the collection
    assert dataset_kind("smartphone-synth") is None and dataset_kind("folder:/x") is None
    assert dataset_kind("manifest:/phones/manifest.csv", tmp_path) is None  # not flagged
    (tmp_path / "dataset.json").write_text("{not json")
    assert dataset_kind("manifest:/phones/manifest.csv", tmp_path) is None
    (tmp_path / "dataset.json").write_text(json.dumps({"published_reference": "smartphone-study"}))
    assert dataset_kind("manifest:/phones/manifest.csv", tmp_path) == "smartphone-study"
    assert dataset_kind("smartphone-synth", tmp_path) is None  # only manifests can be the study's data


def published_table(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / "tables" / "published_vs_reproduced.csv")


def row(table: pd.DataFrame, method: str, variants: str, metric: str, kind: str) -> pd.Series:
    found = table[
        (table["method"] == method)
        & (table["variants"] == variants)
        & (table["metric"] == metric)
        & (table["dataset_kind"] == kind)
    ]
    assert len(found) == 1
    return found.iloc[0]


def test_report_compares_matching_mvtec_cells(tmp_path: Path) -> None:
    run = write_fake_run(
        tmp_path / "run", ("winclip",), variants={"winclip": ("k0", "k1")}, seeds=(0, 1),
        dataset="mvtec:/data/mvtec_ad/bottle", failed_method=None, weights="pretrained",
    )  # fmt: skip
    text = write_report(run, figures=False).read_text()
    assert "## Published vs reproduced" in text
    table = published_table(run)
    assert len(table) == len(WinClip.meta.published)  # only the run's methods' numbers
    lines = [json.loads(line) for line in (run / "runs.jsonl").read_text().splitlines()]
    zero_shot = [d["metrics"]["image_auroc"] for d in lines if d["variant"] == "k0"]
    auroc = row(table, "winclip", "k0", "image_auroc", "mvtec")
    assert auroc["status"] == "comparable (1 dataset)"
    assert auroc["reproduced"] == pytest.approx(100 * sum(zero_shot) / 2)
    assert auroc["delta"] == pytest.approx(auroc["reproduced"] - 91.8)
    pixel = row(table, "winclip", "k0", "pixel_auroc", "mvtec")
    assert pixel["status"] == "pixel_auroc not recorded" and pd.isna(pixel["delta"])
    assert row(table, "winclip", "k0", "image_auroc", "visa")["status"].startswith(
        "not comparable: different data"
    )
    assert "patchcore" not in set(table["method"])
    section = text.split("## Published vs reproduced")[1].split("\n## ")[0]
    assert "| winclip | k0 | image\\_auroc | zero-shot | MVTec AD | 91.8 |" in section


def test_random_weights_and_other_data_are_not_comparable(tmp_path: Path) -> None:
    run = write_fake_run(
        tmp_path / "mvtec", ("winclip",), variants={"winclip": ("k0",)}, dataset="mvtec:/data/mvtec_ad/bottle",
        failed_method=None, weights="random",
    )  # fmt: skip
    write_report(run, figures=False)
    auroc = row(published_table(run), "winclip", "k0", "image_auroc", "mvtec")
    assert auroc["status"] == "not comparable: random weights" and pd.isna(auroc["reproduced"])
    substituted = write_fake_run(
        tmp_path / "mvtec-subst", ("patchcore",), dataset="mvtec:/data/mvtec_ad/bottle", failed_method=None,
        weights="substitute",
    )  # fmt: skip
    write_report(substituted, figures=False)
    auroc = row(published_table(substituted), "patchcore", "default", "image_auroc", "mvtec")
    assert auroc["status"] == "not comparable: substitute backbone" and pd.isna(auroc["reproduced"])
    phones = write_fake_run(
        tmp_path / "phones", ("ltfm",), variants={"ltfm": ("base", "ft-real", "ft-real-gen")},
        failed_method=None, weights="pretrained",
    )  # fmt: skip
    write_report(phones, figures=False)
    study = row(published_table(phones), "ltfm", "ft-real", "f1", "smartphone-study")
    assert study["status"] == "not comparable: different data (smartphone-synth)"


def test_the_flagged_study_set_is_compared_with_the_studys_f1(tmp_path: Path) -> None:
    run = write_fake_run(
        tmp_path / "run", ("ltfm",), variants={"ltfm": ("base", "ft-real", "ft-real-gen")},
        dataset="manifest:/data/phones/manifest.csv", failed_method=None, weights="pretrained",
        provenance={"ltfm": {"expert_checkpoint": True}},
    )  # fmt: skip
    (run / "dataset" / "dataset.json").write_text(json.dumps({"published_reference": "smartphone-study"}))
    write_report(run, figures=False)
    f1 = {
        d["variant"]: d["metrics"]["f1"]
        for d in map(json.loads, (run / "runs.jsonl").read_text().splitlines())
    }
    for variant, published in (("base", 84.73), ("ft-real", 87.38), ("ft-real-gen", 88.48)):
        study = row(published_table(run), "ltfm", variant, "f1", "smartphone-study")
        assert study["status"] == "comparable (1 dataset)"
        assert study["delta"] == pytest.approx(100 * f1[variant] - published)


def test_ltfm_needs_the_experts_checkpoint_and_anomalygpt_is_never_comparable(tmp_path: Path) -> None:
    """Pretrained weights on the right data are not enough: LTFM must have started from the authors'
    expert (its cells say so in `provenance`), and this suite's AnomalyGPT stand-in never compares."""
    run = write_fake_run(
        tmp_path / "study", ("ltfm",), variants={"ltfm": ("base", "ft-real")},
        dataset="manifest:/data/phones/manifest.csv", failed_method=None, weights="pretrained",
        provenance={"ltfm": {"expert_checkpoint": False, "started_from": "synthetic source domain"}},
    )  # fmt: skip
    (run / "dataset" / "dataset.json").write_text(json.dumps({"published_reference": "smartphone-study"}))
    write_report(run, figures=False)
    for variant in ("base", "ft-real"):
        study = row(published_table(run), "ltfm", variant, "f1", "smartphone-study")
        assert study["status"] == "not comparable: the cell does not report expert_checkpoint"
        assert pd.isna(study["reproduced"])
    mvtec = write_fake_run(
        tmp_path / "mvtec", ("anomalygpt", "ltfm"), variants={"anomalygpt": ("k1",), "ltfm": ("base",)},
        dataset="mvtec:/data/mvtec_ad/bottle", failed_method=None, weights="pretrained",
        provenance={"ltfm": {"expert_checkpoint": True}},
    )  # fmt: skip
    write_report(mvtec, figures=False)
    table = published_table(mvtec)
    for metric in ("image_auroc", "pixel_auroc", "decision_accuracy"):
        gpt = row(table, "anomalygpt", "k1", metric, "mvtec")
        assert gpt["status"].startswith("not comparable: the suite's anomalygpt is an open_clip encoder")
        assert pd.isna(gpt["reproduced"])
    assert row(table, "ltfm", "base", "image_auroc", "mvtec")["status"] == "comparable (1 dataset)"


def test_comparability_rules_in_order() -> None:
    entry = next(e for e in LTFMBaseline.meta.published if e.dataset_kind == "mvtec")
    ok = {"expert_checkpoint": True}
    assert comparability(entry, kind="mvtec", weights="pretrained", provenance=[ok, ok]) is None
    assert comparability(entry, kind="visa", weights="pretrained", provenance=[ok]) == "not comparable: different data"
    assert comparability(entry, kind="mvtec", weights="substitute", provenance=[ok]).endswith("substitute backbone")
    assert comparability(entry, kind="mvtec", weights="random", provenance=[ok]).endswith("random weights")
    assert comparability(entry, kind="mvtec", weights="pretrained", provenance=[ok, {}]).endswith("expert_checkpoint")
    assert comparability(entry, kind="mvtec", weights="pretrained", provenance=[]).endswith("expert_checkpoint")
    (patchcore,) = PatchCore.meta.published
    assert comparability(patchcore, kind="mvtec", weights="pretrained", provenance=[]) is None


def test_a_method_the_suite_never_heard_of_brings_its_numbers_and_ablation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The report and figures read published numbers and ablations from the meta stored with the cells."""
    run = write_fake_run(tmp_path / "run", ("my-detector",), variants={"my-detector": ("small", "large")},
                         dataset="mvtec:/data/mvtec_ad/bottle", failed_method=None, weights="pretrained")
    published = PublishedResult(("large",), "mvtec", "full-shot", "image_auroc", 97.5, "Doe et al., 2026", "Table 2")
    ablation = Ablation("Size", ("small", "large"), {"small": "S", "large": "L"}, "mvtec", "image_auroc",
                        "published (Doe)")
    lines = [json.loads(line) for line in (run / "runs.jsonl").read_text().splitlines()]
    for line in lines:
        line["method_meta"] |= {"published": [published.to_json()], "ablation": ablation.to_json()}
    (run / "runs.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    text = write_report(run).read_text()
    (entry,) = published_table(run).itertuples()
    assert (entry.method, entry.variants, entry.published, entry.status) == (
        "my-detector", "large", 97.5, "comparable (1 dataset)")
    assert "Doe et al., 2026" in text
    assert (run / "figures" / f"ablation_my-detector_{slugify('mvtec:/data/mvtec_ad/bottle')}.png").is_file()
    assert "Size ablation: F1 at the validation threshold" in text and "Size variants: F1" in text
