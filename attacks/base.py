"""Attack base class, the L-inf threat model and the run-time checks of every attack output.

Threat model (paper Section 3.2, Eq. 6-7; units in REFERENCE.md section 2): each attacked modality
m gets its own L-inf ball ``||x'_m - x_m||_inf <= eps_m``, where RGB is in pixel units scaled to
[0, 1] (so 8/255 is eight grey levels) and the skeleton in metres. Adversarial RGB is clipped to
[0, 1]; the skeleton is unbounded unless the protocol says otherwise. Unattacked modalities are
passed through untouched. Attacks see the model's raw inputs: normalisation lives in the model.

Every attack output is checked by :func:`check_adversarial` before anyone uses it (``Attack.__call__``
does this): outside the ball, outside the range, non-finite, or an unattacked modality changed by
even one bit is an :class:`~robench.errors.AttackCheckError`, never a warning.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from robench.errors import AttackCheckError
from robench.hashing import derive_seed
from robench.registry import Registrable

Inputs = dict[str, Tensor]
Bounds = Mapping[str, tuple[float, float] | None]

#: valid input range per modality unless a protocol overrides it
DEFAULT_BOUNDS: dict[str, tuple[float, float] | None] = {"rgb": (0.0, 1.0), "skeleton": None}


def _per_modality(value: float | Mapping[str, float], modalities: Sequence[str], what: str) -> dict[str, float]:
    if isinstance(value, Mapping):
        missing = [m for m in modalities if m not in value]
        if missing:
            raise ValueError(f"{what} has no value for modality {missing}")
        out = {m: float(value[m]) for m in modalities}
    else:
        out = {m: float(value) for m in modalities}
    for m, v in out.items():
        if not v >= 0:
            raise ValueError(f"{what} for {m} must be >= 0, got {v}")
    return out


class Attack(Registrable, abc.ABC):
    """An L-inf attack on some modalities of a multimodal classifier.

    Args:
        modalities: which inputs to perturb (``["rgb"]``, ``["skeleton"]`` or both, jointly).
        eps: L-inf radius, one number for all attacked modalities or ``{modality: eps}``, in input
            units (RGB on the [0, 1] scale, skeleton in metres).
        bounds: valid range per modality; defaults to RGB in [0, 1], skeleton unbounded.

    Subclasses implement :meth:`perturb`; call the attack (``attack(model, inputs, labels)``) to get
    checked adversarial inputs. ``model`` maps an input dict to logits; its mode (train/eval) is the
    caller's choice.
    """

    #: arguments the harness fills from the cell (scenario, eps, threat model), not protocol keys
    harness_params: ClassVar[tuple[str, ...]] = ("modalities", "eps", "bounds")
    #: parameters in input units: a protocol's threat ``scale`` multiplies them per modality, like eps
    scaled_params: ClassVar[tuple[str, ...]] = ()

    def __init__(self, modalities: Sequence[str], eps: float | Mapping[str, float],
                 bounds: Bounds | None = None) -> None:
        if not modalities:
            raise ValueError("an attack needs at least one modality to perturb")
        self.modalities = tuple(modalities)
        self.eps = _per_modality(eps, self.modalities, "eps")
        merged = dict(DEFAULT_BOUNDS)
        merged.update(bounds or {})
        self.bounds: dict[str, tuple[float, float] | None] = merged

    @abc.abstractmethod
    def perturb(self, model: Callable[[Inputs], Tensor], inputs: Inputs, labels: Tensor,
                sample_seeds: Tensor | None = None) -> Inputs:
        """Adversarial version of ``inputs`` (a new dict; unattacked tensors may be shared).

        ``sample_seeds`` (int64 ``[B]``), when given, makes any randomness per-sample reproducible
        independently of batching; without it the global torch RNG is used.
        """

    def __call__(self, model: Callable[[Inputs], Tensor], inputs: Inputs, labels: Tensor,
                 sample_seeds: Tensor | None = None) -> Inputs:
        missing = [m for m in self.modalities if m not in inputs]
        if missing:
            raise AttackCheckError(f"{type(self).__name__}: attacks {missing} but the inputs have {sorted(inputs)}")
        adv = self.perturb(model, inputs, labels, sample_seeds)
        check_adversarial(inputs, adv, self.eps, self.bounds, attack=type(self).__name__)
        return adv

    def project(self, x_adv: Tensor, x: Tensor, modality: str) -> Tensor:
        """Project onto the eps-ball around ``x`` and into the valid range."""
        eps = self.eps[modality]
        out = x + (x_adv - x).clamp(-eps, eps)
        rng = self.bounds.get(modality)
        return out.clamp(rng[0], rng[1]) if rng is not None else out


def check_adversarial(
    clean: Inputs, adv: Inputs, eps: Mapping[str, float], bounds: Bounds, attack: str = "attack"
) -> None:
    """Raise :class:`AttackCheckError` unless ``adv`` is a valid attack output for ``clean``.

    Valid: same keys, shapes and dtypes; attacked modalities (the keys of ``eps``) finite, inside
    the L-inf ball (up to float rounding of ``x + delta``) and inside ``bounds``; every other
    modality bit-identical to the clean input.
    """
    if set(adv) != set(clean):
        raise AttackCheckError(f"{attack}: returned modalities {sorted(adv)}, expected {sorted(clean)}")
    for m, x in clean.items():
        a = adv[m]
        if a.shape != x.shape or a.dtype != x.dtype:
            raise AttackCheckError(f"{attack}: {m} changed shape/dtype {tuple(x.shape)}/{x.dtype} -> "
                                   f"{tuple(a.shape)}/{a.dtype}")
        if m not in eps:
            if not torch.equal(a, x):
                n = int((a != x).sum())
                raise AttackCheckError(f"{attack}: modality '{m}' is not attacked but {n} values changed")
            continue
        if not torch.isfinite(a).all():
            raise AttackCheckError(f"{attack}: non-finite values in adversarial {m}")
        e = float(eps[m])
        # x + delta is rounded once: allow two ulps of the largest magnitude involved
        tol = 2.0 * torch.finfo(x.dtype).eps * (float(x.abs().max()) + e) if x.is_floating_point() else 0.0
        dev = float((a - x).abs().max()) if x.numel() else 0.0
        if dev > e + tol:
            raise AttackCheckError(f"{attack}: {m} perturbation {dev:.6g} exceeds eps {e:.6g} (L-inf)")
        rng = bounds.get(m)
        if rng is not None and x.numel():
            lo, hi = float(a.min()), float(a.max())
            if lo < rng[0] or hi > rng[1]:
                raise AttackCheckError(f"{attack}: {m} values [{lo:.6g}, {hi:.6g}] leave the valid range {list(rng)}")


# -- losses maximised by gradient attacks ---------------------------------------------------------

def ce_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Per-sample cross-entropy ``[B]``."""
    return F.cross_entropy(logits, labels, reduction="none")


def cw_margin_loss(logits: Tensor, labels: Tensor, kappa: float = 50.0) -> Tensor:
    """Per-sample Carlini-Wagner margin ``min(max_{j != y} z_j - z_y, kappa)`` ``[B]`` (maximised).

    The L-inf CW attack of the paper's evaluation ("CW optimised by PGD-30"), in the form used by
    the TRADES / MART evaluation code: the margin is capped at ``kappa`` so that a sample already
    misclassified by a wide margin stops pulling.
    """
    true = logits.gather(1, labels[:, None]).squeeze(1)
    other = logits.masked_fill(F.one_hot(labels, logits.shape[1]).bool(), float("-inf")).amax(dim=1)
    return (other - true).clamp(max=kappa)


LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {"ce": ce_loss, "cw": cw_margin_loss}


class IterativeAttack(Attack):
    """Signed-gradient ascent with projection: the shared engine of FGSM, PGD and CW.

    Per restart: start at ``x`` (or uniformly inside the ball with ``random_start``), take ``steps``
    steps ``x <- proj(x + step_size * sign(grad loss))`` on all attacked modalities at once (the
    paper's Eq. 7), and evaluate every iterate.

    With ``early_stop`` (the evaluation default) the clean input is the first candidate, a sample
    stops being attacked as soon as an iterate misclassifies it, and that iterate is returned: a
    sample counts as robust only if *no* iterate of *any* restart fools the model, as in AutoAttack.
    Computation shrinks as samples fall. Without it (adversarial training, Madry et al.), every
    sample takes all steps and the last iterate of the restart with the highest loss is returned.

    Both modes are per-sample independent only for models whose output for one sample does not
    depend on the rest of the batch (eval mode, i.e. BatchNorm using running statistics).
    """

    scaled_params: ClassVar[tuple[str, ...]] = ("step_size",)

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
    ) -> None:
        super().__init__(modalities, eps, bounds)
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if restarts < 1:
            raise ValueError(f"restarts must be >= 1, got {restarts}")
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")
        self.step_size = _per_modality(step_size, self.modalities, "step_size")
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
        if sample_seeds is None:
            u = torch.rand(x.shape, dtype=x.dtype, device=x.device)
        else:
            gen = torch.Generator(device=x.device)
            u = torch.empty_like(x)
            for i, seed in enumerate(sample_seeds.tolist()):
                gen.manual_seed(derive_seed(seed, restart, m))
                u[i] = torch.rand(x.shape[1:], dtype=x.dtype, device=x.device, generator=gen)
        return self.project(x + (u * 2 - 1) * self.eps[m], x, m)

    def _grads(self, model: Callable[[Inputs], Tensor], fixed: Inputs, cur: Inputs, labels: Tensor
               ) -> tuple[Tensor, dict[str, Tensor]]:
        """Logits at ``cur`` and the gradient of the summed loss w.r.t. each attacked input."""
        with torch.enable_grad():
            leaves = {m: t.detach().requires_grad_(True) for m, t in cur.items()}
            logits = model({**fixed, **leaves})
            loss = self.loss_fn(logits, labels).sum()
            grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
        return logits.detach(), {m: (g if g is not None else torch.zeros_like(leaves[m]))
                                 for m, g in zip(leaves, grads)}

    def _step(self, cur: Inputs, grads: dict[str, Tensor], x: Inputs) -> Inputs:
        return {m: self.project(cur[m] + self.step_size[m] * grads[m].sign(), x[m], m) for m in cur}

    def perturb(self, model: Callable[[Inputs], Tensor], inputs: Inputs, labels: Tensor,
                sample_seeds: Tensor | None = None) -> Inputs:
        attacked = {m: inputs[m].detach() for m in self.modalities}
        fixed = {m: t for m, t in inputs.items() if m not in attacked}
        best = {m: t.clone() for m, t in attacked.items()}
        if all(e == 0 for e in self.eps.values()):
            return {**fixed, **best}  # the ball is one point: the clean input, no gradient needed
        if self.early_stop:
            return self._perturb_early_stop(model, attacked, fixed, labels, best, sample_seeds)
        return self._perturb_full(model, attacked, fixed, labels, best, sample_seeds)

    def _perturb_early_stop(self, model: Callable[[Inputs], Tensor], x: Inputs, fixed: Inputs, labels: Tensor,
                            best: Inputs, sample_seeds: Tensor | None) -> Inputs:
        with torch.no_grad():
            robust = model({**fixed, **x}).argmax(1) == labels  # the clean input is candidate zero
        for r in range(self.restarts):
            starts = {m: self._start(t, m, r, sample_seeds) for m, t in x.items()}  # whole batch: RNG use is fixed
            idx = robust.nonzero().squeeze(1)
            if idx.numel() == 0:
                continue
            cur = {m: s[idx] for m, s in starts.items()}
            for t in range(self.steps + 1):
                sub_fixed = {m: v[idx] for m, v in fixed.items()}
                sub_x = {m: v[idx] for m, v in x.items()}
                if t < self.steps:
                    logits, grads = self._grads(model, sub_fixed, cur, labels[idx])
                else:
                    with torch.no_grad():
                        logits = model({**sub_fixed, **cur})
                fooled = logits.argmax(1) != labels[idx]
                if fooled.any():
                    for m in cur:
                        best[m][idx[fooled]] = cur[m][fooled]
                    robust[idx[fooled]] = False
                if t == self.steps or bool(fooled.all()):
                    for m in cur:  # still robust: return the final iterate
                        best[m][idx[~fooled]] = cur[m][~fooled]
                    break
                keep = ~fooled
                nxt = self._step(cur, grads, sub_x)
                idx = idx[keep]
                cur = {m: v[keep] for m, v in nxt.items()}
        return {**fixed, **best}

    def _perturb_full(self, model: Callable[[Inputs], Tensor], x: Inputs, fixed: Inputs, labels: Tensor,
                      best: Inputs, sample_seeds: Tensor | None) -> Inputs:
        best_loss = torch.full(labels.shape, float("-inf"), device=labels.device)
        for r in range(self.restarts):
            cur = {m: self._start(t, m, r, sample_seeds) for m, t in x.items()}
            for _ in range(self.steps):
                _, grads = self._grads(model, fixed, cur, labels)
                cur = self._step(cur, grads, x)
            if self.restarts == 1:
                return {**fixed, **cur}
            with torch.no_grad():
                loss = self.loss_fn(model({**fixed, **cur}), labels)
            better = loss > best_loss
            best_loss = torch.where(better, loss, best_loss)
            for m in cur:
                best[m][better] = cur[m][better]
        return {**fixed, **best}

