"""Leaderboard entries: a model plus who made it and what they reported, in a validated, versioned schema.

An entry is a YAML or JSON file (schema :data:`ENTRY_SCHEMA`)::

    schema: 1
    id: my-model                      # optional: the file name without extension
    name: My robust two-stream model
    authors: [A. Author, B. Author]
    paper: https://arxiv.org/abs/...  # or null
    venue: CVPR 2026                  # or null
    architecture: I3D + HCN, late fusion
    defense: adversarial training on both inputs
    extra_data: none                  # data beyond the track's training split
    forward_passes: 1                 # per prediction (randomised defenses: more)
    reported: {ntu60-xsub: {clean: 87.3, R: 41.0, S: 60.2, RS: 30.1}}   # percent, per track
    footnote: null
    model: ...

``model`` is one of:

- a robench protocol's trained model: ``{protocol: NAME_OR_PATH, defense: ROW_ID, profile: null,
  dataset: null}`` (``dataset``: the protocol's dataset id when it has several; ``profile``: e.g.
  ``synthetic``);
- an outside model: ``{plugins: [arch.py], rgb: {backbone: NAME, ...}, skeleton: {backbone: NAME, ...},
  weights: model.pt}``. ``arch.py`` registers the backbones (``@robench.register_backbone``), the weights
  are the whole :class:`~robench.models.TwoStreamModel`'s ``state_dict()``, read with
  ``torch.load(weights_only=True)``. Paths are relative to the entry file.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from robench.errors import RobenchError
from robench.leaderboard.names import ALLOWED, NAME, resolve

if TYPE_CHECKING:  # (an annotation only: reading an entry file does not import torch)
    from robench.models.provided import ProvidedModel

#: version of the entry schema this robench reads
ENTRY_SCHEMA = 1
#: keys of ``reported`` numbers: the scenarios of an attack track, and a corruption track's ``mean``
REPORTED_KEYS = ("clean", "R", "S", "RS", "avg", "ri", "worst", "mean")
_REQUIRED: dict[str, type] = {"name": str, "authors": list, "architecture": str, "defense": str, "model": dict}
_OPTIONAL: dict[str, type] = {
    "schema": int, "id": str, "paper": str, "venue": str, "extra_data": str, "forward_passes": int,
             "reported": dict, "footnote": str}


@dataclass(frozen=True)
class ProtocolModel:
    """A model trained by a robench protocol: its row ``defense`` on dataset ``dataset`` of ``protocol``."""

    protocol: str
    defense: str
    profile: str | None = None
    dataset: str | None = None


@dataclass(frozen=True)
class OutsideModel:
    """A model trained elsewhere: backbones registered by ``plugins``, the whole model's ``weights``
    (absolute paths after loading)."""

    plugins: tuple[Path, ...]
    backbones: dict[str, dict[str, Any]]
    weights: Path


@dataclass(frozen=True)
class ObjectModel:
    """A model object handed over in Python (``robench.evaluate``): evaluated as it is, identified by content."""

    model: ProvidedModel


@dataclass(frozen=True)
class Entry:
    """A validated entry (see the module docstring); ``data`` is the file's mapping as read."""

    id: str
    name: str
    authors: tuple[str, ...]
    architecture: str
    defense: str
    model: ProtocolModel | OutsideModel | ObjectModel
    path: Path
    paper: str | None = None
    venue: str | None = None
    extra_data: str = "none"
    forward_passes: int = 1
    reported: dict[str, dict[str, float]] = field(default_factory=dict)
    footnote: str | None = None
    data: dict[str, Any] = field(default_factory=dict, repr=False)

    def metadata(self) -> dict[str, Any]:
        """What a record keeps of the entry (no file paths)."""
        return {"id": self.id, "name": self.name, "authors": list(self.authors), "paper": self.paper,
                "venue": self.venue, "architecture": self.architecture, "defense": self.defense,
                "extra_data": self.extra_data, "forward_passes": self.forward_passes, "footnote": self.footnote}


_KIND = {str: "a string", int: "an integer", list: "a list", dict: "a mapping"}


def _fail(path: Path, key: str, found: Any, allowed: str) -> RobenchError:
    shown = json.dumps(found) if isinstance(found, (str, int, float, bool, type(None))) else type(found).__name__
    return RobenchError(f"entry {path}: key '{key}': found {shown}; allowed: {allowed}")


def read_mapping(path: Path, what: str) -> dict[str, Any]:
    """A YAML or JSON file's top-level mapping (``yaml.safe_load``: plain data only)."""
    if not path.is_file():
        raise RobenchError(f"{what} {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise RobenchError(f"{what} {path}: not valid YAML or JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise RobenchError(f"{what} {path}: expected a mapping, found {type(data).__name__}")
    return data


def load_entry(path: str | Path) -> Entry:
    """Read and validate an entry file; raises :class:`RobenchError` naming the file, key and what is allowed."""
    path = resolve(Path(path).expanduser(), "entry")
    data = read_mapping(path, "entry")
    schema = data.get("schema", ENTRY_SCHEMA)
    if schema != ENTRY_SCHEMA:
        raise _fail(path, "schema", schema, f"{ENTRY_SCHEMA} (the entry schema this robench reads)")
    unknown = sorted(set(data) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise _fail(path, unknown[0], "(unknown key)", ", ".join([*_REQUIRED, *_OPTIONAL]))
    for key, kind in _REQUIRED.items():
        if key not in data:
            raise _fail(path, key, "(missing)", f"{_KIND[kind]} (required)")
    for key, kind in {**_REQUIRED, **_OPTIONAL}.items():
        value = data.get(key)
        if value is None and key in _OPTIONAL:
            continue
        if not isinstance(value, kind) or isinstance(value, bool):
            raise _fail(path, key, value, _KIND[kind])
    if not data["name"].strip():
        raise _fail(path, "name", data["name"], "a non-empty name")
    if not data["authors"] or not all(isinstance(a, str) and a.strip() for a in data["authors"]):
        raise _fail(path, "authors", data["authors"], "a non-empty list of author names")
    entry_id = data.get("id") or path.stem
    if not isinstance(entry_id, str) or not NAME.fullmatch(entry_id) or ".." in entry_id:
        raise _fail(path, "id", entry_id, ALLOWED)
    passes = data.get("forward_passes", 1)
    if passes < 1:
        raise _fail(path, "forward_passes", passes, "an integer >= 1")
    paper = data.get("paper")
    if paper is not None and not re.match(r"^https?://\S+$", paper):
        raise _fail(path, "paper", paper, "null or an http(s) link")
    reported = _reported(path, data.get("reported") or {})
    return Entry(id=entry_id, name=data["name"].strip(), authors=tuple(a.strip() for a in data["authors"]),
                 architecture=data["architecture"], defense=data["defense"], model=_model(path, data["model"]),
                 path=path, paper=paper, venue=data.get("venue"), extra_data=data.get("extra_data") or "none",
                 forward_passes=passes, reported=reported, footnote=data.get("footnote"), data=data)


def _reported(path: Path, value: dict[str, Any]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for track, numbers in value.items():
        if not isinstance(numbers, dict):
            raise _fail(path, f"reported.{track}", numbers, f"a mapping of {', '.join(REPORTED_KEYS)} to percentages")
        for key, number in numbers.items():
            where = f"reported.{track}.{key}"
            if key not in REPORTED_KEYS:
                raise _fail(path, where, "(unknown key)", ", ".join(REPORTED_KEYS))
            if not isinstance(number, (int, float)) or isinstance(number, bool):
                raise _fail(path, where, number, "a number (percent)")
            if key not in ("ri",) and not 0 <= number <= 100:
                raise _fail(path, where, number, "a percentage in 0..100")
        out[str(track)] = {k: float(v) for k, v in numbers.items()}
    return out


def _model(path: Path, spec: dict[str, Any]) -> ProtocolModel | OutsideModel:
    if "protocol" in spec:
        allowed = {"protocol", "defense", "profile", "dataset"}
        if unknown := sorted(set(spec) - allowed):
            raise _fail(path, f"model.{unknown[0]}", "(unknown key)", ", ".join(sorted(allowed)))
        for key in ("protocol", "defense"):
            if not isinstance(spec.get(key), str):
                raise _fail(path, f"model.{key}", spec.get(key), "a string (required)")
        for key in ("profile", "dataset"):
            if spec.get(key) is not None and not isinstance(spec[key], str):
                raise _fail(path, f"model.{key}", spec[key], "null or a string")
        protocol = spec["protocol"]
        local = path.parent / protocol
        return ProtocolModel(str(local) if local.is_file() else protocol, spec["defense"], spec.get("profile"),
                             spec.get("dataset"))
    allowed = {"plugins", "rgb", "skeleton", "weights"}
    if unknown := sorted(set(spec) - allowed):
        raise _fail(path, f"model.{unknown[0]}", "(unknown key)",
                    "{protocol, defense, profile, dataset} for a protocol's model or "
                    "{plugins, rgb, skeleton, weights} for an outside model")
    if not isinstance(spec.get("weights"), str):
        raise _fail(path, "model.weights", spec.get("weights"), "the path of the model's weights file (required)")
    weights = resolve(path.parent / spec["weights"], f"entry {path}: key 'model.weights'")
    if not weights.is_file():
        raise _fail(path, "model.weights", spec["weights"], "an existing weights file (relative to the entry)")
    plugins_raw = spec.get("plugins") or []
    if not isinstance(plugins_raw, list) or not all(isinstance(p, str) for p in plugins_raw):
        raise _fail(path, "model.plugins", plugins_raw, "a list of Python files that register the backbones")
    plugins = tuple(resolve(path.parent / p, f"entry {path}: key 'model.plugins'") for p in plugins_raw)
    for raw, p in zip(plugins_raw, plugins, strict=True):
        if not p.is_file():
            raise _fail(path, "model.plugins", raw, "existing Python files (relative to the entry)")
    backbones = {m: spec[m] for m in ("rgb", "skeleton") if spec.get(m) is not None}
    if not backbones:
        raise _fail(path, "model", "(no backbone)", "rgb and/or skeleton: {backbone: NAME, ...parameters}")
    for m, b in backbones.items():
        if not isinstance(b, dict) or not isinstance(b.get("backbone"), str):
            raise _fail(path, f"model.{m}", b, "{backbone: NAME, ...parameters}")
    return OutsideModel(plugins, backbones, weights)
