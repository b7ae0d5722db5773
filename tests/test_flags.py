"""The cross-cell sanity flags (robench.report.flags) on hand-made cells of one model: each fires on its
pattern and stays quiet on a consistent set of results."""

from __future__ import annotations

import json

import numpy as np

from robench.report.flags import _model_flags
from robench.run_layout import CellRef
from robench.store import pack_bits


def cell(cid: str, correct: list[bool], attack: str | None, classes: int = 4) -> dict:
    bits = np.array(correct, dtype=bool)
    details = None
    if attack is not None:
        details = json.dumps({"stages": [attack], "broken_by": "", "gradients": {"checked": 0, "zero": 0, "missing": 0},
                              "model": {"random_forward": False, "probability_outputs": False, "classes": classes}})
    return {"cell_id": cid, "n": len(bits), "correct": int(bits.sum()), "accuracy": float(bits.mean()),
            "per_sample": pack_bits(bits), "details": details,
            "spec": json.dumps({"attack": {"type": attack} if attack else None})}


def flags(cells: list[tuple[dict, str | None, str, float]]) -> dict[str, set[str]]:
    refs = [CellRef("v", "d", 0, aid, scenario, eps, c["cell_id"]) for c, aid, scenario, eps in cells]
    out: dict[str, list] = {c["cell_id"]: [] for c, *_ in cells}
    _model_flags(refs, {c["cell_id"]: c for c, *_ in cells}, out)
    return {k: {f.code for f in v} for k, v in out.items() if v}


T, F = True, False


def test_consistent_results_raise_nothing() -> None:
    got = flags([
        (cell("clean", [T] * 8, None), None, "clean", 0.0),
        (cell("pgd0", [T] * 8, "pgd"), "pgd", "RS", 0.0),
        (cell("pgd8", [T, T, T, T, F, F, F, F], "pgd"), "pgd", "RS", 8 / 255),
        (cell("fgsm8", [T, T, T, T, T, F, F, F], "fgsm"), "fgsm", "RS", 8 / 255),
        (cell("sq8", [T, T, T, T, T, T, F, F], "square"), "square", "RS", 8 / 255),
        (cell("pgd_big", [F] * 6 + [T, F], "pgd"), "pgd", "RS", 0.5),
    ])
    assert got == {}


def test_each_pattern_raises_its_flag() -> None:
    got = flags([
        (cell("clean", [T] * 8, None), None, "clean", 0.0),
        (cell("pgd0", [T] * 7 + [F], "pgd"), "pgd", "RS", 0.0),                     # eps 0 unlike clean
        (cell("pgd4", [F] * 6 + [T, T], "pgd"), "pgd", "RS", 4 / 255),
        (cell("pgd8", [T] * 6 + [F, F], "pgd"), "pgd", "RS", 8 / 255),              # rises with eps, > FGSM
        (cell("fgsm8", [T, T, F, F, F, F, F, F], "fgsm"), "fgsm", "RS", 8 / 255),
        (cell("sq8", [F] * 8, "square"), "square", "RS", 8 / 255),                  # black box beats both
        (cell("pgd_big", [T] * 8, "pgd"), "pgd", "S", 0.5),                         # large eps, not chance
    ])
    assert got["pgd0"] == {"eps0-not-clean"}
    assert got["pgd8"] == {"accuracy-rises-with-eps", "iterative-weaker"}
    assert got["sq8"] == {"black-box-stronger"}
    assert got["pgd_big"] == {"large-eps-not-chance"}
    assert "fgsm8" not in got and "pgd4" not in got
