"""The generic anomalib adapter: factory, registry names, weight interception, Padim end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

from baselines.anomalib_adapter import OFFLINE_TESTED_MODELS, anomalib_method, backbones_through_resolver
from benchmarks.plugins.contract import Baseline
from benchmarks.plugins.registry import BASELINES
from benchmarks.plugins.weights import WeightsNotFoundError, WeightsResolver


def test_prefix_lookup_builds_models_on_demand_and_factory_is_idempotent() -> None:
    for name in OFFLINE_TESTED_MODELS:
        assert BASELINES.get(f"anomalib:{name}").meta.name == f"anomalib:{name}"
    cls = anomalib_method("Padim")
    assert cls is anomalib_method("Padim") is BASELINES.get("anomalib:Padim")
    assert issubclass(cls, Baseline) and cls.meta.name == "anomalib:Padim"
    assert cls.meta.input_size == 256 and cls.meta.backbone == "resnet18"


def test_unknown_model_name_is_refused_with_the_known_names() -> None:
    with pytest.raises(ValueError, match="not an anomalib image model.*Padim"):
        anomalib_method("Padimm")


def test_padim_end_to_end_on_toy_task(make_context, toy_task) -> None:
    method = anomalib_method("Padim")(make_context(
        batch_size=4,
        model_kwargs={"backbone": "resnet18", "layers": ["layer1", "layer2"], "n_features": 32},
        pre_processor_kwargs={"image_size": (64, 64)},
    ))
    method.fit(toy_task["train"])
    images = [s.image for s in toy_task["test"]]
    labels = np.array([s.label for s in toy_task["test"]])
    prediction = method.predict(images)
    prediction.check(len(images))
    assert prediction.maps is not None and prediction.maps.shape == (len(images), 64, 64)
    # Per-position Gaussians from 8 images are crude, but the saturated scratch is a large
    # Mahalanobis outlier: every anomaly must outscore the mean normal.
    assert prediction.scores[labels == 1].min() > prediction.scores[labels == 0].mean()


def test_pretrained_timm_backbone_comes_from_the_resolver(tmp_path: Path) -> None:
    torch.manual_seed(7)
    reference = timm.create_model("resnet18", pretrained=False)
    save_file(reference.state_dict(), str(tmp_path / "resnet18.safetensors"))
    resolver = WeightsResolver(mode="pretrained", weights_dir=tmp_path, allow_download=False)
    with backbones_through_resolver(resolver):
        features = timm.create_model("resnet18", pretrained=True, features_only=True, out_indices=(1, 2))
    assert timm.create_model.__module__.startswith("timm")  # restored on exit
    torch.testing.assert_close(features.state_dict()["layer2.0.conv1.weight"], reference.layer2[0].conv1.weight)
    assert [r.mode for r in resolver.resolved] == ["pretrained"]


@pytest.fixture
def empty_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the Hugging Face and torch hub caches at an empty folder, whatever this machine holds."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "torch"))


@pytest.mark.usefixtures("empty_caches")
def test_missing_weights_fail_in_pretrained_mode_and_go_random_otherwise(tmp_path: Path) -> None:
    strict = WeightsResolver(mode="pretrained", weights_dir=tmp_path, allow_download=False)
    with pytest.raises(WeightsNotFoundError), backbones_through_resolver(strict):
        timm.create_model("resnet18", pretrained=True)
    relaxed = WeightsResolver(mode="random")
    with backbones_through_resolver(relaxed):
        timm.create_model("resnet18", pretrained=True)
    assert relaxed.effective_mode == "random"


def test_padim_takes_the_bundled_substitute_when_resnet18_is_missing(toy_task, tmp_path: Path) -> None:
    from sklearn.metrics import roc_auc_score

    from benchmarks.plugins.bundled_backbone import MOBILENETV2_IN1K, timm_state_dict
    from benchmarks.plugins.contract import MethodContext
    from benchmarks.plugins.weights import load_state_dict
    from benchmarks.running.presets import get_preset

    resolver = WeightsResolver(mode="auto", weights_dir=tmp_path, allow_download=False)
    context = MethodContext(variant="default", seed=0, device="cpu", weights=resolver, preset=get_preset("smoke"),
                            options={"batch_size": 4, "pre_processor_kwargs": {"image_size": (64, 64)}})
    method = anomalib_method("Padim")(context)
    assert resolver.effective_mode == "substitute"
    assert [r["mode"] for r in resolver.summary()] == ["substitute"]  # resolved once, not again inside anomalib
    extractor = method.module.model.feature_extractor
    assert extractor.layers == ["blocks.1", "blocks.2", "blocks.4"] and method.module.model.n_features == 100
    bundled = timm_state_dict(load_state_dict(resolver.find(MOBILENETV2_IN1K)[0]))
    assert torch.equal(extractor.feature_extractor.state_dict()["conv_stem.weight"], bundled["conv_stem.weight"])
    method.fit(toy_task["train"])
    test = toy_task["test"]
    scores = method.predict([s.image for s in test]).scores
    assert roc_auc_score([s.label for s in test], scores) > 0.9
    # a user's own backbone choice is never swapped
    chosen = WeightsResolver(mode="auto", weights_dir=tmp_path, allow_download=False)
    own = MethodContext(variant="default", seed=0, device="cpu", weights=chosen, preset=get_preset("smoke"),
                        options={"model_kwargs": {"backbone": "resnet18", "layers": ["layer1"], "n_features": 8}})
    with pytest.warns(UserWarning, match="RANDOM WEIGHTS"):
        anomalib_method("Padim")(own)
    assert chosen.effective_mode == "random"
