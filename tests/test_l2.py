"""The L2 threat model: each attacked modality's per-clip L2 ball, ``||x'_m - x_m||_2 <= eps_m``.

Invariants of every L2 attack on the tiny two-stream model (inside each ball, in the valid range, the
other modality untouched, eps 0 is clean, more steps never help the model, plausible limits hold),
known answers on linear models (PGD reaches ``x - eps w / ||w||``; APGD, APGD-T, FAB-T and AutoAttack
find exactly the analytically non-robust clips), the L2 projections against their definitions, and
the protocol side (``threat.norm``: L-inf ids unchanged, L2 ids new, unsupported attacks refused).
"""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch
from torch import Tensor, nn

from conftest import TINY_PROTOCOL
from robench.attacks import APGD, APGDT, CW, FABT, FGSM, PGD, AutoAttack, Square, check_adversarial
from robench.attacks.base import Attack, clip_norms, l2_project
from robench.attacks.fab_t import l2_projection
from robench.attacks.plausible import SkeletonLimits, violations
from robench.attacks.square import bump, bump_pairs
from robench.errors import AttackCheckError, ProtocolError
from robench.identity import identity_params
from robench.protocol.check import Checker, Component
from robench.protocol.schema import ThreatConfig
from robench.registry import ATTACKS, load_builtins

load_builtins()

L2_ATTACKS = ["fgsm", "pgd", "apgd", "apgd_t", "fab_t", "square", "autoattack"]
SCENARIOS = {"R": ["rgb"], "S": ["skeleton"], "RS": ["rgb", "skeleton"]}
EPS = {"rgb": 2.0, "skeleton": 1.0}
SMALL = {"steps": 3, "queries": 20, "targets": 2}


def build(name: str, modalities: list[str], eps: dict[str, float], **kw: object) -> Attack:
    cls = ATTACKS.get(name)
    accepted = inspect.signature(cls.__init__).parameters
    params = {k: v for k, v in {**SMALL, **kw}.items() if k in accepted}
    if "step_size" in accepted and "step_size" not in params:
        params["step_size"] = {m: eps[m] / 4 for m in modalities}
    return cls(modalities=modalities, eps={m: eps[m] for m in modalities}, norm="l2", **params)


def accuracy(model: nn.Module, inputs: dict[str, Tensor], labels: Tensor) -> float:
    with torch.no_grad():
        return float((model(inputs).argmax(1) == labels).float().mean())


def assert_inside(adv: dict[str, Tensor], inputs: dict[str, Tensor], mods: list[str], eps: dict[str, float]) -> None:
    for m, x in inputs.items():
        if m in mods:
            assert torch.isfinite(adv[m]).all()
            norms = clip_norms((adv[m] - x).double())
            assert float(norms.max()) <= eps[m] * (1 + 1e-5) + 1e-6, f"{m} leaves its L2 ball: {norms.tolist()}"
        else:
            assert torch.equal(adv[m], x), f"unattacked {m} changed"
    if "rgb" in mods:
        assert adv["rgb"].min() >= 0 and adv["rgb"].max() <= 1


# -- invariants on the tiny two-stream model ------------------------------------------------------------

@pytest.mark.parametrize("name", L2_ATTACKS)
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_output_inside_the_l2_balls(name, scenario, model, inputs, labels) -> None:
    mods = SCENARIOS[scenario]
    adv = build(name, mods, EPS)(model, inputs, labels, torch.arange(len(labels)))
    assert_inside(adv, inputs, mods, EPS)
    assert accuracy(model, adv, labels) <= accuracy(model, inputs, labels)


@pytest.mark.parametrize("name", L2_ATTACKS)
def test_eps_zero_is_clean(name, model, inputs, labels) -> None:
    noisy = labels.clone()
    noisy[0] = (noisy[0] + 1) % 4  # one clean mistake
    adv = build(name, ["rgb", "skeleton"], {"rgb": 0.0, "skeleton": 0.0}, step_size=0.1)(model, inputs, noisy)
    for m in inputs:
        assert torch.equal(adv[m], inputs[m])
    assert accuracy(model, adv, noisy) == accuracy(model, inputs, noisy) == pytest.approx(5 / 6)


def test_l2_attacks_attack(model, inputs, labels) -> None:
    """A budget well inside RGB's range fools every clip with PGD, APGD and AutoAttack (the model is 100% clean)."""
    for name in ("pgd", "apgd", "autoattack"):
        adv = build(name, ["rgb"], EPS, steps=10)(model, inputs, labels, torch.arange(len(labels)))
        assert accuracy(model, adv, labels) == 0.0, name


@pytest.mark.parametrize("name, budgets, sizes, radius", [("pgd", "steps", (1, 2, 4, 8), 0.6),
                                                            ("square", "queries", (5, 20, 80), 8.0)])
def test_more_steps_never_score_higher(name, budgets, sizes, radius, model, inputs, labels) -> None:
    seeds = torch.arange(len(labels))
    eps = {"rgb": radius, "skeleton": 1.0}
    accs = []
    for k in sizes:
        attack = build(name, ["rgb"], eps, step_size={"rgb": 0.05}, **{budgets: k})
        accs.append(accuracy(model, attack(model, inputs, labels, seeds), labels))
    assert accs == sorted(accs, reverse=True), accs
    assert accs[-1] < accs[0], accs


@pytest.mark.parametrize("name", ["pgd", "square", "apgd"])
def test_plausible_limits_hold_under_l2(name, model, inputs, labels) -> None:
    limits = {"bone": 0.05, "angle": 0.2, "velocity": 0.3, "acceleration": 0.3}
    eps = {"rgb": 1.0, "skeleton": 1.0}
    adv = build(name, ["rgb", "skeleton"], eps, plausible=limits)(model, inputs, labels, torch.arange(len(labels)))
    assert_inside(adv, inputs, ["rgb", "skeleton"], eps)
    broken = violations(adv["skeleton"], inputs["skeleton"], SkeletonLimits.of(limits) or SkeletonLimits())
    assert not any(bool(v.any()) for v in broken.values()), broken
    assert not torch.equal(adv["skeleton"], inputs["skeleton"])  # the limits shrink the step, not to zero


# -- the projections ------------------------------------------------------------------------------------

def test_l2_projection_halves_a_delta_of_twice_eps() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 5, 25, 2, generator=g)
    delta = torch.randn(x.shape, generator=g)
    eps = 0.7
    delta = delta / clip_norms(delta).view(-1, 1, 1, 1, 1) * (2 * eps)
    attack = PGD(["skeleton"], eps, step_size=0.1, norm="l2")
    out = attack.project(x + delta, x, "skeleton")
    assert torch.allclose(out - x, delta / 2, atol=1e-6)
    assert torch.allclose(clip_norms(out - x), torch.full((4,), eps), rtol=1e-5)
    inside = delta / 4  # already inside: untouched, bit for bit
    assert torch.equal(l2_project(inside, eps), inside)


def test_l2_projection_clips_rgb_into_range_and_stays_in_the_ball() -> None:
    x = torch.full((2, 3, 2, 4, 4), 0.95)
    attack = PGD(["rgb"], 0.5, step_size=0.1, norm="l2")
    out = attack.project(x + 3.0, x, "rgb")
    assert float(out.max()) <= 1.0 and float(clip_norms(out - x).max()) <= 0.5 + 1e-6


def _bisected_l2_step(t: Tensor, w: Tensor, b: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    """An independent solution of the box-constrained minimal L2 step (float64 bisection on the multiplier)."""
    t, w, b, lo, hi = (v.double() for v in (t, w, b, lo, hi))
    c = (w * t).sum(1) - b
    s = torch.where(c >= 0, 1.0, -1.0).double()[:, None]
    ws, cs = w * s, c.abs()
    room = torch.where(ws > 0, t - lo, hi - t).clamp(min=0)

    def step(lam: Tensor) -> Tensor:
        return torch.minimum(lam[:, None] * ws.abs(), room)

    lo_l, hi_l = torch.zeros_like(c), torch.full_like(c, 1e6)
    for _ in range(200):
        mid = (lo_l + hi_l) / 2
        short = (ws.abs() * step(mid)).sum(1) < cs
        lo_l, hi_l = torch.where(short, mid, lo_l), torch.where(short, hi_l, mid)
    return -torch.sign(ws) * step(hi_l)


def test_fab_l2_projection_is_the_minimal_box_constrained_step() -> None:
    g = torch.Generator().manual_seed(1)
    n, d = 16, 40
    t = torch.rand(n, d, generator=g)
    w = torch.randn(n, d, generator=g)
    w[:, :3] = 0.0  # coordinates the hyperplane ignores
    b = (w * t).sum(1) + torch.randn(n, generator=g) * 2
    lo, hi = torch.zeros(n, d), torch.ones(n, d)
    hi[:4] = float("inf")  # unbounded rows
    lo[:4] = float("-inf")
    step = l2_projection(t, w, b, lo, hi)
    assert torch.allclose(step.double(), _bisected_l2_step(t, w, b, lo, hi), atol=1e-5)
    z = t + step
    assert bool(((z >= lo - 1e-6) & (z <= hi + 1e-6)).all())
    reachable = torch.isinf(hi[:, 0])
    assert torch.allclose((w * z).sum(1)[reachable], b[reachable], atol=1e-4)
    assert float(step[:, :3].abs().max()) == 0.0


def test_square_bumps_are_the_reference_pseudo_gaussians() -> None:
    """The closed form equals the authors' loop (``pseudo_gaussian_pert_rectangles``), and a bump pair
    is +bump on one half and -bump on the other, unit norm."""
    def reference(x: int, y: int) -> Tensor:
        delta = torch.zeros(x, y, dtype=torch.float64)
        xc, yc = x // 2 + 1, y // 2 + 1
        c0, c1 = xc - 1, yc - 1
        for k in range(max(xc, yc)):
            delta[max(c0, 0) : min(c0 + 2 * k + 1, x), max(0, c1) : min(c1 + 2 * k + 1, y)] += 1.0 / (k + 1) ** 2
            c0, c1 = c0 - 1, c1 - 1
        return delta / delta.norm()

    for size in ((5, 5), (3, 7), (8, 4), (1, 6)):
        assert torch.allclose(bump(size), reference(*size))
    pairs = bump_pairs((7, 5))
    assert torch.allclose(pairs[0][:3], reference(3, 5) / 2 ** 0.5)
    assert torch.allclose(pairs[0][3:], -reference(4, 5) / 2 ** 0.5)
    assert torch.allclose(pairs[1][:, :2], reference(7, 2) / 2 ** 0.5)
    assert torch.allclose(pairs.flatten(1).norm(dim=1), torch.ones(2, dtype=torch.float64))


# -- known answers on linear models ---------------------------------------------------------------------

class Linear(nn.Module):
    """Logits ``x_skeleton . W + b`` (the skeleton is unbounded, so the L2 answers are exact)."""

    modalities = ("rgb", "skeleton")

    def __init__(self, classes: int, seed: int, shape: tuple[int, ...] = (3, 4, 5, 2)) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        d = 1
        for s in shape:
            d *= s
        self.w = nn.Parameter(torch.randn(d, classes, generator=g))
        self.b = nn.Parameter(torch.randn(classes, generator=g))

    def forward(self, inputs: dict[str, Tensor]) -> Tensor:
        return inputs["skeleton"].flatten(1) @ self.w + self.b


def linear_inputs(n: int, seed: int) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"rgb": torch.rand(n, 3, 2, 4, 4, generator=g), "skeleton": torch.randn(n, 3, 4, 5, 2, generator=g) * 0.3}


def test_pgd_reaches_the_l2_optimum_of_a_linear_model() -> None:
    """Two classes, true-class margin ``w . x + b``: the margin loss's maximiser in the ball is ``x - eps w / ||w||``
    (the margin, not the cross-entropy, whose float32 gradient loses its direction once the softmax saturates)."""
    model = Linear(2, seed=0)
    with torch.no_grad():
        model.b.copy_(torch.tensor([20.0, 0.0]))  # never fooled: every step pushes the same way
    inputs = linear_inputs(5, seed=1)
    labels = torch.zeros(5, dtype=torch.long)
    w = (model.w[:, 0] - model.w[:, 1]).detach().view(1, 3, 4, 5, 2)
    eps = 0.8
    optimum = inputs["skeleton"] - eps * w / w.norm()
    exact = PGD(["skeleton"], eps, step_size=0.3, steps=5, random_start=False, loss="cw", early_stop=False,
                norm="l2")
    assert torch.allclose(exact(model, inputs, labels)["skeleton"], optimum, atol=1e-5)
    started = PGD(["skeleton"], eps, step_size=0.4, steps=100, loss="cw", early_stop=False, norm="l2")
    adv = started(model, inputs, labels, torch.arange(5))["skeleton"]
    assert float(clip_norms(adv - optimum).max()) < 1e-2 * eps
    one = FGSM(["skeleton"], eps, loss="cw", early_stop=False, norm="l2")  # the fast gradient method is exact here
    assert torch.allclose(one(model, inputs, labels)["skeleton"], optimum, atol=1e-5)


def analytic_l2_robust(model: Linear, inputs: dict[str, Tensor], labels: Tensor, eps: float) -> Tensor:
    """Exact L2 robustness of a linear model on an unbounded input: every margin exceeds eps times its weight norm."""
    with torch.no_grad():
        logits = model(inputs)
        robust = logits.argmax(1) == labels
        for j in range(logits.shape[1]):
            margin = logits.gather(1, labels[:, None]).squeeze(1) - logits[:, j]
            dw = (model.w[:, labels].T - model.w[:, j][None, :]).norm(dim=1)
            robust &= (labels == j) | (margin > eps * dw)
    return robust


@pytest.mark.parametrize("name", ["apgd", "apgd_t", "fab_t", "autoattack"])
def test_l2_attacks_find_exactly_the_non_robust_clips_of_a_linear_model(name) -> None:
    """APGD with the DLR loss (margin-based; the cross-entropy's maximiser need not cross the nearest boundary)."""
    model = Linear(5, seed=2)
    inputs = linear_inputs(40, seed=3)
    with torch.no_grad():
        labels = model(inputs).argmax(1)
    eps = 0.12
    truth = analytic_l2_robust(model, inputs, labels, eps)
    assert 0 < int(truth.sum()) < len(labels)  # the budget splits the clips
    kw = {"steps": 20, "targets": 4, "queries": 50, "loss": "dlr"}
    attack = build(name, ["skeleton"], {"skeleton": eps}, **kw)
    adv = attack(model, inputs, labels, torch.arange(len(labels)))
    with torch.no_grad():
        robust = model(adv).argmax(1) == labels
    assert torch.equal(robust, truth), (robust.int().tolist(), truth.int().tolist())


# -- the output check ------------------------------------------------------------------------------------

def test_check_enforces_the_l2_ball() -> None:
    x = {"rgb": torch.full((2, 3, 2, 4, 4), 0.5), "skeleton": torch.zeros(2, 3, 4, 25, 2)}
    delta = torch.zeros_like(x["rgb"])
    delta[:, 0, 0, 0, :] = 0.1  # L2 norm 0.2, L-inf 0.1
    adv = {**x, "rgb": x["rgb"] + delta}
    check_adversarial(x, adv, {"rgb": 0.2}, {"rgb": (0.0, 1.0)}, norm="l2")
    check_adversarial(x, adv, {"rgb": 0.1}, {"rgb": (0.0, 1.0)})  # inside the L-inf ball of 0.1
    with pytest.raises(AttackCheckError, match=r"exceeds eps .*L2"):
        check_adversarial(x, adv, {"rgb": 0.1}, {"rgb": (0.0, 1.0)}, norm="l2")
    with pytest.raises(AttackCheckError, match="not attacked"):
        check_adversarial(x, {**adv, "skeleton": x["skeleton"] + 1e-3}, {"rgb": 0.2}, {"rgb": (0.0, 1.0)}, norm="l2")
    with pytest.raises(ValueError, match="norm must be"):
        check_adversarial(x, adv, {"rgb": 0.2}, {"rgb": (0.0, 1.0)}, norm="l1")


# -- declared support, ids and the protocol ----------------------------------------------------------------

def test_attacks_declare_the_norms_they_implement() -> None:
    for cls in (FGSM, PGD, APGD, APGDT, FABT, Square, AutoAttack):
        assert cls.norms == ("linf", "l2"), cls
    assert CW.norms == ("linf",)
    with pytest.raises(ValueError, match=r"CW implements the linf threat model\(s\), not norm='l2'"):
        CW(["rgb"], 1.0, norm="l2")
    with pytest.raises(ValueError, match="norm must be one of linf, l2"):
        PGD(["rgb"], 1.0, norm="l1")
    assert "norm" in Attack.harness_params and "norm" in Attack.optional_params


def test_autoattack_passes_the_norm_to_its_members() -> None:
    aa = AutoAttack(["rgb", "skeleton"], 1.0, norm="l2")
    assert [stage.norm for _, stage in aa.stages()] == ["l2"] * 4


def test_linf_ids_stay_and_l2_ids_are_new() -> None:
    base = {"modalities": ["rgb"], "eps": {"rgb": 0.03}, "bounds": {"rgb": [0.0, 1.0]}, "steps": 2}
    plain = identity_params(PGD, base)
    assert "norm" not in plain and identity_params(PGD, {**base, "norm": "linf"}) == plain
    assert identity_params(PGD, {**base, "norm": "l2"})["norm"] == "l2"

    from robench.plan import make_plan
    from robench.protocol import load_protocol

    protocol = load_protocol(TINY_PROTOCOL, ["attacks={pgd: {steps: 2}}"])
    linf = make_plan(protocol)
    for v in protocol.variants.values():
        v.threat = dataclasses.replace(v.threat, norm="l2")
    l2 = make_plan(protocol)
    assert set(linf.models) == set(l2.models)  # training attacks stay L-inf
    attacked = {c.id for c in linf.cells.values() if c.attack_type}
    assert attacked and not attacked & {c.id for c in l2.cells.values() if c.attack_type}
    assert {c.id for c in linf.cells.values() if not c.attack_type} == {c.id for c in l2.cells.values()
                                                                        if not c.attack_type}
    for cell in (c for c in l2.cells.values() if c.attack_type):
        params = cell.spec["attack"]["params"]
        assert params["norm"] == "l2"
        assert params["step_size"] == {m: e / 4 for m, e in params["eps"].items()}  # the L2 default


def test_threat_norm_is_validated_and_passed_only_to_evaluation_attacks() -> None:
    with pytest.raises(ProtocolError, match=r"key 'threat.norm': found 'l1'; allowed: linf or l2"):
        ThreatConfig(norm="l1")  # type: ignore[arg-type]
    from robench.protocol.load import load_raw

    raw = load_raw(TINY_PROTOCOL, ["threat.norm=L2"])
    c = Checker(raw)
    with pytest.raises(ProtocolError, match=r"--set: key 'threat.norm': found 'L2'; allowed: linf or l2"):
        ThreatConfig.checked_norm(c, raw.data["threat"]["norm"], ("threat", "norm"))
    assert ThreatConfig.checked_norm(c, "l2", ("threat", "norm")) == "l2"

    threat = ThreatConfig(norm="l2")
    pgd = Component("pgd", {"steps": 2, "step_size": 0.5})
    assert threat.attack_kwargs(pgd, ["rgb"], 2.0)["norm"] == "l2"
    assert threat.attack_kwargs(pgd, ["rgb"], 2.0)["step_size"] == {"rgb": 0.5}  # given: kept
    assert "norm" not in threat.attack_kwargs(pgd, ["rgb"], 2.0, evaluation=False)
    assert "norm" not in ThreatConfig().attack_kwargs(pgd, ["rgb"], 2.0)
    scaled = ThreatConfig({"rgb": 1.0, "skeleton": 2.0}, norm="l2").attack_kwargs(Component("apgd", {}),
                                                                                   ["skeleton"], 0.5)
    assert scaled["eps"] == {"skeleton": 1.0} and scaled["norm"] == "l2"
    with pytest.raises(ProtocolError, match=r"attack 'cw' implements linf only"):
        threat.attack_kwargs(Component("cw", {}), ["rgb"], 2.0)


def test_evaluation_checks_l2_cells_against_the_l2_ball(monkeypatch: pytest.MonkeyPatch) -> None:
    import robench.evaluation as evaluation
    from robench.data.base import TensorClipDataset
    from robench.plan import Cell
    from robench.progress import Progress
    from robench.protocol.schema import EvaluationConfig

    seen: list[str] = []
    real = evaluation.check_adversarial

    def spy(*args: object, **kw: object) -> None:
        seen.append(str(kw.get("norm")))
        real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(evaluation, "check_adversarial", spy)
    model = Linear(4, seed=5)
    inputs = linear_inputs(12, seed=6)
    with torch.no_grad():
        labels = model(inputs).argmax(1)
    dataset = TensorClipDataset((inputs["rgb"] * 255).round().to(torch.uint8), inputs["skeleton"], labels,
                                ["a", "b", "c", "d"])
    eps = {"rgb": 0.5, "skeleton": 0.2}
    cell = Cell("c", "m", "v", "RS", "a", "autoattack",
                {"modalities": ["rgb", "skeleton"], "eps": eps, "bounds": {"rgb": [0.0, 1.0], "skeleton": None},
                 "steps": 10, "targets": 3, "queries": 20, "norm": "l2"}, 0.5, 0, EvaluationConfig(batch_size=8), {})
    result = evaluation.evaluate_cell(model, dataset, cell, torch.device("cpu"), Progress("quiet"))  # type: ignore[arg-type]
    assert seen and set(seen) == {"l2"}
    truth = analytic_l2_robust(model, inputs, labels, eps["skeleton"])  # the RGB input does not count here
    assert torch.equal(torch.as_tensor(result.correct), truth)
