"""Sanity flags of a protocol run, derived from its stored cells (causes and fixes: ``docs/flags.md``).

Per cell, from what the evaluation measured and stored in the cell's ``details``: a random forward
pass, probability outputs, zero or missing input gradients, and, inside an ensemble, a black-box
member fooling clips that the white-box members before it did not. Across the cells of one model
(same dataset, defense and seed), from their per-sample results: accuracy at eps 0 unlike clean,
accuracy rising with eps for one attack and scenario, an iterative attack weaker than a one-step
attack, a very large eps not reaching chance, a black-box attack below every white-box attack.

Generic: an attack's kind comes from its registered class's declared ``single_step`` and
``gradient_free`` attributes, never from its name.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from typing import Any

import numpy as np

from robench.errors import UnknownNameError
from robench.registry import ATTACKS
from robench.run_layout import CellRef, RunLayout
from robench.sanity import BLACK_BOX_MARGIN, LARGE_EPS, RELIANCE_CLIPS, Flag
from robench.store import unpack_bits
from robench.store.details import details_of


def _kind(cell: dict[str, Any]) -> tuple[bool, bool] | None:
    """(single_step, gradient_free) of the cell's attack class; None if its attack is not registered."""
    attack = (json.loads(cell["spec"]).get("attack") or {}).get("type")
    if attack is None:
        return None
    try:
        cls = ATTACKS.get(attack)
    except UnknownNameError:
        return None
    return bool(cls.single_step), bool(cls.gradient_free)


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def cell_flags(cell: dict[str, Any]) -> list[Flag]:
    """Flags from one cell's stored measurements."""
    d = details_of(cell)
    if d is None:
        return []
    out = []
    if d.model is not None and d.model.random_forward:
        out.append(Flag("random-forward", "two forward passes of the same clips gave different outputs"))
    if d.model is not None and d.model.probability_outputs:
        out.append(Flag("probability-outputs", "every output row is in [0, 1] and sums to 1"))
    if d.model is not None and d.model.clips >= RELIANCE_CLIPS:
        for m, share in d.model.reliance.items():
            if share == 0:
                out.append(Flag("ignores-input", f"replacing the {m} input of {d.model.clips} clips by another "
                                                 "clip's changed no prediction"))
    g = d.gradients
    if g.zero:
        out.append(Flag("zero-gradients", f"{g.zero} of {g.checked} clips had an identically zero input gradient"))
    if g.missing:
        out.append(Flag("missing-gradients", f"{g.missing} of {g.checked} clips got no gradient for an attacked input"))
    n = len(d.broken_by)
    for k, free in enumerate(d.gradient_free, start=1):
        if free and n and k > 1:
            gained = int((d.broken_by == k).sum())
            if gained / n > BLACK_BOX_MARGIN:
                out.append(Flag("black-box-stronger", f"{d.stages[k - 1]} fooled {gained} of {n} clips that "
                                f"{', '.join(d.stages[: k - 1])} left robust"))
    return out


def run_flags(layout: RunLayout, cells: dict[str, dict[str, Any]]) -> dict[str, list[Flag]]:
    """Every flag of the run's stored cells, keyed by cell id."""
    out: dict[str, list[Flag]] = defaultdict(list)
    models: dict[tuple[str, str, int], list[CellRef]] = defaultdict(list)
    for ref in layout.cells:
        if ref.cell_id in cells:
            models[(ref.variant, ref.defense, ref.seed)].append(ref)
    seen: set[str] = set()
    for refs in models.values():
        for ref in refs:
            if ref.cell_id not in seen:
                seen.add(ref.cell_id)
                out[ref.cell_id] += cell_flags(cells[ref.cell_id])
        _model_flags(refs, cells, out)
    return {k: v for k, v in out.items() if v}


def _correct(cell: dict[str, Any]) -> np.ndarray | None:
    return unpack_bits(cell["per_sample"], cell["n"])


def _model_flags(refs: list[CellRef], cells: dict[str, dict[str, Any]], out: dict[str, list[Flag]]) -> None:
    clean = next((cells[r.cell_id] for r in refs if r.attack is None), None)
    attacked = {r.cell_id: r for r in refs if r.attack is not None}
    one_clip = {cid: 1.0 / max(cells[cid]["n"], 1) for cid in attacked}
    for cid, ref in attacked.items():
        cell = cells[cid]
        if ref.eps == 0 and clean is not None:
            a, b = _correct(cell), _correct(clean)
            if a is not None and b is not None and (a.shape != b.shape or not np.array_equal(a, b)):
                out[cid].append(Flag("eps0-not-clean", f"{_pct(cell['accuracy'])} at eps 0, clean "
                                     f"{_pct(clean['accuracy'])}"))
        if ref.eps >= LARGE_EPS:
            d = details_of(cell)
            classes = d.model.classes if d is not None and d.model is not None else 0
            if classes:
                chance, n = 1.0 / classes, cell["n"]
                if cell["correct"] > chance * n + 2 * math.sqrt(n * chance * (1 - chance)) + 1:
                    out[cid].append(Flag("large-eps-not-chance", f"{_pct(cell['accuracy'])} at eps "
                                         f"{255 * ref.eps:.3g}/255; chance is {_pct(chance)}"))
    by_attack: dict[tuple[str, str], list[str]] = defaultdict(list)
    by_budget: dict[tuple[str, float], list[str]] = defaultdict(list)
    for cid, ref in attacked.items():
        assert ref.attack is not None
        by_attack[(ref.attack, ref.scenario)].append(cid)
        by_budget[(ref.scenario, ref.eps)].append(cid)
    for ids in by_attack.values():
        ids = sorted(ids, key=lambda c: attacked[c].eps)
        for j, cid in enumerate(ids):
            lower = [c for c in ids[:j] if attacked[c].eps < attacked[cid].eps]
            worse = [c for c in lower if cells[cid]["accuracy"] > cells[c]["accuracy"] + one_clip[cid] + 1e-12]
            if worse:
                c = worse[-1]
                out[cid].append(Flag("accuracy-rises-with-eps", f"{_pct(cells[cid]['accuracy'])} at eps "
                                     f"{255 * attacked[cid].eps:.3g}/255 > {_pct(cells[c]['accuracy'])} at "
                                     f"{255 * attacked[c].eps:.3g}/255 (same attack)"))
    for ids in by_budget.values():
        kinds = {cid: _kind(cells[cid]) for cid in ids}
        one_step = [c for c in ids if (k := kinds[c]) is not None and k[0]]
        white = [c for c in ids if (k := kinds[c]) is not None and not k[0] and not k[1]]
        black = [c for c in ids if (k := kinds[c]) is not None and k[1]]
        for cid in white:
            weaker = [c for c in one_step if cells[cid]["accuracy"] > cells[c]["accuracy"] + one_clip[cid] + 1e-12]
            if weaker:
                out[cid].append(Flag("iterative-weaker", f"{_pct(cells[cid]['accuracy'])} > one-step "
                                     f"{_pct(cells[weaker[0]]['accuracy'])}"))
        gradient = one_step + white
        if gradient:
            best = min(cells[c]["accuracy"] for c in gradient)
            for cid in black:
                if cells[cid]["accuracy"] < best - BLACK_BOX_MARGIN:
                    out[cid].append(Flag("black-box-stronger", f"{_pct(cells[cid]['accuracy'])} < best gradient "
                                         f"attack {_pct(best)}"))
