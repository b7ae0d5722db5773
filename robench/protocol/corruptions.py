"""The ``corruptions:`` section: natural corruptions of either input, at severities 1 to 5.

Each defense's model is evaluated on the evaluation clips under every listed corruption at every
listed severity (:mod:`robench.corruptions`); a report gives per-corruption accuracy, the mean over
corruptions and the relative mCE against a baseline row::

    corruptions:
      baseline: none                  # the row mCE is relative to (default: the first row)
      severities: [1, 2, 3, 4, 5]     # default: all five
      types: [gaussian-noise, h264, joint-jitter, skeleton-missing]   # or `all`, or
      # types: {noise: {type: gaussian-noise, label: Noise}}          # id -> {type, label, ...parameters}

``all`` is every registered corruption (robench's and any a plugin adds), in name order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any

from robench.corruptions.base import SEVERITIES
from robench.protocol.check import Checker, Component, instantiate
from robench.protocol.load import KeyPath
from robench.registry import CORRUPTIONS


@dataclass(frozen=True)
class CorruptionEntry:
    """One corruption of the suite: its id, display label and component (registered name + parameters)."""

    id: str
    label: str
    corruption: Component


@dataclass(frozen=True)
class CorruptionSuite:
    """The corruptions a protocol runs (see the module docstring).

    Attributes:
        entries: corruption id -> entry, in the protocol's order.
        severities: the severities run, increasing.
        baseline: row (defense id) the relative mCE is taken against.
    """

    entries: dict[str, CorruptionEntry] = field(default_factory=dict)
    severities: tuple[int, ...] = SEVERITIES
    baseline: str = ""


def corruptions(c: Checker, value: Any, path: KeyPath, defenses: list[str]) -> CorruptionSuite | None:
    """Validate a ``corruptions:`` mapping (None when the protocol has none)."""
    if value is None:
        return None
    data = c.mapping(value, path, "{types, severities, baseline}")
    c.keys(data, path, ("types", "severities", "baseline"))
    severities = c.typed(data.get("severities", list(SEVERITIES)), list[int], (*path, "severities"))
    if not severities or any(s not in SEVERITIES for s in severities) or len(set(severities)) != len(severities):
        raise c.fail((*path, "severities"), data.get("severities"),
                     "a non-empty list of distinct severities from " + ", ".join(map(str, SEVERITIES)))
    baseline = data.get("baseline", defenses[0])
    if baseline not in defenses:
        raise c.fail((*path, "baseline"), baseline, "a defense id of the protocol: " + ", ".join(defenses))
    return CorruptionSuite(_entries(c, data.get("types", "all"), (*path, "types")), tuple(sorted(severities)),
                           str(baseline))


def _entries(c: Checker, value: Any, path: KeyPath) -> dict[str, CorruptionEntry]:
    allowed = "`all`, a list of corruption names, or a mapping of id -> {type, label, ...parameters}"
    if value == "all":
        value = CORRUPTIONS.names()
    if isinstance(value, list):
        names = c.typed(value, list[str], path)
        if len(set(names)) != len(names):
            raise c.fail(path, value, allowed + " (each once)")
        value = {name: {} for name in names}
    data = c.mapping(value, path, allowed)
    if not data:
        raise c.fail(path, value, allowed + " (at least one)")
    out: dict[str, CorruptionEntry] = {}
    for cid, spec in data.items():
        cpath = (*path, str(cid))
        spec = dict(c.mapping(spec, cpath, "{type, label, ...parameters}"))
        ctype = spec.pop("type", cid)
        label = str(spec.pop("label", cid))
        cls, comp = c.component(CORRUPTIONS, ctype, spec, cpath, "type")
        instantiate(c, cpath, partial(cls, **comp.params), comp.params)
        out[str(cid)] = CorruptionEntry(str(cid), label, comp)
    return out
