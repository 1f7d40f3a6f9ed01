"""One generic registry (the only global mutable state) plus entry-point discovery of plugins.

Every method registers through entry points, the suite's own built-ins included (they are
declared in its pyproject): group `benchmarks.baselines` maps a method name to its `Baseline`
class, group `benchmarks.method_families` maps a prefix to a `MethodFamily` (methods built on
demand, `anomalib:<Model>`). The registered name must equal the class's `meta.name`.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Iterator
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from benchmarks.plugins.contract import Baseline, MethodFamily

log = logging.getLogger(__name__)

T = TypeVar("T")
ENTRY_POINT_GROUP = "benchmarks.baselines"
FAMILY_GROUP = "benchmarks.method_families"
SUITE_DISTRIBUTION = "smartphone-ad-benchmarks"


class UnknownNameError(KeyError):
    """An unknown registry name; the message carries a "did you mean" suggestion."""

    def __str__(self) -> str:
        return str(self.args[0])


class Registry(Generic[T]):
    """Name -> object registry usable as a decorator.

    Registering a second, different object under an existing name is refused; re-registering
    the same object (a re-import) is a no-op.
    """

    def __init__(self, kind: str, base: type | None = None) -> None:
        self.kind = kind
        self.base = base
        self._items: dict[str, T] = {}
        self._prefix_factories: dict[str, Callable[[str], T]] = {}

    def register_prefix(self, prefix: str, factory: Callable[[str], T]) -> None:
        """Names starting with `prefix` (e.g. `anomalib:`) are built on demand by `factory(rest)`."""
        self._prefix_factories[prefix] = factory

    def prefixes(self) -> list[str]:
        return sorted(self._prefix_factories)

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            self.add(name, obj)
            return obj

        return decorator

    def add(self, name: str, obj: T) -> None:
        if self.base is not None and not (isinstance(obj, type) and issubclass(obj, self.base)):
            raise TypeError(f"{self.kind} {name!r} must be a subclass of {self.base.__name__}")
        meta = getattr(obj, "meta", None)
        if self.base is not None and meta is not None and getattr(meta, "name", name) != name:
            raise ValueError(f"{self.kind} registered as {name!r} names itself {meta.name!r} in its meta; use one name")
        existing = self._items.get(name)
        if existing is not None and not _same_definition(existing, obj):
            raise ValueError(f"{self.kind} {name!r} is already registered to {existing!r}")
        self._items[name] = obj

    def get(self, name: str) -> T:
        if name in self._items:
            return self._items[name]
        for prefix, factory in self._prefix_factories.items():
            if name.startswith(prefix):
                obj = factory(name[len(prefix):])  # raises ValueError naming the valid names
                if name not in self._items:
                    self.add(name, obj)
                return obj
        try:
            return self._items[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._items, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            known = ", ".join(sorted(self._items)) or "none"
            raise UnknownNameError(f"unknown {self.kind} {name!r}{hint} (registered: {known})") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def remove(self, name: str) -> None:
        self._items.pop(name, None)

    def clear(self) -> None:
        """Forget registered names (prefix factories stay)."""
        self._items.clear()


def _same_definition(a: object, b: object) -> bool:
    """True when `a` and `b` are the same object or the same class re-imported."""
    if a is b:
        return True
    return (
        isinstance(a, type)
        and isinstance(b, type)
        and (a.__module__, a.__qualname__) == (b.__module__, b.__qualname__)
    )


def _baseline_registry() -> Registry[type[Baseline]]:
    from benchmarks.plugins.contract import Baseline

    return Registry("method", Baseline)


BASELINES: Registry[type[Baseline]] = _baseline_registry()
FAMILIES: dict[str, MethodFamily] = {}
"""Prefix (without the colon) -> the method family registered under it."""
INSTALLED: set[str] = set()
"""Names of the methods registered from entry points (not in-process test registrations)."""


def load_method(name: str) -> type[Baseline]:
    """The method `name`, importing only its own entry point (a process that needs one method
    need not import every plugin's libraries); falls back to `load_plugins` for anything else."""
    if name not in BASELINES:
        prefix, colon, _ = name.partition(":")
        group, wanted = (FAMILY_GROUP, prefix) if colon else (ENTRY_POINT_GROUP, name)
        found = next((ep for ep in entry_points(group=group) if ep.name == wanted), None)
        try:
            if found is None:
                raise LookupError(name)
            _register(found, found.load())
        except (LookupError, TypeError, ValueError):
            load_plugins()  # registers what it can and reports the rest
    return BASELINES.get(name)


def _register(ep: EntryPoint, obj: object) -> None:
    """Register what entry point `ep` names: a method class, or a `MethodFamily` under its prefix.

    Raises TypeError / ValueError when `obj` breaks the contract (the registry's own checks)."""
    from benchmarks.plugins import contract

    if ep.group == FAMILY_GROUP:
        if not isinstance(obj, contract.MethodFamily) or obj.prefix != ep.name:
            raise TypeError(f"must be a MethodFamily with prefix {ep.name!r}")
        FAMILIES[obj.prefix] = obj
        BASELINES.register_prefix(f"{ep.name}:", obj.build)
    else:
        if ep.name not in BASELINES:
            BASELINES.add(ep.name, obj)  # type: ignore[arg-type]  # checked by the registry
        INSTALLED.add(ep.name)


def plugin_modules() -> list[str]:
    """The modules of every registered method and family (what a fresh process imports to find them)."""
    modules = {BASELINES.get(name).__module__ for name in BASELINES.names()}
    modules |= {family.build.__module__ for family in FAMILIES.values()}
    return sorted(modules)


def load_plugins() -> list[str]:
    """Register every method of the `benchmarks.baselines` and `benchmarks.method_families` entry points.

    The suite's own entry points come first and win a name clash. A plugin that fails to import
    or breaks the contract is reported and skipped; the returned list says what happened.
    """
    suite = [ep for group in (ENTRY_POINT_GROUP, FAMILY_GROUP) for ep in entry_points(group=group)
             if ep.dist is not None and ep.dist.name == SUITE_DISTRIBUTION]
    if not suite:
        raise RuntimeError(
            f"no built-in methods: the suite's entry points are missing, so {SUITE_DISTRIBUTION} is not installed "
            "in this environment. Install it as README says (pip install -e .), then run again."
        )
    others = [ep for group in (ENTRY_POINT_GROUP, FAMILY_GROUP) for ep in entry_points(group=group) if ep not in suite]
    problems: list[str] = []
    builtin: set[str] = set()
    for ep in [*suite, *others]:
        name = f"{ep.name}:" if ep.group == FAMILY_GROUP else ep.name
        if ep not in suite and (name in builtin):
            problems.append(f"plugin {ep.name!r} from {ep.value} ignored: a built-in method has that name")
            continue
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plugin must not take the suite down
            problems.append(f"plugin {ep.name!r} ({ep.value}) failed to import: {type(exc).__name__}: {exc}")
            continue
        try:
            _register(ep, obj)
        except (TypeError, ValueError) as exc:
            problems.append(f"plugin {ep.name!r} ({ep.value}) rejected: {exc}")
            continue
        if ep in suite:
            builtin.add(name)
    for problem in problems:
        log.warning("%s", problem)
    return problems
