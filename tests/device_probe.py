"""A simulated accelerator on a CPU-only machine: does every tensor a plugin makes follow its context device?

`VirtualDevice` is a `TorchFunctionMode`. Everything runs on the CPU, but the mode keeps, for every
tensor, the device it would be on in a run with `MethodContext.device = "cuda:1"` (`CONTEXT_DEVICE`),
and reports every place such a run would fail. Inside the mode, Python code sees the simulated device:
`t.device` of a device tensor reads `cuda:1` (`is_cuda` True), so `device=t.device`, `.to(t.device)` and
`device.type == "cuda"` branches behave as on a GPU; every `device=` argument and `.to(...)` target is
classified and replaced by the real `cpu` before torch runs the call, so no CUDA runtime is ever touched.
A second GPU is the context on purpose: a hard-coded `"cuda"` (`cuda:0`) is then told from the context's.

A tensor is on the *device* when it was
- made by a factory call (`zeros`, `arange`, `tensor`, `*_like`, `new_*`, `empty_like` of `to_empty`,
  ...) with `device=` the context device (or the `.device` of a device tensor);
- moved with `.to(ctx.device)`, `.to(device=...)`, `.to(device_tensor)` (a copy, as between two devices:
  on the CPU torch would hand back the same tensor, and the original stays on the host);
- a parameter or buffer of a module moved by `module.to(ctx.device)` (its `.data` is replaced by the
  moved copy), an `nn.Parameter` / `as_subclass` alias of a device tensor;
- the result of an op with a device input; the gradient of a device parameter; a view of a device tensor.
Everything else is on the *host*: factory calls without `device=`, `torch.from_numpy`, `torch.load`,
safetensors, `.cpu()`, `.to("cpu")`, modules never moved.

Violations, each what the CUDA run would raise or a device the context did not choose:
- `mixed devices`: an op with a device tensor and a host tensor of one or more dimensions. A 0-dim host
  tensor beside device tensors is allowed (CUDA kernels take CPU scalars), and so are the cross-device
  forms torch supports: `copy_`, assignment through basic (int/slice) indexing, host index tensors into a
  device tensor. A device index into a host tensor is reported;
- `.cuda()`: a hard-coded accelerator instead of the context device (reported, then simulated: on this
  machine the real call would raise);
- `hard-coded device`: `device=` / `.to()` naming an accelerator other than the context device;
- `numpy of a device tensor`: `.numpy()`, `np.asarray(t)` (faiss, scipy, sklearn, PIL) without `.cpu()`;
- `CPU-only op on a device tensor`: oneDNN (`mkldnn`) kernels given a device tensor.
Each is reported once per (kind, op, place), at the innermost frame in `roots` (the plugin packages),
with up to two callers there.

Limits (what it cannot see):
- only calls that pass through `__torch_function__` (torch functions, Tensor methods and properties,
  `torch.ops`) are tracked; C++ extensions handed raw pointers are not, and neither is torch work in
  other threads (the mode is per thread: tensors made there count as host);
- the CUDA runtime is not simulated: `torch.cuda.is_available()` stays False (code that picks a device
  itself takes its CPU path), and `torch.cuda.*` calls, CUDA generators (`torch.Generator(device=...)`)
  and Lightning's `Trainer(accelerator="gpu")` fail here as on any CPU-only machine;
- cross-device rules are torch's as summarised above; a few rare forms CUDA may accept are reported
  (assignment of a host tensor through advanced indexing into a device tensor);
- only code that runs is checked: options and branches a run does not take are not;
- performance problems (host round trips, `.item()` syncs, CPU-only work on the path, a method that keeps
  everything on the host) are not reported: only what fails, or runs on a device nobody chose.
"""

from __future__ import annotations

import os
import sys
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

CONTEXT_DEVICE = "cuda:1"
"""`MethodContext.device` of a checked run."""
HOST = torch.device("cpu")

_TensorBase = torch._C.TensorBase
FACTORIES = frozenset(
    getattr(torch, name) for name in (
        "zeros", "ones", "empty", "full", "arange", "range", "linspace", "logspace", "eye", "rand", "randn",
        "randint", "randperm", "tensor", "as_tensor", "asarray", "scalar_tensor", "empty_strided",
        "tril_indices", "triu_indices", "sparse_coo_tensor", "hann_window", "hamming_window", "bartlett_window",
        "blackman_window", "kaiser_window", "frombuffer",
    ) if hasattr(torch, name)
)
"""Calls whose result is on the default (host) device unless `device=` says otherwise, whatever tensors
their arguments hold (`torch.tensor([t0, t1])` reads the values); a tensor passed as the data itself
(`_DATA_FACTORIES`) keeps its device."""
_DATA_FACTORIES = frozenset({torch.tensor, torch.as_tensor, torch.asarray})
UNCHECKED = frozenset({torch._has_compatible_shallow_copy_type, torch.is_same_size, _TensorBase.is_set_to})
SHAPE_OF_OTHER = frozenset({_TensorBase.view_as, _TensorBase.expand_as, _TensorBase.reshape_as})
"""`t.view_as(other)` and the like read only `other`'s shape: the result is where `t` is."""
"""Metadata queries on two tensors, nothing computed (`Module._apply` asks whether a moved copy can
replace a parameter's `.data`)."""


@dataclass(frozen=True)
class Violation:
    kind: str
    op: str
    where: str
    """The innermost frame in the checked files: `path:line (function)`."""
    detail: str = ""
    callers: tuple[str, ...] = ()
    """Up to two frames in the checked files that led there, innermost first."""

    def __str__(self) -> str:
        text = f"{self.where}: {self.kind} in {self.op}" + (f" ({self.detail})" if self.detail else "")
        return text + "".join(f"\n    called from {caller}" for caller in self.callers)


def _op_name(func: Callable[..., Any]) -> str:
    if getattr(func, "__name__", "") in ("__get__", "__set__"):
        return f"Tensor.{func.__self__.__name__}"  # type: ignore[attr-defined]
    if isinstance(func, torch._ops.OpOverload | torch._ops.OpOverloadPacket):
        return f"torch.ops.{func}"
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or repr(func)
    return name.replace("_VariableFunctionsClass.", "torch.").replace("TensorBase.", "Tensor.")


def _tensors(values: Iterable[Any], out: list[torch.Tensor], depth: int = 0) -> list[torch.Tensor]:
    """The tensors among `values` and in the lists and tuples they hold (two levels: cat lists, index tuples)."""
    for value in values:
        if isinstance(value, torch.Tensor):
            out.append(value)
        elif depth < 2 and isinstance(value, list | tuple):
            _tensors(value, out, depth + 1)
    return out


_NOT_CALLERS = (str(Path(torch.__file__).parent) + os.sep, __file__)
"""Frames never named as the place of a violation: torch's own and this probe's."""

Handler = Callable[[Callable[..., Any], Sequence[Any], dict[str, Any]], Any]


class VirtualDevice(TorchFunctionMode):
    """While active, simulate `device` for the code under `roots`; `violations` lists what would fail."""

    def __init__(self, roots: Sequence[Path | str], device: str = CONTEXT_DEVICE) -> None:
        super().__init__()
        self.device = torch.device(device)
        if self.device.type == "cpu" or self.device.index is None:
            raise ValueError(f"simulate an indexed accelerator such as cuda:1, not {device!r}")
        self.roots = tuple(str(Path(r).resolve()) + (os.sep if Path(r).is_dir() else "") for r in roots)
        self.violations: list[Violation] = []
        self.calls = 0
        self._seen: set[tuple[str, str, str]] = set()
        self._on_device: dict[int, weakref.ref[torch.Tensor]] = {}
        self._special: dict[Any, Handler] = {
            torch.Tensor.device.__get__: self._device_getter,
            torch.Tensor.is_cuda.__get__: lambda f, a, k: self.on_device(a[0]) or f(*a, **k),
            torch.Tensor.is_cpu.__get__: lambda f, a, k: not self.on_device(a[0]) and f(*a, **k),
            _TensorBase.get_device: lambda f, a, k: self.device.index if self.on_device(a[0]) else f(*a, **k),
            torch.Tensor.data.__set__: self._data_setter,
            _TensorBase.to: self._to,
            _TensorBase.cpu: lambda f, a, k: self._moved(a[0], a[0], device=False),
            _TensorBase.cuda: self._cuda,
            _TensorBase.pin_memory: lambda f, a, k: a[0],  # pinning needs the CUDA runtime; a no-op here
            _TensorBase.is_pinned: lambda f, a, k: False,
            _TensorBase.numpy: self._numpy,
            torch.Tensor.__array__: self._numpy,
            _TensorBase.copy_: lambda f, a, k: f(*a, **k),  # across devices; the destination keeps its own
            _TensorBase.__getitem__: self._getitem,
            torch.Tensor.__iter__: self._iter,
            _TensorBase.new_tensor: self._new_tensor,
            **{f: self._shape_of_other for f in SHAPE_OF_OTHER},
            _TensorBase.__setitem__: self._setitem,
        }

    # -- where tensors are ------------------------------------------------------------------------
    def on_device(self, t: torch.Tensor) -> bool:
        ref = self._on_device.get(id(t))
        return ref is not None and ref() is t

    @property
    def device_tensors_seen(self) -> int:
        """How many tensors were on the device at some point (dead ones included)."""
        return len(self._on_device)

    def _place(self, t: torch.Tensor, device: bool) -> None:
        if device:
            self._on_device[id(t)] = weakref.ref(t)
        else:
            self._on_device.pop(id(t), None)

    def _place_outputs(self, out: Any, device: bool, keep: Sequence[torch.Tensor] = ()) -> None:
        """Put the tensors of `out` (a tensor, or a list/tuple of them) on the device or the host,
        except those in `keep` (an input returned as it is, or changed in place, keeps its device)."""
        for t in out if isinstance(out, list | tuple) else (out,):
            if isinstance(t, torch.Tensor) and not any(t is k for k in keep):
                self._place(t, device)

    def _classify(self, device: Any, func: Callable[..., Any]) -> bool | None:
        """True (the device), False (the host) or None (not given, or a device this probe does not track)."""
        if device is None:
            return None
        device = device if isinstance(device, torch.device) else torch.device(device)
        if device == self.device:
            return True
        if device.type == self.device.type:
            self._report("hard-coded device", func, f"{device} while the context device is {self.device}")
            return True
        return False if device.type == "cpu" else None

    # -- reporting --------------------------------------------------------------------------------
    def _places(self) -> list[str]:
        """The innermost three frames in `roots`, innermost first, as `path:line (function)` (relative to
        the first root's parent); without any, the innermost frame outside torch (a library called from
        outside the checked files, such as a reference model's forward)."""
        frame, places, outside = sys._getframe(3), [], None
        base = Path(self.roots[0]).parent
        while frame is not None and len(places) < 3:
            filename = frame.f_code.co_filename
            if filename.startswith(self.roots):
                shown = Path(filename)
                places.append(f"{shown.relative_to(base) if shown.is_relative_to(base) else shown}:"
                              f"{frame.f_lineno} ({frame.f_code.co_name})")
            elif outside is None and not filename.startswith(_NOT_CALLERS):
                library = filename.split("site-packages" + os.sep)[-1]
                outside = f"{library}:{frame.f_lineno} ({frame.f_code.co_name})"
            frame = frame.f_back  # type: ignore[assignment]
        return places or [outside or "<unknown>"]

    def _report(self, kind: str, func: Callable[..., Any], detail: str = "") -> None:
        where, *callers = self._places()
        key = (kind, _op_name(func), where)
        if key not in self._seen:
            self._seen.add(key)
            self.violations.append(Violation(kind, key[1], where, detail, tuple(callers)))

    def _describe(self, tensors: Sequence[torch.Tensor], most: int = 6) -> str:
        shown = ", ".join(f"{'device' if self.on_device(t) else 'host'} {tuple(t.shape)}" for t in tensors[:most])
        return shown + (f", ... ({len(tensors)} tensors)" if len(tensors) > most else "")

    # -- the mode ---------------------------------------------------------------------------------
    def __enter__(self) -> VirtualDevice:
        # `t.as_subclass(cls)` (tv_tensors) and `Tensor._make_subclass(cls, t)` (`nn.Parameter(t)`) alias
        # `t` in C++, unseen by the mode: the alias is where `t` is
        probe = self
        as_subclass, make_subclass = _TensorBase.as_subclass, _TensorBase._make_subclass

        def aliasing_as_subclass(self: torch.Tensor, cls: type) -> torch.Tensor:
            out = as_subclass(self, cls)
            probe._place(out, probe.on_device(self))
            return out

        def aliasing_make_subclass(cls: type, data: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            out = make_subclass(cls, data, *args, **kwargs)
            probe._place(out, probe.on_device(data))
            return out

        torch.Tensor.as_subclass = aliasing_as_subclass  # type: ignore[method-assign]
        torch.Tensor._make_subclass = staticmethod(aliasing_make_subclass)  # type: ignore[method-assign,assignment]
        super().__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        del torch.Tensor.as_subclass, torch.Tensor._make_subclass  # TensorBase's again

    def __torch_function__(self, func: Callable[..., Any], types: Any, args: Sequence[Any] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        self.calls += 1
        kwargs = kwargs or {}
        try:
            special, factory, unchecked = self._special.get(func), func in FACTORIES, func in UNCHECKED
        except TypeError:  # an unhashable callable
            special, factory, unchecked = None, False, False
        if special is not None:
            return special(func, args, kwargs)
        if factory:
            return self._factory(func, args, kwargs)
        if unchecked:
            return func(*args, **kwargs)
        if kwargs.get("device") is not None:  # *_like, new_*, to_empty's empty_like, ...: where `device=` says
            target = self._classify(kwargs["device"], func)
            out = func(*args, **{**kwargs, "device": HOST} if target else kwargs)
            if target is not None:
                self._place_outputs(out, target)
            return out
        tensors = _tensors(kwargs.values(), _tensors(args, []))
        out = func(*args, **kwargs)
        if tensors and self._check_mixed(func, tensors):
            if "mkldnn" in _op_name(func):
                self._report("CPU-only op on a device tensor", func, self._describe(tensors))
            self._place_outputs(out, True, keep=tensors)
        return out

    def _check_mixed(self, func: Callable[..., Any], tensors: Sequence[torch.Tensor]) -> bool:
        """Whether any of `tensors` is on the device; reports host tensors of >= 1 dimension beside them."""
        where = [self.on_device(t) for t in tensors]
        if not any(where):
            return False
        if not all(where) and any(not d and t.dim() > 0 for d, t in zip(where, tensors, strict=True)):
            self._report("mixed devices", func, self._describe(tensors))
        return True

    # -- special cases ----------------------------------------------------------------------------
    def _factory(self, func: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        positional = func is torch.as_tensor and len(args) > 2  # as_tensor(data, dtype, device)
        target = self._classify(args[2] if positional else kwargs.get("device"), func)
        if target:
            if positional:
                args = (*args[:2], HOST, *args[3:])
            else:
                kwargs = {**kwargs, "device": HOST}
        out = func(*args, **kwargs)
        data = args[0] if func in _DATA_FACTORIES and args and isinstance(args[0], torch.Tensor) else None
        if data is not None:  # a tensor given as data keeps its device unless `device=` moves it
            return self._moved(data, out, self.on_device(data) if target is None else target)
        if target is not None:
            self._place_outputs(out, target)
        return out

    def _device_getter(self, func: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        return self.device if self.on_device(args[0]) else func(*args, **kwargs)

    def _data_setter(self, func: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        out = func(*args, **kwargs)  # `param.data = moved` (Module.to): the parameter is where `moved` is
        self._place(args[0], self.on_device(args[1]))
        return out

    def _moved(self, source: torch.Tensor, out: torch.Tensor, device: bool) -> torch.Tensor:
        """`out` (`source`, maybe converted) on the device or the host: a copy when it changes device."""
        if self.on_device(source) != device and out is source:
            out = source.clone()  # a move between two devices copies; on the CPU torch returns `source`
        if out is not source or self.on_device(source) != device:
            self._place(out, device)
        return out

    def _to(self, func: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        source, rest, kwargs = args[0], list(args[1:]), dict(kwargs)
        copy = bool(kwargs.pop("copy", False))
        if len(rest) >= 4:  # to(device, dtype, non_blocking, copy)
            copy = bool(rest.pop(3))
        device, dtype, non_blocking, memory_format = torch._C._nn._parse_to(*rest, **kwargs)
        if rest and isinstance(rest[0], torch.Tensor):  # to(other): other's device and dtype
            target: bool | None = self.on_device(rest[0])
        else:
            target = self._classify(device, func)
        out = source.to(dtype=dtype or source.dtype, non_blocking=non_blocking, copy=copy,
                        memory_format=memory_format or torch.preserve_format)
        return self._moved(source, out, self.on_device(source) if target is None else target)

    def _cuda(self, func: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        self._report(".cuda()", func, f"ignores the context device {self.device}; use .to(device)")
        return self._moved(args[0], args[0], device=True)

    def _numpy(self, func: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        if self.on_device(args[0]) and not kwargs.get("force", False):
            self._report("numpy of a device tensor", func, "call .cpu() first")
        return func(*args, **kwargs)

    def _getitem(self, func: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        source, indices = args[0], _tensors([args[1]], [])
        out = func(*args, **kwargs)
        if self.on_device(source):
            self._place_outputs(out, True, keep=[source])  # host index tensors: torch copies them over
        elif any(self.on_device(i) for i in indices):
            self._report("mixed devices", func, f"host tensor indexed by device tensors: {self._describe(indices)}")
        return out

    def _iter(self, func: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        items = list(func(*args, **kwargs))  # `for row in t`: the rows are where `t` is
        self._place_outputs(items, self.on_device(args[0]))
        return iter(items)

    def _new_tensor(self, func: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        target = self._classify(kwargs.get("device"), func)  # `t.new_tensor(data)` copies `data` to t's device
        out = func(*args, **{**kwargs, "device": HOST} if target else kwargs)
        self._place(out, self.on_device(args[0]) if target is None else target)
        return out

    def _shape_of_other(self, func: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        out = func(*args, **kwargs)
        if out is not args[0]:
            self._place(out, self.on_device(args[0]))
        return out

    def _setitem(self, func: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        target, indices, value = args[0], _tensors([args[1]], []), args[2]
        tensor_value = isinstance(value, torch.Tensor)
        if self.on_device(target):  # basic indexing copies a host value over; advanced indexing does not
            mixed = bool(indices) and tensor_value and not self.on_device(value) and value.dim() > 0
        else:
            mixed = any(self.on_device(i) for i in indices) or (
                bool(indices) and tensor_value and self.on_device(value))
        if mixed:
            self._report("mixed devices", func, self._describe([target, *indices, *([value] if tensor_value else [])]))
        return func(*args, **kwargs)
