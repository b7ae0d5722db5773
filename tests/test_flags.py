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


def test_a_model_that_ignores_an_input_is_flagged() -> None:
    """The reliance check swaps one input between the batch's clips: a model reading the skeleton only
    never changes its predictions when the RGB is swapped, and gets the ignores-input flag."""
    import torch

    from robench.report.flags import cell_flags
    from robench.sanity import model_checks
    from robench.store.details import CellDetails

    skeleton_only = lambda x: x["skeleton"].flatten(1)[:, :4] * torch.tensor([1.0, -1.0, 2.0, 0.5])  # noqa: E731
    both = lambda x: skeleton_only(x) + x["rgb"].flatten(1)[:, :4] * 10  # noqa: E731
    g = torch.Generator().manual_seed(0)
    inputs = {"rgb": torch.rand(8, 3, 2, 4, 4, generator=g), "skeleton": torch.randn(8, 3, 4, 25, 1, generator=g)}
    ignoring, fused = model_checks(skeleton_only, inputs), model_checks(both, inputs)
    assert ignoring.reliance["rgb"] == 0 and ignoring.reliance["skeleton"] > 0 and fused.reliance["rgb"] > 0
    for checks, expected in ((ignoring, {"ignores-input"}), (fused, set())):
        details = CellDetails(["pgd"], np.full(8, -1, dtype=np.int8), model=checks)
        stored = {"details": json.dumps(details.to_json()), "spec": json.dumps({"attack": {"type": "pgd"}})}
        assert {f.code for f in cell_flags(stored)} == expected
    few = model_checks(skeleton_only, {m: t[:4] for m, t in inputs.items()})  # too few clips to say
    details = CellDetails(["pgd"], np.full(4, -1, dtype=np.int8), model=few)
    assert not cell_flags({"details": json.dumps(details.to_json()), "spec": json.dumps({"attack": {"type": "pgd"}})})


def test_a_constant_predictor_is_not_said_to_ignore_one_input() -> None:
    import torch

    from robench.sanity import model_checks

    inputs = {"rgb": torch.rand(8, 3, 2, 4, 4), "skeleton": torch.randn(8, 3, 4, 25, 1)}
    assert model_checks(lambda x: torch.zeros(len(x["rgb"]), 4), inputs).reliance == {}
