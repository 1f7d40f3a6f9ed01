"""Every tensor a plugin makes follows `MethodContext.device`, checked without a GPU.

`python -m benchmarks run --device cuda` crashes ("Expected all tensors to be on the same device") on a
tensor made on the host and combined with the model's, a module never moved, a `.cuda()` that ignores
the context, or a device tensor handed to numpy. This machine has no GPU, so each setup runs on the CPU
under `device_probe.VirtualDevice`, which simulates a run with `device="cuda:1"`: it tracks the device
every tensor would be on, lets the code see it (`t.device` reads `cuda:1`, so `device.type == "cuda"`
branches run as on a GPU: dino-knn's torch nearest-neighbour search, winclip's GPU batch size, the
packed GEMM layers' fallback), and reports each place the real run would fail, as `file:line (function)`
in `baselines/`, `ltfm/`, `benchmarks/plugins/` or a third-party plugin's own package.

The setups are `conftest.installed_setups()` (every registered method and fitted variant: a new plugin
is checked the day it is registered), again with `--weights substitute` for methods that declare the
bundled MobileNetV2 (`bundled_backbone.py`; skipped where the tiny options pin another backbone), and
`DEVICE_VARIANTS`, options whose device-relevant code the tiny setups skip. Each runs what a cell and
`bench` run: construction, `fit`, `predict` through the shared feature cache (computed, then read back
from disk: `feature_cache.py`), `predict` without a cache (`--no-feature-cache`, the latency runs), the
reference model `bench` times, and the fitted state saved and loaded into a fresh instance that predicts
(`run --save-models`). LTFM's cached synthetic base is never reused (`BENCHMARKS_CACHE` is a fresh folder).

What the probe allows, as CUDA does, and why:
- a 0-dim host tensor beside device tensors: CUDA kernels take CPU scalars (the optimiser's step
  count, a `torch.zeros(())` start of a sum);
- `copy_` and basic-index assignment (`t[0:2] = host`): torch copies across devices (`load_state_dict`);
- host index tensors into a device tensor (`dev[torch.arange(n), idx]`): torch moves the indices;
- `t.view_as(other)`, `expand_as`, `reshape_as`, `t.new_tensor(data)`: only `other`'s shape is read, the
  data is copied to `t`'s device;
- `torch._has_compatible_shallow_copy_type` and the other metadata queries on a host/device pair:
  `Module._apply` asks them while it moves a module, nothing is computed;
- faiss, numpy, scipy, PIL and sklearn need no exception: they only ever see numpy arrays, a device tensor
  turned into one without `.cpu()` is reported (`numpy of a device tensor`), and tensors made from their
  results are host tensors like any other.
`device_probe`'s docstring says what the probe cannot see.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from conftest import installed_setups
from device_probe import CONTEXT_DEVICE, VirtualDevice
from torch import nn

import baselines
import benchmarks.plugins
import ltfm
from benchmarks.plugins import gemm_path
from benchmarks.plugins.bundled_backbone import MOBILENETV2_IN1K
from benchmarks.plugins.contract import (
    Baseline,
    FittedState,
    MethodContext,
    Sample,
    SavingUnsupported,
    TinySetup,
)
from benchmarks.plugins.feature_cache import FeatureCache
from benchmarks.plugins.weights import RandomWeightsWarning, WeightsResolver

PLUGIN_ROOTS = tuple(Path(package.__file__).parent for package in (baselines, ltfm, benchmarks.plugins))

DEVICE_VARIANTS: dict[str, dict[str, object]] = {
    "dino-knn": {"masking": True},  # PCA foreground masks computed on the device tokens
    "anomalygpt": {"fewshot_map": "mean"},  # the few-shot map (faiss, host) averaged with the decoder's
    "ltfm": {"tower": "mobilenetv2-in1k", "image_size": 64},  # the bundled CNN tower, `stage_outputs`
}
"""Options whose device-relevant code the tiny setups do not run, each run beside its method's tiny setup."""


def _device_setups() -> dict[str, tuple[type[Baseline], TinySetup, str]]:
    """`installed_setups()` (random weights), those of methods that can load the bundled MobileNetV2 again
    with `--weights substitute`, and `DEVICE_VARIANTS`."""
    setups = {name: (cls, tiny, "random") for name, (cls, tiny) in installed_setups().items()}
    for name, (cls, tiny, _) in list(setups.items()):
        if MOBILENETV2_IN1K in cls.meta.weight_specs and "/" not in name:
            setups[f"{name}+substitute"] = (cls, tiny, "substitute")
    for name, extra in DEVICE_VARIANTS.items():
        if name in setups:
            cls, tiny, _ = setups[name]
            label = ",".join(f"{k}={v}" for k, v in extra.items())
            setups[f"{name}[{label}]"] = (cls, TinySetup(tiny.variant, {**tiny.options, **extra}), "random")
    return setups


SETUPS = _device_setups()


def _serialised(state: FittedState) -> FittedState:
    """What a loading process receives: host tensors from safetensors bytes, the info through JSON."""
    tensors = safetensors.torch.save({k: v.detach().cpu().contiguous() for k, v in state.tensors.items()})
    return FittedState(safetensors.torch.load(tensors), json.loads(json.dumps(dict(state.info))))


def _package_of(cls: type) -> Path:
    """Where a plugin class's code lives: its top-level package's folder (a third-party plugin's too), or
    its module file when that module stands alone."""
    top = sys.modules[cls.__module__.split(".")[0]]
    return Path(str(top.__file__)).parent if hasattr(top, "__path__") else Path(str(top.__file__))


@pytest.mark.parametrize("name", sorted(SETUPS))
def test_every_tensor_a_plugin_makes_follows_the_context_device(
    name: str, make_context: Callable[..., MethodContext], toy_task: dict[str, list[Sample]], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, one_thread: None,
) -> None:
    cls, tiny, weights = SETUPS[name]
    monkeypatch.setenv("BENCHMARKS_CACHE", str(tmp_path / "cache"))  # nothing reused: LTFM's base is trained here
    cache = FeatureCache(tmp_path / "features")
    context = dataclasses.replace(make_context(tiny.variant, **tiny.options), device=CONTEXT_DEVICE,
                                  feature_cache=cache, weights=WeightsResolver(mode=weights, allow_download=False))
    images = [s.image for s in toy_task["test"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)  # substitute mode: methods without one go random
        with VirtualDevice((*PLUGIN_ROOTS, _package_of(cls))) as probe:
            plugin = cls(context)
            if weights == "substitute" and context.weights.effective_mode != "substitute":
                pytest.skip(f"{name}: this setup loads no substitute backbone (its options name one)")
            plugin.fit(toy_task["train"][:4] + toy_task["test"][-2:], toy_task["val"])
            plugin.predict(images)  # features computed, through the cache
            plugin.predict(images)  # features read back from the cache files
            plugin.context = dataclasses.replace(context, feature_cache=None)
            plugin.predict(images)
            reference = plugin.reference_model()  # what `python -m benchmarks bench --device` times
            if reference is not None:
                with torch.inference_mode():
                    reference.forward(reference.prepare(images[:2]))
            try:
                state = _serialised(plugin.fitted_state())
            except SavingUnsupported:
                state = None
            if state is not None:
                loaded = cls(dataclasses.replace(context, feature_cache=None))
                loaded.load_fitted_state(state)
                loaded.predict(images)
    if probe.violations:
        pytest.fail(f"{name} would fail on a GPU:\n" + "\n".join(map(str, probe.violations)), pytrace=False)


# -- the probe itself, on hand-written toy code -------------------------------------------------------

HERE = Path(__file__)


class Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.register_buffer("offset", torch.ones(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + self.offset


def toy_correct(device: str) -> np.ndarray:
    model = Toy().to(device)
    x = torch.from_numpy(np.ones((2, 4), dtype=np.float32)).to(device)
    y = model(x) + torch.arange(3, device=x.device) + torch.zeros(3, device=device) * torch.tensor(2.0)
    y = y + torch.ones_like(y) + y.new_zeros(3) + torch.tensor([1.0, 2.0, 3.0]).to(y)
    head = nn.Parameter(torch.ones(3, device=device))
    empty = Toy().to_empty(device=device)
    y = y * head + empty.offset * 0
    y[0:1] = torch.ones(1, 3)  # basic indexing: a copy across
    picked = y[torch.tensor([1]), torch.tensor([0], device=device)]  # host indices into a device tensor
    rows = torch.stack([row * 2 for row in y])  # the rows of a device tensor are on the device
    y = y + rows + y.new_tensor([1.0, 2.0, 3.0]) + torch.ones(3).view_as(y[0]).to(device)
    buffer = torch.empty(2, 3)
    buffer.copy_(y)
    return (y.cpu().numpy() + picked.cpu().numpy().sum() + buffer.numpy()
            + y.to(dtype=torch.float64).detach().cpu().numpy() + y.to("cpu").numpy())


def toy_factory_without_device(device: str) -> np.ndarray:
    x = torch.ones(2, 3, device=device)
    return (x + torch.zeros(2, 3)).cpu().numpy()  # BUG


def toy_from_numpy_not_moved(device: str) -> np.ndarray:
    model = Toy().to(device)
    x = torch.from_numpy(np.ones((2, 4), dtype=np.float32))
    return model(x).cpu().numpy()  # BUG


def toy_stray_cuda(device: str) -> np.ndarray:
    x = torch.ones(2, 3).cuda()  # BUG
    return x.cpu().numpy()


def toy_module_not_moved(device: str) -> np.ndarray:
    model = Toy()
    x = torch.ones(2, 4, device=device)
    return model(x).cpu().numpy()  # BUG


def toy_numpy_of_device_tensor(device: str) -> np.ndarray:
    x = torch.ones(2, 3, device=device)
    return np.asarray(x) + 1  # BUG


def toy_hard_coded_device(device: str) -> np.ndarray:
    x = torch.ones(2, 3, device="cuda")  # BUG
    return x.cpu().numpy()


def toy_host_indexed_by_device(device: str) -> np.ndarray:
    rows = torch.arange(2, device=device)
    return torch.ones(3, 3)[rows].numpy()  # BUG


def toy_device_view_of_host_parameter(device: str) -> np.ndarray:
    model = Toy().to(device)
    bias = nn.Parameter(torch.zeros(3))
    return (model(torch.ones(1, 4, device=device)) + bias).detach().cpu().numpy()  # BUG


def toy_moved_copy_but_original_used(device: str) -> np.ndarray:
    x = torch.ones(2, 3)
    x.to(device)  # a copy on the device, thrown away
    return (torch.ones(2, 3, device=device) * x).cpu().numpy()  # BUG


def _bug_line(function: Callable[..., object]) -> int:
    lines, start = inspect.getsourcelines(function)
    return start + next(i for i, line in enumerate(lines) if line.rstrip().endswith("# BUG"))


def _run(function: Callable[[str], object]) -> VirtualDevice:
    with VirtualDevice([HERE]) as probe, torch.no_grad():
        function(CONTEXT_DEVICE)
    return probe


def test_the_probe_passes_code_that_follows_the_device() -> None:
    probe = _run(toy_correct)
    assert probe.violations == []
    assert probe.device_tensors_seen > 10
    assert not {"as_subclass", "_make_subclass"} & set(vars(torch.Tensor))  # torch as it was after the block


@pytest.mark.parametrize(("function", "kind"), [
    (toy_factory_without_device, "mixed devices"),
    (toy_from_numpy_not_moved, "mixed devices"),
    (toy_stray_cuda, ".cuda()"),
    (toy_module_not_moved, "mixed devices"),
    (toy_numpy_of_device_tensor, "numpy of a device tensor"),
    (toy_hard_coded_device, "hard-coded device"),
    (toy_host_indexed_by_device, "mixed devices"),
    (toy_device_view_of_host_parameter, "mixed devices"),
    (toy_moved_copy_but_original_used, "mixed devices"),
], ids=lambda value: getattr(value, "__name__", None))
def test_the_probe_names_each_device_bug_where_it_is(function: Callable[[str], object], kind: str) -> None:
    """Each toy has one bug, on its `# BUG` line: every violation is of its kind and names that line, as
    the innermost checked frame or (a bug inside `Toy.forward`) its caller."""
    probe = _run(function)
    expected = f"{HERE.name}:{_bug_line(function)} ({function.__name__})"
    assert probe.violations, f"{function.__name__}: not reported"
    for violation in probe.violations:
        assert violation.kind == kind and expected in (violation.where, *violation.callers[:1]), violation


def test_a_stray_cuda_is_reported_instead_of_run() -> None:
    """On this CPU-only machine `.cuda()` would raise; the probe names it and goes on."""
    probe = _run(lambda device: torch.ones(2).cuda() + torch.ones(2, device=device))
    assert [v.kind for v in probe.violations] == [".cuda()"]
    assert "ignores the context device cuda:1" in str(probe.violations[0])


def test_the_probe_reports_the_plugin_frame_not_the_library() -> None:
    """An un-moved layer called through torch's own modules is reported at the caller in the checked files."""
    model = nn.Sequential(nn.Linear(4, 4))

    def run(device: str) -> None:
        model(torch.ones(1, 4, device=device))  # BUG

    probe = _run(run)
    assert len(probe.violations) == 1
    assert probe.violations[0].where.startswith(f"{HERE.name}:{_bug_line(run)} (run)")
    assert probe.violations[0].op == "linear"


def _packed_layers(device: str) -> None:
    """Linear and self-attention on the packed GEMM path, moved to the device like a plugin's backbone."""
    torch.manual_seed(0)
    holder = nn.Sequential(nn.Linear(8, 8), nn.MultiheadAttention(8, 2, batch_first=True)).eval().to(device)
    gemm_path.use_gemm_path(holder, gemm_path.ONEDNN_PACKED)
    x = torch.randn(2, 5, 8, device=device)
    with torch.inference_mode():
        holder[1](holder[0](x), holder[0](x), holder[0](x), need_weights=False)
        y = holder[0](x)
        holder[1](y, y, y, need_weights=False)


@pytest.mark.skipif(not gemm_path.onednn_available(), reason="this torch build has no oneDNN linear")
def test_the_packed_gemm_path_leaves_device_tensors_to_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    """`gemm_path`'s packed layers call oneDNN, a CPU-only kernel: on an accelerator they must fall back to
    torch (`_fast_path_applies` refuses non-CPU tensors). Without that guard the probe names the kernel."""
    with VirtualDevice([*PLUGIN_ROOTS, HERE]) as probe:
        _packed_layers(CONTEXT_DEVICE)
    assert probe.violations == []
    assert probe.device_tensors_seen > 0
    monkeypatch.setattr(gemm_path, "_fast_path_applies", lambda x, *params: x.dtype == torch.float32)
    with VirtualDevice([*PLUGIN_ROOTS, HERE]) as probe:
        _packed_layers(CONTEXT_DEVICE)
    kinds = {(v.kind, v.where.split(":")[0]) for v in probe.violations}
    assert ("CPU-only op on a device tensor", "benchmarks/plugins/gemm_path.py") in kinds, probe.violations
