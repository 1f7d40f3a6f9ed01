"""Backbone weights that several plugins share: the resolver spec of a timm model, strict loading."""

from __future__ import annotations

from collections.abc import Mapping

import timm
import torch
from torch import nn

from benchmarks.api import WeightSpec


def timm_weight_spec(model_name: str) -> WeightSpec:
    """The resolver spec of a timm model name (`resnet18`, `wide_resnet50_2.tv_in1k`).

    A name without a tag gets timm's default pretrained tag (`wide_resnet50_2` ->
    `wide_resnet50_2.racm_in1k`); the key is the name as given, made filesystem-safe.
    """
    cfg = timm.models.get_pretrained_cfg(model_name)
    if cfg is None or not cfg.hf_hub_id:
        raise ValueError(f"timm has no pretrained weights on the Hugging Face hub for {model_name!r}")
    return WeightSpec(
        key=model_name.replace(".", "_"),
        library="timm",
        model_id=f"{cfg.architecture}.{cfg.tag}" if cfg.tag else str(cfg.architecture),
        hf_repo=cfg.hf_hub_id,
    )


def load_backbone_weights(module: nn.Module, state_dict: Mapping[str, torch.Tensor], name: str) -> None:
    """Load `state_dict` into `module`, raising ValueError that names missing or unexpected keys."""
    result = module.load_state_dict(state_dict, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"weights for {name} do not match the model: {len(result.missing_keys)} missing "
            f"({', '.join(result.missing_keys[:5])}), {len(result.unexpected_keys)} unexpected "
            f"({', '.join(result.unexpected_keys[:5])})"
        )
