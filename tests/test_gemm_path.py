"""The oneDNN packed GEMM path (`benchmarks.plugins.gemm_path`) and its automatic choice (`compute.gemm_path`).

The path may change float rounding and nothing else: each rewritten layer equals the torch layer
it replaces, and every installed method scores the same images alike on both paths (rtol 1e-4,
the issue's bound; the layers themselves agree to ~1e-6).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import installed_setups
from model_probes import modules_held_by, plain_layers_run, randomise_biases
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.plugins import gemm_path
from benchmarks.plugins.contract import MethodContext, Sample
from benchmarks.running import compute

needs_onednn = pytest.mark.skipif(not gemm_path.onednn_available(), reason="this torch build has no oneDNN linear")
SETUPS = {name: setup for name, setup in installed_setups().items()
          if name.count("/") == 0 or name == "anomalygpt/unsupervised"}  # its decoder runs at predict


def _packed_calls(run: Callable[[], object]) -> int:
    """FLOPs that went through the oneDNN packed linear while `run` ran."""
    with FlopCounterMode(display=False, custom_mapping=compute.UNCOUNTED_BY_TORCH) as counter:
        run()
    return int(counter.get_flop_counts()["Global"].get(torch.ops.mkldnn._linear_pointwise, 0))


@needs_onednn
def test_packed_linear_equals_linear_and_keeps_its_parameters() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(24, 40), nn.GELU(), nn.Linear(40, 8))
    keys = list(model.state_dict())
    x = torch.randn(3, 5, 24)
    with torch.inference_mode():
        expected = model(x)
    assert gemm_path.use_gemm_path(model, gemm_path.ONEDNN_PACKED) == 2
    assert isinstance(model[0], gemm_path.PackedLinear)
    assert list(model.state_dict()) == keys
    with torch.inference_mode():
        assert _packed_calls(lambda: model(x)) == 2 * 15 * (24 * 40 + 40 * 8)
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-6)
    # new weights loaded after packing are used (the packed copy follows the parameter)
    fresh = nn.Sequential(nn.Linear(24, 40), nn.GELU(), nn.Linear(40, 8))
    model.load_state_dict(fresh.state_dict())
    with torch.inference_mode():
        torch.testing.assert_close(model(x), fresh(x), rtol=1e-5, atol=1e-6)
    # with autograd the plain torch call runs, and gradients flow
    model.requires_grad_(True)
    model(x).sum().backward()
    assert model[0].weight.grad is not None


@needs_onednn
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("mask", [None, "float", "bool"])
def test_packed_self_attention_equals_multihead_attention(batch_first: bool, mask: str | None) -> None:
    torch.manual_seed(0)
    attention = nn.MultiheadAttention(32, 4, batch_first=batch_first).eval()
    with torch.no_grad():  # torch starts both biases at zero, where a dropped bias would go unseen
        attention.in_proj_bias.normal_()
        attention.out_proj.bias.normal_()
    keys = list(attention.state_dict())
    x = torch.randn(2, 7, 32) if batch_first else torch.randn(7, 2, 32)
    attn_mask = {None: None, "float": torch.randn(7, 7),
                 "bool": torch.triu(torch.ones(7, 7, dtype=torch.bool), diagonal=1)}[mask]
    with torch.inference_mode():
        expected = attention(x, x, x, need_weights=False, attn_mask=attn_mask)[0]
        holder = nn.Sequential(attention)
        assert gemm_path.use_gemm_path(holder, gemm_path.ONEDNN_PACKED) == 2
        packed = holder[0]
        assert isinstance(packed, gemm_path.PackedSelfAttention)
        assert list(packed.state_dict()) == keys
        assert _packed_calls(lambda: packed(x, x, x, need_weights=False, attn_mask=attn_mask)) > 0
        torch.testing.assert_close(packed(x, x, x, need_weights=False, attn_mask=attn_mask)[0], expected,
                                   rtol=1e-5, atol=1e-6)
        # calls the fast path does not serve go to the original module: attention weights asked for
        out, weights = packed(x, x, x, need_weights=True, attn_mask=attn_mask)
        assert weights is not None
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    # in training mode (dropout) the original module serves every call
    holder.train()
    assert _packed_calls(lambda: packed(x, x, x, need_weights=False, attn_mask=attn_mask)) == 0


def test_the_fast_path_applies_only_to_frozen_fp32_cpu_products() -> None:
    applies = gemm_path._fast_path_applies
    x, w = torch.zeros(2, 3), torch.zeros(4, 3)
    assert applies(x, w, None, torch.zeros(4))  # grad mode on, nothing tracked: packed
    assert not applies(x.double(), w) and not applies(x, w.double()) and not applies(x, None, w.double())
    assert not applies(x.requires_grad_(True), w)
    assert not applies(torch.zeros(2, 3), w.requires_grad_(True))
    with torch.no_grad():
        assert applies(torch.zeros(2, 3), w)  # tracked weights, but no autograd: packed


@needs_onednn
@pytest.mark.parametrize("tracked", ["input", "weight", "bias"])
def test_whatever_autograd_tracks_gets_its_gradient(tracked: str) -> None:
    """Only the input, only the weight or only the bias needs a gradient: the layer falls back to
    torch and the gradient arrives (linear and attention)."""
    torch.manual_seed(0)
    linear, attention = nn.Linear(8, 8), nn.MultiheadAttention(8, 2, batch_first=True).eval()
    holder = nn.Sequential(linear, attention)
    holder.requires_grad_(False)
    gemm_path.use_gemm_path(holder, gemm_path.ONEDNN_PACKED)
    packed_linear, packed_attention = holder[0], holder[1]
    x = torch.randn(2, 5, 8, requires_grad=tracked == "input")
    watched = {"input": [x], "weight": [linear.weight, attention.in_proj_weight],
               "bias": [linear.bias, attention.in_proj_bias]}[tracked]
    for tensor in watched:
        tensor.requires_grad_(True)
    (packed_linear(x).sum() + packed_attention(x, x, x, need_weights=False)[0].sum()).backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in watched)


@needs_onednn
def test_attention_calls_the_fast_path_cannot_serve_go_to_torch_unchanged() -> None:
    """Default arguments, per-head weights and a key-padding mask, as `nn.MultiheadAttention` gives them."""
    torch.manual_seed(0)
    attention = nn.MultiheadAttention(8, 2, batch_first=True).eval()
    x = torch.randn(2, 5, 8)
    padding = torch.tensor([[False] * 4 + [True], [False] * 5])
    with torch.inference_mode():
        expected = [attention(x, x, x), attention(x, x, x, average_attn_weights=False),
                    attention(x, x, x, key_padding_mask=padding, need_weights=False)]
        packed = gemm_path.PackedSelfAttention(attention)
        got = [packed(x, x, x), packed(x, x, x, average_attn_weights=False),
               packed(x, x, x, key_padding_mask=padding, need_weights=False)]
    for (out, weights), (want, want_weights) in zip(got, expected, strict=True):
        torch.testing.assert_close(out, want)
        assert (weights is None) == (want_weights is None)
        if want_weights is not None:
            torch.testing.assert_close(weights, want_weights)
    assert got[1][1].shape == (2, 2, 5, 5)  # per head


def test_only_plain_self_attention_is_supported() -> None:
    supports = gemm_path.PackedSelfAttention.supports
    assert supports(nn.MultiheadAttention(8, 2))
    assert not supports(nn.MultiheadAttention(8, 2, kdim=4, vdim=4))
    assert not supports(nn.MultiheadAttention(8, 2, add_bias_kv=True))
    assert not supports(nn.MultiheadAttention(8, 2, add_zero_attn=True))


@needs_onednn
def test_every_layer_is_counted_once_and_packed_layers_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    model = nn.Sequential(nn.MultiheadAttention(8, 2), nn.MultiheadAttention(8, 2), nn.Sequential(nn.Linear(8, 8)))
    assert gemm_path.use_gemm_path(model, gemm_path.ONEDNN_PACKED) == 5
    mixed = nn.Sequential(gemm_path.PackedLinear(nn.Linear(8, 8)), nn.Linear(8, 8))
    assert gemm_path.use_gemm_path(mixed, gemm_path.ONEDNN_PACKED) == 1
    assert isinstance(mixed[1], gemm_path.PackedLinear)
    # packed once, repacked only when the weight changes
    packs: list[int] = []
    real_pack = gemm_path.pack_weight
    monkeypatch.setattr(gemm_path, "pack_weight", lambda w: (packs.append(1), real_pack(w))[1])
    layer, x = mixed[1], torch.randn(3, 8)
    with torch.inference_mode():
        layer(x), layer(x)
    assert len(packs) == 1
    with torch.no_grad():
        layer.weight.mul_(2.0)
    with torch.inference_mode():
        torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias), rtol=1e-5, atol=1e-6)
    assert len(packs) == 2


def test_packed_linear_describes_itself() -> None:
    assert repr(gemm_path.PackedLinear(nn.Linear(3, 5))) == "PackedLinear(in_features=3, out_features=5, bias=True)"
    assert repr(gemm_path.PackedLinear(nn.Linear(3, 5, bias=False))).endswith("bias=False)")


def test_eager_changes_nothing_and_unknown_paths_are_refused() -> None:
    model = nn.Sequential(nn.Linear(4, 4))
    assert gemm_path.use_gemm_path(model, gemm_path.EAGER) == 0
    assert type(model[0]) is nn.Linear
    with pytest.raises(ValueError, match="gemm path must be one of"):
        gemm_path.use_gemm_path(model, "fast")


class _LoraLinear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * 2


@needs_onednn
def test_subclasses_with_their_own_forward_are_left_alone() -> None:
    model = nn.Sequential(_LoraLinear(4, 4), nn.Linear(4, 4))
    assert gemm_path.use_gemm_path(model, gemm_path.ONEDNN_PACKED) == 1
    assert type(model[0]) is _LoraLinear


def test_the_path_is_chosen_by_measurement(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(compute.GEMM_PATH_ENV, raising=False)
    monkeypatch.setattr(compute, "onednn_available", lambda: True)
    for rates, expected in (({"torch": 150.0, "onednn": 200.0}, gemm_path.ONEDNN_PACKED),
                            ({"torch": 200.0, "onednn": 150.0}, gemm_path.EAGER)):
        monkeypatch.setattr(compute, "machine_gemm_peak", lambda device="cpu", rates=rates: compute.GemmPeak(
            max(rates.values()), "x", rates))
        choice = compute.gemm_path("cpu")
        assert choice.path == expected
        assert "200 GFLOP/s" in choice.reason and "150 GFLOP/s" in choice.reason
    assert compute.gemm_path("cuda").path == gemm_path.EAGER
    monkeypatch.setattr(compute, "onednn_available", lambda: False)
    assert compute.gemm_path("cpu").reason == "this torch build has no oneDNN linear kernels"
    monkeypatch.setenv(compute.GEMM_PATH_ENV, "eager")
    assert compute.gemm_path("cpu") == compute.GemmPathChoice("eager", f"forced by {compute.GEMM_PATH_ENV}")
    monkeypatch.setenv(compute.GEMM_PATH_ENV, "turbo")
    with pytest.raises(ValueError, match="must be eager or onednn-packed"):
        compute.gemm_path("cpu")


@needs_onednn
@pytest.mark.parametrize("name", sorted(SETUPS))
def test_every_method_scores_alike_on_both_paths(
    name: str, make_context: Callable[..., MethodContext], toy_task: dict[str, list[Sample]]
) -> None:
    """Same weights (random, non-zero biases in every linear and attention layer), same images: scores
    and maps within 1e-4 relative; the same FLOP count on both paths. Every linear layer `predict`
    runs on the eager path runs packed on the other (a method with linear layers that never calls
    `use_gemm_path`, or calls it on only part of its model, fails here)."""
    cls, tiny = SETUPS[name]
    images = [s.image for s in toy_task["test"]]
    outputs, flops, packed, plain = {}, {}, {}, {}
    for path in gemm_path.GEMM_PATHS:
        torch.manual_seed(0)
        plugin = cls(dataclasses.replace(make_context(tiny.variant, **tiny.options), gemm_path=path))
        plugin.fit(toy_task["train"][:4] + toy_task["test"][-2:], toy_task["val"])
        modules = list(modules_held_by(plugin))
        randomise_biases(modules)
        outputs[path] = plugin.predict(images)
        flops[path] = compute.flops_per_image(plugin.predict, images[0])
        packed[path] = _packed_calls(lambda plugin=plugin: plugin.predict(images[:1]))
        plain[path] = plain_layers_run(modules, lambda plugin=plugin: plugin.predict(images[:1]))
    eager, fast = outputs[gemm_path.EAGER], outputs[gemm_path.ONEDNN_PACKED]
    np.testing.assert_allclose(fast.scores, eager.scores, rtol=1e-4, atol=1e-6)
    if eager.maps is not None:
        np.testing.assert_allclose(fast.maps, eager.maps, rtol=1e-4, atol=1e-5)
    assert flops[gemm_path.EAGER] == flops[gemm_path.ONEDNN_PACKED]
    assert packed[gemm_path.EAGER] == 0
    assert plain[gemm_path.ONEDNN_PACKED] == [], f"{name}: torch linear layers still ran on the packed path"
    assert (packed[gemm_path.ONEDNN_PACKED] > 0) == bool(plain[gemm_path.EAGER]), (
        f"{name}: linear layers run on the eager path: {plain[gemm_path.EAGER][:5]}")


def test_the_probe_finds_every_linear_layer_a_plugin_holds() -> None:
    """`modules_held_by` reaches towers kept inside wrapped library models and lists, and
    `randomise_biases` reaches every linear and attention bias, on both paths alike."""
    class Wrapped:
        def __init__(self) -> None:
            self.model = type("Model", (), {})()
            self.model.clip = nn.Sequential(nn.Linear(4, 4), nn.MultiheadAttention(4, 2))
            self.heads = [nn.Linear(4, 2)]
    plugin = Wrapped()
    modules = list(modules_held_by(plugin))
    assert {id(m) for m in modules} >= {id(plugin.model.clip), id(plugin.heads[0])}
    assert randomise_biases(modules) == 4  # Linear, in_proj, out_proj, head
    assert all(b.abs().sum() > 0 for b in (plugin.model.clip[1].in_proj_bias, plugin.model.clip[1].out_proj.bias))
    before = plugin.model.clip[1].in_proj_bias.clone()
    gemm_path.use_gemm_path(plugin.model.clip, gemm_path.EAGER)
    randomise_biases(modules)
    torch.testing.assert_close(plugin.model.clip[1].in_proj_bias, before)  # seeded by name: the same values
