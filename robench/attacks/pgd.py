"""PGD: projected gradient descent under an L-inf or L2 budget (Madry et al., ICLR 2018).

Paper: Eq. 4 (one modality) and Eq. 7 (both modalities perturbed jointly by one optimisation).
Distance: L-inf per modality (the paper's), or with ``norm="l2"`` the per-clip L2 norm per modality.
The paper evaluates with PGD-20 (eps 8/255, step 2/255, random start) and trains with PGD-10.

L2 (Madry et al. 2018's L2 PGD): each step moves each attacked modality by ``step_size`` (an L2
length in its input units: RGB on the [0, 1] scale, skeleton in metres) along its gradient normalised
per clip, then rescales the perturbation back into the modality's L2 ball; the random start is
uniform in the ball. ``step_size`` keeps its L-inf default of 2/255 when built directly: pass one
that fits the L2 radius (a protocol with ``threat.norm: l2`` that sets none gets eps / 4).

Example::

    from robench.attacks import PGD
    attack = PGD(modalities=["rgb", "skeleton"], eps=8 / 255, step_size=2 / 255, steps=20)
    adv = attack(model.eval(), {"rgb": rgb, "skeleton": skel}, labels)  # checked output
    l2 = PGD(modalities=["rgb"], eps=2.0, step_size=0.5, steps=20, norm="l2")  # per-clip L2 ball of radius 2
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from robench.attacks.base import Bounds, Plausible
from robench.attacks.iterative import IterativeAttack
from robench.registry import register_attack


@register_attack("pgd")
class PGD(IterativeAttack):
    """PGD-k with random start and restarts, cross-entropy loss (Madry et al. 2018).

    Args:
        modalities: inputs to perturb; several are optimised jointly (paper Eq. 7).
        eps: radius of the L-inf (or, with ``norm="l2"``, per-clip L2) ball, per modality or shared
            (RGB in [0, 1] units, skeleton in metres).
        step_size: step per iteration, per modality or shared, in the same units (paper: 2/255); under
            L2 the step's L2 length.
        steps: iterations k (paper: 20 for evaluation, 10 for training).
        random_start: start uniformly inside the ball.
        restarts: independent runs; a sample is robust only if it survives all of them.
        loss: "ce" (cross-entropy) or "cw" (Carlini-Wagner margin).
        early_stop: stop attacking a sample once misclassified and return that iterate (evaluation);
            off = return the last iterate (adversarial training).
        bounds: valid range per modality (RGB [0, 1] by default; skeleton unbounded).
        plausible: plausible-skeleton limits (see :class:`~robench.attacks.base.Attack`).
        norm: ``"linf"`` or ``"l2"`` (the threat model's ball).
    """

    def __init__(self, modalities: Sequence[str], eps: float | Mapping[str, float],
                 step_size: float | Mapping[str, float] = 2 / 255, steps: int = 20, random_start: bool = True,
                 restarts: int = 1, loss: str = "ce", early_stop: bool = True, bounds: Bounds | None = None,
                 plausible: Plausible = None, norm: str = "linf") -> None:
        super().__init__(modalities, eps, step_size, steps, random_start, restarts, loss, early_stop, bounds,
                         plausible, norm=norm)
