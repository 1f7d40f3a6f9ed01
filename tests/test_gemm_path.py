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
from conftest import installed_methods
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.plugins import gemm_path
from benchmarks.plugins.contract import MethodContext, Sample
from benchmarks.running import compute

needs_onednn = pytest.mark.skipif(not gemm_path.onednn_available(), reason="this torch build has no oneDNN linear")
PLUGINS = installed_methods()


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
@pytest.mark.parametrize("name", sorted(PLUGINS))
def test_every_method_scores_alike_on_both_paths(
    name: str, make_context: Callable[..., MethodContext], toy_task: dict[str, list[Sample]]
) -> None:
    """Same weights, same images: scores and maps within 1e-4 relative; the same FLOP count on both
    paths. Transformer methods must actually have run on the packed path."""
    cls, tiny = PLUGINS[name]
    if tiny is None:
        pytest.skip(f"{name} declares no tiny setup")
    images = [s.image for s in toy_task["test"]]
    outputs, flops, packed = {}, {}, {}
    for path in gemm_path.GEMM_PATHS:
        torch.manual_seed(0)
        plugin = cls(dataclasses.replace(make_context(tiny.variant, **tiny.options), gemm_path=path))
        plugin.fit(toy_task["train"][:4] + toy_task["test"][-2:], toy_task["val"])
        outputs[path] = plugin.predict(images)
        flops[path] = compute.flops_per_image(plugin.predict, images[0])
        packed[path] = _packed_calls(lambda plugin=plugin: plugin.predict(images[:1]))
    eager, fast = outputs[gemm_path.EAGER], outputs[gemm_path.ONEDNN_PACKED]
    np.testing.assert_allclose(fast.scores, eager.scores, rtol=1e-4, atol=1e-6)
    if eager.maps is not None:
        np.testing.assert_allclose(fast.maps, eager.maps, rtol=1e-4, atol=1e-5)
    assert flops[gemm_path.EAGER] == flops[gemm_path.ONEDNN_PACKED]
    assert packed[gemm_path.EAGER] == 0
    if name in {"winclip", "anomalygpt", "dino-knn"}:  # ViT towers: every linear layer packed
        assert packed[gemm_path.ONEDNN_PACKED] > 0
