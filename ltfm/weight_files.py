"""Reading weight files without executing pickled code (LTFM stands alone: no harness import)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

WRAPPERS = ("state_dict", "model")


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A weight file's tensors: safetensors, else `torch.load(weights_only=True)`, unwrapped from a
    `state_dict` / `model` entry when the checkpoint nests its weights there."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: expected a state dict, found {type(state).__name__}")
    for key in WRAPPERS:
        if isinstance(state.get(key), Mapping):
            return dict(state[key])
    return dict(state)
