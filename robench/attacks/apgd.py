"""APGD: Auto-PGD, the step-size-free PGD of AutoAttack (Croce & Hein, ICML 2020), for two inputs.

Distance: L-inf per modality. Multimodal form (docs/attacks.md): the attack works in
rescaled coordinates ``u_m = delta_m / eps_m``, where both balls are the unit L-inf ball, so one
step size per sample drives every attacked modality (its sign step is ``eta * eps_m`` in modality
m's units) and the reference schedule runs unchanged.

The reference schedule (``autoattack/autopgd_base.py``), per sample:

* start ``x + eps * t / ||t||_inf`` with t uniform in [-1, 1] (the norm over all attacked
  modalities in u), projected into the valid range; step ``eta = 2`` (i.e. ``2 * eps_m``);
* update ``z = P(x_k + eta * sign(g))``, ``x_{k+1} = P(x_k + 0.75 (z - x_k) + 0.25 (x_k - x_{k-1}))``
  (the first update is the plain step);
* checkpoints after iterations ``w_1 = ceil(0.22 N)``, each window 0.03 N shorter, at least
  0.06 N (N = 100: after 22, 41, 57, 70, 80, 87, 93, 99); there a sample halves ``eta`` and
  restarts from its best-loss point if its loss rose in at most ``rho`` (0.75) of the window's
  steps, or if its step was not halved at the previous checkpoint and its best loss did not
  improve since. The first window compares its first loss with 0, as the reference does (its
  loss history starts as zeros);
* a sample is robust only if no iterate fooled it; the latest fooling iterate is returned.

With ``early_stop`` (the default in evaluations) a sample leaves as soon as an iterate fools it:
its robust/non-robust outcome is the reference's, and it frees its slot for the next clip.

L2 (``norm="l2"``; the reference's ``norm='L2'``, Croce & Hein 2020): each attacked modality has its
own per-clip L2 ball of radius eps_m (input units: RGB on the [0, 1] scale, skeleton in metres). The
start is ``x_m + eps_m * t_m / ||t_m||_2`` with t_m standard normal, per modality (the reference's
start on the sphere), projected into the valid range; the sign step becomes the gradient normalised per
clip and modality, ``z_m = P(x_m + eta * eps_m * g_m / ||g_m||_2)``, so ``eta`` starts at 2 (a step
of ``2 * eps_m``) and halves at the same checkpoints; ``P`` rescales each modality's perturbation into
its L2 ball and then clips to the valid range, as the reference does. The momentum update and the
checkpoint rules are unchanged.

Example::

    from robench.attacks import APGD
    adv = APGD(modalities=["rgb", "skeleton"], eps={"rgb": 8 / 255, "skeleton": 8 / 255}, loss="dlr")(
        model.eval(), inputs, labels)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import torch
from torch import Tensor

from robench.attacks.base import Bounds, Inputs, Plausible, l2_normalise
from robench.attacks.engine import (
    EngineAttack,
    Model,
    Rows,
    State,
    clean_check,
    input_gradients,
    per_row,
    rows_where,
    seeded_rand,
    seeded_randn,
)
from robench.attacks.losses import ce_loss, dlr_loss
from robench.registry import register_attack


def checkpoint_schedule(steps: int) -> list[tuple[int, int]]:
    """APGD's checkpoints for ``steps`` iterations: ``[(iteration index, window length)]`` (0-based).

    For 100 iterations: after iterations 22, 41, 57, 70, 80, 87, 93 and 99 (1-based), windows 22,
    19, 16, 13, 10, 7, 6, 6.
    """
    k = max(int(0.22 * steps), 1)
    k_min = max(int(0.06 * steps), 1)
    decrease = max(int(0.03 * steps), 1)
    out = []
    i = k - 1
    while i < steps:
        out.append((i, k))
        k = max(k - decrease, k_min)
        i += k
    return out


@register_attack("apgd")
class APGD(EngineAttack):
    """APGD with the CE or DLR loss (AutoAttack's APGD-CE / APGD-DLR), per-sample schedule.

    Args:
        modalities: inputs to perturb, jointly (one step size per sample in rescaled coordinates).
        eps: radius of the L-inf (or, with ``norm="l2"``, per-clip L2) ball, per modality or shared (RGB
            in [0, 1] units, skeleton in metres).
        steps: iterations N (AutoAttack standard: 100); a run costs N + 1 gradient passes.
        restarts: runs from new random starts for samples still robust (standard: 1).
        loss: "ce" (cross-entropy) or "dlr" (Difference of Logits Ratio, >= 3 classes).
        rho: the oscillation threshold of the checkpoints (0.75).
        eot_iter: gradient samples averaged per step (1; 20 in AutoAttack's ``rand`` version, for
            randomised defenses: Expectation over Transformation).
        early_stop: stop attacking a sample at its first fooling iterate.
        bounds: valid range per modality.
        plausible: plausible-skeleton limits (see :class:`~robench.attacks.base.Attack`).
        norm: ``"linf"`` or ``"l2"`` (the threat model's ball; see the module docstring).
    """

    version = 1
    norms: ClassVar[tuple[str, ...]] = ("linf", "l2")

    def __init__(self, modalities: Sequence[str], eps: float | Mapping[str, float], steps: int = 100,
                 restarts: int = 1, loss: str = "ce", rho: float = 0.75, eot_iter: int = 1, early_stop: bool = True,
                 bounds: Bounds | None = None, plausible: Plausible = None, norm: str = "linf") -> None:
        super().__init__(modalities, eps, bounds, plausible, norm=norm)
        if steps < 1 or restarts < 1 or eot_iter < 1:
            raise ValueError(f"steps, restarts and eot_iter must be >= 1, got {steps}, {restarts}, {eot_iter}")
        if loss not in ("ce", "dlr"):
            raise ValueError(f"loss must be 'ce' or 'dlr', got {loss!r}")
        if not 0 < rho <= 1:
            raise ValueError(f"rho must be in (0, 1], got {rho}")
        self.steps, self.restarts, self.loss_name = int(steps), int(restarts), loss
        self.rho, self.eot_iter, self.early_stop = float(rho), int(eot_iter), bool(early_stop)
        schedule = checkpoint_schedule(self.steps)
        self._window = torch.zeros(self.steps, dtype=torch.int64)
        for i, k in schedule:
            self._window[i] = k

    # -- what APGD-T changes ------------------------------------------------------------------------
    def run_targets(self, clean_logits: Tensor) -> Tensor:
        """Each sample's target class per run (int64 ``[B, runs]``); untargeted APGD has one run per
        restart and ignores the target."""
        return torch.zeros(clean_logits.shape[0], self.restarts, dtype=torch.int64, device=clean_logits.device)

    def loss(self, logits: Tensor, labels: Tensor, targets: Tensor) -> Tensor:
        """The per-sample loss maximised (``targets``: each row's current target class)."""
        return dlr_loss(logits, labels) if self.loss_name == "dlr" else ce_loss(logits, labels)

    seed_tag = "apgd"

    # -- the engine's three methods ------------------------------------------------------------------
    def begin(self, model: Model, rows: Rows) -> tuple[State, Tensor]:
        n, dev = len(rows), rows.labels.device
        logits, done = clean_check(model, rows)
        if all(e == 0 for e in self.eps.values()):
            done = torch.ones(n, dtype=torch.bool, device=dev)
        state: State = {"run": torch.zeros(n, dtype=torch.int64, device=dev),
                        "targets": self.run_targets(logits.detach()),
                        "fooled": torch.zeros(n, dtype=torch.bool, device=dev),
                        "reduced": torch.ones(n, dtype=torch.bool, device=dev)}
        for key in ("i", "incr"):
            state[key] = torch.zeros(n, dtype=torch.int64, device=dev)
        for key in ("eta", "loss_best", "loss_prev", "loss_ckpt"):
            state[key] = torch.zeros(n, device=dev)
        for m, t in rows.x.items():
            for key in ("adv", "x", "old", "best"):
                state[f"{key}:{m}"] = t.clone()
            for key in ("g", "gbest"):
                state[f"{key}:{m}"] = torch.zeros_like(t)
        self._start(rows, state, torch.ones(n, dtype=torch.bool, device=dev))
        return state, done

    def _start(self, rows: Rows, state: State, sel: Tensor) -> None:
        """(Re)initialise the rows in ``sel`` for their current run: random start, fresh schedule."""
        idx = sel.nonzero().squeeze(1)
        draws = {}
        for m, t in rows.x.items():
            if self.norm == "l2":  # a Gaussian direction on each modality's sphere
                if rows.seeds is None:
                    z = torch.randn(t[idx].shape, dtype=t.dtype, device=t.device)
                else:
                    l2_keys = [(self.seed_tag, run, m, "l2") for run in state["run"][idx].tolist()]
                    z = seeded_randn(t[idx], rows.seeds[idx.cpu()].tolist(), l2_keys)
                draws[m] = l2_normalise(z)
                continue
            if rows.seeds is None:
                u = torch.rand(t[idx].shape, dtype=t.dtype, device=t.device)
            else:
                keys = [(self.seed_tag, run, m) for run in state["run"][idx].tolist()]
                u = seeded_rand(t[idx], rows.seeds[idx.cpu()].tolist(), keys)
            draws[m] = u * 2 - 1
        if self.norm == "l2":
            shifted = {m: t[idx] + self.eps[m] * draws[m] for m, t in rows.x.items()}
        else:
            norm = torch.stack([d.flatten(1).abs().amax(1) for d in draws.values()]).amax(0) + 1e-12
            shifted = {m: t[idx] + self.eps[m] * draws[m] / per_row(norm, draws[m]) for m, t in rows.x.items()}
        for m, t in rows.x.items():
            start = self.project(shifted[m], t[idx], m)
            for key in ("x", "old", "best"):
                state[f"{key}:{m}"][idx] = start
        state["i"][idx] = -1
        state["incr"][idx] = 0
        state["eta"][idx] = 2.0
        for key in ("loss_best", "loss_prev", "loss_ckpt"):
            state[key][idx] = 0.0
        state["reduced"][idx] = True

    def advance(self, model: Model, rows: Rows, state: State) -> Tensor:
        mods = list(rows.x)
        i = state["i"]
        init = i < 0
        moving = ~init
        if bool(moving.any()):
            a = torch.where(i > 0, 0.75, 1.0).to(state["eta"].dtype)
            for m in mods:
                x, old, g = state[f"x:{m}"], state[f"old:{m}"], state[f"g:{m}"]
                direction = l2_normalise(g) if self.norm == "l2" else g.sign()
                z = self.project(x + per_row(state["eta"] * self.eps[m], x) * direction, rows.x[m], m)
                z = self.project(x + per_row(a, x) * (z - x) + per_row(1 - a, x) * (x - old), rows.x[m], m)
                state[f"old:{m}"] = rows_where(moving, x, old)
                state[f"x:{m}"] = rows_where(moving, z, x)
        cur = {m: state[f"x:{m}"] for m in mods}
        targets = state["targets"].gather(1, state["run"].clamp(max=state["targets"].shape[1] - 1)[:, None]).squeeze(1)

        def loss_fn(logits: Tensor, labels: Tensor) -> Tensor:
            return self.loss(logits, labels, targets)

        grads: dict[str, Tensor] = {}
        for e in range(self.eot_iter):
            logits, loss, grad, zero, missing = input_gradients(model, rows.fixed, cur, loss_fn, rows.labels)
            if e == 0:
                self.audit.add(init & (state["run"] == 0), zero, missing)
            grads = dict(grad) if not grads else {m: grads[m] + grad[m] for m in mods}
        if self.eot_iter > 1:
            grads = {m: v / self.eot_iter for m, v in grads.items()}
        fooled = logits.argmax(1) != rows.labels
        state["fooled"] = state["fooled"] | fooled
        for m in mods:
            state[f"adv:{m}"] = rows_where(fooled, cur[m], state[f"adv:{m}"])
            state[f"g:{m}"] = grads[m]
        # the initial point of a run
        if bool(init.any()):
            state["loss_best"] = torch.where(init, loss, state["loss_best"])
            state["loss_ckpt"] = torch.where(init, loss, state["loss_ckpt"])
            for m in mods:
                state[f"gbest:{m}"] = rows_where(init, grads[m], state[f"gbest:{m}"])
        # an iteration: count loss increases, keep the best point, and at a checkpoint adapt the step
        if bool(moving.any()):
            state["incr"] = state["incr"] + (moving & (loss > state["loss_prev"])).long()
            improved = moving & (loss > state["loss_best"])
            state["loss_best"] = torch.where(improved, loss, state["loss_best"])
            for m in mods:
                state[f"best:{m}"] = rows_where(improved, cur[m], state[f"best:{m}"])
                state[f"gbest:{m}"] = rows_where(improved, grads[m], state[f"gbest:{m}"])
            window = self._window.to(i.device)[i.clamp(min=0, max=self.steps - 1)]
            ckpt = moving & (window > 0)
            if bool(ckpt.any()):
                oscillating = state["incr"].to(loss.dtype) <= window.to(loss.dtype) * self.rho
                stalled = ~state["reduced"] & (state["loss_ckpt"] >= state["loss_best"])
                halve = ckpt & (oscillating | stalled)
                state["reduced"] = torch.where(ckpt, halve, state["reduced"])
                state["loss_ckpt"] = torch.where(ckpt, state["loss_best"], state["loss_ckpt"])
                state["incr"] = torch.where(ckpt, 0, state["incr"])
                state["eta"] = torch.where(halve, state["eta"] / 2, state["eta"])
                for m in mods:
                    state[f"x:{m}"] = rows_where(halve, state[f"best:{m}"], state[f"x:{m}"])
                    state[f"g:{m}"] = rows_where(halve, state[f"gbest:{m}"], state[f"g:{m}"])
        state["loss_prev"] = torch.where(init, 0.0, loss)  # the reference's first window compares with 0
        state["i"] = i + 1
        ended = state["i"] == self.steps
        done = fooled if self.early_stop else (ended & state["fooled"])
        again = ended & ~state["fooled"]
        if bool(again.any()):
            state["run"] = state["run"] + again.long()
            last = again & (state["run"] >= state["targets"].shape[1])
            done = done | last
            more = again & ~last
            if bool(more.any()):
                self._start(rows, state, more)
        return done

    def adversarial(self, rows: Rows, state: State) -> Inputs:
        return {m: state[f"adv:{m}"] for m in rows.x}
