"""The ``budgets:`` section: grids of independent per-modality radii (eps_R, eps_S) for one attack.

The paper scales one eps per modality; a budget grid instead sweeps every pair of an RGB radius and a
skeleton radius, so that a report can draw each defense's robustness surface and the frontier of
budgets that halve its accuracy::

    budgets:
      pgd-grid:
        label: PGD, RGB x skeleton budgets
        attack: pgd                       # an attack id of the protocol's attacks:
        rgb: [0, 2/255, 4/255, 8/255]     # nominal radii, in the threat model's units
        skeleton: [0, 4/255, 8/255, 16/255]
        defenses: [none, amr]             # optional: the rows to sweep (default: every row)

Radii are nominal, like ``eps``: each is multiplied by its modality's ``threat.<m>.scale``. A pair with
one radius 0 attacks only the other modality (the XR or XS cell at that radius), and (0, 0) is the clean
cell, so a grid shares its edge, and its diagonal, with the protocol's tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from robench.protocol.check import Checker
from robench.protocol.load import KeyPath

#: the modalities a budget grid spans, in the order of its axes (x: RGB, y: skeleton)
GRID_MODALITIES: tuple[str, str] = ("rgb", "skeleton")


@dataclass(frozen=True)
class BudgetGrid:
    """One grid of (eps_R, eps_S) pairs for one attack (see the module docstring).

    Attributes:
        id: the grid's id under ``budgets:``.
        label: display label.
        attack: id of the protocol attack run at every pair.
        rgb: RGB radii (nominal, threat-model units), increasing, distinct.
        skeleton: skeleton radii (nominal, threat-model units), increasing, distinct.
        defenses: the rows swept; empty = every row.
    """

    id: str
    label: str
    attack: str
    rgb: tuple[float, ...]
    skeleton: tuple[float, ...]
    defenses: tuple[str, ...] = ()

    def pairs(self) -> list[tuple[float, float]]:
        """Every (eps_R, eps_S) of the grid, RGB-major."""
        return [(r, s) for r in self.rgb for s in self.skeleton]

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable mapping; :meth:`from_json` reads it back equal."""
        return {"id": self.id, "label": self.label, "attack": self.attack, "rgb": list(self.rgb),
                "skeleton": list(self.skeleton), "defenses": list(self.defenses)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BudgetGrid:
        """The grid :meth:`to_json` wrote."""
        return cls(str(data["id"]), str(data["label"]), str(data["attack"]),
                   tuple(float(x) for x in data["rgb"]), tuple(float(x) for x in data["skeleton"]),
                   tuple(str(d) for d in data.get("defenses", ())))


def budgets(c: Checker, value: Any, path: KeyPath, attacks: list[str], defenses: list[str]) -> dict[str, BudgetGrid]:
    """Validate a ``budgets:`` mapping against the protocol's attack and defense ids."""
    data = c.mapping(value, path, "a mapping of grid id -> {attack, rgb, skeleton, label, defenses}")
    out: dict[str, BudgetGrid] = {}
    for gid, spec in data.items():
        gpath = (*path, str(gid))
        spec = c.mapping(spec, gpath, "{attack, rgb, skeleton, label, defenses}")
        c.keys(spec, gpath, ("attack", "rgb", "skeleton", "label", "defenses"))
        attack = spec.get("attack")
        if attack not in attacks:
            raise c.fail((*gpath, "attack"), attack if attack is not None else "(missing)",
                         "an attack id of the protocol: " + ", ".join(attacks))
        axes = {m: _radii(c, spec.get(m), (*gpath, m)) for m in GRID_MODALITIES}
        rows = c.typed(spec.get("defenses", []), list[str], (*gpath, "defenses"))
        for i, d in enumerate(rows):
            if d not in defenses:
                raise c.fail((*gpath, "defenses", str(i)), d, "a defense id of the protocol: " + ", ".join(defenses))
        out[str(gid)] = BudgetGrid(str(gid), str(spec.get("label", gid)), str(attack), axes["rgb"],
                                   axes["skeleton"], tuple(rows))
    return out


def _radii(c: Checker, value: Any, path: KeyPath) -> tuple[float, ...]:
    allowed = "a non-empty list of distinct radii >= 0 (fractions like 8/255 allowed)"
    if not isinstance(value, list) or not value:
        raise c.fail(path, value if value is not None else "(missing)", allowed)
    radii = [c.number(v, (*path, str(i)), minimum=0.0) for i, v in enumerate(value)]
    if len({round(r, 12) for r in radii}) != len(radii):
        raise c.fail(path, value, allowed)
    return tuple(sorted(radii))
