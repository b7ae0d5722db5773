"""Key-path aware checking of protocol values: what every validation error is made with.

A :class:`Checker` knows which file set which key (including ``include:``d files, per-dataset
``overrides``, profiles and ``--set``) and turns a bad value into a
:class:`~robench.errors.ProtocolError` that names that file, the key path, the value found and
what is allowed.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from robench.errors import ProtocolError, RobenchError, UnknownNameError
from robench.params import _Mismatch, check_params, coerce, parse_number, type_name
from robench.protocol.load import KeyPath, RawProtocol
from robench.registry import Registry


@dataclass(frozen=True)
class Component:
    """A registered component and its (validated, coerced) protocol parameters."""

    type: str
    params: dict[str, Any]


class Checker:
    """Key-path aware validation helpers for one protocol (or one dataset variant of it)."""

    def __init__(self, raw: RawProtocol, variant: str | None = None) -> None:
        self.raw, self.variant = raw, variant

    def _set_by(self, prefix: KeyPath, path: KeyPath) -> KeyPath | None:
        """``prefix + path`` if some file set that key (or an ancestor below ``prefix``)."""
        full = (*prefix, *path)
        if any(full[:i] in self.raw.origins for i in range(len(full), len(prefix), -1)):
            return full
        return None

    def where(self, path: KeyPath) -> tuple[str | None, str]:
        """(file, displayed key) for a key path, following overrides and profiles to their source."""
        if self.raw.origins.get(path) == "--set":
            return "--set", ".".join(path)
        candidates: list[KeyPath] = []
        if self.variant is not None:
            candidates.append(("datasets", self.variant, "overrides"))
        if self.raw.profile is not None:
            if self.variant is not None:
                candidates.append(("profiles", self.raw.profile, "datasets", self.variant, "overrides"))
            candidates.append(("profiles", self.raw.profile))
        for prefix in candidates:
            full = self._set_by(prefix, path)
            if full is not None:
                return self.raw.file_of(full), ".".join(full)
        return self.raw.file_of(path), ".".join(path)

    def fail(self, path: KeyPath, found: Any, allowed: str, hint: str = "") -> ProtocolError:
        return ProtocolError(*self.where(path), found, allowed, hint)

    def mapping(self, value: Any, path: KeyPath, allowed: str = "a mapping") -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(path, value, allowed)
        return value

    def keys(self, value: dict[str, Any], path: KeyPath, allowed: tuple[str, ...]) -> None:
        for k in value:
            if k not in allowed:
                close = difflib.get_close_matches(str(k), allowed, n=1)
                raise self.fail((*path, str(k)), k, "keys " + ", ".join(allowed),
                                f"did you mean '{close[0]}'?" if close else "")

    def typed(self, value: Any, ann: Any, path: KeyPath) -> Any:
        try:
            return coerce(value, ann)
        except _Mismatch:
            raise self.fail(path, value, type_name(ann)) from None

    def number(self, value: Any, path: KeyPath, minimum: float | None = None) -> float:
        try:
            x = parse_number(value)
        except ValueError:
            raise self.fail(path, value, "a number or a fraction like 8/255") from None
        if not math.isfinite(x):
            raise self.fail(path, value, "a finite number" + (f" >= {minimum}" if minimum is not None else ""))
        if minimum is not None and x < minimum:
            raise self.fail(path, value, f"a number >= {minimum}")
        return x

    def lookup(self, registry: Registry[Any], name: Any, path: KeyPath) -> Any:
        if not isinstance(name, str):
            raise self.fail(path, name, f"the name of a registered {registry.kind}: {', '.join(registry.names())}")
        try:
            return registry.get(name)
        except UnknownNameError as exc:
            raise self.fail(path, name, f"a registered {registry.kind}: {', '.join(registry.names())}",
                            str(exc).rpartition("; ")[2] if "did you mean" in str(exc) else "") from None

    def component(self, registry: Registry[Any], type_name_: Any, params: dict[str, Any], path: KeyPath,
                  type_key: str, exclude: tuple[str, ...] = ()) -> tuple[Any, Component]:
        cls = self.lookup(registry, type_name_, (*path, type_key))
        checked = check_params(cls, params, kind=f"{registry.kind} '{type_name_}'",
                               where=lambda n: self.where((*path, n)), exclude=exclude)
        return cls, Component(str(type_name_), checked)


def instantiate(checker: Checker, path: KeyPath, make: Callable[[], Any], params: dict[str, Any] | None = None) -> Any:
    """Build a component to run its own checks; turn its ValueError/TypeError (or a RobenchError that names
    no file) into a ProtocolError. The error's key is ``path.<name>`` when the message names one of
    ``params`` (the first it names), so that the file that set that parameter is the one named."""
    try:
        return make()
    except ProtocolError:
        raise
    except (ValueError, TypeError, RobenchError) as exc:
        text, params = str(exc), params or {}
        hits = [(m.start(), name) for name in params if (m := re.search(rf"\b{re.escape(name)}\b", text))]
        if hits:
            name = min(hits)[1]
            raise checker.fail((*path, name), params[name], f"values the component accepts: {text}") from None
        raise checker.fail(path, "(parameters)", f"values the component accepts: {text}") from None
