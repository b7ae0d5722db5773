"""Plausible skeletons: every attack's output keeps bone lengths, joint angles, velocities and accelerations
within the limits, the limits are part of the identity, and every skeleton cell stores how plausible its
adversarial skeletons are."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import robench
from conftest import TINY_PROTOCOL, tiny_model
from robench.attacks.plausible import SkeletonLimits, plausibility, project_plausible, violations
from robench.errors import ProtocolError
from robench.plan import make_plan
from robench.protocol import load_protocol

LIMITS = SkeletonLimits(bone=0.01, angle=0.1, velocity=0.1, acceleration=0.1)


def moving_bodies(batch: int = 6, frames: int = 16, seed: int = 1, second: bool = True) -> torch.Tensor:
    """Skeletons ``[B, 3, T, 25, 2]`` in metres: a random pose per clip drifting smoothly over time; the
    second person present in every other clip (absent: zeros)."""
    g = torch.Generator().manual_seed(seed)
    pose = torch.randn(batch, 3, 1, 25, 2, generator=g) * 0.3 + torch.tensor([0.0, 0.0, 3.0]).view(1, 3, 1, 1, 1)
    drift = torch.cumsum(torch.randn(batch, 3, frames, 25, 2, generator=g) * 0.004, dim=2)
    x = pose + drift
    if second:
        x[::2, ..., 1] = 0
    return x


def _inputs(batch: int = 6) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    return {"rgb": torch.randint(0, 256, (batch, 3, 8, 32, 32), generator=g).float() / 255,
            "skeleton": moving_bodies(batch)}


# -- the projection ----------------------------------------------------------------------------------

def test_projection_satisfies_every_limit_and_stays_in_the_ball() -> None:
    x = moving_bodies()
    g = torch.Generator().manual_seed(5)
    adv = x + (torch.rand(x.shape, generator=g) * 2 - 1) * 0.03
    assert all(bool(v.all()) for v in violations(adv, x, LIMITS).values())  # noise breaks every limit
    out = project_plausible(adv, x, LIMITS)
    assert not any(bool(v.any()) for v in violations(out, x, LIMITS).values())
    assert float((out - x).abs().max()) <= 0.03 + 1e-6
    assert bool((out[::2, ..., 1] == 0).all())  # an absent person stays absent


def test_a_rigid_translation_is_plausible_and_kept_exactly() -> None:
    x = moving_bodies()
    adv = x + torch.tensor([0.02, -0.02, 0.01]).view(1, 3, 1, 1, 1) * (x != 0)
    assert torch.equal(project_plausible(adv, x, LIMITS), adv)


def test_a_uniform_stretch_is_cut_back_to_the_bone_tolerance() -> None:
    """Scaling one person about its root by 5% changes every bone by 5%: the projection keeps the largest
    stretch the bone limit allows, 1% (to the bisection's resolution)."""
    x = moving_bodies(second=False)
    root = x[:, :, :, :1]
    adv = root + (x - root) * 1.05
    out = project_plausible(adv, x, SkeletonLimits(bone=0.01, angle=0.1, velocity=10.0, acceleration=10.0))
    kept = ((out - x).norm() / (adv - x).norm()).item()
    assert kept == pytest.approx(0.2, abs=2e-3)
    assert not violations(out, x, LIMITS)["bone"].any()


def test_zero_limits_leave_only_rigid_motion() -> None:
    x = moving_bodies()
    adv = x + 0.01 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    assert torch.equal(project_plausible(adv, x, SkeletonLimits(0.0, 0.0, 0.0, 0.0)), x)


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="bone"):
        SkeletonLimits(bone=-0.1)
    with pytest.raises(ValueError, match="unknown"):
        SkeletonLimits.of({"elbow": 0.1})
    assert SkeletonLimits.of({"bone": 0.02}) == SkeletonLimits(bone=0.02)


# -- every attack composes with it -------------------------------------------------------------------

ATTACKS = {
    "fgsm": {},
    "pgd": {"steps": 3, "step_size": "2/255"},
    "cw": {"steps": 3, "step_size": "2/255"},
    "apgd": {"steps": 4},
    "apgd_t": {"steps": 4, "targets": 2},
    "fab_t": {"steps": 4, "targets": 2},
    "square": {"queries": 20},
    "autoattack": {"steps": 3, "targets": 2, "queries": 10},
}


@pytest.mark.parametrize("name, scenario",
                         [(name, "S") for name in sorted(ATTACKS)] + [("pgd", "RS"), ("square", "RS")])
def test_every_attack_output_is_plausible(name: str, scenario: str) -> None:
    model, x = tiny_model(), _inputs()
    with torch.no_grad():
        labels = model(x).argmax(1)
    attack = robench.attack(name, scenario, {"rgb": "8/255", "skeleton": 0.03}, plausible=LIMITS.as_params(),
                            **ATTACKS[name])
    stages = [stage for _, stage in attack.stages()]
    assert all(stage.plausible == LIMITS for stage in stages)
    adv = attack(model, x, labels, torch.arange(len(labels)))  # checked: ball, range and limits
    assert not any(bool(v.any()) for v in violations(adv["skeleton"], x["skeleton"], LIMITS).values())
    rates = plausibility(adv["skeleton"], x["skeleton"], LIMITS)
    assert float(rates["bone_violations"].max()) == 0 and float(rates["angle_violations"].max()) == 0
    if scenario == "S":
        assert torch.equal(adv["rgb"], x["rgb"])


def test_the_check_refuses_an_implausible_output() -> None:
    from robench.attacks.base import check_adversarial
    from robench.errors import AttackCheckError

    x = _inputs()
    adv = {"rgb": x["rgb"], "skeleton": x["skeleton"] + 0.02 * torch.randn(x["skeleton"].shape)}
    with pytest.raises(AttackCheckError, match="plausibility limits"):
        check_adversarial(x, adv, {"skeleton": 0.1}, {"skeleton": None}, plausible=LIMITS)


# -- protocol, identity and stored plausibility ------------------------------------------------------

def _protocol(tmp_path: Path, threat: str) -> Path:
    text = TINY_PROTOCOL.read_text() + threat
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return path


def test_the_limits_are_part_of_every_skeleton_cells_identity_and_the_models_are_shared(tmp_path: Path) -> None:
    plain = make_plan(load_protocol(str(TINY_PROTOCOL), ()))
    limited = make_plan(load_protocol(str(_protocol(tmp_path, "threat: {skeleton: {plausible: {bone: 0.02}}}\n")), ()))
    other = make_plan(load_protocol(str(_protocol(tmp_path, "threat: {skeleton: {plausible: {bone: 0.05}}}\n")), ()))
    for key, cid in limited.index.items():
        cell, before = limited.cells[cid], plain.cells[plain.index[key]]
        if "skeleton" in cell.attack_params.get("modalities", []):
            assert cell.attack_params["plausible"] == {**LIMITS.as_params(), "bone": 0.02}
            assert cell.id != before.id
        elif cell.model_id == before.model_id:  # clean and RGB-only cells of the same model: the same results
            assert cell.id == before.id
    assert set(limited.cells) != set(other.cells)
    assert set(plain.models) == set(limited.models)  # the same models (training attacks stay L-inf), attacked twice


@pytest.mark.parametrize("bad, allowed", [("{bone: -1}", "number >= 0"), ("{knee: 0.1}", "bone"),
                                          ("{bone: .inf}", "finite")])
def test_bad_limits_are_clear_protocol_errors(tmp_path: Path, bad: str, allowed: str) -> None:
    with pytest.raises(ProtocolError, match=allowed):
        load_protocol(str(_protocol(tmp_path, f"threat: {{skeleton: {{plausible: {bad}}}}}\n")), ())
    with pytest.raises(ProtocolError, match="plausible"):  # the RGB has no skeleton limits
        load_protocol(str(_protocol(tmp_path, "threat: {rgb: {plausible: {}}}\n")), ())


@pytest.mark.slow
def test_skeleton_cells_store_how_plausible_their_adversarial_skeletons_are(tmp_path: Path) -> None:
    from robench.cli import main
    from robench.store import ResultsStore

    protocol = _protocol(tmp_path, "threat: {skeleton: {plausible: {}}}\n")
    for name, path in (("plain", TINY_PROTOCOL), ("limited", protocol)):
        assert main(["run", str(path), "--store", str(tmp_path / f"{name}.sqlite"), "--cache", str(tmp_path / "c"),
                     "--progress", "quiet", "--set", "training.epochs=1"]) == 0
    rates = {}
    for name in ("plain", "limited"):
        rows = ResultsStore(tmp_path / f"{name}.sqlite", read_only=True).dataframe()
        for _, row in rows.iterrows():
            if row["scenario"] not in ("S", "RS"):
                continue
            metrics = row["details"]["metrics"]
            keys = {k.split("/", 1)[1] for k in metrics}
            assert {"skeleton/bone_violations", "skeleton/mean_displacement_cm"} <= keys, keys
            bone = np.array([np.nan if x is None else x for k, v in metrics.items()
                             if k.endswith("skeleton/bone_violations") for x in v], dtype=float)
            rates.setdefault(name, []).append(np.nanmax(bone))
    assert max(rates["limited"]) == 0 and max(rates["plain"]) > 0
    assert not math.isnan(max(rates["plain"]))
    for name, threat in (("plain", "L-inf"), ("limited", "limited")):  # the report's table of them
        out = tmp_path / f"{name}.md"
        assert main(["report", "--store", str(tmp_path / f"{name}.sqlite"), "--out", str(out)]) == 0
        text = out.read_text()
        assert "How plausible the adversarial skeletons are" in text and f"| {threat} |" in text


def test_an_attack_written_before_the_limits_still_loads_and_refuses_them_clearly(tmp_path: Path) -> None:
    """A plugin attack without a ``plausible`` parameter registers and runs as before; under the plausible
    threat model its skeleton cells are a clear protocol error, not a silently unconstrained attack."""
    import textwrap

    from test_identity import ATTACK_PLUGIN

    name = "old_style_attack_plausible_test"  # (its own name: test_identity registers the original)
    (tmp_path / "my_attack.py").write_text(
        textwrap.dedent(ATTACK_PLUGIN.format(extra="")).replace("decaying_pgd_identity_test", name))
    plain = f"include: {TINY_PROTOCOL}\nname: plug\nplugins: [my_attack.py]\n" \
            f"attacks: {{pgd: {{type: {name}, label: D}}}}\n"
    (tmp_path / "a.yaml").write_text(plain)
    assert make_plan(load_protocol(str(tmp_path / "a.yaml"), ())).cells
    (tmp_path / "b.yaml").write_text(plain + "threat: {skeleton: {plausible: {}}}\n")
    with pytest.raises(ProtocolError, match="does not"):
        make_plan(load_protocol(str(tmp_path / "b.yaml"), ()))
