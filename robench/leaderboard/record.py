"""Leaderboard records: one JSON file per entry and track, whose every number follows from its per-clip results.

A record (``leaderboard/<track>/<entry id>.json``, schema :data:`RECORD_SCHEMA`) holds:

- ``schema``, ``status`` (``verified``: evaluated by robench; ``unverified``: the authors' reported
  numbers only, never ranked beside measured ones);
- ``track``: name, version and digest, eps in both units, ``rank_by``, the evaluated clips;
- ``entry``: the entry's metadata and ``source`` (its file, relative to the leaderboard folder);
- ``results``: ``clean``, ``R``, ``S``, ``RS`` (the paper's Clean, XR, XS, XRS; attacked columns are the
  worst case over the track's attacks, per clip) and ``worst`` (the ranking column), each with
  ``accuracy`` (percent), ``correct``, ``n`` and the 95% Wilson ``interval``; ``avg`` and ``ri`` (paper
  Eq. 13-14; ``ri`` against the track's baseline entry, recomputed when a board is rendered);
  ``by_attack`` (each attack alone) and ``autoattack`` (the accuracy after each AutoAttack member);
- ``flags``, ``reported`` (the authors' numbers), ``provenance`` (robench version, git commit, torch,
  device, precision, seeds, model and cell ids, protocol hash, when it was evaluated) and
  ``verification`` (when ``robench leaderboard verify`` last re-evaluated it, and with which robench);
- ``per_sample``: the per-clip results, bit-packed in base64: ``clean``, each attack's per scenario
  (``attacks``) and each AutoAttack member's (``members``); ``per_sample_digest`` over them; and ``replaced``, per
  input, the per-clip results with that input replaced by another action's clip's (``results.replaced`` shows
  them: :mod:`robench.leaderboard.reliance`);
- ``challenges`` (optional; absent until someone challenges the entry): the accepted external evaluations
  (``robench leaderboard challenge``, :mod:`robench.leaderboard.challenge`), in the order they were accepted, each
  ``{author, attack, date, sha256, scenario, clips, clips_broken, robench, device}``: who submitted it, what the
  attack was, when it was checked, the SHA-256 of the file of adversarial inputs, the scenario they attack, how
  many clips the file held and the clips (positions in the track's evaluated clip list, as in ``per_sample``) it
  broke: clips robust in the record's worst case on that scenario before it (robench's own attacks and every
  earlier challenge) that its adversarial inputs fool. The attacked columns (``R``, ``S``, ``RS``), ``worst`` and
  ``avg`` count those clips as not robust (:func:`challenged_columns`); ``by_attack`` and ``per_sample`` stay
  robench's own attacks, so the numbers before the challenges follow from the bits alone;
- ``seal``: the SHA-256 of the rest of the record in canonical JSON, or its HMAC-SHA256 with the key in
  ``$ROBENCH_RECORD_KEY``.

A record of an attack track under the plausible-skeleton threat model says so in ``track.plausible`` (the
limits every skeleton attack kept to). A record of a **corruption track** (``track.kind: corruptions``)
has, instead of the attacked columns: ``track.corruptions`` (the severities, and each corruption's family,
input and whether it is graded); ``results.clean``; ``results.corruptions`` (per corruption, the summary at
each evaluated severity and ``accuracy``, the mean over the track's severities); ``results.families`` (the
mean of each family's corruptions); ``results.mean`` (``accuracy``, ``correct``, ``n`` over every (clip,
corruption, severity) outcome: the ranking column, equal to the mean of the per-corruption accuracies; no
interval, as these outcomes are not independent draws); and ``per_sample.corruptions`` (the per-clip
results per corruption and severity). A corruption with one level (a missing input, a person swap) is
evaluated once, at the first severity, and counted at every severity (:func:`expand`).

Reading a record (:func:`read_record`) checks all of it: the structure and types, the seal, and then
every number against what the per-clip results give (:func:`check_numbers`). A record whose numbers
disagree with its own bits, or that was edited after robench wrote it, is refused with the field
named. The seal catches edits made without robench; a keyed seal (HMAC) also catches a forger who
recomputes it, as long as the key stays with whoever runs the board. ``robench leaderboard verify``
goes further and re-evaluates the entry.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from robench.errors import RobenchError
from robench.files import atomic_write
from robench.leaderboard.names import check_name
from robench.report.metrics import avg, wilson_interval
from robench.store import pack_bits, unpack_bits

#: version of the record schema (2: per-clip results of every attack and member, rank_by, the seal)
RECORD_SCHEMA = 2
STATUSES = ("verified", "unverified")
COLUMNS = ("clean", "R", "S", "RS")
#: ``track.kind`` of a corruption track's records (absent from attack tracks' records)
CORRUPTION_KIND = "corruptions"
#: the environment variable holding the key of keyed seals
KEY_VARIABLE = "ROBENCH_RECORD_KEY"
_TOP: dict[str, type | tuple[type, ...]] = {
    "schema": int, "status": str, "track": dict, "entry": dict, "results": dict, "flags": list,
    "reported": dict, "provenance": dict, "verification": dict, "per_sample": dict,
    "per_sample_digest": (str, type(None)), "seal": dict}
#: keys a record may have (one without them is as valid: the boards committed before them need no regeneration)
_OPTIONAL: dict[str, type | tuple[type, ...]] = {"challenges": list}
#: the keys and types of one accepted challenge (``challenges[i]``; see the module docstring)
CHALLENGE_FIELDS: dict[str, type] = {"author": str, "attack": str, "date": str, "sha256": str, "scenario": str,
                                     "clips": int, "clips_broken": list, "robench": str, "device": str}
_ACCURACY: dict[str, type | tuple[type, ...]] = {"accuracy": (int, float), "correct": int, "n": int, "interval": list}
#: how far a stored float may be from its recomputation (JSON round trips are exact; this absorbs nothing else)
TOLERANCE = 1e-9


def _type_name(kind: Any) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join("null" if k is type(None) else k.__name__ for k in kinds)


class RecordError(RobenchError):
    """A record is malformed, edited, or its numbers do not follow from its per-clip results."""


def _fail(where: str, key: str, found: Any, allowed: str) -> RecordError:
    shown = json.dumps(found, default=str)
    return RecordError(f"record {where}: key '{key}': found {shown[:80]}{'…' if len(shown) > 80 else ''}; "
                       f"allowed: {allowed}")


# -- structure -------------------------------------------------------------------------------------

def validate_structure(data: Any, where: str) -> dict[str, Any]:
    """Check a record's keys and types; returns it, or raises :class:`RecordError` naming the key."""
    if not isinstance(data, dict):
        raise RecordError(f"record {where}: expected a JSON object")
    for key, kind in _TOP.items():
        if key not in data:
            raise _fail(where, key, "(missing)", _type_name(kind))
        if not isinstance(data[key], kind) or isinstance(data[key], bool):
            raise _fail(where, key, data[key], _type_name(kind))
    if unknown := sorted(set(data) - set(_TOP) - set(_OPTIONAL)):
        raise _fail(where, unknown[0], "(unknown key)", ", ".join([*_TOP, *_OPTIONAL]))
    for key, kind in _OPTIONAL.items():
        if key in data and not isinstance(data[key], kind):
            raise _fail(where, key, data[key], _type_name(kind))
    if data["schema"] != RECORD_SCHEMA:
        raise _fail(where, "schema", data["schema"], f"{RECORD_SCHEMA} (the record schema this robench reads; "
                    "records of older schemas are made again with robench leaderboard add)")
    if data["status"] not in STATUSES:
        raise _fail(where, "status", data["status"], ", ".join(STATUSES))
    for key in ("name", "version", "digest"):
        if key not in data["track"]:
            raise _fail(where, f"track.{key}", "(missing)", "the track's name, version and digest")
    for key in ("id", "name", "authors"):
        if key not in data["entry"]:
            raise _fail(where, f"entry.{key}", "(missing)", "the entry's id, name and authors")
    try:
        check_name(data["track"]["name"], "track.name")
        check_name(data["entry"]["id"], "entry.id")
    except RobenchError as exc:
        raise RecordError(f"record {where}: {exc}") from None
    for key in ("name", "defense", "architecture"):
        value = data["entry"].get(key)
        if value is not None and (not isinstance(value, str) or any(ord(ch) < 32 for ch in value)):
            raise _fail(where, f"entry.{key}", value, "a string without control characters")
    # what pages show: the right types, so that rendering a record crafted by hand is an error, not a traceback
    authors = data["entry"]["authors"]
    if not isinstance(authors, list) or not all(isinstance(a, str) for a in authors):
        raise _fail(where, "entry.authors", authors, "a list of author names")
    for key in ("paper", "venue", "extra_data", "footnote", "source"):
        if not isinstance(data["entry"].get(key), (str, type(None))):
            raise _fail(where, f"entry.{key}", data["entry"][key], "null or a string")
    passes = data["entry"].get("forward_passes", 1)
    if not isinstance(passes, int) or isinstance(passes, bool) or passes < 1:
        raise _fail(where, "entry.forward_passes", passes, "an integer >= 1")
    for key, value in data["reported"].items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise _fail(where, f"reported.{key}", value, "a number (percent)")
    for i, flag in enumerate(data["flags"]):
        if not isinstance(flag, dict) or not isinstance(flag.get("code"), str) or not all(
                isinstance(flag.get(k), (str, type(None))) for k in ("message", "cell", "where")):
            raise _fail(where, f"flags[{i}]", flag, "{code, message, cell, where} (strings)")
    if data["status"] == "verified" and kind_of(data) == CORRUPTION_KIND:
        _corruption_structure(data, where)
    elif data["status"] == "verified":
        for col in (*COLUMNS, "worst"):
            cell = data["results"].get(col)
            if not isinstance(cell, dict):
                raise _fail(where, f"results.{col}", cell, "{accuracy, correct, n, interval}")
            for key, kind in _ACCURACY.items():
                if not isinstance(cell.get(key), kind) or isinstance(cell.get(key), bool):
                    raise _fail(where, f"results.{col}.{key}", cell.get(key), _type_name(kind))
        if data["track"].get("rank_by") not in COLUMNS[1:]:
            raise _fail(where, "track.rank_by", data["track"].get("rank_by"), ", ".join(COLUMNS[1:]))
        for key, kind in (("clean", str), ("attacks", dict), ("members", dict)):
            if not isinstance(data["per_sample"].get(key), kind):
                raise _fail(where, f"per_sample.{key}", data["per_sample"].get(key),
                            f"{_type_name(kind)} (base64 bit-packed per-clip results)")
        if not isinstance(data["per_sample_digest"], str):
            raise _fail(where, "per_sample_digest", data["per_sample_digest"], "sha256:<hex> of the per-clip results")
    if "challenges" in data:
        _challenges_structure(data, where)
    return data


def _challenges_structure(data: dict[str, Any], where: str) -> None:
    """The keys and types of a record's ``challenges`` (the clips they name are checked with the numbers)."""
    if data["status"] != "verified" or kind_of(data) == CORRUPTION_KIND:
        raise _fail(where, "challenges", f"{len(data['challenges'])} challenge(s)", "none on an unverified record or "
                    "a corruption track's (nothing measured under attack to challenge)")
    allowed = "{" + ", ".join(CHALLENGE_FIELDS) + "}"
    seen: set[str] = set()
    for i, found in enumerate(data["challenges"]):
        key = f"challenges[{i}]"
        if not isinstance(found, dict) or set(found) != set(CHALLENGE_FIELDS):
            raise _fail(where, key, found, allowed)
        for name, kind in CHALLENGE_FIELDS.items():
            value = found[name]
            if not isinstance(value, kind) or isinstance(value, bool):
                raise _fail(where, f"{key}.{name}", value, _type_name(kind))
            if isinstance(value, str) and (not value.strip() or any(ord(ch) < 32 for ch in value)):
                raise _fail(where, f"{key}.{name}", value, "a non-empty string without control characters")
        if found["scenario"] not in COLUMNS[1:]:
            raise _fail(where, f"{key}.scenario", found["scenario"], ", ".join(COLUMNS[1:]))
        sha = found["sha256"]
        if not (sha.startswith("sha256:") and len(sha) == 71 and all(ch in "0123456789abcdef" for ch in sha[7:])):
            raise _fail(where, f"{key}.sha256", sha, "sha256:<64 hex digits> of the file of adversarial inputs")
        if sha in seen:
            raise _fail(where, f"{key}.sha256", sha, "a file not accepted before (each file is one challenge)")
        seen.add(sha)
        if found["clips"] < 1 or not found["clips_broken"] or not all(
                isinstance(c, int) and not isinstance(c, bool) for c in found["clips_broken"]):
            raise _fail(where, f"{key}.clips_broken", found["clips_broken"], "the clips it broke (positions in the "
                        "track's evaluated clip list; at least one: a challenge that breaks none is not recorded)")


# -- the seal --------------------------------------------------------------------------------------

def canonical(record: dict[str, Any]) -> bytes:
    """The record without its seal, as canonical JSON (sorted keys, no spaces): what the seal covers."""
    body = {k: v for k, v in record.items() if k != "seal"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def seal(record: dict[str, Any]) -> dict[str, str]:
    """The seal of ``record``: HMAC-SHA256 with ``$ROBENCH_RECORD_KEY`` when it is set, else SHA-256."""
    key = os.environ.get(KEY_VARIABLE)
    if key:
        return {"algorithm": "hmac-sha256", "value": hmac.new(key.encode(), canonical(record), "sha256").hexdigest()}
    return {"algorithm": "sha256", "value": hashlib.sha256(canonical(record)).hexdigest()}


def check_seal(record: dict[str, Any], where: str) -> None:
    """Raise :class:`RecordError` if the record changed since it was sealed (a keyed seal needs the key)."""
    found = record["seal"]
    algorithm = found.get("algorithm")
    if algorithm == "sha256":
        expected = hashlib.sha256(canonical(record)).hexdigest()
    elif algorithm == "hmac-sha256":
        key = os.environ.get(KEY_VARIABLE)
        if not key:
            raise RecordError(f"record {where} carries a keyed seal (hmac-sha256); set ${KEY_VARIABLE} to the board's "
                              "key to read it")
        expected = hmac.new(key.encode(), canonical(record), "sha256").hexdigest()
    else:
        raise _fail(where, "seal.algorithm", algorithm, "sha256 or hmac-sha256")
    if not hmac.compare_digest(str(found.get("value", "")), expected):
        raise RecordError(f"record {where}: key 'seal': the record was changed after robench wrote it (its content no "
                          "longer matches its seal); make it again with robench leaderboard add")


# -- numbers from bits -----------------------------------------------------------------------------

def encode_bits(bits: np.ndarray) -> str:
    """Per-clip booleans -> base64 of the packed bits."""
    return base64.b64encode(pack_bits(bits)).decode("ascii")


def decode_bits(text: str, n: int, where: str = "", key: str = "per_sample") -> np.ndarray:
    """Inverse of :func:`encode_bits` for ``n`` clips; a :class:`RecordError` naming ``key`` if it is not that."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise _fail(where, key, text, "base64 of bit-packed per-clip results") from None
    if len(raw) != (n + 7) // 8:
        raise _fail(where, key, f"{len(raw)} bytes", f"{(n + 7) // 8} bytes for {n} clips")
    bits = unpack_bits(raw, n)
    assert bits is not None
    return bits.astype(bool)


def summary(bits: np.ndarray) -> dict[str, Any]:
    """``{accuracy, correct, n, interval}`` of per-clip results (percent)."""
    correct, n = int(bits.sum()), int(bits.size)
    lo, hi = wilson_interval(correct, n)
    return {"accuracy": 100.0 * correct / n if n else float("nan"), "correct": correct, "n": n,
            "interval": [100.0 * lo, 100.0 * hi]}


def digest_of_bits(clean: np.ndarray, attacks: dict[str, dict[str, np.ndarray]], eps: float) -> str:
    """SHA-256 over every cell's (scenario, attack, eps, n, per-clip bits), in a fixed order (clean first)."""
    cells = [("clean", None, 0.0, clean)] + [(s, a, eps, bits) for a, per in attacks.items() for s, bits in per.items()]
    h = hashlib.sha256()
    for scenario, attack, e, bits in sorted(cells, key=lambda c: (c[0], c[1] or "", c[2])):
        h.update(json.dumps([scenario, attack, e, int(bits.size)]).encode())
        h.update(pack_bits(bits))
    return "sha256:" + h.hexdigest()


def bits_of(record: dict[str, Any], where: str = "") -> tuple[np.ndarray, dict[str, dict[str, np.ndarray]],
                                                             dict[str, dict[str, dict[str, np.ndarray]]]]:
    """A verified record's per-clip results: ``(clean, {attack: {scenario: bits}}, {attack: {member: {scenario:
    bits}}})``, every array of the clean column's length."""
    n = int(record["results"]["clean"]["n"])
    ps = record["per_sample"]
    clean = decode_bits(ps["clean"], n, where, "per_sample.clean")
    attacks = {a: {s: decode_bits(t, n, where, f"per_sample.attacks.{a}.{s}") for s, t in _mapping(per, where,
               f"per_sample.attacks.{a}").items()} for a, per in ps["attacks"].items()}
    members = {a: {m: {s: decode_bits(t, n, where, f"per_sample.members.{a}.{m}.{s}")
                       for s, t in _mapping(per, where, f"per_sample.members.{a}.{m}").items()}
                   for m, per in _mapping(stages, where, f"per_sample.members.{a}").items()}
               for a, stages in ps["members"].items()}
    return clean, attacks, members


def _mapping(value: Any, where: str, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(where, key, value, "a mapping")
    return value


def columns_of(clean: np.ndarray, attacks: dict[str, dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The results columns from per-clip results: clean, and each attacked scenario's worst case over the attacks."""
    out = {"clean": clean}
    for scenario in COLUMNS[1:]:
        arrays = [per[scenario] for per in attacks.values() if scenario in per]
        if arrays:
            out[scenario] = np.logical_and.reduce(arrays)
    return out


def apply_challenges(columns: dict[str, np.ndarray], challenges: list[dict[str, Any]],
                     where: str = "") -> dict[str, np.ndarray]:
    """``columns`` (:func:`columns_of`: robench's own attacks) with the clips each accepted challenge broke counted
    as not robust in its scenario. Every clip a challenge names must lie in the track's clips and be robust before
    it (under robench's attacks and every earlier challenge), else a :class:`RecordError`: each challenge's clips
    are exactly what it lowered the column by."""
    out = {k: v.copy() for k, v in columns.items()}
    for i, found in enumerate(challenges):
        key = f"challenges[{i}].clips_broken"
        column = out.get(str(found["scenario"]))
        if column is None:
            raise _fail(where, f"challenges[{i}].scenario", found["scenario"], "a scenario the record evaluates")
        broken = [int(c) for c in found["clips_broken"]]
        if broken != sorted(set(broken)) or broken[0] < 0 or broken[-1] >= column.size \
                or len(broken) > int(found["clips"]):
            raise _fail(where, key, broken, f"distinct increasing positions in 0..{column.size - 1}, at most the "
                        f"{found['clips']} clips the file held")
        if not column[broken].all():
            raise RecordError(f"record {where}: key '{key}': clip {broken[int(np.argmin(column[broken]))]} was not "
                              f"robust on {found['scenario']} before this challenge, so it cannot have broken it; the "
                              "record was edited")
        column[broken] = False
    return out


def challenged_columns(record: dict[str, Any], where: str = "") -> dict[str, np.ndarray]:
    """A verified attack record's per-clip columns (clean, R, S, RS): the worst case over robench's attacks and the
    record's accepted challenges (:func:`apply_challenges`)."""
    clean, attacks, _ = bits_of(record, where)
    return apply_challenges(columns_of(clean, attacks), list(record.get("challenges") or []), where)


def results_from_bits(clean: np.ndarray, attacks: dict[str, dict[str, np.ndarray]],
                      members: dict[str, dict[str, dict[str, np.ndarray]]], rank_by: str,
                      labels: dict[str, str], columns: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """A verified record's ``results`` (all but ``ri``, which needs the baseline) from its per-clip results;
    ``columns`` replaces the attacked columns' worst case over the attacks (a challenged record's:
    :func:`challenged_columns`)."""
    columns = columns if columns is not None else columns_of(clean, attacks)
    results: dict[str, Any] = {col: summary(bits) for col, bits in columns.items()}
    results["worst"] = summary(columns[rank_by])
    results["avg"] = avg(*(results[s]["accuracy"] for s in COLUMNS[1:]))
    results["by_attack"] = {a: {"label": labels.get(a, a), **{s: summary(bits) for s, bits in per.items()}}
                            for a, per in attacks.items()}
    results["autoattack"] = {}
    for stages in members.values():
        for stage, per in stages.items():
            results["autoattack"].setdefault(stage, {}).update({s: summary(bits) for s, bits in per.items()})
    return results


def per_sample_of(clean: np.ndarray, attacks: dict[str, dict[str, np.ndarray]],
                  members: dict[str, dict[str, dict[str, np.ndarray]]]) -> dict[str, Any]:
    """A record's ``per_sample`` from per-clip results (the inverse of :func:`bits_of`)."""
    return {"clean": encode_bits(clean),
            "attacks": {a: {s: encode_bits(b) for s, b in per.items()} for a, per in attacks.items()},
            "members": {a: {m: {s: encode_bits(b) for s, b in per.items()} for m, per in stages.items()}
                        for a, stages in members.items()}}


def _same(stored: Any, expected: Any) -> bool:
    if isinstance(expected, float) or isinstance(stored, float):
        return isinstance(stored, (int, float)) and not isinstance(stored, bool) and (
            math.isclose(float(stored), float(expected), rel_tol=0, abs_tol=TOLERANCE)
            or (math.isnan(float(stored)) and math.isnan(float(expected))))
    if isinstance(expected, list):
        return isinstance(stored, list) and len(stored) == len(expected) and all(
            _same(a, b) for a, b in zip(stored, expected))
    return bool(stored == expected)


def _check_summary(stored: Any, bits: np.ndarray, where: str, key: str) -> None:
    expected = summary(bits)
    if not isinstance(stored, dict):
        raise _fail(where, key, stored, "{accuracy, correct, n, interval}")
    for field in ("n", "correct", "accuracy", "interval"):
        if not _same(stored.get(field), expected[field]):
            raise RecordError(f"record {where}: key '{key}.{field}': found {stored.get(field)!r}, but the record's own "
                              f"per-clip results give {expected[field]!r}; the record was edited or damaged")


def check_numbers(record: dict[str, Any], where: str) -> None:
    """Recompute every number a verified record shows from its per-clip results; raise :class:`RecordError`
    naming the first field that disagrees (see the module docstring)."""
    if record["status"] != "verified":
        return
    if kind_of(record) == CORRUPTION_KIND:
        check_corruption_numbers(record, where)
        return
    clean, attacks, members = bits_of(record, where)
    res = record["results"]
    for a, per in attacks.items():
        for s, bits in per.items():
            if s not in COLUMNS[1:]:
                raise _fail(where, f"per_sample.attacks.{a}", s, ", ".join(COLUMNS[1:]))
            if (bits & ~clean).any():
                raise RecordError(f"record {where}: key 'per_sample.attacks.{a}.{s}': {int((bits & ~clean).sum())} "
                                  "clip(s) robust under attack but wrong on the clean input; the record was edited")
    cols = columns_of(clean, attacks)
    for col in COLUMNS:
        if col not in cols:
            raise _fail(where, f"per_sample.attacks (scenario {col})", "(missing)", "each attack's results for "
                        f"{col}")
    cols = apply_challenges(cols, list(record.get("challenges") or []), where)
    for col in COLUMNS:
        _check_summary(res.get(col), cols[col], where, f"results.{col}")
    _check_summary(res.get("worst"), cols[record["track"]["rank_by"]], where, "results.worst")
    if not _same(res.get("avg"), avg(*(summary(cols[s])["accuracy"] for s in COLUMNS[1:]))):
        raise RecordError(f"record {where}: key 'results.avg': found {res.get('avg')!r}, but the mean of its XR, XS "
                          "and XRS is another number; the record was edited or damaged")
    by_attack = _mapping(res.get("by_attack"), where, "results.by_attack")
    if set(by_attack) != set(attacks):
        raise _fail(where, "results.by_attack", sorted(by_attack), f"one entry per attack: {sorted(attacks)}")
    for a, per in attacks.items():
        shown = _mapping(by_attack[a], where, f"results.by_attack.{a}")
        if set(shown) - {"label"} != set(per):
            raise _fail(where, f"results.by_attack.{a}", sorted(shown), f"label and {sorted(per)}")
        for s, bits in per.items():
            _check_summary(shown[s], bits, where, f"results.by_attack.{a}.{s}")
    shown_members = _mapping(res.get("autoattack"), where, "results.autoattack")
    expected_members: dict[str, dict[str, np.ndarray]] = {}
    for a, stages in members.items():
        if a not in attacks:
            raise _fail(where, f"per_sample.members.{a}", "(no such attack)", f"one of {sorted(attacks)}")
        for s in attacks[a]:
            previous = clean
            for m, per in stages.items():
                if s not in per:
                    raise _fail(where, f"per_sample.members.{a}.{m}.{s}", "(missing)", "results after every member")
                if (per[s] & ~previous).any():
                    raise RecordError(f"record {where}: key 'per_sample.members.{a}.{m}.{s}': a clip fooled by an "
                                      "earlier member is robust after a later one; the record was edited")
                previous = per[s]
            if stages and not np.array_equal(previous, attacks[a][s]):
                raise RecordError(f"record {where}: key 'per_sample.members.{a}': after its last member the ensemble's "
                                  f"result on {s} is not the attack's own; the record was edited")
        for m, per in stages.items():
            expected_members.setdefault(m, {}).update(per)
    if set(shown_members) != set(expected_members):
        raise _fail(where, "results.autoattack", sorted(shown_members), f"one entry per member: "
                    f"{sorted(expected_members)}")
    for m, per in expected_members.items():
        for s, bits in per.items():
            _check_summary(_mapping(shown_members[m], where, f"results.autoattack.{m}").get(s), bits, where,
                           f"results.autoattack.{m}.{s}")
    _check_replaced(record, clean.size, where)
    if record["per_sample_digest"] != digest_of_bits(clean, attacks, float(record["track"]["eps"])):
        raise RecordError(f"record {where}: key 'per_sample_digest': it is not the digest of the record's per-clip "
                          "results; the record was edited or damaged")


def _check_replaced(record: dict[str, Any], n: int, where: str) -> None:
    """``results.replaced`` (accuracy with each input replaced: :mod:`robench.leaderboard.reliance`) against its
    per-clip results ``per_sample.replaced``; a record made before they existed has neither."""
    stored, shown = record["per_sample"].get("replaced"), record["results"].get("replaced")
    if stored is None and shown is None:
        return
    bits = {m: decode_bits(t, n, where, f"per_sample.replaced.{m}")
            for m, t in _mapping(stored, where, "per_sample.replaced").items()}
    shown = _mapping(shown, where, "results.replaced")
    if set(shown) != set(bits):
        raise _fail(where, "results.replaced", sorted(shown), f"one entry per input of per_sample.replaced: "
                    f"{sorted(bits)}")
    for m, b in bits.items():
        _check_summary(shown[m], b, where, f"results.replaced.{m}")


# -- corruption tracks -------------------------------------------------------------------------------

#: per corruption, per severity: per-clip results
CorruptionBits = dict[str, dict[int, np.ndarray]]


def kind_of(record: dict[str, Any]) -> str:
    """``attacks`` or ``corruptions``: the kind of track a record is of (records without ``track.kind``: attacks)."""
    return str(record["track"].get("kind") or "attacks")


def expand(corrupted: CorruptionBits, graded: dict[str, bool], severities: list[int]) -> CorruptionBits:
    """Every corruption at every severity: a one-level corruption (``graded`` False), evaluated once at the first
    severity, stands for each of them."""
    return {c: ({s: per[s] for s in severities} if graded[c] else dict.fromkeys(severities, per[severities[0]]))
            for c, per in corrupted.items()}


def pooled(corrupted: CorruptionBits, graded: dict[str, bool], severities: list[int]) -> np.ndarray:
    """Every (clip, corruption, severity) outcome of a corruption track in one vector, one-level corruptions repeated
    at every severity (:func:`expand`), in a fixed order (corruptions by name, severities increasing, clips): its
    mean is the track's Mean, and it is what neighbours are compared on. The outcomes are not independent draws (the
    same clips under every corruption and severity), so a paired test on them is optimistic."""
    full = expand(corrupted, graded, severities)
    arrays = [full[c][s] for c in sorted(full) for s in severities]
    return np.concatenate(arrays) if arrays else np.zeros(0, dtype=bool)


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values)) if values else float("nan")


def corruption_results(clean: np.ndarray, corrupted: CorruptionBits, info: dict[str, dict[str, Any]],
                       severities: list[int]) -> dict[str, Any]:
    """A corruption record's ``results`` (all but ``reliance``) from its per-clip results; ``info`` is
    ``track.corruptions.types`` (each corruption's ``family`` and ``graded``)."""
    graded = {c: bool(info[c]["graded"]) for c in corrupted}
    full = expand(corrupted, graded, severities)
    accuracy = {c: _mean([summary(full[c][s])["accuracy"] for s in severities]) for c in sorted(corrupted)}
    per = {c: {"accuracy": accuracy[c],
               "severities": {str(s): summary(bits) for s, bits in sorted(corrupted[c].items())}}
           for c in sorted(corrupted)}
    families: dict[str, list[float]] = {}
    for c in sorted(corrupted):
        families.setdefault(str(info[c]["family"]), []).append(accuracy[c])
    everything = pooled(corrupted, graded, severities)
    correct, n = int(everything.sum()), int(everything.size)
    return {"clean": summary(clean), "corruptions": per, "families": {f: _mean(v) for f, v in sorted(families.items())},
            "mean": {"accuracy": 100.0 * correct / n if n else float("nan"), "correct": correct, "n": n}}


def corruption_per_sample(clean: np.ndarray, corrupted: CorruptionBits) -> dict[str, Any]:
    """A corruption record's ``per_sample`` (the inverse of :func:`corruption_bits_of`)."""
    return {"clean": encode_bits(clean),
            "corruptions": {c: {str(s): encode_bits(b) for s, b in sorted(per.items())}
                            for c, per in sorted(corrupted.items())}}


def digest_of_corruption_bits(clean: np.ndarray, corrupted: CorruptionBits) -> str:
    """SHA-256 over the clean cell's and every (corruption, severity) cell's per-clip bits, in a fixed order."""
    h = hashlib.sha256()
    cells = [("clean", 0, clean)] + [(c, s, b) for c, per in corrupted.items() for s, b in per.items()]
    for name, severity, bits in sorted(cells, key=lambda x: (x[0] != "clean", x[0], x[1])):
        h.update(json.dumps(["corruption" if name != "clean" else "clean", name, severity, int(bits.size)]).encode())
        h.update(pack_bits(bits))
    return "sha256:" + h.hexdigest()


def corruption_bits_of(record: dict[str, Any], where: str = "") -> tuple[np.ndarray, CorruptionBits]:
    """A verified corruption record's per-clip results: ``(clean, {corruption: {severity: bits}})``, as evaluated
    (a one-level corruption at one severity)."""
    n = int(record["results"]["clean"]["n"])
    ps = record["per_sample"]
    clean = decode_bits(ps["clean"], n, where, "per_sample.clean")
    corrupted: CorruptionBits = {}
    for c, per in _mapping(ps["corruptions"], where, "per_sample.corruptions").items():
        for s, text in _mapping(per, where, f"per_sample.corruptions.{c}").items():
            if not (isinstance(s, str) and s.isdigit()):
                raise _fail(where, f"per_sample.corruptions.{c}", s, "severities 1 to 5")
            corrupted.setdefault(c, {})[int(s)] = decode_bits(text, n, where, f"per_sample.corruptions.{c}.{s}")
    return clean, corrupted


def corruption_track_info(record: dict[str, Any]) -> tuple[list[int], dict[str, dict[str, Any]]]:
    """``(severities, {corruption: {family, modality, graded}})`` of a corruption record's track."""
    spec = record["track"]["corruptions"]
    return [int(s) for s in spec["severities"]], dict(spec["types"])


def ranking_of(record: dict[str, Any], where: str = "") -> tuple[float, np.ndarray]:
    """A verified record's ranking score (percent) and the per-outcome results neighbours are compared on: the
    worst case on ``rank_by`` per clip (robench's attacks and the accepted challenges), or for a corruption track
    its Mean and every pooled (clip, corruption, severity) outcome (:func:`pooled`)."""
    if kind_of(record) == CORRUPTION_KIND:
        severities, info = corruption_track_info(record)
        _, corrupted = corruption_bits_of(record, where)
        graded = {c: bool(info[c]["graded"]) for c in corrupted}
        return float(record["results"]["mean"]["accuracy"]), pooled(corrupted, graded, severities)
    return float(record["results"]["worst"]["accuracy"]), challenged_columns(record, where)[record["track"]["rank_by"]]


def _corruption_structure(data: dict[str, Any], where: str) -> None:
    """The keys and types of a verified corruption record (see the module docstring)."""
    if data["track"].get("rank_by") != CORRUPTION_KIND:
        raise _fail(where, "track.rank_by", data["track"].get("rank_by"), CORRUPTION_KIND)
    spec = data["track"].get("corruptions")
    if not isinstance(spec, dict) or not isinstance(spec.get("severities"), list) or not spec["severities"] or not all(
            isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= 5 for s in spec["severities"]) \
            or spec["severities"] != sorted(set(spec["severities"])):
        raise _fail(where, "track.corruptions.severities", (spec or {}).get("severities") if isinstance(spec, dict)
                    else spec, "distinct severities from 1 to 5, increasing")
    types = spec.get("types")
    if not isinstance(types, dict) or not types:
        raise _fail(where, "track.corruptions.types", types, "corruption name -> {family, modality, graded}")
    for c, info in types.items():
        if not isinstance(info, dict) or not isinstance(info.get("family"), str) or not isinstance(
                info.get("graded"), bool) or not isinstance(info.get("modality"), str):
            raise _fail(where, f"track.corruptions.types.{c}", info, "{family, modality, graded}")
    results = data["results"]
    cell = results.get("clean")
    if not isinstance(cell, dict):
        raise _fail(where, "results.clean", cell, "{accuracy, correct, n, interval}")
    for key, kind in _ACCURACY.items():
        if not isinstance(cell.get(key), kind) or isinstance(cell.get(key), bool):
            raise _fail(where, f"results.clean.{key}", cell.get(key), _type_name(kind))
    mean = results.get("mean")
    if not isinstance(mean, dict) or not all(isinstance(mean.get(k), kind) and not isinstance(mean.get(k), bool)
                                             for k, kind in (("accuracy", (int, float)), ("correct", int), ("n", int))):
        raise _fail(where, "results.mean", mean, "{accuracy, correct, n}")
    for key in ("corruptions", "families"):
        if not isinstance(results.get(key), dict):
            raise _fail(where, f"results.{key}", results.get(key), "a mapping")
    for key, kind in (("clean", str), ("corruptions", dict)):
        if not isinstance(data["per_sample"].get(key), kind):
            raise _fail(where, f"per_sample.{key}", data["per_sample"].get(key),
                        f"{_type_name(kind)} (base64 bit-packed per-clip results)")
    if not isinstance(data["per_sample_digest"], str):
        raise _fail(where, "per_sample_digest", data["per_sample_digest"], "sha256:<hex> of the per-clip results")


def check_corruption_numbers(record: dict[str, Any], where: str) -> None:
    """Recompute every number a verified corruption record shows from its per-clip results (see the module
    docstring); raise :class:`RecordError` naming the first field that disagrees."""
    severities, info = corruption_track_info(record)
    clean, corrupted = corruption_bits_of(record, where)
    if set(corrupted) != set(info):
        raise _fail(where, "per_sample.corruptions", sorted(corrupted), f"one entry per corruption: {sorted(info)}")
    for c, per in corrupted.items():
        expected = severities if info[c]["graded"] else severities[:1]
        if sorted(per) != expected:
            raise _fail(where, f"per_sample.corruptions.{c}", sorted(per), f"severities {expected}"
                        + ("" if info[c]["graded"] else " (one level: evaluated once, counted at every severity)"))
    res = record["results"]
    _check_summary(res.get("clean"), clean, where, "results.clean")
    expected_res = corruption_results(clean, corrupted, info, severities)
    shown = _mapping(res.get("corruptions"), where, "results.corruptions")
    if set(shown) != set(corrupted):
        raise _fail(where, "results.corruptions", sorted(shown), f"one entry per corruption: {sorted(corrupted)}")
    for c, per in corrupted.items():
        entry = _mapping(shown[c], where, f"results.corruptions.{c}")
        levels = _mapping(entry.get("severities"), where, f"results.corruptions.{c}.severities")
        if set(levels) != {str(s) for s in per}:
            raise _fail(where, f"results.corruptions.{c}.severities", sorted(levels),
                        ", ".join(sorted(map(str, per))))
        for s, bits in per.items():
            _check_summary(levels[str(s)], bits, where, f"results.corruptions.{c}.severities.{s}")
        if not _same(entry.get("accuracy"), expected_res["corruptions"][c]["accuracy"]):
            raise RecordError(f"record {where}: key 'results.corruptions.{c}.accuracy': found "
                              f"{entry.get('accuracy')!r}, but the mean over the track's severities of its per-clip "
                              "results is another number; the record was edited or damaged")
    families = _mapping(res.get("families"), where, "results.families")
    if set(families) != set(expected_res["families"]) or not all(
            _same(families[f], v) for f, v in expected_res["families"].items()):
        raise RecordError(f"record {where}: key 'results.families': found {json.dumps(families)[:80]}, but the means "
                          "of each family's corruptions are other numbers; the record was edited or damaged")
    mean = res["mean"]
    for key in ("n", "correct", "accuracy"):
        if not _same(mean.get(key), expected_res["mean"][key]):
            raise RecordError(f"record {where}: key 'results.mean.{key}': found {mean.get(key)!r}, but the record's "
                              f"own per-clip results give {expected_res['mean'][key]!r}; the record was edited or "
                              "damaged")
    if record["per_sample_digest"] != digest_of_corruption_bits(clean, corrupted):
        raise RecordError(f"record {where}: key 'per_sample_digest': it is not the digest of the record's per-clip "
                          "results; the record was edited or damaged")


# -- files -----------------------------------------------------------------------------------------

def validate_record(data: Any, where: str) -> dict[str, Any]:
    """Structure, seal and numbers (see the module docstring); returns the record or raises :class:`RecordError`."""
    record = validate_structure(data, where)
    check_seal(record, where)
    check_numbers(record, where)
    return record


#: the transfer artefact (:mod:`robench.leaderboard.transfer`) lies beside a track's records; it is not one
TRANSFER_FILE = "transfer.json"


def record_files(folder: Path) -> list[Path]:
    """The record files of a track's folder (``leaderboard/<track>/*.json`` but the transfer artefact), by name."""
    return [p for p in sorted(folder.glob("*.json")) if p.name != TRANSFER_FILE]


def read_record(path: str | Path) -> dict[str, Any]:
    """Read and check a record file (plain JSON: nothing in it can run)."""
    path = Path(path)
    if not path.is_file():
        raise RobenchError(f"record {path} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise RecordError(f"record {path}: not valid JSON ({exc})") from None
    record = validate_record(data, str(path))
    if path.stem != record["entry"]["id"]:
        raise RecordError(f"record {path}: its file name is not its entry id ({record['entry']['id']!r}); records are "
                          "named <entry id>.json")
    return record


def sealed(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with a fresh seal."""
    out = {k: v for k, v in record.items() if k != "seal"}
    out["seal"] = seal(out)
    return out


def write_record(path: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Seal, check, then write atomically; returns the sealed record."""
    done = sealed(record)
    validate_record(done, str(path))
    atomic_write(path, json.dumps(done, indent=2, sort_keys=False, allow_nan=False) + "\n")
    return done
