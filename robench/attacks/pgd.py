"""PGD: projected gradient descent under an L-inf budget (Madry et al., ICLR 2018).

Paper: Eq. 4 (one modality) and Eq. 7 (both modalities perturbed jointly by one optimisation).
Distance: L-inf per modality. The paper evaluates with PGD-20 (eps 8/255, step 2/255, random start)
and trains with PGD-10.

Example::

    from robench.attacks import PGD
    attack = PGD(modalities=["rgb", "skeleton"], eps=8 / 255, step_size=2 / 255, steps=20)
    adv = attack(model.eval(), {"rgb": rgb, "skeleton": skel}, labels)  # checked output
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
        eps: L-inf radius, per modality or shared (RGB in [0, 1] units, skeleton in metres).
        step_size: step per iteration, per modality or shared, in the same units (paper: 2/255).
        steps: iterations k (paper: 20 for evaluation, 10 for training).
        random_start: start uniformly inside the ball.
        restarts: independent runs; a sample is robust only if it survives all of them.
        loss: "ce" (cross-entropy) or "cw" (Carlini-Wagner margin).
        early_stop: stop attacking a sample once misclassified and return that iterate (evaluation);
            off = return the last iterate (adversarial training).
        bounds: valid range per modality (RGB [0, 1] by default; skeleton unbounded).
    """

    def __init__(self, modalities: Sequence[str], eps: float | Mapping[str, float],
                 step_size: float | Mapping[str, float] = 2 / 255, steps: int = 20, random_start: bool = True,
                 restarts: int = 1, loss: str = "ce", early_stop: bool = True, bounds: Bounds | None = None,
                 plausible: Plausible = None) -> None:
        super().__init__(modalities, eps, step_size, steps, random_start, restarts, loss, early_stop, bounds,
                         plausible)
