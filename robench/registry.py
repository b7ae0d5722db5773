"""One generic registry type, used for defenses, attacks, datasets and backbones.

A registry maps a name to a factory (a class or a function). Entries come from three places:

* built-ins, registered with a decorator when their module is imported
  (``@register_defense("at")`` in ``defenses/at.py``);
* third-party packages, through Python entry points in the groups ``robench.defenses``,
  ``robench.attacks``, ``robench.datasets`` and ``robench.backbones``; an entry point may name
  the object itself (``my_pkg.defense:MyDefense``) or a module whose import registers it;
* plugin files listed under ``plugins:`` in a protocol (see :func:`load_plugin_file`).

Unknown names raise :class:`~robench.errors.UnknownNameError`, which lists the valid names and
suggests the closest ones.
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.metadata
import importlib.util
import inspect
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from robench.errors import RobenchError, UnknownNameError

T = TypeVar("T")


@dataclass
class Entry:
    """One registered component."""

    name: str
    target: Any  # the class or factory function, or a "module:attr" string until first use
    description: str
    source: str  # "builtin", "entry-point:<dist>" or "plugin:<path>"

    def load(self) -> Any:
        if isinstance(self.target, str):
            module, _, attr = self.target.partition(":")
            obj: Any = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
            self.target = obj
        return self.target


def _first_line(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


class Registry(Generic[T]):
    """Name -> factory mapping for one kind of component.

    Args:
        kind: singular noun used in messages ("defense").
        group: entry-point group read by :meth:`load_entry_points` ("robench.defenses").
        base: if given, registered classes must subclass it.
    """

    def __init__(self, kind: str, group: str, base: type | None = None) -> None:
        self.kind = kind
        self.group = group
        self.base = base
        self._entries: dict[str, Entry] = {}
        self._aliases: dict[str, str] = {}
        self._entry_points_loaded = False

    # -- registration -------------------------------------------------------------------------
    def register(
        self,
        name: str,
        *,
        aliases: tuple[str, ...] = (),
        description: str | None = None,
        source: str = "builtin",
        replace: bool = False,
    ) -> Callable[[T], T]:
        """Decorator registering a class or factory under ``name`` (and ``aliases``)."""

        def deco(obj: T) -> T:
            self.add(name, obj, aliases=aliases, description=description, source=source, replace=replace)
            return obj

        return deco

    def add(
        self,
        name: str,
        obj: Any,
        *,
        aliases: tuple[str, ...] = (),
        description: str | None = None,
        source: str = "builtin",
        replace: bool = False,
    ) -> None:
        """Register ``obj`` (or a lazy ``"module:attr"`` string) under ``name``."""
        if not name or not name.replace("_", "").replace("-", "").replace(".", "").isalnum():
            raise ValueError(f"invalid {self.kind} name {name!r}: use letters, digits, '_', '-', '.'")
        if self.base is not None and inspect.isclass(obj) and not issubclass(obj, self.base):
            raise TypeError(f"{self.kind} '{name}': {obj!r} must subclass {self.base.__name__}")
        existing = self._entries.get(name)
        if existing is not None and not replace and existing.target is not obj:
            raise RobenchError(
                f"{self.kind} '{name}' is already registered (from {existing.source}); "
                "choose another name or pass replace=True"
            )
        desc = description if description is not None else ("" if isinstance(obj, str) else _first_line(obj))
        self._entries[name] = Entry(name, obj, desc, source)
        for alias in aliases:
            self._aliases[alias] = name
        if not isinstance(obj, str):
            try:
                obj.registry_name = name  # lets a class know the name it was registered under
            except (AttributeError, TypeError):
                pass

    # -- lookup -------------------------------------------------------------------------------
    def _resolve(self, name: str) -> str:
        return self._aliases.get(name, name)

    def __contains__(self, name: object) -> bool:
        self.load_entry_points()
        return isinstance(name, str) and self._resolve(name) in self._entries

    def entry(self, name: str) -> Entry:
        self.load_entry_points()
        key = self._resolve(name)
        if key not in self._entries:
            raise UnknownNameError(self.kind, name, list(self._entries) + list(self._aliases))
        return self._entries[key]

    def get(self, name: str) -> T:
        """The registered class or factory; raises UnknownNameError with suggestions."""
        return self.entry(name).load()

    def build(self, name: str, **kwargs: Any) -> Any:
        """Instantiate / call the registered factory with ``kwargs``."""
        return self.get(name)(**kwargs)

    def names(self, pattern: str | None = None) -> list[str]:
        """Sorted registered names, optionally filtered by a shell-style pattern (``"at*"``)."""
        self.load_entry_points()
        names = sorted(self._entries)
        return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]

    def describe(self, name: str) -> str:
        return self.entry(name).description

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} entries)"

    # -- third-party --------------------------------------------------------------------------
    def load_entry_points(self) -> None:
        """Make every entry visible: robench's built-ins, then this group's entry points (once per process)."""
        load_builtins()
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in importlib.metadata.entry_points(group=self.group):
            dist = ep.dist.name if ep.dist is not None else "?"
            if ep.attr:  # "pkg.module:Object" -> register the object under the entry point's name
                if ep.name not in self._entries:
                    self.add(ep.name, ep.value, source=f"entry-point:{dist}")
            else:  # a module: importing it registers through the decorators
                try:
                    importlib.import_module(ep.module)
                except Exception as exc:  # a broken plugin must not break robench
                    print(f"robench: warning: entry point {ep.value!r} failed to import: {exc}", file=sys.stderr)


def load_plugin_file(path: str | Path) -> None:
    """Import a Python file so that its ``@register_*`` decorators run.

    Used for the protocol's ``plugins:`` list. Importing the same file twice is a no-op.
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise RobenchError(f"plugin file not found: {path}")
    mod_name = "robench_plugin_" + "".join(c if c.isalnum() else "_" for c in str(path))
    if mod_name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise RobenchError(f"cannot import plugin file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[mod_name]
        raise RobenchError(f"plugin file {path} failed to import: {type(exc).__name__}: {exc}") from exc


DEFENSES: Registry[Any] = Registry("defense", "robench.defenses")
ATTACKS: Registry[Any] = Registry("attack", "robench.attacks")
DATASETS: Registry[Any] = Registry("dataset", "robench.datasets")
BACKBONES: Registry[Any] = Registry("backbone", "robench.backbones")

REGISTRIES: dict[str, Registry[Any]] = {
    "defenses": DEFENSES,
    "attacks": ATTACKS,
    "datasets": DATASETS,
    "backbones": BACKBONES,
}

register_defense = DEFENSES.register
register_attack = ATTACKS.register
register_dataset = DATASETS.register
register_backbone = BACKBONES.register

_builtins_loaded = False


def load_builtins() -> None:
    """Import robench's own attacks, defenses, datasets and backbones (registers them)."""
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    for module in ("robench.models", "robench.data", "robench.attacks", "robench.defenses"):
        importlib.import_module(module)
