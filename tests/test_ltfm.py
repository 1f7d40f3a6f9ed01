"""LTFM: module shapes, frozen towers, checkpoints, training on the toy task, the plugin's variants and outputs."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from baselines.ltfm_plugin import LTFMBaseline
from baselines.ltfm_towers import build_tower
from benchmarks.plugins.contract import MethodContext, Protocol, Sample
from benchmarks.plugins.feature_cache import FeatureCache as SharedFeatureCache
from benchmarks.plugins.location_grid import grid_word
from benchmarks.plugins.weights import WeightsResolver
from ltfm.anyres import AnyResGrid
from ltfm.checkpoint import EXPERT_KEY_MAP, load_checkpoint, load_expert_checkpoint, save_checkpoint
from ltfm.module import LTFM, LTFMConfig, adverb
from ltfm.synthetic import ANOMALY_KINDS, synthetic_source_domain
from ltfm.towers import VisionTower, encode_images, level_depths
from ltfm.trainer import FeatureMemory, TrainConfig, train_ltfm

TINY = {"tower": "dinov2-tiny", "dim": 64}


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_ltfm(width: int = 32, grid: tuple[int, int] = (8, 8), seed: int = 0) -> LTFM:
    torch.manual_seed(seed)
    return LTFM(LTFMConfig(width=width, grid=grid, embedding_dim=16, class_dim=16, attention_dim=16, head_dim=16))


def test_module_output_shapes_and_paper_size() -> None:
    model = tiny_ltfm()
    out = model(torch.randn(3, 5, 4, 64, 32))
    assert out.logit.shape == out.score.shape == (3,)
    assert out.significance_map.shape == (3, 5, 8, 8)
    assert out.level_maps.shape == (3, 5, 4, 8, 8)
    assert torch.allclose(out.significance_map, out.level_maps.mean(dim=2))
    assert ((out.score > 0) & (out.score < 1)).all()
    assert ((out.significance_map >= 0) & (out.significance_map <= 1)).all()
    with pytest.raises(ValueError, match="tower and input size"):
        model(torch.randn(1, 1, 4, 49, 32))
    # The paper's expert at SigLIP so400m (width 1152, 27x27 tokens) has about 7 M parameters.
    n_params = sum(p.numel() for p in LTFM(LTFMConfig()).parameters())
    assert 6.5e6 < n_params < 7.5e6


@pytest.mark.parametrize("name", ["siglip-tiny", "clip-tiny", "dinov2-tiny"])
def test_towers_give_four_levels_and_are_frozen(name: str) -> None:
    tower = build_tower(name, WeightsResolver(mode="random"))[0]
    images = [np.full((40, 70, 3), 128, np.uint8), np.zeros((64, 64, 3), np.uint8)]
    feats = encode_images(tower, images, AnyResGrid(2, 2, tower.image_size))
    assert feats.shape == (2, 5, 4, tower.num_tokens, tower.width)
    assert tower.num_tokens == 64 and not tower.training
    assert all(not p.requires_grad for p in tower.parameters())
    assert not torch.equal(feats[:, :, 0], feats[:, :, 3])  # different depths, not one level repeated


def _library_format(name: str, tower: VisionTower) -> dict[str, torch.Tensor]:
    """The tower's weights laid out as its library publishes them (with keys the loader must drop)."""
    if name.startswith("siglip"):  # a full SiglipModel: vision + text + the pooling head
        vision = {"vision_model." + k.removeprefix("vision_model."): v for k, v in tower.model.state_dict().items()}
        return {**vision, "text_model.embeddings.x": torch.zeros(1), "vision_model.head.probe": torch.zeros(1)}
    if name.startswith("clip"):  # a full open_clip CLIP model
        return {**{f"visual.{k}": v for k, v in tower.visual.state_dict().items()}, "logit_scale": torch.ones(())}
    return dict(tower.model.state_dict())  # a timm model


@pytest.mark.parametrize("name", ["siglip-tiny", "clip-tiny", "dinov2-tiny"])
def test_towers_load_weights_found_by_the_resolver(name: str, tmp_path) -> None:
    torch.manual_seed(1)
    source = build_tower(name, WeightsResolver(mode="random"))[0]
    key = f"ltfm_{name.split('-')[0]}_tiny"
    save_file({k: v.contiguous() for k, v in _library_format(name, source).items()}, tmp_path / f"{key}.safetensors")
    torch.manual_seed(2)
    resolver = WeightsResolver(mode="pretrained", weights_dir=tmp_path)
    loaded, weights = build_tower(name, resolver)
    assert resolver.effective_mode == "pretrained" and weights.path == tmp_path / f"{key}.safetensors"
    pixels = torch.randn(1, 3, 64, 64)
    assert all(torch.equal(a, b) for a, b in zip(source(pixels).levels, loaded(pixels).levels, strict=True))


def test_level_depths_match_quarters_of_the_tower() -> None:
    assert level_depths(27) == (7, 14, 20, 27)  # SigLIP so400m
    assert level_depths(12) == (3, 6, 9, 12)
    assert level_depths(4) == (1, 2, 3, 4)


def test_gradients_reach_only_ltfm_and_the_tower_stays_unchanged(toy_task: dict[str, list[Sample]]) -> None:
    tower = build_tower("dinov2-tiny", WeightsResolver(mode="random"))[0]
    before = {k: v.clone() for k, v in tower.state_dict().items()}
    model = tiny_ltfm(tower.width, tower.grid)
    images = [s.image for s in toy_task["val"]]
    pixels = tower.preprocess(images).requires_grad_(True)
    out = model(tower(pixels).stack()[:, None])
    out.logit.sum().backward()
    assert all(p.grad is None for p in tower.parameters())
    assert pixels.grad is None  # the tower's forward is detached: nothing flows back through it
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())

    cache = FeatureMemory(tower, "test")
    samples = toy_task["train"] + toy_task["val"]
    data = cache.feature_set([s.image for s in samples], [s.label for s in samples], [s.mask for s in samples])
    start = {k: v.clone() for k, v in model.state_dict().items()}
    train_ltfm(model, data, None, TrainConfig(epochs=2, batch_size=8))
    assert any(not torch.equal(start[k], v) for k, v in model.state_dict().items())
    assert all(torch.equal(before[k], v) for k, v in tower.state_dict().items())
    assert all(not p.requires_grad for p in tower.parameters())


def test_feature_cache_computes_each_image_once(tmp_path, toy_task: dict[str, list[Sample]]) -> None:
    tower = build_tower("dinov2-tiny", WeightsResolver(mode="random"))[0]
    images = [s.image for s in toy_task["val"][:3]]
    shared = SharedFeatureCache(tmp_path)
    cache = FeatureMemory(tower, "ns", shared=shared)
    first = cache.features(images + images[:1])  # a repeated image is encoded once
    assert first.dtype == torch.float16 and first.shape[:3] == (4, 1, 4)
    assert torch.equal(first[0], first[3]) and shared.misses == 3
    assert torch.equal(cache.features(images), first[:3]) and shared.hits == 0  # memory hit
    grid = AnyResGrid.global_only(tower.image_size)
    fresh = FeatureMemory(None, "ns", grid, shared=shared)  # type: ignore[arg-type]  # a disk hit needs no tower
    assert torch.equal(fresh.features(images), first[:3]) and shared.hits == 3


def test_checkpoint_round_trip_is_bit_exact(tmp_path) -> None:
    model = tiny_ltfm(seed=3)
    path = save_checkpoint(tmp_path / "ltfm", model, {"tower": "dinov2-tiny", "threshold": 0.25})
    loaded, metadata = load_checkpoint(path)
    assert loaded.config == model.config and metadata == {"tower": "dinov2-tiny", "threshold": 0.25}
    original = model.state_dict()
    for key, value in loaded.state_dict().items():
        assert value.dtype == original[key].dtype and torch.equal(value, original[key]), key
    x = torch.randn(2, 1, 4, 64, 32)
    assert torch.equal(model.eval()(x).logit, loaded(x).logit)


def test_expert_checkpoint_keys_map_onto_ltfm(tmp_path) -> None:
    """An Anomaly-OneVision-style `.pth` (wrapped, prefixed, with tower keys) loads into an equal LTFM."""
    model = tiny_ltfm(seed=1)
    inverse = {ours: theirs for theirs, ours in EXPERT_KEY_MAP.items()}
    their_key = {}
    for key in model.state_dict():
        prefix = next(p for p in inverse if key.startswith(p))
        their_key[key] = "anomaly_expert." + inverse[prefix] + key[len(prefix):]
    theirs = {their_key[k]: v.to(torch.bfloat16) for k, v in model.state_dict().items()}  # released in bf16
    theirs["vision_tower.blocks.0.weight"] = torch.zeros(2)
    torch.save({"anomaly_expert_state_dict": theirs, "dtype": "torch.bfloat16"}, tmp_path / "expert.pth")
    loaded, skipped = load_expert_checkpoint(tmp_path / "expert.pth")
    assert skipped == ["vision_tower.blocks.0.weight"]
    assert loaded.config == model.config
    for key, value in loaded.state_dict().items():
        assert value.dtype == torch.float32 and torch.equal(value, theirs[their_key[key]].float()), key
    torch.save({"something": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not an Anomaly-OneVision expert"):
        load_expert_checkpoint(tmp_path / "other.pth")


def test_training_on_the_toy_task_lifts_validation_auroc(
    toy_task: dict[str, list[Sample]], make_context: Callable[..., MethodContext]
) -> None:
    """Supervised training from a random LTFM on 14 normals + 6 scratched textures, validated on 4 + 4.

    The scratch is a bright 2-px diagonal on striped noise; even random tower patch features
    separate it, so a trained LTFM should rank (nearly) every val anomaly above every val normal.
    AUROC >= 0.8 on 8 images is far above chance (0.5); the loss check shows the gain comes from
    training, not from a lucky initialisation. lr 1e-2 because 20 images give only 2 steps per epoch.
    """
    plugin = LTFMBaseline(make_context("ft-real", init="scratch", lr=1e-2, epochs=60, patience=20, **TINY))
    train = toy_task["train"] + toy_task["test"]  # the fixture's train split holds normals only
    plugin.fit(train, toy_task["val"])
    result = plugin.fit_result
    assert result is not None
    first, best = result.history[0], result.best
    assert best["val_auroc"] >= 0.8
    assert best["val_loss"] < 0.8 * first["val_loss"]
    assert best["train_loss"] < 0.7 * first["train_loss"]
    assert plugin.threshold_source == "val"
    # not the authors' expert: the report must not set this cell beside Anomaly-OV's numbers
    assert plugin.provenance() == {"started_from": "random initialisation", "expert_checkpoint": False,
                                   "tower": plugin.tower.name, "origin": None}  # trained on the dataset

    pred = plugin.predict([s.image for s in toy_task["val"]])
    pred.check(8)
    labels = np.array([s.label for s in toy_task["val"]])
    assert pred.scores[labels == 1].mean() > pred.scores[labels == 0].mean()
    assert pred.maps is not None and pred.maps.shape == (8, 64, 64)
    assert set(pred.extra) == {"adverb", "region_box"}
    assert pred.decisions == [bool(s >= plugin.threshold) for s in pred.scores]
    assert pred.locations is not None and len(pred.locations) == len(pred.scores)
    for box in pred.extra["region_box"]:
        x0, y0, x1, y1 = map(int, str(box).split(","))
        assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
    assert (plugin.context.work_dir / "ltfm" / "ft-real-seed0.safetensors").is_file()


def test_base_variant_trains_on_the_synthetic_domain_only(
    toy_task: dict[str, list[Sample]], make_context: Callable[..., MethodContext], tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("BENCHMARKS_CACHE", str(tmp_path / "cache"))
    plugin = LTFMBaseline(make_context("base", base_images=16, epochs=2, **TINY))
    plugin.fit([], toy_task["val"])  # base ignores target training data (its protocol gives none)
    assert plugin.fit_result is None
    assert plugin.provenance()["origin"] == "synthetic source"  # what figures call this base
    assert len(list((tmp_path / "cache" / "ltfm" / "base").glob("*.safetensors"))) == 1
    pred = plugin.predict([s.image for s in toy_task["test"][:2]])
    pred.check(2)
    # ft variants start from that cached base instead of training it again.
    ft = LTFMBaseline(make_context("ft-real", base_images=16, epochs=2, **TINY))
    base, start = ft._initial_model()
    assert start == "synthetic source domain (textures+photos)"
    assert all(torch.equal(a, b) for a, b in zip(base.state_dict().values(),
                                                  plugin.model.state_dict().values(), strict=True))


def test_without_validation_data_the_threshold_is_the_default(
    toy_task: dict[str, list[Sample]], make_context: Callable[..., MethodContext]
) -> None:
    plugin = LTFMBaseline(make_context("ft-real", init="scratch", epochs=1, **TINY))
    plugin.fit(toy_task["val"], None)
    assert plugin.threshold == 0.5 and plugin.threshold_source == "default"  # no validation data
    pred = plugin.predict([s.image for s in toy_task["test"][:3]])
    pred.check(3)
    assert pred.maps is not None and pred.maps.shape == (3, 64, 64)


def test_synthetic_source_domain_is_deterministic_with_masks() -> None:
    a, b = synthetic_source_domain(6, size=64, seed=1), synthetic_source_domain(6, size=64, seed=1)
    assert all(np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1]) for x, y in zip(a, b, strict=True))
    assert [x[2] for x in a] == [0, 1, 0, 1, 0, 1]
    assert all(x[1].any() == bool(x[2]) for x in a)
    assert all(x[0].shape == (64, 64, 3) and x[0].dtype == np.uint8 for x in a)


def test_source_domain_uses_the_photographs_it_is_given() -> None:
    """Images 2 and 3 of every 4 are crops of the photographs (here one flat red photo: only
    jitter, sensor noise and the anomaly change it); the rest stay procedural textures."""
    red = np.zeros((80, 120, 3), np.uint8)
    red[..., 0] = 200
    domain = synthetic_source_domain(8, size=32, seed=3, photographs=[red])
    again = synthetic_source_domain(8, size=32, seed=3, photographs=[red])
    assert all(np.array_equal(x[0], y[0]) for x, y in zip(domain, again, strict=True))
    for i, (image, mask, _) in enumerate(domain):
        clean = image[~mask].astype(float)
        from_photo = clean[:, 0].mean() > clean[:, 1].mean() + 60 and clean[:, 1].std() < 12
        assert from_photo == (i % 4 >= 2), i
    kinds = {"hairline", "pixels"}
    assert kinds <= set(ANOMALY_KINDS)


def test_variants_declare_which_training_sources_they_see() -> None:
    variants = LTFMBaseline.meta.variants
    assert LTFMBaseline.meta.default_variants == ("base", "ft-real", "ft-real-gen")
    assert variants["ft-real"].protocol is Protocol.SUPERVISED and variants["ft-real"].sources == ("real",)
    assert variants["ft-real-gen"].protocol is Protocol.SUPERVISED
    assert "generated" in variants["ft-real-gen"].sources and "real" in variants["ft-real-gen"].sources
    assert "generated" not in variants["ft-real"].sources
    assert variants["base"].protocol is Protocol.ZERO_SHOT and variants["base"].sources == ()


def test_adverb_thresholds() -> None:
    assert [adverb(s) for s in (0.0, 0.299, 0.3, 0.699, 0.7, 1.0)] == [
        "slightly", "slightly", "moderately", "moderately", "highly", "highly"]


def test_region_words() -> None:
    assert grid_word(0.1, 0.1) == "top left" and grid_word(0.5, 0.5) == "center"
    assert grid_word(0.9, 0.5) == "right" and grid_word(0.5, 0.95) == "bottom"


def test_the_region_is_the_most_significant_cell_in_image_pixels() -> None:
    """A 4 x 5 cell grid over a 80 x 100 image: the peak cell (row 2, col 3) is the box
    60,40..80,60 and, its centre at (0.7, 0.625) of the image, "right"; the corner cell is "top left"."""
    from baselines.ltfm_plugin import LTFMBaseline

    cells = np.zeros((4, 5))
    cells[2, 3] = 1.0
    assert LTFMBaseline._region(None, cells, (80, 100)) == ("60,40,80,60", "right")  # type: ignore[arg-type]
    cells = np.zeros((4, 5))
    cells[0, 0] = 1.0
    assert LTFMBaseline._region(None, cells, (80, 100)) == ("0,0,20,20", "top left")  # type: ignore[arg-type]
    cells = np.zeros((4, 5))
    cells[1, 1] = 1.0  # centre (0.3, 0.375) of the image
    assert LTFMBaseline._region(None, cells, (80, 100)) == ("20,20,40,40", "left")  # type: ignore[arg-type]
    cells = np.zeros((4, 5))
    cells[3, 4] = 1.0
    assert LTFMBaseline._region(None, cells, (81, 101)) == ("80,60,101,81", "bottom right")  # type: ignore[arg-type]


def test_an_anomaly_without_a_mask_pushes_its_map_peak_up() -> None:
    """Multiple-instance map loss: for a maskless anomaly only the map's maximum is supervised (towards 1)."""
    from ltfm.module import LTFMOutput
    from ltfm.trainer import ltfm_loss

    def loss(peak: float, has_map: bool) -> float:
        sig = torch.full((1, 1, 2, 2), 0.05)
        sig[0, 0, 1, 1] = peak
        out = LTFMOutput(logit=torch.zeros(1), score=torch.full((1,), 0.5), significance_map=sig,
                         level_maps=sig[:, :, None].expand(1, 1, 4, 2, 2))
        return float(ltfm_loss(out, torch.ones(1), torch.zeros(1, 1, 2, 2), torch.tensor([has_map]), TrainConfig()))

    assert loss(0.9, False) < loss(0.5, False) < loss(0.1, False)
    bce_head = float(torch.nn.functional.binary_cross_entropy_with_logits(torch.zeros(1), torch.ones(1)))
    weight = TrainConfig().map_loss_weight
    assert loss(0.9, False) == pytest.approx(bce_head - weight * np.log(0.9), rel=1e-5)
    # with a mask (here all zero) the focal map loss applies instead, and rises with the peak
    assert loss(0.9, True) > loss(0.1, True)


# --- the trainer: early stopping, epoch ranking, schedule, losses -----------------------------------

from ltfm import trainer  # noqa: E402


def _feature_set(model: LTFM, n: int = 6, seed: int = 1) -> trainer.FeatureSet:
    cfg = model.config
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(n, 1, cfg.num_levels, cfg.num_tokens, cfg.padded_width, generator=g).half()
    labels = torch.tensor([0.0, 1.0] * (n // 2))
    targets = torch.zeros(n, 1, *cfg.grid)
    targets[1::2, 0, 2:4, 2:4] = 1.0
    has_map = torch.tensor([True, True] * (n // 2))
    has_map[-1] = False  # one anomaly without a mask: the weak (peak) loss
    return trainer.FeatureSet(features, labels, targets, has_map, AnyResGrid.global_only(64), [(64, 64)] * n)


def test_early_stopping_restores_the_best_epoch_and_stops_after_patience(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scripted validation: AUROC 0.6, 0.9, 0.9 (higher loss), 0.7, 0.8 ... with patience 3, epoch 2 is the
    best, epochs 3-5 do not beat it, training stops after epoch 5 and the model holds epoch 2's weights."""
    model = tiny_ltfm()
    data = _feature_set(model)
    script = [(0.6, 1.0), (0.9, 0.5), (0.9, 0.6), (0.7, 0.4), (0.8, 0.3), (0.95, 0.1), (0.99, 0.1)]
    states: list[dict[str, torch.Tensor]] = []

    def scripted(model_: LTFM, val: trainer.FeatureSet, config: trainer.TrainConfig, device: str) -> dict[str, float]:
        states.append({k: v.detach().clone() for k, v in model_.state_dict().items()})
        auroc, loss = script[len(states) - 1]
        return {"auroc": auroc, "loss": loss}

    monkeypatch.setattr(trainer, "evaluate", scripted)
    result = trainer.train_ltfm(model, data, data, trainer.TrainConfig(epochs=7, patience=3, batch_size=4, lr=1e-2))
    assert (result.epochs_run, result.best_epoch) == (5, 2)
    assert [r["val_auroc"] for r in result.history] == [0.6, 0.9, 0.9, 0.7, 0.8]
    assert result.best == result.history[1] and result.best["epoch"] == 2.0
    restored = model.state_dict()
    assert all(torch.equal(restored[k], states[1][k]) for k in restored)  # epoch 2's weights, not the last
    assert any(not torch.equal(restored[k], states[4][k]) for k in restored)
    assert not model.training
    assert [r["epoch"] for r in result.history] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert all(r["train_loss"] > 0 for r in result.history)
    seconds = [r["seconds"] for r in result.history]
    assert seconds == sorted(seconds) and result.seconds >= seconds[-1]


def test_without_validation_every_epoch_runs_and_the_last_is_kept() -> None:
    model = tiny_ltfm()
    data = _feature_set(model)
    result = trainer.train_ltfm(model, data, None, trainer.TrainConfig(epochs=3, patience=1, batch_size=4))
    assert (result.epochs_run, result.best_epoch) == (3, 3)
    assert all("val_loss" not in r for r in result.history)
    empty = trainer.FeatureSet(data.features[:0], data.labels[:0], data.map_targets[:0], data.has_map[:0],
                               data.crops, [])
    result = trainer.train_ltfm(tiny_ltfm(), data, empty, trainer.TrainConfig(epochs=2, patience=1, batch_size=4))
    assert result.epochs_run == 2 and result.best_epoch == 2  # an empty validation set is no validation


def test_training_is_deterministic_per_seed() -> None:
    a, b, c = tiny_ltfm(), tiny_ltfm(), tiny_ltfm()
    data = _feature_set(a)
    config = trainer.TrainConfig(epochs=2, patience=2, batch_size=2, seed=3)
    la = trainer.train_ltfm(a, data, data, config).history
    lb = trainer.train_ltfm(b, data, data, config).history
    lc = trainer.train_ltfm(c, data, data, trainer.TrainConfig(epochs=2, patience=2, batch_size=2, seed=4)).history
    assert [r["train_loss"] for r in la] == [r["train_loss"] for r in lb]
    assert [r["train_loss"] for r in la] != [r["train_loss"] for r in lc]


def test_epochs_rank_by_val_auroc_then_lower_val_loss_else_later_epoch() -> None:
    key = trainer.selection_key
    assert key({"epoch": 1.0, "val_loss": 0.5, "val_auroc": 0.9}) > key({"epoch": 2.0, "val_loss": 0.1, "val_auroc": 0.8})
    assert key({"epoch": 1.0, "val_loss": 0.4, "val_auroc": 0.9}) > key({"epoch": 2.0, "val_loss": 0.5, "val_auroc": 0.9})
    assert key({"epoch": 1.0, "val_loss": 0.4}) == (0.0, -0.4)  # one class in val: loss alone
    assert key({"epoch": 3.0, "train_loss": 1.0}) == (3.0, 0.0)


def test_schedules_per_preset_and_config_checks() -> None:
    assert (trainer.schedule("smoke").epochs, trainer.schedule("smoke").patience) == (4, 2)
    assert (trainer.schedule("paper").epochs, trainer.schedule("paper").patience) == (60, 10)
    assert (trainer.schedule("unknown").epochs, trainer.schedule("unknown").patience) == (15, 4)
    assert trainer.schedule("default", lr=5e-4, patience=2) == trainer.TrainConfig(epochs=15, patience=2, lr=5e-4)
    with pytest.raises(ValueError, match="map_loss must be one of"):
        trainer.TrainConfig(map_loss="dice")
    with pytest.raises(ValueError, match="score must be one of"):
        trainer.TrainConfig(score="max")
    for bad in ({"epochs": 0}, {"patience": 0}, {"batch_size": 0}):
        with pytest.raises(ValueError, match="epochs, patience and batch_size must be >= 1"):
            trainer.TrainConfig(**bad)  # type: ignore[arg-type]
    trainer.TrainConfig(epochs=1, patience=1, batch_size=1)


def test_warmup_then_cosine_decay() -> None:
    steps = 100  # warm-up over 5 steps
    factors = [trainer.warmup_cosine(s, steps) for s in range(steps + 1)]
    assert factors[0] == pytest.approx(0.2 * 0.5 * (1 + np.cos(0)))
    assert factors[4] == pytest.approx(0.5 * (1 + np.cos(np.pi * 4 / 100)))
    assert factors[50] == pytest.approx(0.5) and factors[100] == pytest.approx(0.0)
    assert trainer.warmup_cosine(150, steps) == pytest.approx(0.0)  # past the end: stays at 0
    assert trainer.warmup_cosine(0, 10) == pytest.approx(1.0)  # fewer than 20 steps: one warm-up step


def test_focal_loss_matches_its_formula_and_ignores_easy_pixels() -> None:
    prob = torch.tensor([0.9, 0.2, 0.6, 0.0])
    target = torch.tensor([1.0, 0.0, 0.0, 1.0])
    pt = torch.tensor([0.9, 0.8, 0.4, 1e-6])
    expected = (-((1 - pt) ** 2) * torch.log(pt)).mean()
    assert float(trainer.focal_loss(prob, target, 2.0)) == pytest.approx(float(expected), rel=1e-5)
    assert float(trainer.focal_loss(prob, target, 0.0)) == pytest.approx(float(-torch.log(pt).mean()), rel=1e-5)


def test_ltfm_loss_adds_map_and_weak_terms_only_where_they_apply() -> None:
    model = tiny_ltfm()
    data = _feature_set(model)
    out = model(data.features.float())
    labels, targets, has_map = data.labels, data.map_targets, data.has_map
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    none = trainer.ltfm_loss(out, labels, targets, has_map, trainer.TrainConfig(map_loss="none"))
    assert float(none) == pytest.approx(float(bce(out.logit, labels)))
    weight = torch.tensor(2.0)
    assert float(trainer.ltfm_loss(out, labels, targets, has_map, trainer.TrainConfig(map_loss="none"), weight)) == (
        pytest.approx(float(bce(out.logit, labels, pos_weight=weight))))
    config = trainer.TrainConfig(map_loss="focal", map_loss_weight=0.5, focal_gamma=1.0)
    prob = out.significance_map
    focal = trainer.focal_loss(prob[has_map], targets[has_map], 1.0)
    weak = (labels > 0.5) & ~has_map
    peak = prob[weak].flatten(1).max(dim=1).values.clamp(1e-6, 1 - 1e-6)
    weak_term = torch.nn.functional.binary_cross_entropy(peak, torch.ones_like(peak))
    expected = bce(out.logit, labels) + 0.5 * focal + 0.5 * weak_term
    assert float(trainer.ltfm_loss(out, labels, targets, has_map, config)) == pytest.approx(float(expected), rel=1e-5)
    config = trainer.TrainConfig(map_loss="bce", map_loss_weight=1.0)
    plain = torch.nn.functional.binary_cross_entropy(prob[has_map].clamp(1e-6, 1 - 1e-6), targets[has_map])
    expected = bce(out.logit, labels) + plain + weak_term
    assert float(trainer.ltfm_loss(out, labels, targets, has_map, config)) == pytest.approx(float(expected), rel=1e-5)


def test_image_scores_head_map_or_their_mean() -> None:
    head = np.array([0.2, 0.8], dtype=np.float32)
    maps = [np.array([[0.1, 0.6]]), np.array([[0.3, 0.2]])]
    assert trainer.image_scores(head, maps, "head") is head
    assert trainer.image_scores(head, maps, "map") == pytest.approx([0.6, 0.3])
    assert trainer.image_scores(head, maps, "mean") == pytest.approx([0.4, 0.55])
    assert trainer.image_scores(head, maps, "map").dtype == np.float32


def test_evaluate_reports_mean_loss_and_auroc_of_the_configured_score() -> None:
    model = tiny_ltfm()
    data = _feature_set(model, n=6)
    config = trainer.TrainConfig(batch_size=4, score="map")
    result = trainer.evaluate(model, data, config)
    parts = []
    for idx in (torch.arange(4), torch.arange(4, 6)):  # batches of 4 + 2, weighted by their size
        out = model(data.features[idx].float())
        parts.append(float(trainer.ltfm_loss(out, data.labels[idx], data.map_targets[idx], data.has_map[idx],
                                             config)) * len(idx))
    assert result["loss"] == pytest.approx(sum(parts) / 6, rel=1e-5)
    scores, _ = trainer.predict_features(model, data, score="map")
    from sklearn.metrics import roc_auc_score
    assert result["auroc"] == pytest.approx(roc_auc_score(data.labels.numpy(), scores))
    one_class = trainer.FeatureSet(data.features[::2], data.labels[::2], data.map_targets[::2], data.has_map[::2],
                                   data.crops, data.sizes[::2])
    assert set(trainer.evaluate(model, one_class, config)) == {"loss"}


def test_training_weights_positives_schedules_every_step_and_averages_its_loss(monkeypatch: pytest.MonkeyPatch,
                                                                               caplog: pytest.LogCaptureFixture) -> None:
    import logging
    import math

    model = tiny_ltfm()
    data = _feature_set(model, n=6)
    data.labels[:] = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 1.0])  # 5 normals, 1 anomaly
    weights_seen, losses, schedules = [], [], []
    real_loss, real_schedule = trainer.ltfm_loss, trainer.warmup_cosine

    def loss(out, labels, targets, has_map, config, pos_weight=None):  # type: ignore[no-untyped-def]
        weights_seen.append(None if pos_weight is None else float(pos_weight))
        value = real_loss(out, labels, targets, has_map, config, pos_weight)
        losses.append((float(value), len(labels)))
        return value

    monkeypatch.setattr(trainer, "ltfm_loss", loss)
    monkeypatch.setattr(trainer, "warmup_cosine", lambda step, steps: (schedules.append(steps), real_schedule(step, steps))[1])
    result = trainer.train_ltfm(model, data, None, trainer.TrainConfig(epochs=2, patience=2, batch_size=4))
    assert set(weights_seen) == {5.0}  # (normals) / (anomalies)
    assert set(schedules) == {2 * math.ceil(6 / 4)}  # every optimiser step of every epoch
    first_epoch = losses[:2]
    assert result.history[0]["train_loss"] == pytest.approx(sum(v * n for v, n in first_epoch) / 6)
    assert 0 <= result.seconds < 600
    single = _feature_set(model, n=4)
    single.labels[:] = 0.0
    weights_seen.clear()
    with caplog.at_level(logging.WARNING, logger=trainer.log.name):
        trainer.train_ltfm(tiny_ltfm(), single, None, trainer.TrainConfig(epochs=1, patience=1, batch_size=4))
    assert "LTFM training data has a single class (4 images); the classifier cannot learn a boundary" in caplog.text
    assert set(weights_seen) == {None}
