"""Parameters of registered components, read from protocols and checked against signatures.

A component (defense, attack, dataset, backbone) declares its parameters as typed keyword
arguments (or dataclass fields) with defaults. :func:`check_params` coerces the protocol's values
to those types and rejects unknown or missing keys, so a protocol is fully checked before any work.

Numbers may be written as fractions, the paper's notation: ``8/255`` (also ``"8/255"``,
``2/255*4``), see :func:`parse_number`.
"""

from __future__ import annotations

import collections.abc as cabc
import dataclasses
import difflib
import inspect
import math
import re
import types
import typing
from dataclasses import dataclass
from typing import Any

from robench.errors import ProtocolError

_FRACTION = re.compile(
    r"^\s*([-+]?\d+(?:\.\d*)?(?:e[-+]?\d+)?)"  # numerator
    r"\s*/\s*(\d+(?:\.\d*)?)"  # / denominator
    r"\s*(?:\*\s*(\d+(?:\.\d*)?))?\s*$",  # optional * multiplier
    re.I)


def parse_number(value: Any) -> float:
    """A float from a number or a string ``"a"``, ``"a/b"`` or ``"a/b*c"`` (e.g. ``"8/255"``).

    Raises ValueError for anything else (booleans included).
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        m = _FRACTION.match(value)
        if m:
            num, den, mul = float(m.group(1)), float(m.group(2)), float(m.group(3) or 1)
            if den == 0:
                raise ValueError(f"division by zero in {value!r}")
            return num / den * mul
        try:
            return float(value)
        except ValueError:
            pass
    raise ValueError(f"expected a number or a fraction like 8/255, got {value!r}")


@dataclass(frozen=True)
class Param:
    """One declared parameter of a component."""

    name: str
    annotation: Any
    default: Any
    required: bool

    def describe(self) -> str:
        d = "" if self.required else f" = {self.default!r}"
        return f"{self.name}: {type_name(self.annotation)}{d}"


def signature_params(target: Any, exclude: cabc.Collection[str] = ()) -> dict[str, Param]:
    """Declared parameters of a class (its ``__init__``) or function, with resolved type hints."""
    func = target.__init__ if inspect.isclass(target) else target
    try:
        hints = typing.get_type_hints(func)
    except Exception:  # unresolvable annotations: fall back to raw ones
        hints = {}
    factories = {}
    if dataclasses.is_dataclass(target):
        factories = {f.name: f.default_factory for f in dataclasses.fields(target)
                     if f.default_factory is not dataclasses.MISSING}
    out: dict[str, Param] = {}
    for name, p in inspect.signature(func).parameters.items():
        if name == "self" or name in exclude or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        ann = hints.get(name, p.annotation)
        default = factories[name]() if name in factories else (None if p.default is p.empty else p.default)
        out[name] = Param(name, ann, default, p.default is p.empty and name not in factories)
    return out


def type_name(ann: Any) -> str:
    """Human-readable description of an annotation, for error messages."""
    if ann is inspect.Parameter.empty or ann is Any:
        return "any value"
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in args)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (list, tuple, cabc.Sequence):
        return f"a list of {type_name(args[0]) if args else 'values'}"
    if origin in (dict, cabc.Mapping):
        return f"a mapping of {type_name(args[0])} to {type_name(args[1])}" if len(args) == 2 else "a mapping"
    if ann is type(None):
        return "null"
    return {int: "an integer in -2^63..2^63-1", float: "a finite number (8/255 style fractions allowed)",
            bool: "true or false", str: "a string"}.get(ann, getattr(ann, "__name__", str(ann)))


#: the range of a signed 64-bit integer (seeds, counts and ids in the results store)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class _Mismatch(Exception):
    pass


def coerce(value: Any, ann: Any) -> Any:
    """Convert ``value`` to annotation ``ann``; raises ``_Mismatch`` if it cannot."""
    if ann is inspect.Parameter.empty or ann is Any:
        return value
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for a in args:  # try the non-None members in declaration order
            if a is type(None):
                continue
            try:
                return coerce(value, a)
            except _Mismatch:
                continue
        raise _Mismatch
    if origin is typing.Literal:
        if value in args:
            return value
        raise _Mismatch
    if origin in (list, tuple, cabc.Sequence):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise _Mismatch
        item = args[0] if args else Any
        out = [coerce(v, item) for v in value]
        return tuple(out) if origin is tuple else out
    if origin in (dict, cabc.Mapping):
        if not isinstance(value, dict):
            raise _Mismatch
        kt, vt = args if len(args) == 2 else (Any, Any)
        return {coerce(k, kt): coerce(v, vt) for k, v in value.items()}
    if ann is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if ann is int:  # 64-bit: what every store, seed and tensor index can hold
        if isinstance(value, bool):
            raise _Mismatch
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and INT64_MIN <= value <= INT64_MAX:
            return value
        raise _Mismatch
    if ann is float:  # finite: an infinite or NaN radius, step or weight is never meant
        try:
            x = parse_number(value)
        except ValueError:
            raise _Mismatch from None
        if not math.isfinite(x):
            raise _Mismatch
        return x
    if ann is str:
        if isinstance(value, str):
            return value
        raise _Mismatch
    if ann is type(None):
        if value is None:
            return None
        raise _Mismatch
    return value  # an annotation we do not interpret: leave the value to the component


#: maps a parameter name to (file, displayed key path) for error messages
Locator = cabc.Callable[[str], tuple[str | None, str]]


def check_params(
    target: Any, given: dict[str, Any], *, kind: str, where: Locator, exclude: cabc.Collection[str] = (),
) -> dict[str, Any]:
    """Validate ``given`` against ``target``'s signature; return the coerced parameters.

    Raises :class:`ProtocolError` naming the file and key path (from ``where(name)``), the value
    found and what is allowed (the parameter list, or the expected type).
    """
    params = signature_params(target, exclude)
    out: dict[str, Any] = {}
    for name, value in given.items():
        if name not in params:
            allowed = ", ".join(p.describe() for p in params.values()) or "no parameters"
            close = difflib.get_close_matches(name, list(params), n=1)
            hint = f"did you mean '{close[0]}'?" if close else ""
            raise ProtocolError(*where(name), value, f"parameters of {kind}: {allowed}", hint)
        try:
            out[name] = coerce(value, params[name].annotation)
        except _Mismatch:
            raise ProtocolError(*where(name), value, type_name(params[name].annotation)) from None
    missing = [p.name for p in params.values() if p.required and p.name not in out]
    if missing:
        raise ProtocolError(*where(missing[0]), "(missing)", f"a value: {kind} requires {', '.join(missing)}")
    return out


def full_params(target: Any, given: dict[str, Any], exclude: cabc.Collection[str] = ()) -> dict[str, Any]:
    """``given`` completed with the defaults of every other declared parameter, ``exclude`` left out (cache keys)."""
    params = signature_params(target, exclude)
    out = {name: p.default for name, p in params.items() if not p.required}
    out.update((k, v) for k, v in given.items() if k not in exclude)
    return out
