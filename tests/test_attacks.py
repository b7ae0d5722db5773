"""Invariants of every registered attack, and each attack's mechanism against its formula."""

from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn.functional as F

from robench.attacks import CW, FGSM, PGD, Attack, check_adversarial
from robench.attacks.losses import cw_margin_loss
from robench.errors import AttackCheckError
from robench.registry import ATTACKS, load_builtins
from robench.scenarios import SCENARIOS

load_builtins()
ATTACKED = {s: list(mods) for s, mods in SCENARIOS.items() if mods}  # the scenarios that attack something
EPS = 8 / 255


#: test-sized budgets, applied to every attack that has the parameter
SMALL = {"steps": 3, "queries": 40, "targets": 2}


def build(name: str, modalities: list[str], eps: float, **kw) -> Attack:
    cls = ATTACKS.get(name)
    accepted = inspect.signature(cls.__init__).parameters
    params = {k: v for k, v in {**SMALL, **kw}.items() if k in accepted}
    return cls(modalities=modalities, eps=eps, **params)


def accuracy(model, inputs, labels) -> float:
    with torch.no_grad():
        return float((model(inputs).argmax(1) == labels).float().mean())


def test_builtin_attacks_registered() -> None:
    assert {"fgsm", "pgd", "cw", "apgd", "apgd_t", "square", "autoattack"} <= set(ATTACKS.names())


@pytest.mark.parametrize("name", ATTACKS.names())
@pytest.mark.parametrize("scenario", list(ATTACKED))
def test_output_inside_threat_model(name, scenario, model, inputs, labels) -> None:
    mods = ATTACKED[scenario]
    adv = build(name, mods, EPS)(model, inputs, labels)
    for m, x in inputs.items():
        if m in mods:
            assert (adv[m] - x).abs().max() <= EPS + 1e-6, f"{m} leaves the eps-ball"
            assert torch.isfinite(adv[m]).all()
        else:
            assert torch.equal(adv[m], x), f"unattacked {m} changed"
    if "rgb" in mods:
        assert adv["rgb"].min() >= 0 and adv["rgb"].max() <= 1
    assert accuracy(model, adv, labels) <= accuracy(model, inputs, labels)


@pytest.mark.parametrize("name", ATTACKS.names())
def test_eps_zero_is_clean(name, model, inputs, labels) -> None:
    """At eps 0 every attack returns the clean input bit for bit, so accuracy equals clean accuracy."""
    noisy_labels = labels.clone()
    noisy_labels[0] = (noisy_labels[0] + 1) % 4  # one clean mistake, so clean accuracy is not 100%
    adv = build(name, ["rgb", "skeleton"], 0.0)(model, inputs, noisy_labels)
    for m in inputs:
        assert torch.equal(adv[m], inputs[m])
    assert accuracy(model, adv, noisy_labels) == accuracy(model, inputs, noisy_labels) == pytest.approx(5 / 6)


@pytest.mark.parametrize("name", ATTACKS.names())
def test_attack_actually_attacks(name, model, inputs, labels) -> None:
    """On an undefended model (100% clean), a large budget on both modalities fools most samples; the one-step
    FGSM at least half of them (it leaves exactly half with one thread, a little fewer with two)."""
    attack = build(name, ["rgb", "skeleton"], 0.25, step_size=0.1)
    adv = attack(model, inputs, labels)
    if type(attack).single_step:
        assert accuracy(model, adv, labels) <= 0.5
    else:
        assert accuracy(model, adv, labels) < 0.5


def test_more_steps_never_score_higher(model, inputs, labels) -> None:
    seeds = torch.arange(len(labels))
    accs = []
    for steps in (1, 2, 4, 8):
        adv = PGD(["rgb"], 2 / 255, step_size=0.5 / 255, steps=steps)(model, inputs, labels, sample_seeds=seeds)
        accs.append(accuracy(model, adv, labels))
    assert accs == sorted(accs, reverse=True), accs
    assert accs[-1] < accs[0] or accs[0] == 0.0


def test_more_restarts_never_score_higher(model, inputs, labels) -> None:
    seeds = torch.arange(len(labels))
    accs = []
    for restarts in (1, 2, 4):
        attack = PGD(["skeleton"], 0.01, step_size=0.004, steps=2, restarts=restarts)
        accs.append(accuracy(model, attack(model, inputs, labels, sample_seeds=seeds), labels))
    assert accs == sorted(accs, reverse=True), accs


def test_pgd_matches_reference_loop(model, inputs, labels) -> None:
    """Without early stop, PGD is exactly Madry's loop: x <- proj(x + a * sign(grad CE))."""
    seeds = torch.arange(len(labels))
    attack = PGD(["rgb", "skeleton"], EPS, step_size=2 / 255, steps=3, early_stop=False)
    ours = attack(model, inputs, labels, sample_seeds=seeds)
    x = {m: attack._start(t, m, 0, seeds) for m, t in inputs.items()}  # same random start
    for _ in range(3):
        leaves = {m: t.clone().requires_grad_(True) for m, t in x.items()}
        loss = F.cross_entropy(model(leaves), labels, reduction="sum")
        grads = torch.autograd.grad(loss, list(leaves.values()))
        for (m, t), g in zip(leaves.items(), grads):
            step = t.detach() + 2 / 255 * g.sign()
            step = inputs[m] + (step - inputs[m]).clamp(-EPS, EPS)
            x[m] = step.clamp(0, 1) if m == "rgb" else step
    for m in inputs:
        assert torch.equal(ours[m], x[m])


def test_fgsm_is_one_signed_step(model, inputs, labels) -> None:
    adv = FGSM(["skeleton"], 0.02, early_stop=False)(model, inputs, labels)
    leaf = inputs["skeleton"].clone().requires_grad_(True)
    loss = F.cross_entropy(model({"rgb": inputs["rgb"], "skeleton": leaf}), labels, reduction="sum")
    (g,) = torch.autograd.grad(loss, [leaf])
    assert torch.equal(adv["skeleton"], inputs["skeleton"] + (0.02 * g.sign()).clamp(-0.02, 0.02))


def test_cw_margin_formula() -> None:
    logits = torch.tensor([[2.0, 5.0, 1.0], [0.0, -1.0, 3.0], [100.0, 0.0, 0.0]])
    labels = torch.tensor([1, 0, 2])
    # max other - true: [2 - 5, 3 - 0, 100 - 0 capped at kappa]
    assert torch.allclose(cw_margin_loss(logits, labels, kappa=50.0), torch.tensor([-3.0, 3.0, 50.0]))
    assert CW(["rgb"], EPS).loss_name == "cw"


def test_sample_seeds_make_results_batch_independent(model, inputs, labels) -> None:
    """Per-sample seeds give every sample the same random start whatever batch it is in (bit for bit); the
    attacked inputs then agree but for the rare value where the model's own arithmetic, which differs in the
    last bits between batch sizes, flips the sign of a gradient that is all but zero."""
    seeds = torch.arange(100, 100 + len(labels))
    attack = PGD(["rgb", "skeleton"], EPS, steps=2, early_stop=False)
    splits = (slice(0, 3), slice(3, 6))
    for m in inputs:
        start = attack._start(inputs[m], m, 0, seeds)
        assert torch.equal(start, torch.cat([attack._start(inputs[m][s], m, 0, seeds[s]) for s in splits]))
    whole = attack(model, inputs, labels, sample_seeds=seeds)
    halves = [attack(model, {m: t[s] for m, t in inputs.items()}, labels[s], sample_seeds=seeds[s]) for s in splits]
    for m in inputs:
        differ = ((whole[m] - torch.cat([h[m] for h in halves])).abs() > 1e-6).float().mean()
        assert float(differ) < 1e-4, f"{m}: {float(differ):.2e} of the values differ"


def test_gradients_reach_only_inputs(model, inputs, labels) -> None:
    """Attacks must not leave gradients on the model's parameters."""
    PGD(["rgb", "skeleton"], EPS, steps=2)(model, inputs, labels)
    assert all(p.grad is None for p in model.parameters())


# -- the run-time checks -------------------------------------------------------------------------

def _clean() -> dict[str, torch.Tensor]:
    return {"rgb": torch.full((2, 3, 2, 4, 4), 0.5), "skeleton": torch.zeros(2, 3, 4, 25, 2)}


BOUNDS = {"rgb": (0.0, 1.0), "skeleton": None}


def test_check_accepts_valid_output() -> None:
    x = _clean()
    adv = {"rgb": x["rgb"] + EPS, "skeleton": x["skeleton"]}
    check_adversarial(x, adv, {"rgb": EPS}, BOUNDS)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda a: a["rgb"].add_(2 * EPS), "exceeds eps"),
        (lambda a: a["rgb"].fill_(1.2), "exceeds eps|valid range"),
        (lambda a: a["skeleton"].view(-1)[0].add_(1e-7), "not attacked"),
        (lambda a: a["rgb"].view(-1)[0].fill_(float("nan")), "non-finite"),
    ],
)
def test_check_rejects_violations(mutate, message) -> None:
    x = _clean()
    adv = {m: t.clone() for m, t in x.items()}
    mutate(adv)
    with pytest.raises(AttackCheckError, match=message):
        check_adversarial(x, adv, {"rgb": EPS}, BOUNDS)


def test_range_violation_detected_even_inside_ball() -> None:
    x = {"rgb": torch.full((1, 3, 1, 2, 2), 0.999), "skeleton": torch.zeros(1, 3, 1, 25, 2)}
    adv = {"rgb": x["rgb"] + 0.01, "skeleton": x["skeleton"]}
    with pytest.raises(AttackCheckError, match="valid range"):
        check_adversarial(x, adv, {"rgb": 0.02}, BOUNDS)


def test_a_broken_attack_is_an_error_not_a_warning(model, inputs, labels) -> None:
    class Sloppy(Attack):
        def perturb(self, model, inputs, labels, sample_seeds=None):
            return {**inputs, "rgb": inputs["rgb"] + 0.5, "skeleton": inputs["skeleton"] + 1e-3}

    with pytest.raises(AttackCheckError):
        Sloppy(["rgb"], EPS)(model, inputs, labels)
