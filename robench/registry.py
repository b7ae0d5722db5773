"""One generic registry type, used for defenses, attacks, datasets and backbones.

A registry maps a name to a factory (a class or a function). Entries come from three places:

* built-ins, registered with a decorator when their module is imported
  (``@register_defense("at")`` in ``robench/defenses/at.py``);
* third-party packages, through Python entry points in the groups ``robench.defenses``,
  ``robench.attacks``, ``robench.datasets`` and ``robench.backbones``; an entry point may name
  the object itself (``my_pkg.defense:MyDefense``) or a module whose import registers it;
* plugin files listed under ``plugins:`` in a protocol (see :func:`load_plugin_file`).

Unknown names raise :class:`~robench.errors.UnknownNameError`, which lists the valid names and
suggests the closest ones.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import sys
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from robench.errors import RobenchError, UnknownNameError

T = TypeVar("T", bound=Callable[..., Any])  # a class or a factory function


class Registrable:
    """What every registered component class declares: defenses, attacks, datasets and backbones.

    A component's parameters are the named, typed arguments of its constructor (a defense's
    dataclass fields). Robench reads them from the signature, validates a protocol's values
    against them and fills in the defaults: the result, with :attr:`version` (or, outside robench,
    the content of the file that defines the class), is the component's identity
    (:mod:`robench.identity`). :func:`check_component` refuses, at registration, a class whose
    parameters cannot be read that way.
    """

    #: code version of a built-in component: bump it whenever a change to its code can change a
    #: result (``tests/test_identity.py`` fails until you do); part of every model and cell id
    version: ClassVar[int] = 1
    #: parameters that name a file: identified by the file's content (SHA-256), not by its path
    file_params: ClassVar[tuple[str, ...]] = ()
    #: parameters that say where something is, not what it is (a data folder): left out of identities
    location_params: ClassVar[tuple[str, ...]] = ()
    #: constructor arguments robench fills at run time (an attack's eps, a dataset's cache folder),
    #: not protocol keys
    harness_params: ClassVar[tuple[str, ...]] = ()
    #: parameters added after results were stored, left out of identities while they have their
    #: default, so that the ids of results made before they existed stay the same; a class written
    #: before them need not take them (it then does not support what they turn on)
    optional_params: ClassVar[tuple[str, ...]] = ()
    #: name under which the class was registered (set by the registry)
    registry_name: ClassVar[str] = ""


def check_component(cls: Any, kind: str, base: type[Registrable], name: str) -> None:
    """Refuse a component class whose parameters robench cannot read (raises :class:`RobenchError`).

    Required: a class subclassing ``base`` (which subclasses :class:`Registrable`); a constructor
    without ``*args``/``**kwargs`` whose every parameter has a resolvable type annotation and a
    plain default (None, bool, int, float, str, or lists and mappings of those); for defenses, the
    ``@dataclass`` decorator on the class itself (its fields are its parameters); declared
    ``file_params``/``location_params``/``harness_params`` that name real parameters.
    """
    label = f"{kind} '{name}'"
    if not inspect.isclass(cls):
        raise RobenchError(f"{label}: register a class subclassing {base.__name__}, not {cls!r}")
    if not issubclass(cls, base):
        raise RobenchError(f"{label}: {cls.__name__} must subclass {base.__module__}.{base.__name__}")
    if kind == "defense" and "__dataclass_params__" not in cls.__dict__:
        raise RobenchError(f"{label}: decorate {cls.__name__} with @dataclass (below @register_defense): a "
                           "defense's dataclass fields are its parameters, and robench cannot read them otherwise")
    init = cls.__init__
    try:
        hints = typing.get_type_hints(init)
    except Exception as exc:
        raise RobenchError(f"{label}: the type annotations of {cls.__name__}.__init__ cannot be resolved "
                           f"({type(exc).__name__}: {exc}); import the types they name") from None
    fields: dict[str, dataclasses.Field[Any]] = (
        {f.name: f for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else {})
    params = [p for n, p in inspect.signature(init).parameters.items() if n != "self"]
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise RobenchError(f"{label}: {cls.__name__}.__init__ takes {'*' if p.kind == p.VAR_POSITIONAL else '**'}"
                               f"{p.name}, so its parameters cannot be read; declare each parameter as a typed "
                               "keyword argument with a default")
    for p in params:
        if p.name not in hints:
            raise RobenchError(f"{label}: parameter '{p.name}' of {cls.__name__}.__init__ has no type annotation; "
                               "annotate it (e.g. 'sigma: float = 0.01') so robench can validate and identify it")
        default = p.default
        factory = fields[p.name].default_factory if p.name in fields else dataclasses.MISSING
        if factory is not dataclasses.MISSING:
            default = factory()
        if default is not p.empty and not _plain(default):
            raise RobenchError(f"{label}: the default of '{p.name}' ({default!r}) is not a plain value; use None, a "
                               "bool, int, float, str, or a list or mapping of those")
    names = {p.name for p in params}
    for attr in ("file_params", "location_params", "harness_params", "optional_params"):
        # (an optional harness parameter a class does not take is a feature it does not support)
        unknown = [n for n in getattr(cls, attr) if n not in names
                   and not (attr in ("harness_params", "optional_params") and n in cls.optional_params)]
        if unknown:
            raise RobenchError(f"{label}: {attr} names {unknown}, which are not parameters of "
                               f"{cls.__name__}.__init__ ({', '.join(sorted(names)) or 'none'})")
    if not isinstance(cls.version, int) or cls.version < 1:
        raise RobenchError(f"{label}: version must be an integer >= 1, got {cls.version!r}")


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


@dataclass
class Entry:
    """One registered component."""

    name: str
    target: Any  # the class, or a "module:attr" string until first use
    description: str
    source: str  # "builtin", "entry-point:<dist>" or "plugin:<path>"
    check: Callable[[Any], None] | None = None  # the registry's check, run when a lazy target loads

    def load(self) -> Any:
        if isinstance(self.target, str):
            module, _, attr = self.target.partition(":")
            obj: Any = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
            if self.check is not None:
                self.check(obj)
            self.target = obj
        return self.target


def _first_line(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


class Registry(Generic[T]):
    """Name -> class mapping for one kind of component.

    Args:
        kind: singular noun used in messages ("defense").
        group: entry-point group read by :meth:`load_entry_points` ("robench.defenses").
        base: if given, registered objects must be classes subclassing it; a ``"module:attr"``
            string is imported on first registration. For a :class:`Registrable` base,
            :func:`check_component` also checks that the class's parameters can be read.
    """

    def __init__(self, kind: str, group: str, base: type | str | None = None) -> None:
        self.kind = kind
        self.group = group
        self._base = base
        self._entries: dict[str, Entry] = {}
        self._aliases: dict[str, str] = {}
        self._entry_points_loaded = False

    @property
    def base(self) -> type | None:
        """The class every registered component subclasses (imported on first use), or None."""
        if isinstance(self._base, str):
            module, _, attr = self._base.partition(":")
            base: type = getattr(importlib.import_module(module), attr)
            self._base = base
        return self._base

    def check(self, obj: Any, name: str | None = None) -> None:
        """Raise unless ``obj`` may be registered here (see :func:`check_component`)."""
        base = self.base
        if base is None:
            return
        if issubclass(base, Registrable):
            check_component(obj, self.kind, base, name or str(getattr(obj, "__name__", "?")))
        elif not (inspect.isclass(obj) and issubclass(obj, base)):
            raise TypeError(f"{self.kind} '{name}': {obj!r} must subclass {base.__name__}")

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
        if not isinstance(obj, str):
            self.check(obj, name)
        module = getattr(obj, "__module__", "") if not isinstance(obj, str) else ""
        existing = self._entries.get(name)
        # an edited plugin file imported again replaces its own components
        same_file = existing is not None and module in PLUGIN_DIGESTS and \
            getattr(existing.target, "__module__", None) == module
        if existing is not None and not replace and existing.target is not obj and not same_file:
            raise RobenchError(
                f"{self.kind} '{name}' is already registered (from {existing.source}); "
                "choose another name or pass replace=True"
            )
        if source == "builtin" and module and not module.startswith("robench."):
            plugin = sys.modules.get(module)
            source = f"plugin:{plugin.__file__}" if module in PLUGIN_DIGESTS and plugin is not None \
                else f"module:{module}"
        desc = description if description is not None else ("" if isinstance(obj, str) else _first_line(obj))
        self._entries[name] = Entry(name, obj, desc, source, lambda o: self.check(o, name))
        for alias in aliases:
            self._aliases[alias] = name
        if inspect.isclass(obj):  # lets a class know the name it was registered under
            cls: Any = obj  # any class: Registrable, or whatever a registry without a base holds
            cls.registry_name = name

    def forget_module(self, module: str) -> None:
        """Drop the entries whose class was defined in ``module`` (a plugin file that failed to import)."""
        for name in [n for n, e in self._entries.items() if getattr(e.target, "__module__", None) == module]:
            del self._entries[name]

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


#: SHA-256 of each plugin file's content as it was imported (module name -> digest)
PLUGIN_DIGESTS: dict[str, str] = {}


def plugin_module_name(path: Path) -> str:
    """The module name a plugin file is imported under."""
    return "robench_plugin_" + "".join(c if c.isalnum() else "_" for c in str(path.resolve()))


def load_plugin_file(path: str | Path) -> None:
    """Import a Python file so that its ``@register_*`` decorators run.

    Used for the protocol's ``plugins:`` list. Importing the same unchanged file twice is a
    no-op; a file edited since it was imported is imported again and its components replace the
    old ones. The file's content hash, taken from the very bytes that are executed, becomes part
    of the identity of every component it defines (:mod:`robench.identity`), so editing a plugin
    file never reuses a model or cell computed with the old code.
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise RobenchError(f"plugin file not found: {path}")
    mod_name = plugin_module_name(path)
    try:
        source = path.read_bytes()
    except OSError as exc:
        raise RobenchError(f"cannot read plugin file {path}: {exc}") from None
    digest = "sha256:" + hashlib.sha256(source).hexdigest()
    if mod_name in sys.modules and PLUGIN_DIGESTS.get(mod_name) == digest:
        return
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None:
        raise RobenchError(f"cannot import plugin file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    PLUGIN_DIGESTS[mod_name] = digest
    try:
        exec(compile(source, str(path), "exec"), module.__dict__)  # the bytes hashed above, nothing else
    except Exception as exc:
        del sys.modules[mod_name]
        del PLUGIN_DIGESTS[mod_name]
        for registry in REGISTRIES.values():
            registry.forget_module(mod_name)
        raise RobenchError(f"plugin file {path} failed to import: {type(exc).__name__}: {exc}") from exc


DEFENSES: Registry[Any] = Registry("defense", "robench.defenses", "robench.defenses.base:Defense")
ATTACKS: Registry[Any] = Registry("attack", "robench.attacks", "robench.attacks.base:Attack")
DATASETS: Registry[Any] = Registry("dataset", "robench.datasets", "robench.data.base:DatasetProvider")
BACKBONES: Registry[Any] = Registry("backbone", "robench.backbones", "robench.models.backbone:Backbone")
CORRUPTIONS: Registry[Any] = Registry("corruption", "robench.corruptions", "robench.corruptions.base:Corruption")

REGISTRIES: dict[str, Registry[Any]] = {
    "defenses": DEFENSES,
    "attacks": ATTACKS,
    "datasets": DATASETS,
    "backbones": BACKBONES,
    "corruptions": CORRUPTIONS,
}

register_defense = DEFENSES.register
register_attack = ATTACKS.register
register_dataset = DATASETS.register
register_backbone = BACKBONES.register
register_corruption = CORRUPTIONS.register

_builtins_loaded = False


def load_builtins() -> None:
    """Import robench's own attacks, defenses, datasets, backbones and corruptions (registers them)."""
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    for module in ("robench.models", "robench.data", "robench.attacks", "robench.defenses", "robench.corruptions"):
        importlib.import_module(module)
