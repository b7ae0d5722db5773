"""FGSM: the fast gradient sign method (Goodfellow et al., ICLR 2015).

One step of size eps in the direction of the sign of the loss gradient:
``x' = clip(x + eps * sign(grad_x CE(f(x), y)))``, on every attacked modality at once.
Distance: L-inf per modality. The paper's Table 6 uses FGSM with eps 8/255.

With ``norm="l2"`` it is the L2 fast gradient method: one step of L2 length eps along the gradient
normalised per clip and modality, ``x'_m = clip(x_m + eps_m * g_m / ||g_m||_2)`` (eps in input units).

Example::

    from robench.attacks import FGSM
    adv = FGSM(modalities=["rgb"], eps=8 / 255)(model.eval(), inputs, labels)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from robench.attacks.base import Bounds, Plausible
from robench.attacks.iterative import IterativeAttack
from robench.registry import register_attack


@register_attack("fgsm")
class FGSM(IterativeAttack):
    """Fast gradient sign method: one signed-gradient step of size eps (Goodfellow et al. 2015).

    Args:
        modalities: inputs to perturb, jointly.
        eps: L-inf radius, per modality or shared (RGB in [0, 1] units, skeleton in metres).
        loss: "ce" (the original) or "cw".
        early_stop: count a sample as fooled if either the clean input or the step fools it.
        bounds: valid range per modality.
        plausible: plausible-skeleton limits (see :class:`~robench.attacks.base.Attack`).
        norm: ``"linf"`` (the sign step) or ``"l2"`` (the normalised-gradient step of L2 length eps).
    """

    scaled_params = ()  # the step is eps itself
    l2_eps_fractions: ClassVar[Mapping[str, float]] = {}  # (no step size to default)
    single_step = True

    def __init__(self, modalities: Sequence[str], eps: float | Mapping[str, float], loss: str = "ce",
                 early_stop: bool = True, bounds: Bounds | None = None, plausible: Plausible = None,
                 norm: str = "linf") -> None:
        super().__init__(modalities, eps, step_size=eps, steps=1, random_start=False, restarts=1, loss=loss,
                         early_stop=early_stop, bounds=bounds, plausible=plausible, norm=norm)
