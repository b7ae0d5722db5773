"""Leaderboard tracks: everything that makes two entries' numbers comparable, fixed and versioned.

A track is a YAML file (bundled ones in ``robench/leaderboard/tracks/``) with:

- ``name``, ``title``, ``version`` (an integer bumped whenever anything below changes; the track's
  :attr:`Track.digest` of all of it is pinned per version by the test suite, so a change without a bump
  fails the tests) and ``description``;
- ``dataset``: the dataset component (as in a protocol) and ``evaluation``: split, ``max_samples``,
  batch size and seed, which fix the evaluated clips; ``clips``: their count and the digest of their
  ids and labels (``null`` until the track's data was first read: the NTU and iMiGUE tracks);
- ``threat``: per-modality scale and bounds, and ``eps``: one radius in the threat model's units
  (RGB on [0, 1], skeleton in metres); the record states it in both units;
- ``scenarios``: clean and the attacked ones (the paper's XR, XS, XRS);
- ``attacks``: AutoAttack (standard) plus any other attack; the track's robust accuracy per scenario is
  the worst case over all of them, per clip;
- ``rank_by``: the scenario whose worst case orders the entries (the paper's threat: ``RS``);
- ``baseline``: the entry id RI is measured against (the undefended model), if the track has one.

``threat.skeleton.plausible`` (``{bone, angle, velocity, acceleration}``, relative tolerances:
:mod:`robench.attacks.plausible`) constrains every evaluation attack on the skeleton to plausible bodies;
it is passed to the protocol the leaderboard builds, so it is part of every attacked skeleton cell (training
attacks stay L-inf: the same trained models serve both threat models).

A **corruption track** (:attr:`Track.kind` ``corruptions``) measures accuracy under natural corruptions
instead of attacks: it has ``corruptions: {severities: [...], types: all | [names]}`` (see
:mod:`robench.protocol.corruptions`; ``all`` is every corruption robench ships, resolved when the track
is read, so that a plugin cannot add one and a new built-in changes the track's digest), ``scenarios:
[clean]``, no ``attacks`` and no ``eps``, and ``rank_by: corruptions`` (the mean accuracy over every
corruption and severity).

Evaluation is always in fp32 (no autocast, no TF32): the track's ``precision``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from robench.errors import RobenchError
from robench.hashing import content_hash
from robench.leaderboard.entry import read_mapping
from robench.leaderboard.names import check_name
from robench.params import parse_number

#: keys of a track file
TRACK_KEYS = ("name", "title", "version", "description", "dataset", "evaluation", "clips", "threat", "eps",
              "scenarios", "attacks", "corruptions", "rank_by", "baseline")
#: the scenario labels of records and pages, as in the paper
SCENARIO_LABELS = {"clean": "Clean", "R": "XR", "S": "XS", "RS": "XRS"}
#: precision every track evaluates in
PRECISION = "fp32"
#: ``rank_by`` of a corruption track: the mean accuracy over its corruptions and severities
CORRUPTIONS = "corruptions"
#: the order of corruption families on pages (:attr:`robench.corruptions.base.Corruption.family`): the RGB
#: families, the skeleton's, then a whole input missing; a family robench does not know comes last
FAMILY_ORDER = ("noise", "blur", "digital", "video", "occlusion", "pose", "timing", "persons", "missing")


@dataclass(frozen=True)
class CorruptionInfo:
    """One corruption of a corruption track: its registered name, family, the input it changes and whether its
    severities differ (a one-level corruption, a missing input or a person swap, is evaluated once and counted
    at every severity)."""

    name: str
    family: str
    modality: str
    graded: bool


@dataclass(frozen=True)
class Track:
    """A validated track (see the module docstring); ``data`` is the file's mapping as read."""

    name: str
    title: str
    version: int
    description: str
    path: Path
    data: dict[str, Any] = field(repr=False)

    @property
    def digest(self) -> str:
        """Content hash of everything that determines the track's numbers (all keys but the prose; a corruption
        track's ``types: all`` as the corruptions it stands for)."""
        fixed = {k: v for k, v in self.data.items() if k not in ("title", "description", "clips")}
        if self.kind == CORRUPTIONS:
            fixed["corruptions"] = {**self.data["corruptions"], "types": self.corruption_types}
        return "sha256:" + content_hash(fixed, 64)

    @property
    def kind(self) -> str:
        """``attacks`` (robust accuracy under the track's attacks) or ``corruptions`` (a corruption track)."""
        return CORRUPTIONS if "corruptions" in self.data else "attacks"

    @property
    def eps(self) -> float:
        """The attacks' radius (0 for a corruption track, which has none)."""
        return parse_eps(self.data["eps"]) if "eps" in self.data else 0.0

    @property
    def plausible(self) -> dict[str, float] | None:
        """The plausible-skeleton limits every evaluation attack on the skeleton keeps to (every key filled), or
        None for the plain L-inf threat model."""
        from robench.attacks.plausible import SkeletonLimits

        value = ((self.data.get("threat") or {}).get("skeleton") or {}).get("plausible")
        limits = SkeletonLimits.of(value)
        return None if limits is None else limits.as_params()

    @property
    def severities(self) -> list[int]:
        """A corruption track's severities, increasing (empty for an attack track)."""
        if self.kind != CORRUPTIONS:
            return []
        from robench.corruptions.base import SEVERITIES

        return sorted(self.data["corruptions"].get("severities", list(SEVERITIES)))

    @property
    def corruption_types(self) -> list[str]:
        """A corruption track's corruptions by registered name (``all``: robench's built-in ones, in name order;
        empty for an attack track)."""
        if self.kind != CORRUPTIONS:
            return []
        return resolve_types(self.data["corruptions"].get("types", "all"))

    @property
    def corruptions(self) -> dict[str, CorruptionInfo]:
        """A corruption track's corruptions, by name, as the registry describes them."""
        from robench.registry import CORRUPTIONS as REGISTRY

        out = {}
        for name in self.corruption_types:
            cls = REGISTRY.get(name)
            out[name] = CorruptionInfo(name, str(cls.family), str(cls.modality), bool(cls.graded()))
        return out

    @property
    def families(self) -> list[str]:
        """A corruption track's families, in page order (:data:`FAMILY_ORDER`, then any other by name)."""
        return family_order(info.family for info in self.corruptions.values())

    @property
    def scenarios(self) -> list[str]:
        return list(self.data["scenarios"])

    @property
    def attacked(self) -> list[str]:
        return [s for s in self.scenarios if s != "clean"]

    @property
    def rank_by(self) -> str:
        return str(self.data["rank_by"])

    @property
    def baseline(self) -> str | None:
        value = self.data.get("baseline")
        return str(value) if value else None

    @property
    def clips(self) -> dict[str, Any]:
        return dict(self.data.get("clips") or {})

    @property
    def dataset(self) -> dict[str, Any]:
        return dict(self.data["dataset"])

    @property
    def runnable(self) -> bool:
        """True if the track's data can be produced here (the synthetic dataset); real-data tracks need
        the prepared dataset."""
        return self.dataset.get("name") == "synthetic"


def family_order(families: Any) -> list[str]:
    """``families`` once each, in page order: :data:`FAMILY_ORDER`, then any other by name."""
    found = set(families)
    return [f for f in FAMILY_ORDER if f in found] + sorted(found - set(FAMILY_ORDER))


def builtin_corruptions() -> list[str]:
    """The corruptions robench ships (registered by robench itself, not by a plugin or a package), by name."""
    from robench.registry import CORRUPTIONS as REGISTRY

    return [n for n in REGISTRY.names() if REGISTRY.entry(n).source == "builtin"]


def resolve_types(value: Any) -> list[str]:
    """A corruption track's ``types``: ``all`` (:func:`builtin_corruptions`) or its list of names, as given."""
    return builtin_corruptions() if value == "all" else [str(v) for v in value]


def parse_eps(value: Any) -> float:
    """``8/255``-style fraction or number -> float (:func:`robench.params.parse_number`)."""
    try:
        return parse_number(value)
    except ValueError:
        raise RobenchError(f"eps {value!r} is not a number or a fraction like 8/255") from None


def bundled_tracks() -> dict[str, Path]:
    """``{name: path}`` of the tracks shipped with robench."""
    root = Path(str(resources.files("robench.leaderboard") / "tracks"))
    return {p.stem: p for p in sorted(root.glob("*.yaml"))}


def load_track(name: str | Path) -> Track:
    """A bundled track by name, or a track file by path; a clear error for anything else."""
    bundled = bundled_tracks()
    path = bundled.get(str(name)) or Path(name)
    if not path.is_file():
        raise RobenchError(f"unknown track {str(name)!r}; bundled tracks: {', '.join(bundled)} (or a track file)")
    data = read_mapping(path, "track")
    unknown = sorted(set(data) - set(TRACK_KEYS))
    if unknown:
        raise RobenchError(f"track {path}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(TRACK_KEYS)}")
    corruption = "corruptions" in data
    for key, kind in (("name", str), ("title", str), ("version", int), ("dataset", dict), ("evaluation", dict),
                      ("threat", dict), ("scenarios", list), ("attacks", dict), ("rank_by", str)):
        if corruption and key in ("threat", "attacks") and key not in data:
            continue  # a corruption track has no attacks, and needs no threat model
        if not isinstance(data.get(key), kind) or isinstance(data.get(key), bool):
            raise RobenchError(f"track {path}: key '{key}' must be a {kind.__name__}, found {data.get(key)!r}")
    check_name(data["name"], f"track {path}: key 'name'")
    _check_plausible(path, data)
    if corruption:
        _check_corruptions(path, data)
    else:
        parse_eps(data.get("eps"))
        if "clean" not in data["scenarios"] or data["rank_by"] not in data["scenarios"]:
            raise RobenchError(f"track {path}: scenarios must include clean and rank_by ({data['rank_by']!r})")
    return Track(data["name"], data["title"], data["version"], str(data.get("description", "")), path, data)


def _check_plausible(path: Path, data: dict[str, Any]) -> None:
    """``threat.skeleton.plausible``, if set: known limits, each a finite number >= 0."""
    from robench.attacks.plausible import SkeletonLimits

    skeleton = (data.get("threat") or {}).get("skeleton")
    value = skeleton.get("plausible") if isinstance(skeleton, dict) else None
    if value is None:
        return
    if not isinstance(value, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                              for v in value.values()):
        raise RobenchError(f"track {path}: key 'threat.skeleton.plausible': found {value!r}; allowed: a mapping of "
                           f"{', '.join(SkeletonLimits.__dataclass_fields__)} to relative tolerances")
    try:
        SkeletonLimits.of(value)
    except ValueError as exc:
        raise RobenchError(f"track {path}: key 'threat.skeleton.plausible': {exc}") from None


def _check_corruptions(path: Path, data: dict[str, Any]) -> None:
    """A corruption track: ``corruptions: {severities, types}``, ``scenarios: [clean]``, no attacks or eps,
    ``rank_by: corruptions``; every corruption named is registered by robench."""
    from robench.corruptions.base import SEVERITIES

    spec = data["corruptions"]
    where = f"track {path}: key 'corruptions"
    if not isinstance(spec, dict) or set(spec) - {"severities", "types"}:
        raise RobenchError(f"{where}': found {spec!r}; allowed: {{severities: [...], types: all | [names]}}")
    severities = spec.get("severities", list(SEVERITIES))
    if not isinstance(severities, list) or not severities or len(set(severities)) != len(severities) or any(
            isinstance(s, bool) or s not in SEVERITIES for s in severities):
        raise RobenchError(f"{where}.severities': found {severities!r}; allowed: a non-empty list of distinct "
                           f"severities from {', '.join(map(str, SEVERITIES))}")
    types = spec.get("types", "all")
    if types != "all" and (not isinstance(types, list) or not types or len(set(map(str, types))) != len(types)
                           or not all(isinstance(t, str) for t in types)):
        raise RobenchError(f"{where}.types': found {types!r}; allowed: all, or a list of corruption names (each once)")
    shipped = builtin_corruptions()
    if unknown := [t for t in resolve_types(types) if t not in shipped]:
        raise RobenchError(f"{where}.types': {', '.join(unknown)} is not a corruption robench ships; allowed: all, "
                           f"or names from {', '.join(shipped)}")
    for key in ("attacks", "eps"):
        if key in data:
            raise RobenchError(f"track {path}: key '{key}': a corruption track has no attacks; remove it (or "
                               "'corruptions', for an attack track)")
    if data["scenarios"] != ["clean"] or data["rank_by"] != CORRUPTIONS:
        raise RobenchError(f"track {path}: a corruption track has scenarios: [clean] and rank_by: {CORRUPTIONS}, "
                           f"found scenarios: {data['scenarios']!r}, rank_by: {data['rank_by']!r}")
