"""AutoAttack for two inputs: the losses and APGD's schedule against their formulas, known answers on
linear models, the refilled engine against one-clip-at-a-time attacks, and the sanity flags on a model
built to mask its gradients (and on one that does not)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from robench.attacks import APGD, APGDT, FABT, PGD, AutoAttack, Square
from robench.attacks.apgd import checkpoint_schedule
from robench.attacks.engine import make_rows, row_uniform, run_engine
from robench.attacks.losses import dlr_loss, dlr_targeted_loss
from robench.attacks.square import p_schedule
from robench.data.base import TensorClipDataset
from robench.evaluation import evaluate_cell
from robench.plan import Cell
from robench.progress import Progress
from robench.protocol.schema import EvaluationConfig
from robench.report.flags import cell_flags
from robench.store.details import CLEAN, ROBUST, CellDetails

RGB, SKEL = (3, 2, 4, 4), (3, 4, 5, 2)


class Linear(nn.Module):
    """Logits linear in both inputs; with ``quantise`` the inputs are first rounded to 1/255 (an
    input quantiser: the function barely changes, its gradient is identically zero)."""

    modalities = ("rgb", "skeleton")

    def __init__(self, classes: int, seed: int = 0, quantise: bool = False) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.ParameterDict({"rgb": nn.Parameter(torch.randn(int(np.prod(RGB)), classes, generator=g)),
                                   "skeleton": nn.Parameter(torch.randn(int(np.prod(SKEL)), classes, generator=g))})
        self.b = nn.Parameter(torch.randn(classes, generator=g))
        self.quantise = quantise

    def forward(self, inputs: dict[str, Tensor]) -> Tensor:
        out = self.b.expand(next(iter(inputs.values())).shape[0], -1)
        for m, w in self.w.items():
            x = inputs[m]
            if self.quantise:
                x = torch.round(x * 255) / 255
            out = out + x.flatten(1) @ w
        return out


def data(n: int = 24, seed: int = 3) -> tuple[dict[str, Tensor], Tensor]:
    g = torch.Generator().manual_seed(seed)
    rgb = (torch.randint(60, 196, (n, *RGB), generator=g).float() / 255)  # away from 0 and 1
    skel = torch.randn(n, *SKEL, generator=g) * 0.3
    return {"rgb": rgb, "skeleton": skel}, torch.zeros(n, dtype=torch.long)


def fit_labels(model: nn.Module, inputs: dict[str, Tensor]) -> Tensor:
    with torch.no_grad():
        return model(inputs).argmax(1)


def analytic_robust(model: Linear, inputs: dict[str, Tensor], labels: Tensor, eps: dict[str, float]) -> Tensor:
    """Exact L-inf robustness of a linear model: the worst margin of every wrong class, with RGB kept in [0, 1]."""
    with torch.no_grad():
        logits = model(inputs)
        robust = torch.ones(len(labels), dtype=torch.bool)
        for j in range(logits.shape[1]):
            margin = logits.gather(1, labels[:, None]).squeeze(1) - logits[:, j]
            for m, e in eps.items():
                dw = (model.w[m][:, labels].T - model.w[m][:, j][None, :])  # [B, D]: d margin / d x
                x = inputs[m].flatten(1)
                room = torch.where(dw > 0, x, 1 - x) if m == "rgb" else torch.full_like(x, float("inf"))
                margin = margin - (dw.abs() * torch.minimum(room, torch.full_like(room, e))).sum(1)
            robust &= (labels == j) | (margin > 0)
    return robust


def predict(model: nn.Module, adv: dict[str, Tensor], labels: Tensor) -> Tensor:
    with torch.no_grad():
        return model(adv).argmax(1) == labels


# -- formulas ----------------------------------------------------------------------------------------

def test_dlr_formula() -> None:
    z = torch.tensor([[5.0, 3.0, 1.0, 0.0], [1.0, 4.0, 2.0, 0.0]])
    y = torch.tensor([0, 0])
    # sample 0: correct; -(5 - 3) / (5 - 1); sample 1: wrong; -(1 - 4) / (4 - 1)
    assert torch.allclose(dlr_loss(z, y), torch.tensor([-0.5, 1.0]))
    # invariant to shifting and scaling the logits
    assert torch.allclose(dlr_loss(3 * z + 7, y), dlr_loss(z, y), atol=1e-6)
    t = torch.tensor([2, 1])
    # -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2): sample 0: -(5 - 1) / (5 - 0.5); sample 1: -(1 - 4) / (4 - 0.5)
    assert torch.allclose(dlr_targeted_loss(z, y, t), torch.tensor([-4 / 4.5, 3 / 3.5]))
    with pytest.raises(ValueError, match="at least 3 classes"):
        dlr_loss(z[:, :2], y)


def test_apgd_checkpoints_match_the_reference() -> None:
    """N = 100: checkpoints after iterations 22, 41, 57, 70, 80, 87, 93, 99 (the reference schedule)."""
    sched = checkpoint_schedule(100)
    assert [i + 1 for i, _ in sched] == [22, 41, 57, 70, 80, 87, 93, 99]
    assert [k for _, k in sched] == [22, 19, 16, 13, 10, 7, 6, 6]
    assert [i + 1 for i, _ in checkpoint_schedule(10)] == [2, 3, 4, 5, 6, 7, 8, 9, 10]


def test_square_p_schedule() -> None:
    q = torch.tensor([0, 10, 11, 50, 51, 8000, 8001])
    assert torch.allclose(p_schedule(0.8, q), torch.tensor([0.8, 0.8, 0.4, 0.4, 0.2, 0.8 / 256, 0.8 / 512],
                                                           dtype=torch.float64))


def test_row_randomness_is_per_row() -> None:
    seeds = torch.tensor([5, 6, 7], dtype=torch.int64)
    a = row_uniform(seeds, torch.tensor([0, 1, 2]), 0, 100, torch.device("cpu"))
    b = row_uniform(seeds[1:], torch.tensor([1, 2]), 0, 100, torch.device("cpu"))
    assert torch.equal(a[1:], b)
    assert 0 <= float(a.min()) and float(a.max()) < 1 and abs(float(a.mean()) - 0.5) < 0.05
    assert not torch.equal(a, row_uniform(seeds, torch.tensor([0, 1, 2]), 1, 100, torch.device("cpu")))


# -- APGD against a direct transcription of the reference loop -----------------------------------

def test_apgd_follows_the_reference_schedule() -> None:
    """Without early stop, one sample's APGD trajectory equals the reference loop written out (one modality)."""
    model = Linear(4, seed=1)
    inputs, _ = data(6)
    labels = fit_labels(model, inputs)
    eps, steps = 0.05, 10
    attack = APGD(["skeleton"], eps, steps=steps, loss="dlr", early_stop=False)
    rows = make_rows(inputs, labels, ["skeleton"], torch.arange(6, dtype=torch.int64))
    state, _ = attack.begin(model, rows)
    x0, x = rows.x["skeleton"], state["x:skeleton"].clone()
    fixed = rows.fixed
    ckpts = dict(checkpoint_schedule(steps))

    def grad(xx: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        leaf = xx.clone().requires_grad_(True)
        logits = model({**fixed, "skeleton": leaf})
        loss = dlr_loss(logits, labels)
        (g,) = torch.autograd.grad(loss.sum(), [leaf])
        return g, loss.detach(), logits.detach()

    def proj(v: Tensor) -> Tensor:
        return x0 + (v - x0).clamp(-eps, eps)

    g, loss, logits = grad(x)
    adv = x0.clone()
    fooled = logits.argmax(1) != labels
    adv[fooled] = x[fooled]
    best, gbest, loss_best = x.clone(), g.clone(), loss.clone()
    step = torch.full((6, 1, 1, 1, 1), 2 * eps)
    old = x.clone()
    history = [torch.zeros(6)]
    reduced, loss_ckpt, counter = torch.ones(6, dtype=torch.bool), loss_best.clone(), 0
    for i in range(steps):
        grad2 = x - old
        old = x.clone()
        a = 0.75 if i > 0 else 1.0
        z = proj(x + step * g.sign())
        x = proj(x + (z - x) * a + grad2 * (1 - a))
        g, loss, logits = grad(x)
        now = logits.argmax(1) != labels
        adv[now] = x[now]
        history.append(loss)
        up = loss > loss_best
        best[up], gbest[up], loss_best[up] = x[up], g[up], loss[up]
        counter += 1
        if i in ckpts:
            k = ckpts[i]
            rises = sum((history[-1 - c] > history[-2 - c]).float() for c in range(k))
            halve = (rises <= k * 0.75) | (~reduced & (loss_ckpt >= loss_best))
            reduced, loss_ckpt = halve, loss_best.clone()
            step[halve] /= 2
            x[halve], g[halve] = best[halve], gbest[halve]
            history = [history[-1]]
    ours = attack(model, inputs, labels, sample_seeds=torch.arange(6, dtype=torch.int64))
    assert torch.allclose(ours["skeleton"], adv, atol=1e-6)


# -- known answers on linear models ----------------------------------------------------------------

@pytest.mark.parametrize("attack", ["pgd", "apgd"])
def test_two_class_linear_model_exact_worst_case(attack: str) -> None:
    """With two classes the CE gradient's sign is the worst-case direction: the attack finds the analytic answer."""
    model = Linear(2, seed=2)
    inputs, _ = data(40)
    labels = fit_labels(model, inputs)
    eps = {"rgb": 2 / 255, "skeleton": 0.004}
    atk = (PGD(["rgb", "skeleton"], eps, step_size={"rgb": 1 / 255, "skeleton": 0.002}, steps=10) if attack == "pgd"
           else APGD(["rgb", "skeleton"], eps, steps=10))
    adv = atk(model, inputs, labels, sample_seeds=torch.arange(40, dtype=torch.int64))
    expected = analytic_robust(model, inputs, labels, eps)
    assert 0 < int(expected.sum()) < 40
    assert torch.equal(predict(model, adv, labels), expected)


def test_autoattack_finds_the_linear_worst_case() -> None:
    """Four classes: APGD-CE then APGD-T over all three wrong classes find exactly the analytic robust set,
    and no attack ever beats it (a point fooled outside the ball would fail the threat-model check)."""
    model = Linear(4, seed=4)
    inputs, _ = data(48)
    labels = fit_labels(model, inputs)
    eps = {"rgb": 2 / 255, "skeleton": 0.004}
    expected = analytic_robust(model, inputs, labels, eps)
    assert 0 < int(expected.sum()) < 48
    seeds = torch.arange(48, dtype=torch.int64)
    aa = AutoAttack(["rgb", "skeleton"], eps, members=["apgd-ce", "apgd-t"], steps=30, targets=3)
    got = predict(model, aa(model, inputs, labels, seeds), labels)
    assert torch.equal(got, expected)
    for atk in (Square(["rgb", "skeleton"], eps, queries=100), APGDT(["rgb", "skeleton"], eps, steps=10, targets=1)):
        robust = predict(model, atk(model, inputs, labels, seeds), labels)
        assert bool((robust | ~expected).all()), f"{type(atk).__name__} fooled an analytically robust clip"


# -- the engine ------------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda: PGD(["rgb", "skeleton"], 4 / 255, step_size=1 / 255, steps=8, restarts=2),
    lambda: APGD(["rgb", "skeleton"], 4 / 255, steps=12, restarts=2),
    lambda: APGDT(["skeleton"], 0.01, steps=6, targets=3),
    lambda: Square(["rgb", "skeleton"], 4 / 255, queries=30),
    lambda: FABT(["rgb", "skeleton"], 4 / 255, steps=8, targets=2),
], ids=["pgd", "apgd", "apgd_t", "square", "fab_t"])
def test_refilled_engine_equals_attacking_each_clip_alone(make) -> None:
    """Rows entering a refilled active batch of 3 get exactly the result they get alone."""
    model = Linear(4, seed=5)
    inputs, _ = data(20)
    labels = fit_labels(model, inputs)
    labels[::3] = (labels[::3] + 1) % 4  # some clips wrong on the clean input
    seeds = torch.arange(100, 120, dtype=torch.int64)
    rows = make_rows(inputs, labels, make().modalities, seeds)
    chunks = [rows.take(torch.arange(i, min(i + 7, 20))) for i in range(0, 20, 7)]
    refilled = {m: torch.empty_like(t) for m, t in rows.x.items()}
    for fin in run_engine(make(), model, chunks, capacity=3):
        for m in refilled:
            refilled[m][fin.rows.pos] = fin.adversarial[m]
    for i in range(20):
        alone = make()(model, {m: t[i : i + 1] for m, t in inputs.items()}, labels[i : i + 1], seeds[i : i + 1])
        for m in refilled:
            assert torch.allclose(refilled[m][i : i + 1], alone[m], atol=1e-6), (i, m)


# -- gradient masking: the flags fire on a masked model, and only there -----------------------------

def _evaluate(model: nn.Module, attack: str, params: dict, n: int = 32) -> CellDetails:
    inputs, _ = data(n, seed=7)
    labels = fit_labels(model, inputs)
    dataset = TensorClipDataset((inputs["rgb"] * 255).round().to(torch.uint8), inputs["skeleton"], labels,
                                ["a", "b", "c", "d"])
    eps = {"rgb": 8 / 255, "skeleton": 0.02}
    cell = Cell("c", "m", "v", "RS", "a", attack, {"modalities": ["rgb", "skeleton"], "eps": eps,
                                                   "bounds": {"rgb": [0.0, 1.0], "skeleton": None}, **params},
                8 / 255, 0, EvaluationConfig(batch_size=8), {})
    result = evaluate_cell(model, dataset, cell, torch.device("cpu"), Progress("quiet"))  # type: ignore[arg-type]
    assert result.details is not None
    return result.details


def test_masked_gradients_are_caught() -> None:
    """An input quantiser zeroes every gradient: PGD fails, Square breaks the model, and the flags say so."""
    masked = Linear(4, seed=6, quantise=True)
    pgd = _evaluate(masked, "pgd", {"steps": 10, "step_size": {"rgb": 2 / 255, "skeleton": 0.005}})
    aa = _evaluate(masked, "autoattack", {"steps": 10, "targets": 3, "queries": 300})
    pgd_acc = float((pgd.broken_by == ROBUST).mean())
    aa_acc = float((aa.broken_by == ROBUST).mean())
    assert pgd.gradients.zero == pgd.gradients.checked > 0
    assert aa_acc < pgd_acc - 0.3, (pgd_acc, aa_acc)
    assert int((aa.broken_by == aa.stages.index("square") + 1).sum()) > 0
    codes = {f.code for f in cell_flags({"details": json.dumps(aa.to_json())})}
    assert {"zero-gradients", "black-box-stronger"} <= codes


def test_no_flag_on_an_ordinary_model() -> None:
    plain = Linear(4, seed=6)
    aa = _evaluate(plain, "autoattack", {"steps": 10, "targets": 3, "queries": 100})
    assert cell_flags({"details": json.dumps(aa.to_json())}) == []
    assert aa.gradients.zero == 0 and aa.model is not None and not aa.model.random_forward
    assert CLEAN not in set(aa.broken_by.tolist())  # the labels are the model's own clean predictions
    back = CellDetails.from_json(json.loads(json.dumps(aa.to_json())))
    assert np.array_equal(back.broken_by, aa.broken_by) and back.stages == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert back.accuracy_after() == sorted(back.accuracy_after(), reverse=True)


def test_fab_t_finds_the_linear_minimal_budget() -> None:
    """On a linear model (skeleton only, no box) FAB-T's budget factor converges to the analytic minimum over
    its targets, ``min_t margin_t / (eps * ||w_y - w_t||_1)``, and a clip counts as broken exactly when it is <= 1."""
    model = Linear(4, seed=8)
    inputs, _ = data(16)
    labels = fit_labels(model, inputs)
    eps = 0.01
    with torch.no_grad():
        logits = model(inputs)
    order = logits.argsort(1, descending=True)
    analytic = torch.full((16,), float("inf"))
    for k in (1, 2, 3):
        t = order[:, k]
        dw = model.w["skeleton"][:, labels].T - model.w["skeleton"][:, t].T
        margin = logits.gather(1, labels[:, None]).squeeze(1) - logits.gather(1, t[:, None]).squeeze(1)
        analytic = torch.minimum(analytic, margin / (eps * dw.abs().sum(1)))
    atk = FABT(["skeleton"], eps, steps=40, targets=3, early_stop=False)
    rows = make_rows(inputs, labels, ["skeleton"], torch.arange(16, dtype=torch.int64))
    kappa = torch.empty(16)
    adv = {"skeleton": torch.empty_like(inputs["skeleton"])}
    for fin in run_engine(atk, model, [rows], capacity=16):
        adv["skeleton"][fin.rows.pos] = fin.adversarial["skeleton"]
        kappa[fin.rows.pos] = fin.metrics["budget_factor"]
    assert torch.allclose(kappa, analytic, rtol=0.03), (kappa, analytic)
    fooled = ~predict(model, {"rgb": inputs["rgb"], **adv}, labels)
    assert torch.equal(fooled, analytic <= 1.0)


def test_clips_fooled_by_squares_starting_stripes_count_as_broken_by_square() -> None:
    """With no queries Square only tries its starting stripes: the clips they fool are Square's (stage 1),
    never 'misclassified clean' (the labels are the model's own clean predictions)."""
    details = _evaluate(Linear(4, seed=6), "square", {"queries": 0})
    assert CLEAN not in set(details.broken_by.tolist())
    assert int((details.broken_by == 1).sum()) > 0 and int((details.broken_by == ROBUST).sum()) > 0


@pytest.mark.parametrize("layout", ["frames", "cuboids"])
def test_square_video_windows_have_their_layout(layout: str) -> None:
    """One query changes the RGB clip inside one window: a square over (H, W) repeated over frames with a
    sign per channel and frame ('frames'), or a cuboid over (T, H, W) with a sign per channel ('cuboids')."""
    from robench.attacks.square import Square

    attack = Square(["rgb"], eps=0.1, queries=1, video_windows=layout)
    x = torch.full((1, 3, 4, 8, 8), 0.5)
    seeds = torch.tensor([11])
    mask = attack._window("rgb", x, torch.tensor([0.25], dtype=torch.float64), seeds, torch.zeros(1, dtype=torch.long),
                          0)
    mask = mask.expand_as(x)[0, 0]  # [T, H, W]
    if layout == "frames":
        assert bool(mask.all(0).eq(mask.any(0)).all()) and int(mask[0].sum()) == 16  # the same 4 x 4 square per frame
    else:
        assert int(mask.sum()) == round(0.25 ** (1 / 3) * 4) * round(0.25 ** (1 / 3) * 8) ** 2
    signs = attack._signs("rgb", x, seeds, torch.zeros(1, dtype=torch.long), 1, stripes=False)
    assert signs.shape == ((1, 3, 4, 1, 1) if layout == "frames" else (1, 3, 1, 1, 1))
    stripes = attack._signs("rgb", x, seeds, torch.zeros(1, dtype=torch.long), 1, stripes=True)
    assert stripes.shape == ((1, 3, 4, 1, 8) if layout == "frames" else (1, 3, 1, 1, 8))
