"""Zoo manifests: which weights file (digest, format, source) is which leaderboard entry's model, per track.

A manifest is a JSON file (schema :data:`MANIFEST_SCHEMA`); robench ships one per track whose weights it ships,
``robench/zoo/weights/<track>/manifest.json``, beside the files::

    {"schema": 1, "track": "synthetic",
     "entries": {"amr": {"name": "AMR",
                         "weights": {"sha256": "<64 hex>", "format": "safetensors", "size": 1594656,
                                     "source": "amr.safetensors"},
                         "model": {"protocol": "synthetic/defenses", "defense": "amr", "profile": null,
                                   "dataset": null},
                         "model_id": "89fbdfff05fbd897"}}}

``weights.source`` is a path relative to the manifest, an http(s) URL or ``hf://owner/repo/file@revision``
(:mod:`robench.zoo.fetch`); ``model`` is the entry's model as its entry file names it (a robench protocol's row), from
which robench builds the architecture exactly as ``robench leaderboard add`` did; ``model_id`` is the id of that model
(the content hash of its spec, as the entry's record lists it under ``provenance.model_ids``), checked when the model
is built, so weights are never loaded into another architecture than the one they were evaluated in.

The manifest, not the record, carries the weights: a record is sealed over its whole content, and the weights of an
entry are a distribution matter, not a result; the ``model_id`` ties the two together.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from robench.errors import RobenchError
from robench.leaderboard.entry import ProtocolModel
from robench.leaderboard.names import check_name
from robench.zoo.errors import ZooError
from robench.zoo.fetch import SHA256, WeightsSpec, source_kind
from robench.zoo.weights import FORMATS

#: version of the manifest schema this robench reads
MANIFEST_SCHEMA = 1
#: the manifest file's name in each track's folder of shipped weights
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class ZooEntry:
    """One entry of a manifest: the ``track`` and entry ``id``, its display ``name``, its ``weights``, the ``model``
    to build and that model's ``model_id``; ``manifest`` is the file it was read from (relative sources start from
    its folder)."""

    track: str
    id: str
    name: str
    weights: WeightsSpec
    model: ProtocolModel
    model_id: str
    manifest: Path

    @property
    def base(self) -> Path:
        """The folder relative weights sources start from."""
        return self.manifest.parent


def shipped_root() -> Path:
    """The folder of the weights shipped with robench (one sub-folder per track)."""
    return Path(str(resources.files("robench.zoo"))) / "weights"


def bundled_manifest(track: str) -> Path | None:
    """The manifest robench ships for ``track``, or None."""
    try:
        check_name(track, "track")
    except RobenchError:
        return None
    path = shipped_root() / track / MANIFEST
    return path if path.is_file() else None


def zoo_tracks() -> list[str]:
    """The tracks robench ships weights for."""
    root = shipped_root()
    return sorted(p.parent.name for p in root.glob(f"*/{MANIFEST}")) if root.is_dir() else []


def _fail(path: Path, key: str, found: Any, allowed: str) -> ZooError:
    shown = json.dumps(found) if isinstance(found, (str, int, float, bool, type(None))) else type(found).__name__
    return ZooError(f"zoo manifest {path}: key '{key}': found {shown}; allowed: {allowed}")


def read_manifest(path: str | Path) -> dict[str, ZooEntry]:
    """The entries of a manifest file, validated (see the module docstring); a :class:`ZooError` names the key."""
    path = Path(path).expanduser().resolve()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ZooError(f"zoo manifest {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ZooError(f"zoo manifest {path}: not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise _fail(path, "(top)", data, "a JSON object")
    if data.get("schema") != MANIFEST_SCHEMA:
        raise _fail(path, "schema", data.get("schema"), f"{MANIFEST_SCHEMA} (the manifest schema this robench reads)")
    track = data.get("track")
    try:
        check_name(track, "track")
    except RobenchError as exc:
        raise ZooError(f"zoo manifest {path}: key 'track': {exc}") from None
    entries = data.get("entries")
    if not isinstance(entries, dict):
        raise _fail(path, "entries", entries, "a mapping of entry ids to {name, weights, model, model_id}")
    return {entry_id: _entry(path, str(track), entry_id, value) for entry_id, value in entries.items()}


def _entry(path: Path, track: str, entry_id: str, value: Any) -> ZooEntry:
    key = f"entries.{entry_id}"
    try:
        check_name(entry_id, key)
    except RobenchError as exc:
        raise ZooError(f"zoo manifest {path}: {exc}") from None
    if not isinstance(value, dict):
        raise _fail(path, key, value, "{name, weights, model, model_id}")
    weights = value.get("weights")
    if not isinstance(weights, dict):
        raise _fail(path, f"{key}.weights", weights, "{sha256, format, source, size}")
    sha = weights.get("sha256")
    if not isinstance(sha, str) or not SHA256.fullmatch(sha.removeprefix("sha256:")):
        raise _fail(path, f"{key}.weights.sha256", sha, "the file's SHA-256: 64 lower-case hex digits")
    fmt = weights.get("format", "safetensors")
    if fmt not in FORMATS:
        raise _fail(path, f"{key}.weights.format", fmt, ", ".join(FORMATS))
    source = weights.get("source")
    if not isinstance(source, str) or not source:
        raise _fail(path, f"{key}.weights.source", source, "a path relative to the manifest, an http(s) URL or "
                    "hf://owner/repo/file@revision")
    try:
        source_kind(source)
    except ZooError as exc:
        raise ZooError(f"zoo manifest {path}: key '{key}.weights.source': {exc}") from None
    size = weights.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise _fail(path, f"{key}.weights.size", size, "null or the file's size in bytes")
    model = value.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("protocol"), str) or not isinstance(
            model.get("defense"), str):
        raise _fail(path, f"{key}.model", model, "{protocol, defense, profile, dataset}: a robench protocol's row")
    for k in ("profile", "dataset"):
        if model.get(k) is not None and not isinstance(model[k], str):
            raise _fail(path, f"{key}.model.{k}", model[k], "null or a string")
    model_id = value.get("model_id")
    if not isinstance(model_id, str) or not model_id:
        raise _fail(path, f"{key}.model_id", model_id, "the model id its record lists (provenance.model_ids)")
    name = value.get("name", entry_id)
    if not isinstance(name, str):
        raise _fail(path, f"{key}.name", name, "a string")
    spec = WeightsSpec(sha.removeprefix("sha256:"), fmt, source, size)
    return ZooEntry(track, entry_id, name, spec, ProtocolModel(model["protocol"], model["defense"],
                                                               model.get("profile"), model.get("dataset")),
                    model_id, path)


def find_entry(track: str, entry: str, manifest: str | Path | None = None) -> ZooEntry | None:
    """``entry`` of ``track`` in ``manifest`` (default: the one robench ships for the track), or None."""
    path = Path(manifest) if manifest is not None else bundled_manifest(track)
    if path is None:
        return None
    entries = read_manifest(path)
    found = entries.get(entry)
    return found if found is not None and found.track == track else None


def zoo_entry(track: str, entry: str, manifest: str | Path | None = None) -> ZooEntry:
    """Like :func:`find_entry`, but a :class:`ZooError` saying what there is when the entry is not there."""
    found = find_entry(track, entry, manifest)
    if found is not None:
        return found
    path = Path(manifest) if manifest is not None else bundled_manifest(track)
    if path is None:
        shipped = ", ".join(zoo_tracks()) or "none"
        raise ZooError(f"robench ships no weights for track {track!r} (tracks with shipped weights: {shipped}); give "
                       "a zoo manifest that lists the entry")
    entries = read_manifest(path)
    listed = sorted(e for e, z in entries.items() if z.track == track)
    raise ZooError(f"zoo manifest {path} has no entry {entry!r} of track {track!r}; entries: "
                   f"{', '.join(listed) or 'none'}")
