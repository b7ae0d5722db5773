"""Reading protocol files: YAML, ``include:`` inheritance, ``--set`` overrides, key origins.

A protocol names another with ``include: other.yaml`` (or a list); the included file is read
first and this file's keys are merged over it (mappings merge key by key, everything else is
replaced). Paths are relative to the including file; a bare name (``paper``) is also looked up
among the bundled protocols. ``--set a.b.c=value`` overrides any key after inheritance, with the
value read as YAML (``--set scenarios=[clean,RS]``).

Every key remembers the file (or ``--set``) that gave it its value, so a validation error can
name the right file.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from robench.errors import ProtocolError

KeyPath = tuple[str, ...]


@dataclass
class RawProtocol:
    """A protocol after inheritance and overrides, before validation.

    Attributes:
        data: the merged mapping.
        path: the file the user named.
        origins: for each key path set by some file, that file (or "--set").
        profile: the profile applied (``profiles.<profile>`` merged over the protocol), if any.
    """

    data: dict[str, Any]
    path: Path
    origins: dict[KeyPath, str] = field(default_factory=dict)
    profile: str | None = None

    def file_of(self, key: KeyPath) -> str:
        """The file that set ``key`` (or its closest set ancestor)."""
        for i in range(len(key), 0, -1):
            if key[:i] in self.origins:
                return self.origins[key[:i]]
        return str(self.path)


def bundled_protocols() -> dict[str, Path]:
    """Protocols shipped with robench: ``{name: path}`` (``synthetic/defenses`` for subfolders)."""
    root = Path(str(resources.files("robench.protocols")))
    return {str(p.relative_to(root).with_suffix("")): p for p in sorted(root.rglob("*.yaml"))}


def resolve_protocol_path(name: str | Path, relative_to: Path | None = None) -> Path:
    """A protocol file from a path, a path relative to ``relative_to``, or a bundled name."""
    candidates = []
    p = Path(name)
    if relative_to is not None and not p.is_absolute():
        candidates.append(relative_to / p)
    candidates.append(p)
    if p.suffix == "":
        candidates.append(p.with_suffix(".yaml"))
    for c in candidates:
        if c.is_file():
            return c
    bundled = bundled_protocols()
    key = str(p.with_suffix("")) if p.suffix in (".yaml", ".yml") else str(p)
    key = key.removeprefix("protocols/")
    if key in bundled:
        return bundled[key]
    raise ProtocolError(
        str(relative_to) if relative_to else None, "include" if relative_to else "protocol", str(name),
        "an existing YAML file or a bundled protocol: " + ", ".join(sorted(bundled)),
    )


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProtocolError(str(path), "(file)", str(exc), "a readable YAML file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ProtocolError(str(path), f"(YAML syntax at {where})", problem, "valid YAML") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ProtocolError(str(path), "(top level)", type(data).__name__, "a mapping of protocol keys")
    return data


#: keys naming a component; an override that changes one replaces the component's parameters
IDENTITY_KEYS = ("name", "type", "backbone")
#: keys of a component entry that are settings of the protocol, not parameters of the component
ENTRY_KEYS = ("label", "overrides", "training", "model", "eps")


def merge(base: dict[str, Any], over: dict[str, Any], origins: dict[KeyPath, str], source: str,
          prefix: KeyPath = ()) -> dict[str, Any]:
    """Deep-merge ``over`` into a copy of ``base``; record ``source`` for every key ``over`` sets.

    Mappings merge key by key, anything else is replaced. Below the top level, a mapping whose
    ``name``, ``type`` or ``backbone`` the override changes describes another component: its old
    parameters are dropped (its ``label``, ``overrides``, ``training``, ``model`` and ``eps`` stay).
    """
    out = copy.deepcopy(base)
    if prefix and any(k in over and k in out and over[k] != out[k] for k in IDENTITY_KEYS):
        out = {k: v for k, v in out.items() if k in ENTRY_KEYS}
    for k, v in over.items():
        key = (*prefix, str(k))
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v, origins, source, key)
        else:
            out[k] = copy.deepcopy(v)
            _mark(v, key, origins, source)
    return out


def _mark(value: Any, key: KeyPath, origins: dict[KeyPath, str], source: str) -> None:
    origins[key] = source
    if isinstance(value, dict):
        for k, v in value.items():
            _mark(v, (*key, str(k)), origins, source)


def _load(path: Path, stack: tuple[Path, ...], origins: dict[KeyPath, str]) -> dict[str, Any]:
    path = path.resolve()
    if path in stack:
        chain = " -> ".join(str(p) for p in (*stack, path))
        raise ProtocolError(str(path), "include", chain, "an include chain without cycles")
    data = _read_yaml(path)
    includes = data.pop("include", None)
    if includes is None:
        includes = []
    elif isinstance(includes, str):
        includes = [includes]
    elif not (isinstance(includes, list) and all(isinstance(i, str) for i in includes)):
        raise ProtocolError(str(path), "include", includes, "a file name or a list of file names")
    merged: dict[str, Any] = {}
    for inc in includes:
        inc_path = resolve_protocol_path(inc, relative_to=path.parent)
        merged = merge(merged, _load(inc_path, (*stack, path), origins), {}, str(inc_path))
    return merge(merged, data, origins, str(path))


def parse_override(text: str) -> tuple[KeyPath, Any]:
    """``"a.b.c=value"`` -> ``(("a", "b", "c"), parsed YAML value)``."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ProtocolError("--set", text, text, "KEY.PATH=VALUE, e.g. training.epochs=2")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return tuple(key.split(".")), parsed


def apply_override(data: dict[str, Any], key: KeyPath, value: Any, origins: dict[KeyPath, str]) -> None:
    """Set ``data[key...] = value`` creating intermediate mappings; record the origin ``--set``."""
    node = data
    for i, part in enumerate(key[:-1]):
        if part in node and node[part] is None:
            raise ProtocolError("--set", ".".join(key[: i + 1]), None,
                                "a mapping to set a sub-key in (this protocol sets it to null: it is left out)")
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            raise ProtocolError("--set", ".".join(key[: i + 1]), nxt, "a mapping to set a sub-key in")
        node = nxt
    node[key[-1]] = value
    _mark(value, key, origins, "--set")


def apply_profile(data: dict[str, Any], profile: str, path: Path, origins: dict[KeyPath, str]) -> dict[str, Any]:
    """Merge the protocol's ``profiles.<profile>`` over it and rename it ``<name>@<profile>``.

    A profile swaps data, backbone sizes and budgets; it may not change the protocol's name, its
    tables, scenarios or seeds, or add and remove defenses and attacks (the table stays the table).
    """
    profiles = data.get("profiles") or {}
    if not isinstance(profiles, dict) or profile not in profiles:
        raise ProtocolError(str(path), "profiles", profile,
                            "a profile this protocol defines: " + (", ".join(profiles) if isinstance(profiles, dict)
                                                                   and profiles else "(none defined)"))
    over = profiles[profile]
    if not isinstance(over, dict):
        raise ProtocolError(origins.get(("profiles", profile), str(path)), f"profiles.{profile}", over,
                            "a mapping of protocol keys to override")
    for k in over:
        if k in ("name", "include", "profiles", "tables", "scenarios", "seeds", "plugins", "claims", "figures"):
            raise ProtocolError(origins.get(("profiles", profile, k), str(path)), f"profiles.{profile}.{k}", k,
                                "keys other than name, tables, scenarios, seeds, plugins, claims and figures "
                                "(a profile keeps the tables and swaps data, sizes and budgets)")
    for section in ("defenses", "attacks"):
        extra = set(over.get(section) or {}) - set(data.get(section) or {})
        if extra:
            raise ProtocolError(origins.get(("profiles", profile, section), str(path)), f"profiles.{profile}.{section}",
                                sorted(extra), f"ids the protocol already defines under {section}")
    merged = merge({k: v for k, v in data.items() if k != "profiles"}, over, {}, "")
    for vid, entry in (data.get("datasets") or {}).items():  # a dataset the protocol left out stays out
        if entry is None and isinstance(merged.get("datasets"), dict):
            merged["datasets"][vid] = None
    merged["name"] = f"{data.get('name')}@{profile}"
    return merged


def load_raw(name: str | Path, overrides: list[str] | tuple[str, ...] = (), profile: str | None = None) -> RawProtocol:
    """Read a protocol (path or bundled name) with its includes, a profile and ``--set`` overrides applied."""
    path = resolve_protocol_path(name)
    origins: dict[KeyPath, str] = {}
    data = _load(path, (), origins)
    if profile:
        data = apply_profile(data, profile, path, origins)
    for text in overrides:
        key, value = parse_override(text)
        apply_override(data, key, value, origins)
    return RawProtocol(data, path, origins, profile)
