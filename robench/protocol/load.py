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


def resolve_protocol_path(name: str | Path, relative_to: Path | None = None, including: Path | None = None) -> Path:
    """A protocol file from a path, a path relative to ``relative_to``, or a bundled name.

    ``including`` is the file whose ``include:`` names it (named by the error if there is no such file).
    """
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
    bundled_key = str(p.with_suffix("")) if p.suffix in (".yaml", ".yml") else str(p)
    bundled_key = bundled_key.removeprefix("protocols/")
    if bundled_key in bundled:
        return bundled[bundled_key]
    file, key = (str(including or relative_to), "include") if relative_to is not None else (None, "protocol")
    for c in candidates:
        if c.is_dir():
            raise ProtocolError(file or str(c), key if file else "(file)", f"{c} (a directory)",
                                "a YAML protocol file, e.g. " + str(c / "protocol.yaml"))
    raise ProtocolError(
        file, key, str(name),
        "an existing YAML file or a bundled protocol: " + ", ".join(sorted(bundled)),
        "no file " + " or ".join(str(c) for c in dict.fromkeys(candidates)),
    )


#: most values a YAML document may hold once its aliases are expanded (a large protocol has a few thousand)
MAX_YAML_VALUES = 100_000
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Refused(yaml.YAMLError):
    """A YAML document robench does not read: the key (or what is wrong), what was found, what is allowed."""

    def __init__(self, key: str, found: object, allowed: str, hint: str = "") -> None:
        super().__init__(f"{key}: {found}")
        self.key, self.found, self.allowed, self.hint = key, found, allowed, hint


class _ProtocolLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (plain data only) that names the tags it refuses instead of a generic error."""

    def construct_undefined(self, node: yaml.Node) -> Any:
        line = f"line {node.start_mark.line + 1}" if node.start_mark else "?"
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        raise _Refused(f"(YAML tag at {line})", tag, "plain YAML values (mappings, lists, strings, numbers, "
                       "booleans, null)", "robench never builds Python objects from a protocol file")


_ProtocolLoader.add_constructor(None, _ProtocolLoader.construct_undefined)


def _children(node: yaml.Node) -> list[tuple[str, yaml.Node]]:
    """(key, child) pairs of a composed node: mapping values by key, list items by index."""
    if isinstance(node, yaml.MappingNode):
        return [(k.value if isinstance(k, yaml.ScalarNode) else "?", v) for k, v in node.value]
    if isinstance(node, yaml.SequenceNode):
        return [(str(i), v) for i, v in enumerate(node.value)]
    return []


def _check_composed(root: yaml.Node) -> None:
    """Refuse alias bombs, recursive aliases and duplicate keys before anything is built from ``root``."""
    size: dict[int, int] = {}  # node -> values it expands to (aliases share nodes: counted once per use)
    started: set[int] = set()  # nodes on the current path (a child among them is a recursive alias)
    todo: list[tuple[yaml.Node, bool]] = [(root, False)]
    while todo:
        node, finished = todo.pop()
        if finished:
            started.discard(id(node))
            size[id(node)] = 1 + sum(size[id(child)] for _, child in _children(node))
            if size[id(node)] > MAX_YAML_VALUES:
                raise _Refused("(YAML anchors and aliases)", f"a document of more than {MAX_YAML_VALUES} values "
                               f"once its aliases (*name) are expanded ({size[id(node)]} in the value at line "
                               f"{node.start_mark.line + 1})", "a protocol of plain keys and values",
                               "share settings between protocols with include:")
            continue
        if id(node) in size:
            continue
        started.add(id(node))
        todo.append((node, True))
        for _, child in _children(node):
            if id(child) in started:
                raise _Refused("(YAML anchors and aliases)", f"a recursive alias at line {child.start_mark.line + 1} "
                               "(a value that contains itself)", "aliases to values defined before them")
            todo.append((child, False))
    paths: list[tuple[yaml.Node, tuple[str, ...]]] = [(root, ())]  # bounded by the size just checked
    while paths:
        node, path = paths.pop()
        if isinstance(node, yaml.MappingNode):
            seen: dict[tuple[str, str], str] = {}
            for k, _value in node.value:
                if isinstance(k, yaml.ScalarNode) and k.tag != _MERGE_TAG:
                    mark = k.start_mark
                    line = f"line {mark.line + 1}" + (f", column {mark.column + 1}" if not mark.line else "")
                    if (k.tag, k.value) in seen:
                        raise _Refused(".".join((*path, k.value)), f"the key a second time at {line} (first at "
                                       f"{seen[(k.tag, k.value)]})", "each key once in a mapping",
                                       "YAML would silently keep only the last value; remove one")
                    seen[(k.tag, k.value)] = line
        paths.extend(reversed([(child, (*path, key)) for key, child in _children(node)]))


def parse_yaml(text: str) -> Any:
    """One YAML document as plain data (``yaml.safe_load`` semantics), refusing what a protocol never needs:
    Python tags, alias bombs and recursive aliases, and duplicate keys (raises :class:`yaml.YAMLError`)."""
    loader = _ProtocolLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_composed(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ProtocolError(str(path), "(file)", exc.strerror or str(exc), "a readable YAML file") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(str(path), "(file)", f"bytes that are not UTF-8 text (byte 0x{raw[exc.start]:02x} at "
                            f"offset {exc.start})", "a YAML text file in UTF-8", "is it the right file?") from None
    try:
        data = parse_yaml(text)
    except _Refused as exc:
        raise ProtocolError(str(path), exc.key, exc.found, exc.allowed, exc.hint) from None
    except yaml.reader.ReaderError as exc:
        raise ProtocolError(str(path), f"(character at offset {exc.position})", f"#x{exc.character:04x}: {exc.reason}",
                            "printable YAML text") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        problem = " ".join(filter(None, (getattr(exc, "context", None), getattr(exc, "problem", None)))) or str(exc)
        raise ProtocolError(str(path), f"(YAML syntax at {where})", problem, "valid YAML") from None
    except RecursionError:
        raise ProtocolError(str(path), "(YAML nesting)", "values nested too deeply to read",
                            "a protocol of a few levels of mappings and lists") from None
    if data is None:
        raise ProtocolError(str(path), "(top level)", "an empty document",
                            "a mapping of protocol keys (name, dataset, model, ...; see the bundled quickstart.yaml)")
    if not isinstance(data, dict):
        raise ProtocolError(str(path), "(top level)", f"{type(data).__name__} {str(data)[:40]}",
                            "a mapping of protocol keys")
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
        raise ProtocolError(str(stack[-1]) if stack else str(path), "include", chain, "an include chain without cycles")
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
        inc_path = resolve_protocol_path(inc, relative_to=path.parent, including=path)
        merged = merge(merged, _load(inc_path, (*stack, path), origins), {}, str(inc_path))
    return merge(merged, data, origins, str(path))


def parse_override(text: str) -> tuple[KeyPath, Any]:
    """``"a.b.c=value"`` -> ``(("a", "b", "c"), parsed YAML value)``."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ProtocolError("--set", text, text, "KEY.PATH=VALUE, e.g. training.epochs=2")
    try:
        parsed = parse_yaml(value) if value.strip() else ""
    except _Refused as exc:
        raise ProtocolError("--set", key if exc.key.startswith("(") else f"{key}.{exc.key}", exc.found, exc.allowed,
                            exc.hint) from None
    except (yaml.YAMLError, RecursionError):
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
