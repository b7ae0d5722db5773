"""How plausible a run's adversarial skeletons are: one row per stored skeleton cell (XS, XRS).

Every skeleton cell stores, per clip and per stage of its attack, the plausibility of the adversarial
skeleton that stage returned (:func:`robench.attacks.plausible.plausibility`, measured against the
reference tolerances: bone lengths 1%, joint angles 10%, velocities 10% of the clip's mean speed). A
clip's adversarial skeleton is the one of the stage that fooled it, or of the last stage it reached if
none did. The rows give, over the clips the attack **fooled** (where plausibility matters: these are
the numbers a robust accuracy rests on), the mean violation rates in percent and the joints' mean and
largest displacement in centimetres (on the reading that the data is in metres). A cell under
``threat.skeleton.plausible`` limits shows 0% violations of limits at least as tight as the reference.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from robench.run_layout import RunLayout
from robench.store.details import ROBUST, CellDetails, details_of

#: the per-clip plausibility numbers a skeleton cell stores (``<stage>/skeleton/<name>``)
MEASURES = ("bone_violations", "angle_violations", "velocity_violations", "mean_displacement_cm",
            "max_displacement_cm")


@dataclass(frozen=True)
class PlausibilityRow:
    """One skeleton cell's plausibility over the clips its attack fooled (percent and centimetres)."""

    dataset: str
    defense: str
    attack: str
    scenario: str
    eps: float
    constrained: bool
    fooled: int
    n: int
    bone: float
    angle: float
    velocity: float
    mean_cm: float
    max_cm: float


def final_values(details: CellDetails, measure: str) -> np.ndarray:
    """Per clip, ``measure`` of the adversarial skeleton the clip ended with (NaN where not stored)."""
    n = len(details.broken_by)
    out = np.full(n, np.nan)
    for k, stage in enumerate(details.stages, start=1):
        values = details.metrics.get(f"{stage}/skeleton/{measure}")
        if values is None:
            continue
        values = np.where(np.isfinite(values), values, np.nan)
        reached = np.isfinite(values)
        ended_here = (details.broken_by == k) | ((details.broken_by == ROBUST) & reached)
        out = np.where(ended_here & reached, values, out)
    return out


def plausibility_rows(layout: RunLayout, cells: dict[str, dict[str, Any]]) -> list[PlausibilityRow]:
    """The run's skeleton cells that stored plausibility, in the layout's order (one row per cell)."""
    rows: list[PlausibilityRow] = []
    seen: set[str] = set()
    for ref in layout.cells:
        cell = cells.get(ref.cell_id)
        if ref.attack is None or cell is None or ref.cell_id in seen:
            continue
        seen.add(ref.cell_id)
        details = details_of(cell)
        if details is None or not any(k.endswith(f"/skeleton/{MEASURES[0]}") for k in details.metrics):
            continue  # not a skeleton cell, or stored before robench measured plausibility
        fooled = details.broken_by >= 1
        values = {m: final_values(details, m)[fooled] for m in MEASURES}
        params = (json.loads(cell["spec"]).get("attack") or {}).get("params") or {}
        variant = layout.variants[ref.variant]
        rows.append(PlausibilityRow(
            variant.label,
            variant.defenses[ref.defense].label if ref.defense in variant.defenses else ref.defense,
            variant.attacks[ref.attack].label if ref.attack in variant.attacks else ref.attack,
            ref.scenario, ref.eps, params.get("plausible") is not None, int(fooled.sum()), len(details.broken_by),
            100 * _mean(values["bone_violations"]), 100 * _mean(values["angle_violations"]),
            100 * _mean(values["velocity_violations"]), _mean(values["mean_displacement_cm"]),
            _max(values["max_displacement_cm"])))
    return rows


def _mean(v: np.ndarray) -> float:
    return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")


def _max(v: np.ndarray) -> float:
    return float(np.nanmax(v)) if np.isfinite(v).any() else float("nan")
