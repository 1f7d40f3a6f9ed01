"""Run a frozen backbone's matrix products on the fastest path this machine has (issue 18).

Two paths, chosen per machine by measurement (`benchmarks.running.compute.gemm_path`) and handed to
every plugin as `MethodContext.gemm_path`:

- `eager`: torch as it is. On CPU, `nn.Linear` calls torch's BLAS (MKL in the pinned build).
- `onednn-packed`: every `nn.Linear` and self-attention `nn.MultiheadAttention` of the backbone
  runs its products through oneDNN with the weights packed once into oneDNN's blocked layout
  (`torch.ops.mkldnn._reorder_linear_weight` / `_linear_pointwise`, the kernels `torch.compile`'s
  CPU freezing pass emits). On the 2-core AMD EPYC (Zen 4) this suite is measured on, that ran
  ViT-B shapes at 187-214 GFLOP/s where MKL's sgemm ran them at 139-183.

`use_gemm_path(module, path)` rewrites a module tree in place. The rewritten layers keep their
parameters (same objects, same `state_dict` keys, forward hooks on parent modules untouched); the
packed copy is extra memory the size of the layers' weights, repacked when a weight changes. They
fall back to the plain torch call whenever the fast path does not apply: autograd needed,
a non-CPU or non-fp32 tensor, or an attention call with masks/weights outside plain self-attention.
Scores equal the eager path's to float rounding (tests: each layer to 1e-5, every method's
scores to 1e-4 relative).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

EAGER = "eager"
ONEDNN_PACKED = "onednn-packed"
GEMM_PATHS = (EAGER, ONEDNN_PACKED)


def onednn_available() -> bool:
    """Whether this torch build has the oneDNN kernels the packed path calls."""
    ops = torch.ops.mkldnn
    try:
        return bool(torch.backends.mkldnn.is_available()) and all(  # type: ignore[no-untyped-call]
            hasattr(ops, name) for name in ("_reorder_linear_weight", "_linear_pointwise"))
    except (AttributeError, RuntimeError):
        return False


def pack_weight(weight: torch.Tensor) -> torch.Tensor:
    """`weight` `(out, in)` in oneDNN's blocked layout (an opaque `torch._mkldnn` tensor)."""
    packed: torch.Tensor = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), None)
    return packed


def packed_linear(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """`x @ W.T + b` with a packed `W` (any number of leading dimensions)."""
    out: torch.Tensor = torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")
    return out


def _fast_path_applies(x: torch.Tensor, *params: torch.Tensor | None) -> bool:
    if x.device.type != "cpu" or x.dtype != torch.float32:
        return False
    if torch.is_grad_enabled() and (x.requires_grad or any(p is not None and p.requires_grad for p in params)):
        return False
    return all(p is None or (p.device.type == "cpu" and p.dtype == torch.float32) for p in params)


class _PackedWeight:
    """A weight's packed copy, repacked when the weight is changed in place or replaced."""

    def __init__(self) -> None:
        self._key: tuple[int, int] | None = None
        self._packed: torch.Tensor | None = None

    def get(self, weight: torch.Tensor) -> torch.Tensor:
        key = (weight.data_ptr(), weight._version)
        if self._packed is None or key != self._key:
            self._packed, self._key = pack_weight(weight), key
        return self._packed


class PackedLinear(nn.Module):
    """An `nn.Linear` whose products run through oneDNN with packed weights (same parameters)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = linear.weight
        self.bias = linear.bias
        self._packed = _PackedWeight()
        self.train(linear.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _fast_path_applies(x, self.weight, self.bias):
            return F.linear(x, self.weight, self.bias)
        return packed_linear(x, self._packed.get(self.weight), self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class PackedSelfAttention(nn.Module):
    """An `nn.MultiheadAttention` whose self-attention runs as packed projections + `scaled_dot_product_attention`.

    Same parameters and `state_dict` keys as the module it replaces (`in_proj_weight`, `in_proj_bias`,
    `out_proj.*`). Calls it cannot serve (cross-attention, masks other than a plain additive or
    boolean `attn_mask`, attention weights asked for, training) go to the original module.
    """

    def __init__(self, attention: nn.MultiheadAttention) -> None:
        super().__init__()
        self.original = [attention]  # a list: not a submodule, so no second copy of its keys
        self.embed_dim, self.num_heads = attention.embed_dim, attention.num_heads
        self.batch_first = attention.batch_first
        self.in_proj_weight = attention.in_proj_weight
        self.in_proj_bias = attention.in_proj_bias
        self.out_proj = PackedLinear(attention.out_proj)
        self._packed_in = _PackedWeight()
        self.train(attention.training)  # a new module starts in training mode; keep the replaced one's

    @staticmethod
    def supports(attention: nn.MultiheadAttention) -> bool:
        return (attention._qkv_same_embed_dim and attention.in_proj_weight is not None
                and attention.bias_k is None and not attention.add_zero_attn)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                key_padding_mask: torch.Tensor | None = None, need_weights: bool = True,
                attn_mask: torch.Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        plain = (query is key and key is value and key_padding_mask is None and not need_weights
                 and not is_causal and query.dim() == 3 and not self.training
                 and _fast_path_applies(query, self.in_proj_weight, self.in_proj_bias)
                 and (attn_mask is None or attn_mask.dim() == 2))
        if not plain:
            original = self.original[0].train(self.training)  # not a submodule: follow this module's mode
            result: tuple[torch.Tensor, torch.Tensor | None] = original(
                query, key, value, key_padding_mask=key_padding_mask, need_weights=need_weights,
                attn_mask=attn_mask, average_attn_weights=average_attn_weights, is_causal=is_causal)
            return result
        x = query if self.batch_first else query.transpose(0, 1)
        batch, length, width = x.shape
        qkv = packed_linear(x, self._packed_in.get(self.in_proj_weight), self.in_proj_bias)
        q, k, v = qkv.view(batch, length, 3, self.num_heads, width // self.num_heads).permute(2, 0, 3, 1, 4)
        if attn_mask is not None and attn_mask.dtype == torch.bool:
            attn_mask = ~attn_mask  # nn.MultiheadAttention: True = masked out; sdpa: True = attend
        mixed = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        out = self.out_proj(mixed.transpose(1, 2).reshape(batch, length, width))
        return (out if self.batch_first else out.transpose(0, 1)), None


def use_gemm_path(module: nn.Module, path: str) -> int:
    """Put `module`'s linear layers and self-attention on `path` in place; returns how many layers
    were rewritten (0 for `eager`, or where oneDNN is missing from this torch build)."""
    if path not in GEMM_PATHS:
        raise ValueError(f"gemm path must be one of {GEMM_PATHS}, got {path!r}")
    if path == EAGER or not onednn_available():
        return 0
    return _rewrite(module)


LINEAR_TYPES = (nn.Linear, nn.modules.linear.NonDynamicallyQuantizableLinear)
"""Exactly these classes: a subclass may have its own forward (LoRA, quantised layers) and is left alone."""


def _rewrite(module: nn.Module) -> int:
    rewritten = 0
    for name, child in list(module.named_children()):
        if isinstance(child, (PackedLinear, PackedSelfAttention)):
            continue
        if isinstance(child, nn.MultiheadAttention):
            if PackedSelfAttention.supports(child):
                setattr(module, name, PackedSelfAttention(child))
                rewritten += 2  # the input and output projections
        elif type(child) in LINEAR_TYPES:
            setattr(module, name, PackedLinear(child))  # type: ignore[arg-type]
            rewritten += 1
        else:
            rewritten += _rewrite(child)
    return rewritten
