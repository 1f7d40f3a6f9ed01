"""LTFM checkpoints: safetensors weights plus a JSON config, and the Anomaly-OneVision expert loader.

Our format is two files side by side: `NAME.safetensors` (the `LTFM` state dict, tensors stored
exactly, so a round trip is bit-exact) and `NAME.json`:

    {"format": "ltfm-checkpoint/1", "ltfm": {LTFMConfig fields}, "metadata": {free-form, e.g.
     "tower", "image_size", "anyres", "threshold", "variant", "trained_on"}}

Both are written to temporary files and renamed, so a crash never leaves half a checkpoint.

Anomaly-OneVision expert checkpoints (`pretrained_expert_7b.pth`, `pretrained_expert_05b.pth`
from the authors, or an `OVAnomalyDetector` checkpoint that wraps the expert's weights under
`anomaly_expert_state_dict`) are PyTorch pickles of the `AnomalyOV` module's state dict; they
are read with `torch.load(weights_only=True)` (a `.safetensors` export works too). Expected keys
(theirs -> ours, shapes at SigLIP so400m / 384 px):

    positive_embedding            (1, 512)          -> pos_embedding
    negative_embedding            (1, 512)          -> neg_embedding
    pooling_layer.0.{weight,bias} (1, 729), (1,)    -> token_pool.{weight,bias}
    class_predictor.{0,2}.*       1152->512->512    -> class_mlp.{0,2}.*
    prompt_adaptors.{0..3}.*      1024->512         -> prompt_adapters.{0..3}.*
    siglip_adaptors.{0..3}.*      1152->512         -> token_adapters.{0..3}.*
    q_former.query_proj.*         1152->512         -> attention.query.*
    q_former.key_proj.*           1152->512         -> attention.key.*
    final_predictor.{0,2}.*       1152->512->1      -> head.{0,2}.*

Any prefix before these names (`module.`, `anomaly_expert.`, `model.anomaly_encoder.`) is
ignored; other keys (e.g. the vision tower's, in a detector checkpoint) are skipped and listed.
The config (width, token grid, sizes) is read off the tensor shapes; the grid must be square.
Such a checkpoint only fits the `siglip-so400m` tower at 384 px (width 1152, 27x27 tokens).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ltfm.module import LTFM, LTFMConfig

FORMAT = "ltfm-checkpoint/1"

EXPERT_KEY_MAP: dict[str, str] = {
    "positive_embedding": "pos_embedding",
    "negative_embedding": "neg_embedding",
    "pooling_layer.0.": "token_pool.",
    "class_predictor.": "class_mlp.",
    "prompt_adaptors.": "prompt_adapters.",
    "siglip_adaptors.": "token_adapters.",
    "q_former.query_proj.": "attention.query.",
    "q_former.key_proj.": "attention.key.",
    "final_predictor.": "head.",
}
EXPERT_WRAPPERS = ("anomaly_expert_state_dict", "state_dict", "model")


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """`(weights .safetensors, config .json)` for a checkpoint named by either file or the bare stem."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def save_checkpoint(path: str | Path, model: LTFM, metadata: Mapping[str, Any] | None = None) -> Path:
    """Write `model` as safetensors + JSON config; returns the `.safetensors` path."""
    from safetensors.torch import save_file

    weights_path, config_path = checkpoint_paths(path)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    document = {"format": FORMAT, "ltfm": model.config.to_json(), "metadata": dict(metadata or {})}
    tmp_weights = weights_path.with_name(weights_path.name + ".tmp")
    tmp_config = config_path.with_name(config_path.name + ".tmp")
    save_file(state, str(tmp_weights), metadata={"format": FORMAT})
    tmp_config.write_text(json.dumps(document, indent=2, sort_keys=True))
    os.replace(tmp_weights, weights_path)
    os.replace(tmp_config, config_path)
    return weights_path


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> tuple[LTFM, dict[str, Any]]:
    """Read a checkpoint written by `save_checkpoint` -> (model in eval mode, its metadata)."""
    from safetensors.torch import load_file

    weights_path, config_path = checkpoint_paths(path)
    document = json.loads(config_path.read_text())
    if document.get("format") != FORMAT:
        raise ValueError(f"{config_path}: not an LTFM checkpoint config (format {document.get('format')!r})")
    model = LTFM(LTFMConfig.from_json(document["ltfm"]))
    model.load_state_dict(load_file(str(weights_path), device=map_location), strict=True)
    return model.eval(), dict(document.get("metadata", {}))


def map_expert_keys(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename Anomaly-OneVision expert keys to ours -> (mapped state, skipped keys)."""
    mapped: dict[str, torch.Tensor] = {}
    skipped: list[str] = []
    for key, value in state.items():
        for theirs, ours in EXPERT_KEY_MAP.items():
            at = key.find(theirs)
            if at >= 0 and (at == 0 or key[at - 1] == "."):
                mapped[ours + key[at + len(theirs):]] = value.float()
                break
        else:
            skipped.append(key)
    return mapped, skipped


def expert_config(state: Mapping[str, torch.Tensor]) -> LTFMConfig:
    """The `LTFMConfig` implied by a mapped expert state dict's shapes."""
    n = state["token_pool.weight"].shape[1]
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"expert checkpoint pools {n} tokens, not a square grid")
    num_levels = len({k.split(".")[1] for k in state if k.startswith("token_adapters.")})
    return LTFMConfig(
        width=state["class_mlp.0.weight"].shape[1], grid=(side, side), num_levels=num_levels,
        embedding_dim=state["pos_embedding"].shape[1], class_dim=state["class_mlp.2.weight"].shape[0],
        attention_dim=state["attention.query.weight"].shape[0], head_dim=state["head.0.weight"].shape[0],
    )


def load_expert_checkpoint(path: str | Path) -> tuple[LTFM, list[str]]:
    """Load an Anomaly-OneVision expert checkpoint into our `LTFM` -> (model in eval mode, skipped keys).

    Raises ValueError naming the missing keys when the file is not an expert checkpoint.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        raw: Mapping[str, Any] = load_file(str(path))
    else:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper in EXPERT_WRAPPERS:
        if isinstance(raw.get(wrapper), Mapping):
            raw = raw[wrapper]
            break
    tensors = {k: v for k, v in raw.items() if isinstance(v, torch.Tensor)}
    state, skipped = map_expert_keys(tensors)
    required = ("token_pool.weight", "class_mlp.0.weight", "pos_embedding")
    if any(k not in state for k in required):
        raise ValueError(f"{path}: not an Anomaly-OneVision expert checkpoint (no {', '.join(required)} after "
                         f"mapping; found keys such as {sorted(tensors)[:5]})")
    model = LTFM(expert_config(state))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: expert checkpoint does not fit LTFM: missing {missing}, unexpected {unexpected}")
    return model.eval(), skipped
