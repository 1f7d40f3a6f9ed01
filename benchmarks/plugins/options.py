"""Method options: typed per plugin, set from the command line (`--option METHOD.KEY=VALUE`).

A plugin declares its options as a frozen dataclass in `MethodMeta.options`; every field has a
default and a type annotation, and an optional `from_mapping(options)` classmethod adds checks
of its own (ranges, known names) on top of `options_from_mapping`. `options_from_mapping`
builds it from a plain mapping and refuses unknown names and values of the wrong type, naming
the method and the key; `parse_option_args` reads the command line's `METHOD.KEY=VALUE` pairs (values parsed as YAML scalars, so `3`, `0.5`,
`true`, `null`, `[a, b]` and `{depth: 1}` arrive typed).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

OptionsT = TypeVar("OptionsT")


class OptionError(ValueError):
    """A bad `--option` or plugin option: the message names the method and the key."""


def options_from_mapping(cls: type[OptionsT], options: Mapping[str, Any], method: str) -> OptionsT:
    """Build a plugin's frozen options dataclass from `options`.

    Unknown names are refused (a typo must not silently run the default); values are checked
    against the field's annotation (ints are accepted for floats; lists become tuples for
    tuple-valued fields, so the options stay hashable).
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise OptionError(f"{method}: unknown options {', '.join(unknown)}; known: {', '.join(sorted(fields))}")
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in options.items():
        expected = hints[key]
        if isinstance(value, list) and _accepts(expected, tuple):
            value = tuple(value)
        if not _matches(value, expected):
            raise OptionError(f"{method}: option {key}={value!r} must be {_type_name(expected)}")
        values[key] = float(value) if _is_float_only(expected) and isinstance(value, int) else value
    return cls(**values)


def describe_options(cls: type) -> list[tuple[str, str, str]]:
    """`(name, type, default)` of every option field, for `list methods --options`."""
    hints = typing.get_type_hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:
            default = "(required)"
        rows.append((f.name, _type_name(hints[f.name]), default))
    return rows


def parse_option_args(pairs: Iterable[str], methods: Sequence[str]) -> dict[str, dict[str, Any]]:
    """`["patchcore.backbone=resnet18", "ltfm.epochs=3"]` -> `{"patchcore": {"backbone": "resnet18"}, ...}`.

    The method is everything before the first dot that names one of `methods` (method names may
    contain dots only through the `anomalib:` prefix, e.g. `anomalib:Padim.batch_size=8`).
    """
    import yaml

    out: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        target, sep, text = pair.partition("=")
        method = next((m for m in sorted(methods, key=len, reverse=True) if target.startswith(m + ".")), None)
        if not sep or method is None or not target[len(method) + 1:]:
            raise OptionError(f"--option {pair!r}: expected METHOD.KEY=VALUE with METHOD one of the run's "
                              f"methods ({', '.join(methods)})")
        key = target[len(method) + 1:]
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as exc:
            raise OptionError(f"--option {pair!r}: value is not a YAML scalar ({exc})") from None
        if key in out.get(method, {}):
            raise OptionError(f"--option {method}.{key} given twice")
        out.setdefault(method, {})[key] = value
    return out


def _origin_args(tp: Any) -> tuple[Any, tuple[Any, ...]]:
    return typing.get_origin(tp), typing.get_args(tp)


def _is_union(origin: Any) -> bool:
    return origin is typing.Union or origin is types.UnionType


def _accepts(tp: Any, kind: type) -> bool:
    origin, args = _origin_args(tp)
    if _is_union(origin):
        return any(_accepts(a, kind) for a in args)
    return (origin or tp) is kind


def _is_float_only(tp: Any) -> bool:
    origin, args = _origin_args(tp)
    if _is_union(origin):
        non_none = [a for a in args if a is not type(None)]
        return non_none == [float]
    return tp is float


def _matches(value: Any, tp: Any) -> bool:
    if tp is Any:
        return True
    origin, args = _origin_args(tp)
    if _is_union(origin):
        return any(_matches(value, a) for a in args)
    if tp is type(None):
        return value is None
    if origin is typing.Literal:
        return value in args
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(v, args[0]) for v in value)
        return not args or (len(args) == len(value) and all(_matches(v, a) for v, a in zip(value, args, strict=True)))
    if origin is not None and isinstance(origin, type):
        return isinstance(value, Mapping) if issubclass(origin, Mapping) else isinstance(value, origin)
    return isinstance(value, tp) if isinstance(tp, type) else True


def _type_name(tp: Any) -> str:
    origin, args = _origin_args(tp)
    if _is_union(origin):
        return " | ".join(_type_name(a) for a in args)
    if tp is type(None):
        return "null"
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin is tuple:
        return f"list of {_type_name(args[0])}" if len(args) == 2 and args[1] is Ellipsis else "list"
    if origin is not None and isinstance(origin, type) and issubclass(origin, Mapping):
        return "mapping"
    return getattr(tp, "__name__", str(tp))
