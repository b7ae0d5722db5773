"""Attack base class, the L-inf and L2 threat models and the run-time checks of every attack output.

Threat model (paper Section 3.2, Eq. 6-7; units in docs/concepts.md): each attacked modality
m gets its own L-inf ball ``||x'_m - x_m||_inf <= eps_m``, where RGB is in pixel units scaled to
[0, 1] (so 8/255 is eight grey levels) and the skeleton in metres. Adversarial RGB is clipped to
[0, 1]; the skeleton is unbounded unless the protocol says otherwise. Unattacked modalities are
passed through untouched. Attacks see the model's raw inputs: normalisation lives in the model.

With ``norm="l2"`` (a protocol's ``threat.norm: l2``) the ball is the per-clip L2 ball instead,
``||x'_m - x_m||_2 <= eps_m``, the norm taken over all of modality m's values of one clip (every
channel, frame, pixel or joint and person), in the same input units (RGB on the [0, 1] scale,
skeleton in metres) and scaled per modality by ``threat.<m>.scale`` exactly as the L-inf eps.
:meth:`Attack.project` rescales a perturbation whose L2 norm exceeds eps onto the sphere (the
projection of Madry et al. 2018, torchattacks and AutoAttack), then applies the valid range and the
plausible-skeleton limits: both only move coordinates towards the clean clip, so the result stays in
the ball. An attack declares the norms it implements in :attr:`Attack.norms` and refuses the others.

With ``plausible`` limits (a protocol's ``threat.skeleton.plausible``), the skeleton's ball shrinks
to adversarial skeletons that are still a body: bone lengths, joint angles, velocities and
accelerations stay within relative tolerances of the clean clip (:mod:`robench.attacks.plausible`).
Every attack applies them in :meth:`Attack.project`, so they hold after every step.

Every attack output is checked by :func:`check_adversarial` before anyone uses it (``Attack.__call__``
does this): outside the ball, outside the range, non-finite, or an unattacked modality changed by
even one bit is an :class:`~robench.errors.AttackCheckError`, never a warning.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar

import torch
from torch import Tensor

from robench.attacks.plausible import SkeletonLimits, project_plausible, violations
from robench.errors import AttackCheckError
from robench.registry import Registrable

Inputs = dict[str, Tensor]
Bounds = Mapping[str, tuple[float, float] | None]
#: plausible-skeleton limits as a protocol gives them (``{bone: 0.01, angle: 0.1, ...}``), or None
Plausible = Mapping[str, float] | None

#: the threat models' norms: per-modality L-inf or per-clip, per-modality L2 balls
NORMS: tuple[str, ...] = ("linf", "l2")

#: valid input range per modality unless a protocol overrides it
DEFAULT_BOUNDS: dict[str, tuple[float, float] | None] = {"rgb": (0.0, 1.0), "skeleton": None}


def _per_modality(value: float | Mapping[str, float], modalities: Sequence[str], what: str) -> dict[str, float]:
    """``{modality: value}`` from one value or a mapping; each finite and >= 0."""
    if isinstance(value, Mapping):
        missing = [m for m in modalities if m not in value]
        if missing:
            raise ValueError(f"{what} has no value for modality {missing}")
        out = {m: float(value[m]) for m in modalities}
    else:
        out = {m: float(value) for m in modalities}
    for m, v in out.items():
        if not 0 <= v < math.inf:  # NaN fails too
            raise ValueError(f"{what} for {m} must be a finite number >= 0, got {v}")
    return out


def clip_norms(delta: Tensor) -> Tensor:
    """Per-clip L2 norms of ``delta`` (``[B, ...]`` -> ``[B]``), over all of a clip's values."""
    return delta.flatten(1).norm(p=2, dim=1)


def l2_normalise(v: Tensor) -> Tensor:
    """``v`` scaled per clip to unit L2 norm: the L2 steepest-ascent direction. Like the sign of the L-inf
    step it does not depend on the gradient's scale (a saturated loss's tiny gradient still steps); a
    zero clip stays zero."""
    n = clip_norms(v)
    n = torch.where(n > 0, n, torch.ones_like(n))
    return v / n.view(-1, *([1] * (v.dim() - 1)))


def l2_project(delta: Tensor, eps: float) -> Tensor:
    """``delta`` rescaled per clip so its L2 norm is at most ``eps`` (clips already inside are unchanged)."""
    n = clip_norms(delta)
    factor = torch.where(n > eps, eps / n.clamp(min=1e-30), torch.ones_like(n))
    return delta * factor.view(-1, *([1] * (delta.dim() - 1)))


class Attack(Registrable, abc.ABC):
    """An attack on some modalities of a multimodal classifier, in a per-modality L-inf or L2 ball.

    Args:
        modalities: which inputs to perturb (``["rgb"]``, ``["skeleton"]`` or both, jointly).
        eps: radius, one number for all attacked modalities or ``{modality: eps}``, in input
            units (RGB on the [0, 1] scale, skeleton in metres): of the L-inf ball, or with
            ``norm="l2"`` of the per-clip L2 ball.
        bounds: valid range per modality; defaults to RGB in [0, 1], skeleton unbounded.
        plausible: limits that keep an attacked skeleton a plausible body (relative tolerances, see
            :class:`~robench.attacks.plausible.SkeletonLimits`); None: the plain ball.
        norm: ``"linf"`` (the paper's threat model) or ``"l2"``; an attack that does not implement a
            norm (see :attr:`norms`) refuses it with a ValueError.

    Subclasses implement :meth:`perturb`; call the attack (``attack(model, inputs, labels)``) to get
    checked adversarial inputs. ``model`` maps an input dict to logits; its mode (train/eval) is the
    caller's choice.
    """

    #: arguments the harness fills from the cell (scenario, eps, threat model), not protocol keys
    harness_params: ClassVar[tuple[str, ...]] = ("modalities", "eps", "bounds", "plausible", "norm")
    #: (plausible-skeleton limits and the L2 norm came after the first stored results: absent from ids
    #: while off / "linf")
    optional_params: ClassVar[tuple[str, ...]] = ("plausible", "norm")
    #: the threat-model norms this attack implements (``norm`` outside them is refused)
    norms: ClassVar[tuple[str, ...]] = ("linf",)
    #: under the L2 threat model, parameters in input units that a protocol leaves out default to this
    #: fraction of each modality's eps (their L-inf defaults, e.g. PGD's step of 2/255, mean nothing in L2)
    l2_eps_fractions: ClassVar[Mapping[str, float]] = {}
    #: parameters in input units: a protocol's threat ``scale`` multiplies them per modality, like eps
    scaled_params: ClassVar[tuple[str, ...]] = ()
    #: one gradient step (FGSM): the sanity check "an iterative attack is not weaker" compares against it
    single_step: ClassVar[bool] = False
    #: reads only the model's outputs (Square): beating the gradient attacks flags gradient masking
    gradient_free: ClassVar[bool] = False

    def __init__(self, modalities: Sequence[str], eps: float | Mapping[str, float],
                 bounds: Bounds | None = None, plausible: Plausible = None, norm: str = "linf") -> None:
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
        if norm not in type(self).norms:
            raise ValueError(f"{type(self).__name__} implements the {' and '.join(type(self).norms)} threat "
                             f"model(s), not norm={norm!r}")
        self.norm = norm
        if not modalities:
            raise ValueError("an attack needs at least one modality to perturb")
        self.modalities = tuple(modalities)
        self.eps = _per_modality(eps, self.modalities, "eps")
        merged = dict(DEFAULT_BOUNDS)
        merged.update(bounds or {})
        self.bounds: dict[str, tuple[float, float] | None] = merged
        self.plausible = SkeletonLimits.of(plausible) if "skeleton" in self.modalities else None

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
        check_adversarial(inputs, adv, self.eps, self.bounds, attack=type(self).__name__, plausible=self.plausible,
                          norm=self.norm)
        return adv

    def stages(self) -> Sequence[tuple[str, Attack]]:
        """The attacks an evaluation runs in turn, each only on the clips still robust after the ones
        before (an ensemble's members, e.g. AutoAttack's); a single attack is its own only stage."""
        return ((self.registry_name or type(self).__name__, self),)

    def project(self, x_adv: Tensor, x: Tensor, modality: str) -> Tensor:
        """Project onto the eps-ball around ``x`` and into the valid range (and, for a skeleton under
        ``plausible`` limits, towards ``x`` until the limits hold).

        L-inf: clip each coordinate of the perturbation to ``[-eps, eps]``. L2: rescale each clip's
        perturbation to L2 norm ``eps`` where it is longer (:func:`l2_project`).
        """
        eps = self.eps[modality]
        if self.norm == "l2":
            return self.within_limits(x + l2_project(x_adv - x, eps), x, modality)
        return self.within_limits(x + (x_adv - x).clamp(-eps, eps), x, modality)

    def within_limits(self, x_adv: Tensor, x: Tensor, modality: str) -> Tensor:
        """``x_adv`` (already inside the eps-ball around ``x``) into the valid range and, for a skeleton under
        ``plausible`` limits, towards ``x`` until they hold."""
        rng = self.bounds.get(modality)
        out = x_adv.clamp(rng[0], rng[1]) if rng is not None else x_adv
        if modality == "skeleton" and self.plausible is not None:
            out = project_plausible(out, x, self.plausible)
        return out


#: relative slack of the L2 check on top of the rounding of ``x + delta``: the attack's float32 norms
L2_RTOL = 1e-5


def check_adversarial(
    clean: Inputs, adv: Inputs, eps: Mapping[str, float], bounds: Bounds, attack: str = "attack",
    plausible: SkeletonLimits | None = None, norm: str = "linf",
) -> None:
    """Raise :class:`AttackCheckError` unless ``adv`` is a valid attack output for ``clean``.

    Valid: same keys, shapes and dtypes; attacked modalities (the keys of ``eps``) finite, inside
    the ball of ``norm`` (up to float rounding of ``x + delta``; for L2, each clip's norm over all of
    the modality's values, with a relative slack of :data:`L2_RTOL` for the attack's float32 norms)
    and inside ``bounds``; every other modality bit-identical to the clean input; with
    ``plausible``, an attacked skeleton within its limits (up to float rounding).
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
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
        if norm == "l2":
            # (per clip: the rounding errors of its n values add up to at most sqrt(n) times the largest)
            n = x[0].numel() if x.dim() else 1
            dev = float(clip_norms((a - x).double()).max()) if x.numel() else 0.0
            if dev > e * (1 + L2_RTOL) + tol * math.sqrt(n):
                raise AttackCheckError(f"{attack}: {m} perturbation {dev:.6g} exceeds eps {e:.6g} (L2, per clip)")
        else:
            dev = float((a - x).abs().max()) if x.numel() else 0.0
            if dev > e + tol:
                raise AttackCheckError(f"{attack}: {m} perturbation {dev:.6g} exceeds eps {e:.6g} (L-inf)")
        rng = bounds.get(m)
        if rng is not None and x.numel():
            lo, hi = float(a.min()), float(a.max())
            if lo < rng[0] or hi > rng[1]:
                raise AttackCheckError(f"{attack}: {m} values [{lo:.6g}, {hi:.6g}] leave the valid range {list(rng)}")
    if plausible is not None and "skeleton" in eps and clean["skeleton"].numel():
        broken = {k: int(v.sum()) for k, v in violations(adv["skeleton"], clean["skeleton"], plausible).items()}
        if any(broken.values()):
            named = ", ".join(f"{k} on {n} clip(s)" for k, n in broken.items() if n)
            raise AttackCheckError(f"{attack}: adversarial skeletons break the plausibility limits ({named})")
