"""Every real backbone, met as its source publishes it: file format, file name, place and size.

For each backbone a method loads with `--weights pretrained`, random values are written at the
real architecture's shapes in the published format and location (`tests/published_weights.py`),
and the test proves, through the method's own loading code:
- the resolver finds the file offline in that place (not in a weights directory);
- every tensor the method keeps equals the file's (a non-strict or partial load would leave
  initial values behind);
- the resolved weights carry the file's fingerprint, and the cell stamp is `pretrained`;
- the method's published numbers become comparable (`benchmarks.reporting.published`).

These are the suite's largest tests: they build the real networks (SigLIP so400m: 428 M vision
parameters, 3.5 GB file). Each writes into its own temporary cache, deleted afterwards, and
they run in the default test run (their time on the project's machine: docs/weights.md).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import published_weights as pw
import pytest
import torch

from benchmarks.plugins.registry import BASELINES
from benchmarks.plugins.weights import WeightsResolver, file_fingerprint
from benchmarks.reporting.published import comparability
from benchmarks.running.presets import get_preset


@pytest.fixture()
def caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Path]]:
    """Empty Hugging Face, torch hub and open_clip caches in their standard places, nothing else."""
    import huggingface_hub.constants

    home = tmp_path / "home"
    hf_cache = home / ".cache" / "huggingface" / "hub"
    torch_home = home / ".cache" / "torch"
    for folder in (hf_cache, torch_home):
        folder.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.delenv("OPEN_CLIP_CACHE", raising=False)
    monkeypatch.delenv("BENCHMARKS_WEIGHTS_DIR", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hf_cache))
    yield {"hf": hf_cache, "torch": torch_home, "clip": home / ".cache" / "clip", "home": home}


def _context(resolver: WeightsResolver, variant: str = "default", **options: object):  # noqa: ANN202
    from benchmarks.plugins.contract import MethodContext

    return MethodContext(variant=variant, seed=0, device="cpu", weights=resolver, preset=get_preset("smoke"),
                         class_name="bottle", options=options)


def _assert_holds(module_state: Mapping[str, torch.Tensor], written: Mapping[str, torch.Tensor],
                  what: str) -> None:
    """Every tensor of `module_state` equals the written one of the same name, and all are there."""
    missing = sorted(set(module_state) - set(written))
    assert not missing, f"{what}: the model has tensors the file lacks: {missing[:5]}"
    differ = [k for k, v in module_state.items() if not torch.equal(v.float(), written[k].float())]
    assert not differ, f"{what}: {len(differ)} tensors were not loaded from the file, e.g. {differ[:5]}"


def _assert_pretrained(resolver: WeightsResolver, path: Path, source: str) -> None:
    assert resolver.effective_mode == "pretrained"
    stamp = resolver.summary()[-1]
    assert stamp["mode"] == "pretrained" and stamp["source"] == source, stamp
    assert Path(str(stamp["path"])) == path, stamp
    assert stamp["fingerprint"] == file_fingerprint(path)


def _comparability(method: str, provenance: dict[str, object] | None = None) -> dict[str, str | None]:
    """Published number -> why a pretrained cell of `method` on the paper's data may not stand
    beside it (None: it may)."""
    entries = BASELINES.get(method).meta.published
    assert entries, f"{method} declares no published number"
    return {f"{e.dataset_kind} {e.metric}": comparability(e, kind=e.dataset_kind, weights="pretrained",
                                                          provenance=[provenance or {}]) for e in entries}


def _assert_comparable(method: str, provenance: dict[str, object] | None = None) -> None:
    reasons = _comparability(method, provenance)
    assert all(reason is None for reason in reasons.values()), reasons


def _images(n: int, size: tuple[int, int] = (48, 64)) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (*size, 3), dtype=np.uint8) for _ in range(n)]


def test_patchcore_wide_resnet50_from_the_hugging_face_cache(caches: dict[str, Path]) -> None:
    """timm `wide_resnet50_2.racm_in1k`: `model.safetensors` in its hub repo (69 M parameters)."""
    from baselines.backbone_weights import timm_weight_spec

    spec = timm_weight_spec("wide_resnet50_2")
    written = pw.random_state(pw.timm_shapes("wide_resnet50_2"), seed=1)
    path = pw.hf_cache_file(caches["hf"], "timm/wide_resnet50_2.racm_in1k", "model.safetensors",
                            pw.safetensors_writer(written))
    assert spec.hf_repo == "timm/wide_resnet50_2.racm_in1k"
    resolver = WeightsResolver("pretrained")
    plugin = BASELINES.get("patchcore")(_context(resolver, "k1", image_size=64, crop_size=64))
    backbone = plugin.model.feature_extractor.feature_extractor
    kept = {k: v for k, v in backbone.state_dict().items()}
    # timm's feature extractor keeps the stages up to layer 3; every one of them came from the file.
    assert kept and all(k.split(".")[0] in ("conv1", "bn1", "layer1", "layer2", "layer3") for k in kept)
    _assert_holds(kept, written, "patchcore wide_resnet50_2")
    _assert_pretrained(resolver, path, "Hugging Face cache")
    plugin.fit(_samples(4))
    assert np.isfinite(plugin.predict(_images(1)).scores).all()
    _assert_comparable("patchcore")


def test_dino_knn_vit_s14_from_the_hugging_face_cache(caches: dict[str, Path]) -> None:
    """timm `vit_small_patch14_dinov2.lvd142m`: `model.safetensors` (22 M parameters, 518 px grid)."""
    from baselines.dino_knn import DinoKnnOptions, build_backbone

    written = pw.random_state(pw.timm_shapes("vit_small_patch14_dinov2.lvd142m"), seed=2)
    path = pw.hf_cache_file(caches["hf"], "timm/vit_small_patch14_dinov2.lvd142m", "model.safetensors",
                            pw.safetensors_writer(written))
    resolver = WeightsResolver("pretrained")
    tokens = build_backbone(DinoKnnOptions(), resolver)
    _assert_holds(tokens.model.state_dict(), written, "dino-knn ViT-S/14")
    _assert_pretrained(resolver, path, "Hugging Face cache")
    _assert_comparable("dino-knn")


def test_dino_knn_vit_s14_from_torch_hubs_checkpoint_folder(caches: dict[str, Path]) -> None:
    """DINOv2's own release, as `torch.hub.load('facebookresearch/dinov2', 'dinov2_vits14')` leaves
    it: `checkpoints/dinov2_vits14_pretrain.pth`, DINOv2's key names (with `mask_token`)."""
    from baselines.dino_knn import DinoKnnOptions, build_backbone

    timm_state = pw.random_state(pw.timm_shapes("vit_small_patch14_dinov2.lvd142m"), seed=3)
    path = pw.torch_hub_checkpoint(caches["torch"], "dinov2_vits14_pretrain.pth", pw.dinov2_hub_state(timm_state, 3))
    resolver = WeightsResolver("pretrained")
    tokens = build_backbone(DinoKnnOptions(), resolver)
    _assert_holds(tokens.model.state_dict(), timm_state, "dino-knn ViT-S/14 (torch hub)")
    _assert_pretrained(resolver, path, "torch hub cache")


def test_winclip_vit_b16_plus_240_from_the_hugging_face_cache(caches: dict[str, Path]) -> None:
    """open_clip `ViT-B-16-plus-240` / `laion400m_e31`: `open_clip_model.safetensors` in the timm hub
    repo open_clip names for this tag (208 M parameters, both towers)."""
    from baselines.winclip import WinClipOptions, build_clip

    written = pw.random_state(pw.open_clip_shapes("ViT-B-16-plus-240"), seed=4)
    path = pw.hf_cache_file(caches["hf"], "timm/vit_base_patch16_plus_clip_240.laion400m_e31",
                            "open_clip_model.safetensors", pw.safetensors_writer(written))
    resolver = WeightsResolver("pretrained")
    clip, _ = build_clip(WinClipOptions(), resolver)
    _assert_holds(clip.state_dict(), written, "winclip CLIP")
    _assert_pretrained(resolver, path, "Hugging Face cache")
    _assert_comparable("winclip")


def test_winclip_vit_b16_plus_240_from_open_clips_own_cache(caches: dict[str, Path]) -> None:
    """open_clip's GitHub release of the same weights, where `create_model(..., pretrained=
    'laion400m_e31')` downloads it: `~/.cache/clip/vit_b_16_plus_240-laion400m_e31-8fb26589.pt`."""
    import open_clip

    from baselines.winclip import WinClipOptions, build_clip

    url = open_clip.get_pretrained_cfg("ViT-B-16-plus-240", "laion400m_e31")["url"]
    written = pw.random_state(pw.open_clip_shapes("ViT-B-16-plus-240"), seed=5)
    caches["clip"].mkdir(parents=True)
    path = caches["clip"] / url.rsplit("/", 1)[-1]
    torch.save(written, path)
    resolver = WeightsResolver("pretrained")
    clip, _ = build_clip(WinClipOptions(), resolver)
    _assert_holds(clip.state_dict(), written, "winclip CLIP (open_clip cache)")
    _assert_pretrained(resolver, path, "open_clip cache")


def test_anomalygpt_vit_b16_from_the_hugging_face_cache(caches: dict[str, Path]) -> None:
    """open_clip `ViT-B-16` / `laion2b_s34b_b88k`: `open_clip_model.safetensors` in
    `laion/CLIP-ViT-B-16-laion2B-s34B-b88K` (150 M parameters)."""
    written = pw.random_state(pw.open_clip_shapes("ViT-B-16"), seed=6)
    path = pw.hf_cache_file(caches["hf"], "laion/CLIP-ViT-B-16-laion2B-s34B-b88K", "open_clip_model.safetensors",
                            pw.safetensors_writer(written))
    resolver = WeightsResolver("pretrained")
    plugin = BASELINES.get("anomalygpt")(_context(resolver, "k1"))
    visual = {f"visual.{k}": v for k, v in plugin.visual.state_dict().items()}
    _assert_holds(visual, written, "anomalygpt CLIP visual")
    _assert_pretrained(resolver, path, "Hugging Face cache")
    # Its paper used ImageBind-Huge and an LLM: even the real CLIP never makes it comparable.
    assert all(str(r).startswith("not comparable: ") for r in _comparability("anomalygpt").values())


def test_ltfm_siglip_so400m_snapshot_and_the_authors_expert(caches: dict[str, Path], tmp_path: Path) -> None:
    """transformers `google/siglip-so400m-patch14-384`: `config.json` + one `model.safetensors` with
    the whole SiglipModel (878 M parameters, 3.5 GB, float32) in the hub cache, and the authors'
    `pretrained_expert_7b.pth` given as `expert_checkpoint`: the paper's LTFM `base`."""
    repo = "google/siglip-so400m-patch14-384"
    written = pw.random_state(pw.siglip_so400m_shapes(), seed=7, zero_prefixes=("text_model.",))
    pw.hf_cache_file(caches["hf"], repo, "config.json", pw.json_writer(pw.SIGLIP_SO400M_CONFIG))
    weights = pw.hf_cache_file(caches["hf"], repo, "model.safetensors", pw.safetensors_writer(written))
    snapshot = weights.parent
    expert_state = pw.anomaly_onevision_expert_state(seed=8)
    expert = tmp_path / "pretrained_expert_7b.pth"
    torch.save(expert_state, expert)
    resolver = WeightsResolver("pretrained")
    plugin = BASELINES.get("ltfm")(_context(resolver, "base", tower="siglip-so400m", expert_checkpoint=str(expert),
                                            max_tiles=1))
    tower = plugin.tower
    kept = {f"vision_model.{k.removeprefix('vision_model.')}": v for k, v in tower.model.state_dict().items()}
    _assert_holds(kept, written, "LTFM SigLIP tower")
    assert tower.width == 1152 and tower.grid == (27, 27)
    _assert_pretrained(resolver, snapshot, "Hugging Face cache")
    plugin.fit(_samples(2, (64, 64)))
    provenance = plugin.provenance()
    assert provenance["expert_checkpoint"] is True and provenance["origin"] == "expert checkpoint", provenance
    assert resolver.effective_mode == "pretrained"
    from ltfm.checkpoint import EXPERT_KEY_MAP

    mapped = {}
    for theirs, value in expert_state.items():
        prefix = next(p for p in EXPERT_KEY_MAP if theirs.startswith(p))
        mapped[EXPERT_KEY_MAP[prefix] + theirs[len(prefix):]] = value
    _assert_holds(plugin.model.state_dict(), mapped, "LTFM expert")
    _assert_comparable("ltfm", provenance)
    prediction = plugin.predict(_images(1, (64, 64)))
    assert np.isfinite(prediction.scores).all()


def test_anomalib_padim_resnet18_from_the_hugging_face_cache(caches: dict[str, Path]) -> None:
    """anomalib's Padim asks timm for `resnet18` (`resnet18.a1_in1k`): `model.safetensors` in its hub repo."""
    written = pw.random_state(pw.timm_shapes("resnet18"), seed=9)
    path = pw.hf_cache_file(caches["hf"], "timm/resnet18.a1_in1k", "model.safetensors", pw.safetensors_writer(written))
    resolver = WeightsResolver("pretrained")
    plugin = BASELINES.get("anomalib:Padim")(_context(resolver, "default", batch_size=4,
                                                      pre_processor_kwargs={"image_size": [64, 64]}))
    plugin.fit(_samples(4))
    kept = plugin.module.model.feature_extractor.feature_extractor.state_dict()
    assert kept and all(k.split(".")[0] in ("conv1", "bn1", "layer1", "layer2", "layer3") for k in kept)
    _assert_holds(kept, written, "anomalib Padim resnet18")
    _assert_pretrained(resolver, path, "Hugging Face cache")


def _samples(n: int, size: tuple[int, int] = (48, 64)):  # noqa: ANN202
    from benchmarks.data.schema import ImageRecord
    from benchmarks.plugins.contract import Sample

    return [Sample(ImageRecord(row=i + 1, image_id=f"n{i}.png", image=Path(f"n{i}.png"), label=0, split="train",
                               source="real", group="all", defect="none", hard_negative=False), image)
            for i, image in enumerate(_images(n, size))]


def test_anomalib_torchvision_backbone_from_torch_hubs_checkpoint_folder(caches: dict[str, Path]) -> None:
    """anomalib models that ask torchvision for DEFAULT weights (UniNet, CFA: `wide_resnet50_2`) get
    torchvision's own download, `checkpoints/wide_resnet50_2-<hash8>.pth`, named as in its URL."""
    import torchvision

    from baselines.anomalib_adapter import _torchvision_backbone

    filename = torchvision.models.Wide_ResNet50_2_Weights.DEFAULT.url.rsplit("/", 1)[-1]
    written = pw.random_state(pw.torchvision_shapes("wide_resnet50_2"), seed=10)
    path = pw.torch_hub_checkpoint(caches["torch"], filename, written)
    resolver = WeightsResolver("pretrained")
    model = _torchvision_backbone(torchvision.models.wide_resnet50_2, "wide_resnet50_2", resolver)
    _assert_holds(model.state_dict(), written, "anomalib torchvision wide_resnet50_2")
    _assert_pretrained(resolver, path, "torch hub cache")


@pytest.mark.parametrize(("tower_name", "repo", "filename", "shapes", "prefix"), [
    ("clip-vit-b16", "laion/CLIP-ViT-B-16-laion2B-s34B-b88K", "open_clip_model.safetensors",
     lambda: pw.open_clip_shapes("ViT-B-16"), "visual."),
    ("dinov2-vit-s14", "timm/vit_small_patch14_dinov2.lvd142m", "model.safetensors",
     lambda: pw.timm_shapes("vit_small_patch14_dinov2.lvd142m"), ""),
])
def test_ltfm_other_towers_from_the_hugging_face_cache(caches: dict[str, Path], tower_name: str, repo: str,
                                                       filename: str, shapes, prefix: str) -> None:  # noqa: ANN001
    """LTFM's CLIP and DINOv2 towers read the same published files as anomalygpt and dino-knn, through
    their own loaders (open_clip's visual tower only; timm's ViT at the tower's 224 px input)."""
    from baselines.ltfm_towers import build_tower

    written = pw.random_state(shapes(), seed=11)
    path = pw.hf_cache_file(caches["hf"], repo, filename, pw.safetensors_writer(written))
    resolver = WeightsResolver("pretrained")
    tower, _ = build_tower(tower_name, resolver)
    module = tower.visual if prefix else tower.model
    state = {f"{prefix}{k}": v for k, v in module.state_dict().items()}
    if not prefix:  # timm resamples the 37x37 position grid to the tower's own size; the rest is as written
        state = {k: v for k, v in state.items() if k != "pos_embed"}
    _assert_holds(state, written, f"LTFM {tower_name} tower")
    _assert_pretrained(resolver, path, "Hugging Face cache")


def _mvtec_category(root: Path, n_train: int = 6, n_good: int = 3, n_bad: int = 3) -> Path:
    """`root/bottle` in MVTec AD's layout: train/good, test/{good,broken_large}, ground_truth masks."""
    from PIL import Image

    rng = np.random.default_rng(1)
    category = root / "bottle"
    for folder, n, bad in (("train/good", n_train, False), ("test/good", n_good, False),
                           ("test/broken_large", n_bad, True)):
        (category / folder).mkdir(parents=True)
        for i in range(n):
            image = np.full((64, 64, 3), 120, np.uint8) + rng.integers(0, 8, (64, 64, 3), dtype=np.uint8)
            mask = np.zeros((64, 64), np.uint8)
            if bad:
                mask[20:30, 20 + i:40 + i] = 255
                image[mask > 0] = 250
                (category / "ground_truth" / "broken_large").mkdir(parents=True, exist_ok=True)
                Image.fromarray(mask).save(category / "ground_truth" / "broken_large" / f"{i:03d}_mask.png")
            Image.fromarray(image).save(category / folder / f"{i:03d}.png")
    return category


def test_a_pretrained_cell_is_stamped_and_stands_beside_the_paper(caches: dict[str, Path], tmp_path: Path) -> None:
    """End to end through the runner: the WRN50 file in the hub cache, `run --weights pretrained` on an
    MVTec-layout category: the cell says `pretrained` with the file's fingerprint, and the report
    puts its AUROC beside PatchCore's published 99.2 as comparable."""
    import json
    import os
    import subprocess
    import sys

    import pandas as pd

    from benchmarks.cli import main

    written = pw.random_state(pw.timm_shapes("wide_resnet50_2"), seed=12)
    path = pw.hf_cache_file(caches["hf"], "timm/wide_resnet50_2.racm_in1k", "model.safetensors",
                            pw.safetensors_writer(written))
    category = _mvtec_category(tmp_path / "mvtec")
    out = tmp_path / "run"
    # A fresh process, as a user's: cells fork from a server that must see this cache (one an earlier
    # test started would not).
    env = {**os.environ, "HOME": str(caches["home"]), "HF_HUB_CACHE": str(caches["hf"]),
           "TORCH_HOME": str(caches["torch"])}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "run", "--methods", "patchcore", "--variants", "default", "--datasets",
         f"mvtec:{category}", "--weights", "pretrained", "--preset", "smoke", "--out", str(out), "--no-report",
         "--option", "patchcore.image_size=64", "--option", "patchcore.crop_size=64"],
        env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    cells = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert [(c["status"], c["weights"]) for c in cells] == [("ok", "pretrained")], [c.get("error") for c in cells]
    (backbone,) = [w for w in cells[0]["weights_detail"] if w["key"] == "wide_resnet50_2"]
    assert backbone["fingerprint"] == file_fingerprint(path) and backbone["mode"] == "pretrained"
    assert main(["report", str(out)]) == 0
    table = pd.read_csv(out / "tables" / "published_vs_reproduced.csv")
    row = table[(table["method"] == "patchcore") & (table["metric"] == "image_auroc")].iloc[0]
    assert row["status"] == "comparable (1 dataset)", row.to_dict()
    assert row["published"] == 99.2 and not pd.isna(row["reproduced"])
