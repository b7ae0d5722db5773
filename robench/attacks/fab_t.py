"""FAB-T: the targeted Fast Adaptive Boundary attack, L-inf or L2 (Croce & Hein, ICML 2020), for two inputs.

Distance: L-inf in the rescaled coordinates ``v_m = x_m / eps_m`` (docs/attacks.md), where
the threat model's ball is the unit ball and a perturbation's size is its *budget factor*
``kappa = max_m ||delta_m||_inf / eps_m``: a clip fooled at kappa is fooled at the budget
``kappa * (eps_R, eps_S)``. FAB is a minimum-norm attack: it looks for the smallest kappa that
fools the clip, and a clip counts as broken only if it was fooled at ``kappa <= 1``.

Reference algorithm (``autoattack/fab_base.py``), per sample and target t (the 2nd to
(``targets`` + 1)-th largest clean logits, as APGD-T), from the clean point x0 and x1 = x0:

* linearise ``g = z_t - z_y`` at x1 and project x1 and x0 onto the hyperplane ``g = 0`` inside the
  valid range with the minimal L-inf step (d1, d2);
* ``alpha = clamp(|d1| / (|d1| + |d2|), 0, alpha_max)``; ``x1 <- (x1 + eta d1)(1 - alpha) + (x0 + eta d2) alpha``
  (``alpha_max`` 0.1, overshoot ``eta`` 1.05), clipped to the valid range;
* if x1 fools the model, keep it if its kappa is the smallest so far and step back towards x0:
  ``x1 <- x0 + beta (x1 - x0)`` (``beta`` 0.9).

The projection (minimal L-inf step onto a hyperplane inside a box) is solved exactly: the largest
decrease of ``w . x`` within ``||d||_inf <= lambda`` is ``sum_i |w_i| min(lambda, room_i)``, piecewise
linear in lambda, so lambda follows from the sorted rooms; where the box makes the hyperplane
unreachable the step goes to the box's corner. In v-coordinates the RGB box is
``[0, 1/eps_R]`` and the skeleton is unbounded.

L2 (``norm="l2"``): the threat model's ball is each modality's per-clip L2 ball, the budget factor
``kappa = max_m ||delta_m||_2 / eps_m``, and the projections onto the hyperplane are the minimal L2
steps inside the box (the reference's ``projection_l2``), with ``|d1|``, ``|d2|`` their L2 norms. The
minimal L2 step is solved exactly as the L-inf one: ``d_i = -sign(w_i) min(lambda |w_i|, room_i)``
(KKT), whose decrease ``sum_i w_i^2 min(lambda, room_i / |w_i|)`` is piecewise linear in lambda. The
step minimises the L2 norm in v-coordinates over all attacked modalities together: for one modality
that is exactly the L2 FAB step; for two it is a surrogate of the budget factor (the largest of the two
modalities' norms), which is what decides success.

Each iteration costs a forward+backward and a forward (the reference's check of x1). With
``early_stop`` (the default in evaluations) a clip stops once fooled within the budget; its
recorded kappa is then the first one found below 1, not the minimum; ``early_stop: false`` runs
every iteration and records the minimal kappa found.

Example::

    from robench.attacks import FABT
    adv = FABT(modalities=["rgb", "skeleton"], eps=8 / 255, steps=100, targets=9)(model.eval(), inputs, labels)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import torch
from torch import Tensor

from robench.attacks.base import Bounds, Inputs, Plausible, clip_norms
from robench.attacks.engine import EngineAttack, Model, Rows, State, clean_check, input_gradients, rows_where
from robench.attacks.losses import target_classes
from robench.registry import register_attack


def linf_projection(t: Tensor, w: Tensor, b: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    """Minimal L-inf step ``d`` (``[B, D]``) from ``t`` onto ``{z: w . z = b}`` with ``lo <= t + d <= hi``.

    Where the hyperplane cannot be reached inside the box, ``d`` goes as far towards it as the box
    allows. ``lo``/``hi`` may be infinite.
    """
    c = (w * t).sum(1) - b
    sign = torch.where(c >= 0, 1.0, -1.0).to(w.dtype)
    w = w * sign[:, None]
    c = c * sign  # now c >= 0: decrease w . z by c
    direction = -torch.sign(w)  # each coordinate moves against its weight
    room = torch.where(w > 0, t - lo, hi - t).clamp(min=0)
    room = torch.where(w == 0, torch.zeros_like(room), room)
    aw = w.abs()
    finite_room = torch.where(torch.isinf(room), torch.full_like(room, float("inf")), room)
    lam = _breakpoint(finite_room, aw, c)
    step = torch.minimum(room, lam[:, None].clamp(min=0))
    return direction * step


def l2_projection(t: Tensor, w: Tensor, b: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    """Minimal L2 step ``d`` (``[B, D]``) from ``t`` onto ``{z: w . z = b}`` with ``lo <= t + d <= hi``.

    Exact (the box-constrained projection of FAB's L2 version, Croce & Hein 2020): by the KKT conditions
    ``d_i = -sign(w_i) min(lambda |w_i|, room_i)`` for one lambda >= 0, where ``room_i`` is how far
    coordinate i can move against its weight inside the box; the decrease of ``w . z`` is then
    ``sum_i w_i^2 min(lambda, room_i / |w_i|)``, piecewise linear in lambda, so lambda follows from the
    sorted breakpoints. Where the box makes the hyperplane unreachable, ``d`` goes to the box's corner
    (every room used). ``lo``/``hi`` may be infinite.
    """
    c = (w * t).sum(1) - b
    sign = torch.where(c >= 0, 1.0, -1.0).to(w.dtype)
    w = w * sign[:, None]
    c = c * sign  # now c >= 0: decrease w . z by c
    direction = -torch.sign(w)
    room = torch.where(w > 0, t - lo, hi - t).clamp(min=0)
    aw = w.abs()
    active = aw > 0
    tiny = torch.finfo(aw.dtype).tiny
    r = torch.where(active, room / aw.clamp(min=tiny), torch.zeros_like(room))  # breakpoints (inf: no bound)
    lam = _breakpoint(r, torch.where(active, aw * aw, torch.zeros_like(aw)), c)
    step = torch.where(active, aw * torch.minimum(r, lam[:, None].clamp(min=0)), torch.zeros_like(aw))
    return direction * torch.minimum(step, room)


def _breakpoint(r: Tensor, weight: Tensor, c: Tensor) -> Tensor:
    """Per row, the smallest ``lambda`` with ``sum_i weight_i * min(lambda, r_i) >= c`` (``r`` may hold inf;
    inf where no lambda reaches c): the piecewise linear function's segment from the sorted ``r``."""
    order = r.argsort(dim=1)
    r_sorted = r.gather(1, order)
    w_sorted = weight.gather(1, order)
    # g(lambda) at lambda = r_(k): sum_{j<=k} w_j r_j + r_k * sum_{j>k} w_j
    capped = torch.where(torch.isinf(r_sorted), torch.zeros_like(r_sorted), w_sorted * r_sorted)
    below = torch.cumsum(capped, dim=1)
    above = w_sorted.sum(1, keepdim=True) - torch.cumsum(w_sorted, dim=1)
    g_at = below + torch.where(torch.isinf(r_sorted), torch.zeros_like(r_sorted), r_sorted) * above
    g_at = torch.where(torch.isinf(r_sorted), torch.full_like(g_at, float("inf")), g_at)
    # first breakpoint where g reaches c: lambda lies in its segment
    reach = g_at >= c[:, None]
    k = torch.where(reach.any(1), reach.float().argmax(1), torch.full_like(c, r_sorted.shape[1] - 1).long())
    prev_below = torch.where(k > 0, below.gather(1, (k - 1).clamp(min=0)[:, None]).squeeze(1), torch.zeros_like(c))
    prev_weight = torch.where(k > 0, above.gather(1, (k - 1).clamp(min=0)[:, None]).squeeze(1),
                              w_sorted.sum(1))
    lam = (c - prev_below) / prev_weight.clamp(min=1e-30)
    return torch.where(reach.any(1), lam, torch.full_like(lam, float("inf")))  # unreachable: every room


@register_attack("fab_t")
class FABT(EngineAttack):
    """Targeted FAB, L-inf or L2, minimum budget factor per clip (AutoAttack's FAB-T).

    Args:
        modalities: inputs to perturb, jointly, in rescaled coordinates.
        eps: radius of the L-inf (or, with ``norm="l2"``, per-clip L2) ball, per modality or shared (RGB
            in [0, 1] units, skeleton in metres).
        steps: iterations per target (standard: 100).
        targets: target classes tried in turn (standard: 9; at most classes - 1).
        alpha_max: the largest pull towards the clean point's projection (0.1).
        eta: overshoot of each projection step (1.05).
        beta: backward step towards the clean point after a success (0.9).
        early_stop: stop a clip once it is fooled within the budget.
        bounds: valid range per modality.
        plausible: plausible-skeleton limits (see :class:`~robench.attacks.base.Attack`).
        norm: ``"linf"`` or ``"l2"`` (the threat model's ball; see the module docstring).
    """

    version = 1
    norms: ClassVar[tuple[str, ...]] = ("linf", "l2")

    def __init__(self, modalities: Sequence[str], eps: float | Mapping[str, float], steps: int = 100,
                 targets: int = 9, alpha_max: float = 0.1, eta: float = 1.05, beta: float = 0.9,
                 early_stop: bool = True, bounds: Bounds | None = None, plausible: Plausible = None,
                 norm: str = "linf") -> None:
        super().__init__(modalities, eps, bounds, plausible, norm=norm)
        if steps < 1 or targets < 1:
            raise ValueError(f"steps and targets must be >= 1, got {steps}, {targets}")
        self.steps, self.targets = int(steps), int(targets)
        self.alpha_max, self.eta, self.beta = float(alpha_max), float(eta), float(beta)
        self.early_stop = bool(early_stop)

    def _box(self, rows: Rows) -> tuple[Tensor, Tensor]:
        """The valid range in v-coordinates, flattened over the attacked modalities (``[B, D]`` each)."""
        los, his = [], []
        for m, x in rows.x.items():
            rng = self.bounds.get(m)
            lo = torch.full_like(x, float("-inf") if rng is None else rng[0] / self.eps[m])
            hi = torch.full_like(x, float("inf") if rng is None else rng[1] / self.eps[m])
            los.append(lo.flatten(1))
            his.append(hi.flatten(1))
        return torch.cat(los, 1), torch.cat(his, 1)

    def _to_v(self, xs: Inputs) -> Tensor:
        return torch.cat([(xs[m] / self.eps[m]).flatten(1) for m in self.modalities], 1)

    def _from_v(self, v: Tensor, like: Inputs) -> Inputs:
        out, start = {}, 0
        for m in self.modalities:
            n = like[m][0].numel()
            out[m] = (v[:, start : start + n] * self.eps[m]).view_as(like[m])
            start += n
        return out

    def row_metrics(self, rows: Rows, state: State) -> dict[str, Tensor]:
        """``budget_factor``: each row's smallest budget factor kappa that fooled it (inf: none found)."""
        return {"budget_factor": state["kappa"]}

    def begin(self, model: Model, rows: Rows) -> tuple[State, Tensor]:
        n, dev = len(rows), rows.labels.device
        logits, done = clean_check(model, rows)
        if any(e == 0 for e in self.eps.values()):
            done = torch.ones(n, dtype=torch.bool, device=dev)
        state: State = {"targets": target_classes(logits, self.targets),
                        "run": torch.zeros(n, dtype=torch.int64, device=dev),
                        "it": torch.zeros(n, dtype=torch.int64, device=dev),
                        "kappa": torch.full((n,), float("inf"), device=dev)}
        for m, x in rows.x.items():
            state[f"x1:{m}"] = x.clone()
            state[f"adv:{m}"] = x.clone()
        return state, done

    def advance(self, model: Model, rows: Rows, state: State) -> Tensor:
        mods = list(rows.x)
        target = state["targets"].gather(1, state["run"][:, None]).squeeze(1)
        cur = {m: state[f"x1:{m}"] for m in mods}

        def diff(logits: Tensor, labels: Tensor) -> Tensor:
            return logits.gather(1, target[:, None]).squeeze(1) - logits.gather(1, labels[:, None]).squeeze(1)

        _, df, grads, zero, missing = input_gradients(model, rows.fixed, cur, diff, rows.labels)
        self.audit.add((state["it"] == 0) & (state["run"] == 0), zero, missing)
        # in v-coordinates the gradient scales by eps: d g / d v_m = eps_m * d g / d x_m
        w = torch.cat([(grads[m] * self.eps[m]).flatten(1) for m in mods], 1)
        v1, v0 = self._to_v(cur), self._to_v(rows.x)
        b = (w * v1).sum(1) - df
        lo, hi = self._box(rows)
        if self.norm == "l2":
            d1 = l2_projection(v1, w, b, lo, hi)
            d2 = l2_projection(v0, w, b, lo, hi)
            a1 = clip_norms(d1)[:, None].clamp(min=1e-8)
            a2 = clip_norms(d2)[:, None].clamp(min=1e-8)
        else:
            d1 = linf_projection(v1, w, b, lo, hi)
            d2 = linf_projection(v0, w, b, lo, hi)
            a1 = d1.abs().amax(1, keepdim=True).clamp(min=1e-8)
            a2 = d2.abs().amax(1, keepdim=True).clamp(min=1e-8)
        alpha = (a1 / (a1 + a2)).clamp(0, self.alpha_max)
        v_new = ((v1 + self.eta * d1) * (1 - alpha) + (v0 + self.eta * d2) * alpha)
        v_new = torch.maximum(torch.minimum(v_new, hi), lo)
        new = self._from_v(v_new, cur)
        new = {m: self.project_range(new[m], m) for m in mods}
        with torch.no_grad():
            fooled = model({**rows.fixed, **new}).argmax(1) != rows.labels
        kappa = torch.stack([self._size(new[m] - rows.x[m]) / self.eps[m] for m in mods]).amax(0)
        better = fooled & (kappa < state["kappa"])
        state["kappa"] = torch.where(better, kappa, state["kappa"])
        for m in mods:
            state[f"adv:{m}"] = rows_where(better, new[m], state[f"adv:{m}"])
            back = rows.x[m] + self.beta * (new[m] - rows.x[m])
            state[f"x1:{m}"] = rows_where(fooled, back, new[m])
        state["it"] = state["it"] + 1
        broken = state["kappa"] <= 1.0
        done = broken if self.early_stop else torch.zeros_like(broken)
        ended = state["it"] >= self.steps
        if bool(ended.any()):
            last = ended & (broken | (state["run"] + 1 >= state["targets"].shape[1]))
            done = done | last
            again = ended & ~last
            state["run"] = state["run"] + again.long()
            state["it"] = torch.where(again, 0, state["it"])
            for m in mods:
                state[f"x1:{m}"] = rows_where(again, rows.x[m], state[f"x1:{m}"])
        return done

    def _size(self, delta: Tensor) -> Tensor:
        """Per clip, the perturbation's size in the threat model's norm (``[B]``)."""
        if self.norm == "l2":
            return clip_norms(delta)
        return delta.flatten(1).abs().amax(1)

    def project_range(self, x: Tensor, m: str) -> Tensor:
        rng = self.bounds.get(m)
        return x.clamp(rng[0], rng[1]) if rng is not None else x

    def adversarial(self, rows: Rows, state: State) -> Inputs:
        """The fooling point with the smallest kappa if kappa <= 1 (inside the threat model), else the clean clip."""
        inside = state["kappa"] <= 1.0
        out = {}
        for m, x in rows.x.items():
            # numerically kappa <= 1 may still exceed eps by rounding: project into the ball
            out[m] = rows_where(inside, self.project(state[f"adv:{m}"], x, m), x)
        return out
