"""CW-Linf: the Carlini-Wagner margin loss optimised by PGD (Carlini & Wagner, S&P 2017).

The L-inf form of CW used across adversarial-training papers (TRADES, MART) and by the paper
("CW optimised by PGD-30", Tables 4 and 7): PGD steps that maximise the margin
``max_{j != y} z_j - z_y`` (capped at kappa) instead of the cross-entropy. Distance: L-inf only: it
refuses ``norm="l2"`` (the L2 Carlini-Wagner attack is a different optimisation; for the margin loss
under the L2 threat model use ``pgd`` with ``loss: cw``).

Example::

    from robench.attacks import CW
    adv = CW(modalities=["rgb", "skeleton"], eps=8 / 255, steps=30)(model.eval(), inputs, labels)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import ClassVar

from robench.attacks.base import Bounds, Plausible
from robench.attacks.iterative import IterativeAttack
from robench.attacks.losses import cw_margin_loss
from robench.registry import register_attack


@register_attack("cw")
class CW(IterativeAttack):
    """CW margin loss maximised by L-inf PGD (the paper's "CW, optimised by PGD-30").

    Args:
        modalities: inputs to perturb, jointly.
        eps: L-inf radius, per modality or shared (RGB in [0, 1] units, skeleton in metres).
        step_size: step per iteration (paper: 2/255).
        steps: PGD iterations (paper: 30).
        random_start: start uniformly inside the ball.
        restarts: independent runs; a sample is robust only if it survives all of them.
        kappa: cap on the margin (50, as in the TRADES/MART evaluation code).
        early_stop: stop attacking a sample once misclassified and return that iterate.
        bounds: valid range per modality.
        plausible: plausible-skeleton limits (see :class:`~robench.attacks.base.Attack`).
        norm: ``"linf"`` only (``"l2"`` is refused with a ValueError).
    """

    norms: ClassVar[tuple[str, ...]] = ("linf",)  # CW-Linf; see the module docstring for L2

    def __init__(self, modalities: Sequence[str], eps: float | Mapping[str, float],
                 step_size: float | Mapping[str, float] = 2 / 255, steps: int = 30, random_start: bool = True,
                 restarts: int = 1, kappa: float = 50.0, early_stop: bool = True, bounds: Bounds | None = None,
                 plausible: Plausible = None, norm: str = "linf") -> None:
        super().__init__(modalities, eps, step_size, steps, random_start, restarts, "cw", early_stop, bounds,
                         plausible, norm=norm)
        self.kappa = float(kappa)
        self.loss_fn = partial(cw_margin_loss, kappa=self.kappa)
