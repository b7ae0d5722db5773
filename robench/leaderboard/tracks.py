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
              "scenarios", "attacks", "rank_by", "baseline")
#: the scenario labels of records and pages, as in the paper
SCENARIO_LABELS = {"clean": "Clean", "R": "XR", "S": "XS", "RS": "XRS"}
#: precision every track evaluates in
PRECISION = "fp32"


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
        """Content hash of everything that determines the track's numbers (all keys but the prose)."""
        fixed = {k: v for k, v in self.data.items() if k not in ("title", "description", "clips")}
        return "sha256:" + content_hash(fixed, 64)

    @property
    def eps(self) -> float:
        return parse_eps(self.data["eps"])

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
    for key, kind in (("name", str), ("title", str), ("version", int), ("dataset", dict), ("evaluation", dict),
                      ("threat", dict), ("scenarios", list), ("attacks", dict), ("rank_by", str)):
        if not isinstance(data.get(key), kind) or isinstance(data.get(key), bool):
            raise RobenchError(f"track {path}: key '{key}' must be a {kind.__name__}, found {data.get(key)!r}")
    parse_eps(data.get("eps"))
    check_name(data["name"], f"track {path}: key 'name'")
    if "clean" not in data["scenarios"] or data["rank_by"] not in data["scenarios"]:
        raise RobenchError(f"track {path}: scenarios must include clean and rank_by ({data['rank_by']!r})")
    return Track(data["name"], data["title"], data["version"], str(data.get("description", "")), path, data)
