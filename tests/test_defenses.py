"""Each defense's mechanism against its formula: AMR, MinSim, ExFMem (ISTA), AT."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_inputs
from robench.defenses import AMR, AdversarialTraining, ExFMem, MinSim
from robench.defenses.amr import Reweight
from robench.defenses.exfmem import FeatureMemory, ista, soft_threshold
from robench.models import HCN, I3D, TwoStreamModel
from robench.protocol.schema import Component, ThreatConfig
from robench.train.context import TrainContext

LABELS = torch.tensor([0, 1, 2, 3, 0, 1])


def make_model(rgb_width: float = 0.0625, skel_width: float = 0.125, frames: int = 8, res: int = 32,
               skel_frames: int = 16, seed: int = 0) -> TwoStreamModel:
    torch.manual_seed(seed)
    return TwoStreamModel({"rgb": I3D(width=rgb_width, frames=frames, resolution=res, dropout=0.0, bn_momentum=0.1),
                           "skeleton": HCN(width=skel_width, frames=skel_frames, window=16, dropout=0.0)}, 4)


class FixedPerturbation:
    """A stand-in TrainContext whose adversarial examples are a fixed, known perturbation."""

    def __init__(self, delta: float = 0.01) -> None:
        self.delta = delta
        self.calls: list[list[str]] = []

    def adversarial(self, model, inputs, labels, modalities):
        self.calls.append(list(modalities))
        return {m: (t + self.delta).clamp(0, 1) if m == "rgb" else (t + self.delta if m in modalities else t)
                for m, t in inputs.items()}


def real_context(train_set=None) -> TrainContext:
    """The context of a defense that declared ``uses_training_attack`` (AT, AMR)."""
    return TrainContext(device=torch.device("cpu"), train_set=train_set, batch_size=4, epochs=1, lr=0.01,
                        attack=Component("pgd", {"steps": 2, "step_size": 4 / 255, "random_start": True,
                                                 "early_stop": False}),
                        attack_eps=8 / 255, threat=ThreatConfig(), seed=0, uses_training_attack=True)


# -- AMR -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("frames, res, skel_frames", [(8, 32, 16), (16, 48, 32), (9, 40, 16)])
def test_amr_weight_shapes_follow_stage_shapes(frames: int, res: int, skel_frames: int) -> None:
    model = make_model(frames=frames, res=res, skel_frames=skel_frames)
    rgb_shapes = model.backbones["rgb"].stage_shapes()
    skel_shapes = model.backbones["skeleton"].stage_shapes()
    amr = AMR(count=3)
    amr.prepare(model)
    assert amr.points(model) == [("Mixed_5c", "conv6"), ("Mixed_5b", "conv5"), ("Mixed_4f", "conv4")]
    for (r, s), (w_r, w_s), head in zip(amr.points(model), amr.weights(model), model.extras["amr_heads"]):
        assert w_r.weight.shape == (1, *rgb_shapes[r]) and len(rgb_shapes[r]) == 4  # [1, C, T, H, W]
        assert w_s.weight.shape == (1, *skel_shapes[s]) and len(skel_shapes[s]) == 3  # [1, C, T, V]
        assert torch.all(w_r.weight == 1.0) and torch.all(w_s.weight == 1.0)
        assert head.in_features == rgb_shapes[r][0] + skel_shapes[s][0] and head.out_features == 4
    x = tiny_inputs(2)
    if frames != 8 or res != 32:
        x = {"rgb": torch.rand(2, 3, frames, res, res), "skeleton": torch.randn(2, 3, skel_frames, 25, 2)}
    assert model.eval()(x).shape == (2, 4)


def test_amr_custom_stages_and_validation() -> None:
    model = make_model()
    AMR(count=1, rgb_stages=["Mixed_4e"], skeleton_stages=["conv3"], init=0.5).prepare(model)
    assert set(model.backbones["rgb"].taps) == {"Mixed_4e"} and set(model.backbones["skeleton"].taps) == {"conv3"}
    assert float(model.backbones["rgb"].taps["Mixed_4e"].weight.detach().mean()) == 0.5
    with pytest.raises(ValueError, match="distinct"):
        AMR(count=2, rgb_stages=["Mixed_5c", "Mixed_5c"])
    with pytest.raises(ValueError, match="no stage"):
        AMR(count=1, rgb_stages=["Mixed_9z"], skeleton_stages=["conv6"]).prepare(make_model())
    with pytest.raises(ValueError, match="both an RGB and a skeleton"):
        AMR(count=1).prepare(TwoStreamModel({"rgb": I3D(width=0.0625, frames=8, resolution=32)}, 4))


def _amr_model_and_batch(count: int = 2) -> tuple[TwoStreamModel, AMR, dict, torch.Tensor]:
    model = make_model()
    amr = AMR(count=count, lam=0.7)
    amr.prepare(model)
    with torch.no_grad():  # non-trivial weights, so reweighting matters
        for w_r, w_s in amr.weights(model):
            w_r.weight.uniform_(0.5, 1.5)
            w_s.weight.uniform_(0.5, 1.5)
    return model.eval(), amr, tiny_inputs(6), LABELS


def test_amr_loss_equals_formula_by_hand() -> None:
    """L = CE(f(x)) + lambda * (CE(f(x')) + 1/S sum_i CE(aux_i(x'))), Eq. 11-12, recomputed by hand."""
    model, amr, x, y = _amr_model_and_batch(count=2)
    ctx = FixedPerturbation(0.02)
    got = amr.loss(model, x, y, ctx).loss
    assert ctx.calls == [["rgb", "skeleton"]]

    adv = ctx.adversarial(model, x, y, ["rgb", "skeleton"])
    captured: dict[int, torch.Tensor] = {}
    hooks = [w.register_forward_hook(lambda mod, inp, out, w=w: captured.__setitem__(id(w), out))
             for pair in amr.weights(model) for w in pair]
    adv_logits = model(adv)
    for h in hooks:
        h.remove()
    aux_ce = []
    for (w_r, w_s), head in zip(amr.weights(model), model.extras["amr_heads"]):
        z_r = captured[id(w_r)].mean(dim=(2, 3, 4))  # Eq. 9: average over T, H, W
        s = captured[id(w_s)]
        z_s = s.mean(dim=(2, 3)).view(6, 2, -1).amax(dim=1)  # average over T, V; HCN's max over persons
        aux_ce.append(F.cross_entropy(head(torch.cat([z_r, z_s], 1)), y))
    expected = F.cross_entropy(model(x), y) + 0.7 * (F.cross_entropy(adv_logits, y) + sum(aux_ce) / 2)
    assert torch.allclose(got, expected, atol=1e-6), (float(got), float(expected))


def test_amr_gradients_reach_weights_and_heads() -> None:
    model, amr, x, y = _amr_model_and_batch(count=2)
    amr.loss(model, x, y, FixedPerturbation()).loss.backward()
    for w_r, w_s in amr.weights(model):
        assert w_r.weight.grad is not None and w_r.weight.grad.abs().sum() > 0
        assert w_s.weight.grad is not None and w_s.weight.grad.abs().sum() > 0
    for head in model.extras["amr_heads"]:
        assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0


def test_amr_weights_are_in_every_forward_pass() -> None:
    """The weights reweight clean and attacked inputs alike: zeroing W_R removes the RGB features' influence."""
    model, amr, x, _ = _amr_model_and_batch(count=1)
    w_r, _ = amr.weights(model)[0]
    with torch.no_grad():
        w_r.weight.zero_()
    other = {**x, "rgb": torch.rand_like(x["rgb"])}
    assert torch.allclose(model(x), model(other))


def test_amr_clean_samples_can_bypass_weights() -> None:
    model, _, x, y = _amr_model_and_batch(count=1)
    bypass = AMR(count=1, lam=0.0, clean_through_amr=False)
    through = AMR(count=1, lam=0.0, clean_through_amr=True)
    l_bypass = bypass.loss(model, x, y, FixedPerturbation()).loss
    l_through = through.loss(model, x, y, FixedPerturbation()).loss
    assert torch.allclose(l_bypass, F.cross_entropy(model.run(x, use_taps=False).logits, y))
    assert torch.allclose(l_through, F.cross_entropy(model(x), y))
    assert not torch.allclose(l_bypass, l_through)


def test_amr_with_zero_modules_is_adversarial_training_on_both() -> None:
    """S = 0 (no modules, no clean term): same parameters, same loss and gradients as AT with XRS."""
    x, y = tiny_inputs(4), LABELS[:4]
    model_a, model_b = make_model(), make_model()
    amr, at = AMR(count=0, clean_weight=0.0, lam=1.0), AdversarialTraining(["rgb", "skeleton"])
    amr.prepare(model_a)
    at.prepare(model_b)
    assert model_a.state_dict().keys() == model_b.state_dict().keys()
    model_a.train()
    model_b.train()
    torch.manual_seed(7)
    la = amr.loss(model_a, x, y, real_context()).loss
    torch.manual_seed(7)
    lb = at.loss(model_b, x, y, real_context()).loss
    assert torch.equal(la, lb)
    la.backward()
    lb.backward()
    for (na, pa), (nb, pb) in zip(model_a.named_parameters(), model_b.named_parameters()):
        assert na == nb and torch.equal(pa.grad, pb.grad), na


def test_amr_summary_reports_means_per_modality_and_channel() -> None:
    model, amr, _, _ = _amr_model_and_batch(count=2)
    summary = amr.summary(model)["amr"]
    assert [a["index"] for a in summary] == [1, 2]
    for a, (w_r, w_s) in zip(summary, amr.weights(model)):
        assert a["mean_rgb"] == pytest.approx(float(w_r.weight.detach().mean()))
        assert a["mean_skeleton"] == pytest.approx(float(w_s.weight.detach().mean()))
        assert len(a["channel_means_rgb"]) == w_r.weight.shape[1]
        assert a["channel_means_skeleton"][0] == pytest.approx(float(w_s.weight[0, 0].detach().mean()), abs=1e-6)


def test_reweight_channel_means() -> None:
    w = Reweight((3, 2, 2), init=1.0)
    with torch.no_grad():
        w.weight[0, 1] = 3.0
    assert w.channel_means().tolist() == [1.0, 3.0, 1.0]


# -- MinSim ----------------------------------------------------------------------------------------

def test_minsim_term_is_the_mean_cosine_by_hand() -> None:
    model = make_model(rgb_width=0.0625, skel_width=0.125).eval()  # both 64-d: no projection
    assert model.backbones["rgb"].feature_dim == model.backbones["skeleton"].feature_dim
    minsim = MinSim(weight=0.3)
    minsim.prepare(model)
    assert "minsim_projection" not in model.extras
    x = tiny_inputs(6)
    out = minsim.loss(model, x, LABELS, real_context())
    feats = model.run(x).features
    cos = (F.normalize(feats["rgb"], dim=1) * F.normalize(feats["skeleton"], dim=1)).sum(1).mean()
    assert torch.allclose(out.loss, F.cross_entropy(model(x), LABELS) + 0.3 * cos, atol=1e-6)
    assert out.logs["cosine"] == pytest.approx(float(cos.detach()), abs=1e-6)


def test_minsim_projection_only_where_widths_differ() -> None:
    model = make_model(rgb_width=0.125, skel_width=0.125)  # 128-d RGB vs 64-d skeleton
    MinSim().prepare(model)
    proj = model.extras["minsim_projection"]
    assert proj.weight.shape == (64, 128) and proj.weight.requires_grad
    assert MinSim.projected_modality(model) == "rgb"
    fixed = make_model(rgb_width=0.125, skel_width=0.125)
    MinSim(projection="fixed").prepare(fixed)
    w = fixed.extras["minsim_projection"].weight
    assert not w.requires_grad
    assert torch.allclose(w @ w.T, torch.eye(64), atol=1e-5)  # orthonormal rows


# -- ISTA / ExFMem --------------------------------------------------------------------------------

def test_soft_threshold() -> None:
    x = torch.tensor([-2.0, -0.05, 0.0, 0.3, 1.0])
    assert torch.allclose(soft_threshold(x, 0.1), torch.tensor([-1.9, 0.0, 0.0, 0.2, 0.9]))


def test_ista_closed_form_with_orthonormal_bank() -> None:
    """For D with orthonormal columns the lasso solution is shrink(D^T f, lam), known in closed form."""
    torch.manual_seed(0)
    d, n = 32, 12
    bank, _ = torch.linalg.qr(torch.randn(d, n))
    f = torch.randn(5, d)
    h, its = ista(f, bank, lam=0.1, step=1.0, tol=1e-10, max_iter=100)
    assert torch.allclose(h, soft_threshold(f @ bank, 0.1), atol=1e-6)
    assert int(its.max()) <= 3  # exact after one step, confirmed by the next


def _coordinate_descent(f: torch.Tensor, bank: torch.Tensor, lam: float, sweeps: int = 5000) -> torch.Tensor:
    """An independent lasso solver (cyclic coordinate descent, float64) for the comparison."""
    D, y = bank.double().numpy(), f.double().numpy()
    h = [0.0] * D.shape[1]
    norms = (D * D).sum(0)
    r = y.copy()
    for _ in range(sweeps):
        largest = 0.0
        for j in range(D.shape[1]):
            r += D[:, j] * h[j]
            rho = float(D[:, j] @ r)
            new = (1 if rho > 0 else -1) * max(abs(rho) - lam, 0.0) / norms[j]
            largest = max(largest, abs(new - h[j]))
            h[j] = new
            r -= D[:, j] * h[j]
        if largest < 1e-13:
            break
    return torch.tensor(h, dtype=torch.float64)


def test_ista_agrees_with_coordinate_descent() -> None:
    torch.manual_seed(1)
    bank = torch.randn(20, 15).double()
    f = torch.randn(3, 20).double()
    step = 1.0 / float(torch.linalg.matrix_norm(bank, ord=2)) ** 2
    h, its = ista(f, bank, lam=0.1, step=step, tol=1e-12, max_iter=50_000)
    for i in range(3):
        assert torch.allclose(h[i], _coordinate_descent(f[i], bank, 0.1), atol=1e-4)
    assert int(its.max()) < 50_000


def test_ista_respects_the_iteration_cap_and_is_per_sample() -> None:
    torch.manual_seed(2)
    bank, f = torch.randn(16, 40), torch.randn(4, 16)
    step = 1.0 / float(torch.linalg.matrix_norm(bank, ord=2)) ** 2
    _, its = ista(f, bank, 0.1, step, tol=0.0, max_iter=7)
    assert its.tolist() == [7, 7, 7, 7]
    full, its_full = ista(f, bank, 0.1, step, tol=8e-4, max_iter=2000)
    for i in range(4):  # a sample's code does not depend on the rest of the batch
        alone, its_alone = ista(f[i : i + 1], bank, 0.1, step, tol=8e-4, max_iter=2000)
        assert torch.allclose(alone[0], full[i], atol=1e-5) and int(its_alone[0]) == int(its_full[i])


def test_feature_memory_formula_step_and_gradients() -> None:
    torch.manual_seed(3)
    mem = FeatureMemory(dim=8, blend=0.5, lam=0.1, tol=8e-4, max_iter=2000)
    f = torch.randn(3, 8, requires_grad=True)
    assert torch.equal(mem(f), f)  # identity until a bank exists
    train_feats = torch.randn(10, 8)
    mem.set_bank(train_feats)
    assert mem.bank.shape == (8, 10)
    assert float(mem.step) == pytest.approx(1.0 / float(torch.linalg.matrix_norm(mem.bank, ord=2)) ** 2, rel=1e-5)
    out = mem(f)
    h, _ = ista(f.detach(), mem.bank, 0.1, mem.step, 8e-4, 2000)
    assert torch.allclose(out, 0.5 * h @ mem.bank.T + 0.5 * f, atol=1e-5)
    out.sum().backward()  # gradients flow through the ISTA iterations to the input
    assert f.grad is not None and not torch.allclose(f.grad, torch.full_like(f.grad, 0.5))


def test_feature_memory_checkpoint_round_trip() -> None:
    mem = FeatureMemory(8, 0.5, 0.1, 8e-4, 2000)
    mem.set_bank(torch.randn(10, 8))
    fresh = FeatureMemory(8, 0.5, 0.1, 8e-4, 2000)
    fresh.load_state_dict(mem.state_dict())
    assert torch.equal(fresh.bank, mem.bank) and torch.equal(fresh.step, mem.step)
    assert torch.allclose(fresh.gram, mem.bank.T @ mem.bank)
    f = torch.randn(2, 8)
    assert torch.equal(fresh(f), mem(f))


def test_exfmem_builds_banks_from_training_features() -> None:
    from robench.data.base import TensorClipDataset

    g = torch.Generator().manual_seed(0)
    n = 12
    train = TensorClipDataset(torch.randint(0, 256, (n, 3, 8, 32, 32), dtype=torch.uint8, generator=g),
                              torch.randn(n, 3, 16, 25, 2, generator=g), torch.arange(n) % 4, ["a", "b", "c", "d"])
    model = make_model()
    ex = ExFMem(bank_size=8, finetune_epochs=0)
    ex.prepare(model)
    ex.finalize(model, real_context(train))
    for m in ("rgb", "skeleton"):
        mem = model.feature_transforms[m]
        assert mem.bank.shape == (model.backbones[m].feature_dim, 8)
    # the bank's columns are the raw pooled features of 8 training clips
    model.eval()
    with torch.no_grad():
        feats = model.run({"rgb": train.rgb.float() / 255, "skeleton": train.skeleton},
                          use_transforms=False).raw_features
    bank_cols = model.feature_transforms["skeleton"].bank.T
    assert all(torch.isclose(feats["skeleton"], col, atol=1e-5).all(1).any() for col in bank_cols)
    summary = ex.summary(model)
    assert summary["exfmem"]["rgb"]["bank_size"] == 8 and "notes" in summary
    assert ex.derives_from() == ("none", {})
    assert ExFMem(minsim_weight=1.0).derives_from() == ("minsim", {"weight": 1.0, "projection": "learned"})


def test_exfmem_model_is_attacked_through_the_reconstruction() -> None:
    """An attack's gradient on a model with memory banks is not the plain model's gradient."""
    model = make_model().eval()
    plain = copy.deepcopy(model)
    ex = ExFMem(bank_size=6, finetune_epochs=0)
    ex.prepare(model)
    with torch.no_grad():
        feats = model.run(tiny_inputs(6, seed=5)).raw_features
    for m in ("rgb", "skeleton"):
        model.feature_transforms[m].set_bank(feats[m])
    x = {k: v.requires_grad_(True) for k, v in tiny_inputs(6).items()}
    g_def = torch.autograd.grad(F.cross_entropy(model(x), LABELS), x["skeleton"])[0]
    x2 = {k: v.detach().requires_grad_(True) for k, v in tiny_inputs(6).items()}
    g_plain = torch.autograd.grad(F.cross_entropy(plain(x2), LABELS), x2["skeleton"])[0]
    assert g_def.abs().sum() > 0 and not torch.allclose(g_def, g_plain)
