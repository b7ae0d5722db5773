"""The transfer artefact ``<root>/<track>/transfer.json``: its format, reading it with every key checked, writing it
atomically, and the per-clip results it holds (:func:`bits`, :func:`accuracy`, :func:`transfer_min`).

It holds the track's name, version and digest, the clip count, each source attack's identity, each entry's model
ids, the per-clip bits (base64 of packed bits, as records hold them) and a SHA-256 digest over the rest. A damaged
or edited file is a :class:`TransferError`. No torch: boards read it without importing it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from robench.errors import RobenchError
from robench.files import atomic_write
from robench.leaderboard.record import decode_bits
from robench.leaderboard.tracks import Track
from robench.scenarios import ATTACKED_SCENARIOS

#: the artefact's format version
TRANSFER_SCHEMA = 2
KIND = "robench-transfer"
KEYS = ("schema", "kind", "track", "clips", "attacks", "scenarios", "models", "cells", "digest")


class TransferError(RobenchError):
    """A transfer artefact that is damaged, edited or of another track: it is not used."""


def digest_of(data: dict[str, Any]) -> str:
    """SHA-256 of the artefact's canonical JSON without its ``digest``."""
    body = {k: v for k, v in data.items() if k != "digest"}
    return "sha256:" + hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"),
                                                 ensure_ascii=True).encode()).hexdigest()


def _fail(where: str, said: str) -> TransferError:
    return TransferError(f"transfer file {where}: {said}; run robench leaderboard transfer again")


def validate_transfer(data: Any, where: str, track: Track | None = None) -> dict[str, Any]:
    """``data`` checked as a transfer artefact (every key, type, bit string and the digest; with ``track``, made for
    it); a :class:`TransferError` naming the first fault."""
    if not isinstance(data, dict):
        raise _fail(where, "not a JSON object")
    if data.get("schema") != TRANSFER_SCHEMA or data.get("kind") != KIND:
        raise _fail(where, f"schema {data.get('schema')!r} / kind {data.get('kind')!r}; allowed: {TRANSFER_SCHEMA} / "
                    f"{KIND}")
    if sorted(data) != sorted(KEYS):
        raise _fail(where, f"keys {sorted(data)}; allowed: {', '.join(KEYS)}")
    if data["digest"] != digest_of(data):
        raise _fail(where, "its digest does not match its content (the file was edited or damaged)")
    t = data["track"]
    if not isinstance(t, dict) or not all(isinstance(t.get(k), str) for k in ("name", "digest")):
        raise _fail(where, "key 'track' must hold the track's name and digest")
    if track is not None and (t["name"] != track.name or t["digest"] != track.digest):
        raise _fail(where, f"made for track {t['name']} ({str(t['digest'])[:19]}…), not {track.name} "
                    f"v{track.version} ({track.digest[:19]}…)")
    clips = data["clips"]
    if not isinstance(clips, dict) or not isinstance(clips.get("count"), int) or isinstance(clips["count"], bool) \
            or clips["count"] < 1:
        raise _fail(where, "key 'clips.count' must be a positive integer")
    n = int(clips["count"])
    models = data["models"]
    if not isinstance(models, dict) or not models or not all(
            isinstance(v, dict) and isinstance(v.get("name"), str) and isinstance(v.get("model_ids"), list)
            for v in models.values()):
        raise _fail(where, "key 'models' must map entry ids to {name, model_ids}")
    scenarios = data["scenarios"]
    if not isinstance(scenarios, list) or not scenarios or any(s not in ATTACKED_SCENARIOS for s in scenarios):
        raise _fail(where, f"key 'scenarios' is {scenarios!r}; allowed: a list of R, S, RS")
    attacks = data["attacks"]
    if not isinstance(attacks, dict) or not attacks or not all(
            isinstance(a, dict) and set(a) == {"type", "label", "params", "eps"} and isinstance(a["label"], str)
            and isinstance(a["type"], str) and isinstance(a["params"], dict) and isinstance(a["eps"], (str, int, float))
            for a in attacks.values()):
        raise _fail(where, "key 'attacks' must map each source attack's key to {type, label, params, eps}")
    cells = data["cells"]
    if not isinstance(cells, dict) or sorted(cells) != sorted(attacks):
        raise _fail(where, "key 'cells' must hold one set of matrices per attack")
    for a, per in cells.items():
        if not isinstance(per, dict) or sorted(per) != sorted(scenarios):
            raise _fail(where, f"key 'cells.{a}' must hold one matrix per scenario")
        for s, matrix in per.items():
            if not isinstance(matrix, dict) or sorted(matrix) != sorted(models):
                raise _fail(where, f"key 'cells.{a}.{s}' must have one row per model")
            for src, row in matrix.items():
                if not isinstance(row, dict) or sorted(row) != sorted(models):
                    raise _fail(where, f"key 'cells.{a}.{s}.{src}' must have one column per model")
                for tgt, text in row.items():
                    key = f"cells.{a}.{s}.{src}.{tgt}"
                    if not isinstance(text, str):
                        raise _fail(where, f"key '{key}' is not a bit string")
                    try:
                        decode_bits(text, n, where, key)
                    except RobenchError as exc:
                        raise TransferError(str(exc)) from None
    return data


def read_transfer(path: str | Path, track: Track | None = None) -> dict[str, Any]:
    """Read and validate a transfer artefact (:func:`validate_transfer`)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(str(path), f"not readable JSON ({type(exc).__name__})") from None
    return validate_transfer(data, str(path), track)


def write_transfer(path: Path, data: dict[str, Any]) -> Path:
    """Write an artefact atomically, its digest set."""
    data = {**{k: v for k, v in data.items() if k != "digest"}}
    data["digest"] = digest_of(data)
    validate_transfer(data, str(path))
    return atomic_write(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def bits(data: dict[str, Any], scenario: str, attack: str | None = None) -> dict[str, dict[str, np.ndarray]]:
    """``{source: {target: per-clip correctness}}`` of a validated artefact on ``scenario``: under ``attack``'s
    adversarial clips, or (None) under every attack's (a clip counts only if the target gets each one right)."""
    n = int(data["clips"]["count"])
    keys = [attack] if attack is not None else list(data["attacks"])
    out: dict[str, dict[str, np.ndarray]] = {}
    for a in keys:
        for s, row in data["cells"][a][scenario].items():
            for t, text in row.items():
                got = decode_bits(text, n)
                row_out = out.setdefault(s, {})
                row_out[t] = row_out[t] & got if t in row_out else got
    return out


def accuracy(data: dict[str, Any], scenario: str, attack: str | None = None) -> dict[str, dict[str, float]]:
    """``{source: {target: accuracy %}}`` on ``scenario`` (under ``attack``, or every attack: :func:`bits`)."""
    return {s: {t: 100.0 * float(b.mean()) for t, b in row.items()}
            for s, row in bits(data, scenario, attack).items()}


def attack_label(data: dict[str, Any]) -> str:
    """The source attacks' labels, joined: ``PGD-20 and APGD-CE``."""
    return " and ".join(str(a["label"]) for a in data["attacks"].values())


def transfer_min(data: dict[str, Any], scenario: str,
                 among: list[str] | None = None) -> dict[str, tuple[float, str] | None]:
    """Per target, the lowest accuracy under another entry's adversarial inputs (every attack's) on ``scenario`` and
    that source (None with a single entry); ``among`` limits targets and sources to those entries."""
    acc = accuracy(data, scenario)
    ids = list(data["models"]) if among is None else [e for e in data["models"] if e in among]
    out: dict[str, tuple[float, str] | None] = {}
    for t in ids:
        others = [(acc[s][t], s) for s in ids if s != t]
        out[t] = min(others) if others else None
    return out
