"""Saved fitted state, in process: every variant that fits something (memory banks, a coreset, k-shot
windows, a trained decoder or LTFM, a synthetic base) comes back from its `FittedState` scoring and
mapping exactly as the fitted instance did.

The random backbones here are drawn while `torch.manual_seed` is shifted, so the instance that
loads (built from the same context, seeds as usual) cannot rebuild them from the seed: a loader
that forgets to restore its backbone scores differently. The state is serialised exactly as a cell
hands it over (safetensors bytes, JSON info). `tests/test_saved_models.py` covers the folder format,
`inspect` and the cross-process path on each method's tiny setup.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import safetensors.torch
import torch
from conftest import installed_setups
from model_probes import modules_held_by, plain_layers_run

from benchmarks.plugins import gemm_path
from benchmarks.plugins.contract import (
    Baseline,
    FittedState,
    MethodContext,
    Prediction,
    Sample,
    SavingUnsupported,
)

SETUPS = installed_setups()
SEED_SHIFT = 1_000_003


@contextmanager
def unreproducible_seeds(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """`torch.manual_seed(s)` seeds with `s + SEED_SHIFT` inside the block."""
    original = torch.random.manual_seed
    with monkeypatch.context() as patch:
        shifted = lambda seed: original(int(seed) + SEED_SHIFT)  # noqa: E731
        patch.setattr(torch, "manual_seed", shifted)
        patch.setattr(torch.random, "manual_seed", shifted)
        yield


def serialised(state: FittedState) -> FittedState:
    """What the loading process receives: the cell's safetensors bytes and the stamp's JSON."""
    tensors = safetensors.torch.save({k: v.detach().cpu().contiguous() for k, v in state.tensors.items()})
    return FittedState(safetensors.torch.load(tensors), json.loads(json.dumps(dict(state.info), allow_nan=False)))


def _fitted(name: str, make_context: Callable[..., MethodContext], task: dict[str, list[Sample]],
            monkeypatch: pytest.MonkeyPatch) -> tuple[Baseline, FittedState, MethodContext]:
    cls, tiny = SETUPS[name]
    context = make_context(tiny.variant, **tiny.options)
    with unreproducible_seeds(monkeypatch):
        plugin = cls(context)
        plugin.fit(task["train"][:4] + task["test"][-2:], task["val"])
    try:
        state = plugin.fitted_state()
    except SavingUnsupported as err:
        pytest.skip(f"{name}: {err}")
    return plugin, serialised(state), context


def _loaded(name: str, context: MethodContext, state: FittedState) -> Baseline:
    cls, _ = SETUPS[name]
    plugin = cls(context)
    plugin.load_fitted_state(state)
    return plugin


def assert_same_prediction(loaded: Prediction, fitted: Prediction) -> None:
    np.testing.assert_allclose(loaded.scores, fitted.scores, rtol=1e-5, atol=1e-7)
    assert (loaded.maps is None) == (fitted.maps is None)
    if fitted.maps is not None:
        np.testing.assert_allclose(loaded.maps, fitted.maps, rtol=1e-5, atol=1e-6)
    assert loaded.decisions == fitted.decisions
    assert loaded.texts == fitted.texts


@pytest.mark.parametrize("name", sorted(SETUPS))
def test_a_loaded_state_scores_and_maps_as_the_fitted_model(
    name: str, make_context: Callable[..., MethodContext], toy_task: dict[str, list[Sample]],
    monkeypatch: pytest.MonkeyPatch, one_thread: None,
) -> None:
    fitted, state, context = _fitted(name, make_context, toy_task, monkeypatch)
    images = [s.image for s in toy_task["test"]]
    expected = fitted.predict(images)
    loaded = _loaded(name, context, state)
    assert_same_prediction(loaded.predict(images), expected)
    assert loaded.provenance() == fitted.provenance()  # what a published comparison reads
    for attribute in ("threshold", "threshold_source"):
        assert getattr(loaded, attribute, None) == getattr(fitted, attribute, None), attribute
    if gemm_path.onednn_available():  # loaded on the packed path: packed all through, same scores
        packed = _loaded(name, dataclasses.replace(context, gemm_path=gemm_path.ONEDNN_PACKED), state)
        np.testing.assert_allclose(packed.predict(images).scores, expected.scores, rtol=1e-4, atol=1e-6)
        assert plain_layers_run(list(modules_held_by(packed)), lambda: packed.predict(images[:1])) == []


@pytest.mark.parametrize("name", sorted(SETUPS))
def test_every_part_of_a_saved_state_is_needed(
    name: str, make_context: Callable[..., MethodContext], toy_task: dict[str, list[Sample]],
    monkeypatch: pytest.MonkeyPatch, one_thread: None,
) -> None:
    """Drop one group of tensors (`backbone.*`, `decoder.*`, `references`, the bank ...): the loaded
    model then refuses to load or scores differently. So the round trip above is no formality: each
    part it restores changes what the model says (the backbone too, since it is not the seed's)."""
    fitted, state, context = _fitted(name, make_context, toy_task, monkeypatch)
    images = [s.image for s in toy_task["test"]]
    expected = fitted.predict(images)
    groups = sorted({key.split(".")[0] for key in state.tensors})
    assert groups, f"{name} saves no tensors"
    for group in groups:
        kept = FittedState({k: v for k, v in state.tensors.items() if k.split(".")[0] != group}, state.info)
        try:
            got = _loaded(name, context, kept).predict(images)
        except (KeyError, RuntimeError, ValueError, AttributeError, TypeError):
            continue  # refused: the part was needed
        assert not np.allclose(got.scores, expected.scores, rtol=1e-5, atol=1e-7) or (
            expected.maps is not None and not np.allclose(got.maps, expected.maps, rtol=1e-5, atol=1e-6)), (
            f"{name}: the saved {group!r} tensors change nothing")


FROZEN_PREFIXES = ("backbone.", "clip.", "visual.", "tower.")


@pytest.mark.parametrize("name", sorted(SETUPS))
def test_a_state_without_its_backbone_is_refused_by_fingerprint(
    name: str, make_context: Callable[..., MethodContext], toy_task: dict[str, list[Sample]],
    monkeypatch: pytest.MonkeyPatch, one_thread: None,
) -> None:
    """The state fingerprints its frozen backbone; a loader that rebuilds another backbone says which
    method's model it is and why (the message a user with other weight files would see)."""
    _, state, context = _fitted(name, make_context, toy_task, monkeypatch)
    prefixes = [p for p in FROZEN_PREFIXES if any(k.startswith(p) for k in state.tensors)]
    assert len(prefixes) == 1, f"{name}: frozen backbone tensors under {prefixes}"
    assert f"{prefixes[0]}fingerprint" in state.info
    stripped = FittedState({k: v for k, v in state.tensors.items() if not k.startswith(prefixes[0])}, state.info)
    method = SETUPS[name][0].meta.name
    with pytest.raises(ValueError, match=rf"^{method}: this machine resolves different backbone weights .*"
                                         r"provide the same weight files \(see the model's weights detail\)$"):
        _loaded(name, context, stripped)


def test_only_random_backbones_travel_in_a_saved_state() -> None:
    """Real weights are found again by the resolver (and fingerprinted); only random ones are saved."""
    from baselines.common import frozen_module_state

    module = torch.nn.Linear(3, 2)
    for mode in ("pretrained", "substitute"):
        tensors, info = frozen_module_state(module, mode, "backbone.")
        assert tensors == {} and set(info) == {"backbone.fingerprint"}
    tensors, _ = frozen_module_state(module, "random", "backbone.")
    assert set(tensors) == {"backbone.weight", "backbone.bias"}


@pytest.mark.parametrize("name", sorted(SETUPS))
def test_an_unfitted_method_refuses_to_save(name: str, make_context: Callable[..., MethodContext]) -> None:
    cls, tiny = SETUPS[name]
    plugin = cls(make_context(tiny.variant, **tiny.options))
    try:
        plugin.fitted_state()
    except SavingUnsupported:
        pytest.skip(f"{name} does not save")
    except RuntimeError as err:
        assert str(err).startswith(f"{cls.meta.name}: call fit"), err
    else:
        pytest.fail(f"{name} saved a state before fit")


@pytest.mark.parametrize("name", sorted(SETUPS))
def test_an_unfitted_method_refuses_to_predict(
    name: str, make_context: Callable[..., MethodContext], toy_task: dict[str, list[Sample]]
) -> None:
    cls, tiny = SETUPS[name]
    plugin = cls(make_context(tiny.variant, **tiny.options))
    with pytest.raises(RuntimeError, match=rf"^{cls.meta.name}: call fit"):
        plugin.predict([toy_task["test"][0].image])


def test_a_few_shot_state_missing_part_of_its_memory_is_named(
    make_context: Callable[..., MethodContext], toy_task: dict[str, list[Sample]], monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, state, context = _fitted("anomalygpt", make_context, toy_task, monkeypatch)
    partial = FittedState({k: v for k, v in state.tensors.items() if k not in ("memory.1", "memory.3")}, state.info)
    with pytest.raises(ValueError, match=r"^anomalygpt k1: the saved state lacks its few-shot memory "
                                         r"\(memory\.1, memory\.3\)$"):
        _loaded("anomalygpt", context, partial)
