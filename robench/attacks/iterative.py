"""Steepest ascent with projection: the shared engine of FGSM, PGD and CW (paper Eq. 4 and 7).

Per restart: start at ``x`` (or uniformly inside the ball with ``random_start``), take ``steps``
steps ``x <- proj(x + step_size * sign(grad loss))`` on all attacked modalities at once, and
evaluate every iterate. Under the L2 threat model (``norm="l2"``, Madry et al. 2018) the step is
the L2 steepest-ascent one, ``x_m <- proj(x_m + step_size_m * g_m / ||g_m||_2)``, the gradient
normalised per clip and per modality (each modality has its own ball), ``step_size`` an L2 length in
the modality's input units; the random start is uniform in each modality's L2 ball (a Gaussian
direction, normalised, at radius ``eps * u^(1/n)`` for u uniform and n the modality's values per
clip). Written for :mod:`robench.attacks.engine`: each sample carries its own iteration and restart
counters, so the evaluation refills finished samples' slots with new clips.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import torch
from torch import Tensor

from robench.attacks.base import Bounds, Inputs, Plausible, _per_modality, l2_normalise
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
from robench.attacks.losses import LOSSES


class IterativeAttack(EngineAttack):
    """Steepest ascent with projection (signed gradient in L-inf, normalised gradient in L2), evaluated
    at every iterate.

    With ``early_stop`` (the evaluation default) the clean input is the first candidate, a sample
    stops being attacked as soon as an iterate misclassifies it, and that iterate is returned: a
    sample counts as robust only if *no* iterate of *any* restart fools the model, as in AutoAttack.
    The last iterate of the last restart is not evaluated here: the caller's check of the returned
    input decides it (the evaluation re-checks every returned point), which saves one forward pass
    per robust sample. Without ``early_stop`` (adversarial training, Madry et al.), every sample
    takes all steps and the last iterate of the restart with the highest loss is returned.

    Both modes are per-sample independent only for models whose output for one sample does not
    depend on the rest of the batch (eval mode, i.e. BatchNorm using running statistics).
    """

    scaled_params: ClassVar[tuple[str, ...]] = ("step_size",)
    norms: ClassVar[tuple[str, ...]] = ("linf", "l2")
    #: under L2, a protocol that sets no step size gets eps / 4 per modality
    l2_eps_fractions: ClassVar[Mapping[str, float]] = {"step_size": 0.25}

    def __init__(
        self,
        modalities: Sequence[str],
        eps: float | Mapping[str, float],
        step_size: float | Mapping[str, float],
        steps: int,
        random_start: bool,
        restarts: int = 1,
        loss: str = "ce",
        early_stop: bool = True,
        bounds: Bounds | None = None,
        plausible: Plausible = None,
        norm: str = "linf",
    ) -> None:
        super().__init__(modalities, eps, bounds, plausible, norm=norm)
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if restarts < 1:
            raise ValueError(f"restarts must be >= 1, got {restarts}")
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")
        self.step_size = _per_modality(step_size, self.modalities, "step_size")
        stalled = [m for m in self.modalities if self.eps[m] > 0 and self.step_size[m] == 0]
        if stalled:  # a step of 0 inside a ball that is not a point would leave the attack where it starts
            raise ValueError(f"step_size for {stalled[0]} must be > 0 when its eps is > 0, got 0.0")
        self.steps, self.random_start, self.restarts = int(steps), bool(random_start), int(restarts)
        self.loss_name, self.loss_fn = loss, LOSSES[loss]
        self.early_stop = bool(early_stop)

    def _start(self, x: Tensor, m: str, restart: int, sample_seeds: Tensor | None) -> Tensor:
        """Starting point of a restart: ``x``, or uniform noise in the ball.

        With ``sample_seeds`` (int64 ``[B]``), sample i's noise comes from its own generator seeded
        by (seed_i, restart, modality), so results do not depend on how samples are batched.
        """
        if not self.random_start:
            return x.clone()
        if self.norm == "l2":
            return self._l2_start(x, m, restart, sample_seeds)
        if sample_seeds is None:
            u = torch.rand(x.shape, dtype=x.dtype, device=x.device)
        else:
            u = seeded_rand(x, sample_seeds.tolist(), [(restart, m)] * len(x))
        return self.project(x + (u * 2 - 1) * self.eps[m], x, m)

    def _l2_start(self, x: Tensor, m: str, restart: int, sample_seeds: Tensor | None) -> Tensor:
        """A point drawn uniformly from modality m's L2 ball around ``x`` (then into the valid range)."""
        radius_like = x.new_empty((len(x), 1))
        if sample_seeds is None:
            z = torch.randn(x.shape, dtype=x.dtype, device=x.device)
            u = torch.rand(radius_like.shape, dtype=x.dtype, device=x.device)
        else:
            seeds = sample_seeds.tolist()
            z = seeded_randn(x, seeds, [(restart, m, "l2")] * len(x))
            u = seeded_rand(radius_like, seeds, [(restart, m, "l2-radius")] * len(x))
        n = x[0].numel() if len(x) else 1
        radius = self.eps[m] * u.squeeze(1) ** (1.0 / n)
        return self.project(x + per_row(radius, x) * l2_normalise(z), x, m)

    def _step(self, cur: Inputs, grads: dict[str, Tensor], x: Inputs) -> Inputs:
        if self.norm == "l2":
            return {m: self.project(cur[m] + self.step_size[m] * l2_normalise(grads[m]), x[m], m) for m in cur}
        return {m: self.project(cur[m] + self.step_size[m] * grads[m].sign(), x[m], m) for m in cur}

    # -- the engine's three methods ----------------------------------------------------------------
    def begin(self, model: Model, rows: Rows) -> tuple[State, Tensor]:
        dev = rows.labels.device
        n = len(rows)
        state: State = {"it": torch.zeros(n, dtype=torch.int64, device=dev),
                        "restart": torch.zeros(n, dtype=torch.int64, device=dev)}
        if all(e == 0 for e in self.eps.values()):  # the ball is one point: the clean input, no gradient needed
            state.update({f"cur:{m}": t.clone() for m, t in rows.x.items()})
            return state, torch.ones(n, dtype=torch.bool, device=dev)
        if self.early_stop:
            _, done = clean_check(model, rows)  # the clean input is candidate zero
        else:
            done = torch.zeros(n, dtype=torch.bool, device=dev)
        for m, t in rows.x.items():  # drawn for every row, so the random draws do not depend on the clean check
            state[f"cur:{m}"] = rows_where(done, t, self._start(t, m, 0, rows.seeds))
        if not self.early_stop and self.restarts > 1:
            state.update({f"best:{m}": t.clone() for m, t in rows.x.items()})
            state["best_loss"] = torch.full((n,), float("-inf"), device=dev)
        return state, done

    def advance(self, model: Model, rows: Rows, state: State) -> Tensor:
        cur = {m: state[f"cur:{m}"] for m in rows.x}
        first = (state["it"] == 0) & (state["restart"] == 0)
        logits, _, grads, zero, missing = input_gradients(model, rows.fixed, cur, self.loss_fn, rows.labels,
                                                          audit=bool(first.any()))
        self.audit.add(first, zero, missing)
        if self.early_stop:
            done = logits.argmax(1) != rows.labels
        else:
            done = torch.zeros_like(rows.labels, dtype=torch.bool)
        stepping = ~done
        nxt = self._step(cur, grads, rows.x)
        every = bool(stepping.all())
        for m in cur:
            state[f"cur:{m}"] = nxt[m] if every else rows_where(stepping, nxt[m], cur[m])
        state["it"] = state["it"] + stepping.long()
        end = stepping & (state["it"] == self.steps)
        if bool(end.any()):
            done = done | self._end_of_restart(model, rows, state, end)
        return done

    def _end_of_restart(self, model: Model, rows: Rows, state: State, end: Tensor) -> Tensor:
        """Rows in ``end`` took their last step of a restart: finish them or start their next restart."""
        if self.restarts == 1:
            return end  # the final iterate is returned (and judged by the caller's check)
        idx = end.nonzero().squeeze(1)
        sub = rows.take(idx)
        cur = {m: state[f"cur:{m}"][idx] for m in rows.x}
        with torch.no_grad():
            logits = model({**sub.fixed, **cur})
        finish = torch.zeros_like(end)
        if self.early_stop:
            finish[idx[logits.argmax(1) != sub.labels]] = True
        else:
            loss = self.loss_fn(logits, sub.labels)
            better = loss > state["best_loss"][idx]
            state["best_loss"][idx[better]] = loss[better]
            for m in cur:
                state[f"best:{m}"][idx[better]] = cur[m][better]
        state["restart"][idx] += 1
        last = end & ~finish & (state["restart"] == self.restarts)
        if not self.early_stop and bool(last.any()):
            for m in rows.x:
                state[f"cur:{m}"][last] = state[f"best:{m}"][last]
        again = end & ~finish & ~last
        for r in state["restart"][again].unique().tolist():
            sel = (again & (state["restart"] == r)).nonzero().squeeze(1)
            seeds = None if rows.seeds is None else rows.seeds[sel.to(rows.seeds.device)]
            for m, t in rows.x.items():
                state[f"cur:{m}"][sel] = self._start(t[sel], m, int(r), seeds)
            state["it"][sel] = 0
        return finish | last

    def adversarial(self, rows: Rows, state: State) -> Inputs:
        return {m: state[f"cur:{m}"] for m in rows.x}
