"""Leaderboard records: one JSON file per entry and track, validated against :data:`RECORD_SCHEMA`.

A record (``leaderboard/<track>/<entry id>.json``) holds:

- ``schema``, ``status`` (``verified``: evaluated by robench; ``unverified``: the authors' reported
  numbers only, never ranked above or beside measured ones);
- ``track``: name, version and digest, eps in both units, the evaluated clips (count, digest);
- ``entry``: the entry's metadata and ``source`` (the entry file, relative to the leaderboard folder);
- ``results``: per column (``clean``, ``R``, ``S``, ``RS`` = the paper's Clean, XR, XS, XRS; robust
  columns are the worst case over the track's attacks), ``accuracy`` (percent), ``correct``, ``n`` and
  the 95% Wilson ``interval``; ``avg`` and ``ri`` (paper Eq. 13-14; ``ri`` against the track's baseline
  entry, null without one); ``worst`` = the ranking column; ``by_attack`` (each attack alone per
  scenario) and ``autoattack`` (accuracy after each AutoAttack member per scenario);
- ``flags``: the sanity flags of the entry's cells (``docs/flags.md``);
- ``reported``: the entry's numbers for this track (percent), beside ``results``;
- ``provenance``: robench version, git commit, torch version, device, precision, seeds, the model id,
  cell ids and the hash of the evaluation protocol;
- ``per_sample``: base64 bit-packed per-clip correctness of every results column (for the paired tests
  of the ranking) and ``per_sample_digest``, the SHA-256 of every cell's per-clip results, which
  ``robench leaderboard verify`` recomputes.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from robench.errors import RobenchError
from robench.store import pack_bits, unpack_bits

#: version of the record schema
RECORD_SCHEMA = 1
STATUSES = ("verified", "unverified")
COLUMNS = ("clean", "R", "S", "RS")
_TOP: dict[str, type | tuple[type, ...]] = {
    "schema": int, "status": str, "track": dict, "entry": dict, "results": dict, "flags": list,
        "reported": dict, "provenance": dict, "per_sample": dict, "per_sample_digest": (str, type(None))}
_ACCURACY: dict[str, type | tuple[type, ...]] = {"accuracy": (int, float), "correct": int, "n": int, "interval": list}


def _type_name(kind: Any) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join("null" if k is type(None) else k.__name__ for k in kinds)


def validate_record(data: Any, where: str) -> dict[str, Any]:
    """Check a record's structure and types; returns it, or raises :class:`RobenchError` naming the key."""
    if not isinstance(data, dict):
        raise RobenchError(f"record {where}: expected a JSON object")

    def fail(key: str, found: Any, allowed: str) -> RobenchError:
        return RobenchError(f"record {where}: key '{key}': found {json.dumps(found)[:80]}; allowed: {allowed}")

    for key, kind in _TOP.items():
        if key not in data:
            raise fail(key, "(missing)", _type_name(kind))
        if not isinstance(data[key], kind) or isinstance(data[key], bool):
            raise fail(key, data[key], _type_name(kind))
    if unknown := sorted(set(data) - set(_TOP)):
        raise fail(unknown[0], "(unknown key)", ", ".join(_TOP))
    if data["schema"] != RECORD_SCHEMA:
        raise fail("schema", data["schema"], f"{RECORD_SCHEMA} (the record schema this robench reads)")
    if data["status"] not in STATUSES:
        raise fail("status", data["status"], ", ".join(STATUSES))
    for key in ("name", "version", "digest"):
        if key not in data["track"]:
            raise fail(f"track.{key}", "(missing)", "the track's name, version and digest")
    for key in ("id", "name", "authors"):
        if key not in data["entry"]:
            raise fail(f"entry.{key}", "(missing)", "the entry's id, name and authors")
    if data["status"] == "verified":
        for col in (*COLUMNS, "worst"):
            cell = data["results"].get(col)
            if not isinstance(cell, dict):
                raise fail(f"results.{col}", cell, "{accuracy, correct, n, interval}")
            for key, kind in _ACCURACY.items():
                if not isinstance(cell.get(key), kind) or isinstance(cell.get(key), bool):
                    raise fail(f"results.{col}.{key}", cell.get(key), _type_name(kind))
            if not 0 <= cell["correct"] <= cell["n"] or not 0 <= cell["accuracy"] <= 100:
                raise fail(f"results.{col}", cell, "0 <= correct <= n and an accuracy in percent")
        for col in (*COLUMNS, "worst"):
            if not isinstance(data["per_sample"].get(col), str):
                raise fail(f"per_sample.{col}", data["per_sample"].get(col), "base64 bit-packed per-clip results")
        if not isinstance(data["per_sample_digest"], str):
            raise fail("per_sample_digest", data["per_sample_digest"], "sha256:<hex> of the cells' per-clip results")
    return data


def read_record(path: str | Path) -> dict[str, Any]:
    """Read and validate a record file (plain JSON: nothing in it can run)."""
    path = Path(path)
    if not path.is_file():
        raise RobenchError(f"record {path} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RobenchError(f"record {path}: not valid JSON ({exc})") from None
    return validate_record(data, str(path))


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Validate, then write atomically (a temporary file in the same folder, then a rename)."""
    validate_record(record, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(record, fh, indent=2, sort_keys=False)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def encode_bits(bits: np.ndarray) -> str:
    """Per-clip booleans -> base64 of the packed bits."""
    return base64.b64encode(pack_bits(bits)).decode("ascii")


def decode_bits(text: str, n: int) -> np.ndarray:
    """Inverse of :func:`encode_bits` for ``n`` clips."""
    bits = unpack_bits(base64.b64decode(text), n)
    if bits is None:
        raise RobenchError("record: per-sample results are missing")
    return bits.astype(bool)
