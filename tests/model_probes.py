"""Probes over the torch modules a plugin holds, shared by the gemm-path and saved-state tests."""

from __future__ import annotations

import types
import zlib
from collections.abc import Callable, Iterator

import torch
from torch import nn

from benchmarks.plugins import gemm_path


def modules_held_by(plugin: object) -> Iterator[nn.Module]:
    """Every torch module a plugin holds: its attributes, and those of the objects, lists and dicts
    it holds, two levels down (the wrapped library models keep their towers one level in)."""
    seen: set[int] = set()

    def walk(value: object, depth: int) -> Iterator[nn.Module]:
        if id(value) in seen or depth > 3:
            return
        seen.add(id(value))
        if isinstance(value, nn.Module):
            yield value
        elif isinstance(value, list | tuple):
            for item in value:
                yield from walk(item, depth + 1)
        elif isinstance(value, dict):
            for item in value.values():
                yield from walk(item, depth + 1)
        elif hasattr(value, "__dict__") and not isinstance(value, type | types.ModuleType | Callable):
            for item in vars(value).values():
                yield from walk(item, depth + 1)

    yield from walk(plugin, 0)


BIASED_LAYERS = (nn.Linear, nn.MultiheadAttention, gemm_path.PackedLinear, gemm_path.PackedSelfAttention)


def randomise_biases(modules: list[nn.Module]) -> int:
    """Give every linear and attention bias random values, the same on both paths: each from a
    generator seeded by the parameter's name (the packed path keeps the names). torch, timm and
    open_clip start attention biases at zero, where a packed layer that dropped them would pass."""
    changed = 0
    with torch.no_grad():
        for root in modules:
            for module_name, module in root.named_modules():
                if not isinstance(module, BIASED_LAYERS):
                    continue
                for name, parameter in module.named_parameters(recurse=False):
                    if name.endswith("bias") and parameter is not None:
                        key = f"{type(root).__name__}.{module_name}.{name}"
                        generator = torch.Generator().manual_seed(zlib.crc32(key.encode()))
                        parameter.copy_(0.1 * torch.randn(parameter.shape, generator=generator))
                        changed += 1
    return changed


def plain_layers_run(modules: list[nn.Module], run: Callable[[], object]) -> list[str]:
    """The torch linear layers (and packable self-attention) that ran as torch's while `run` ran:
    on the packed path, none should."""
    ran: list[str] = []
    layers = {f"{type(module).__name__} {name}": module for root in modules for name, module in root.named_modules()
              if type(module) in gemm_path.LINEAR_TYPES
              or (isinstance(module, nn.MultiheadAttention) and gemm_path.PackedSelfAttention.supports(module))}
    hooks = [module.register_forward_hook(lambda *_, label=label: ran.append(label)) for label, module in layers.items()]
    try:
        run()
    finally:
        for hook in hooks:
            hook.remove()
    return sorted(set(ran))
