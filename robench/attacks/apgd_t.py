"""APGD-T: targeted APGD with the targeted DLR loss, one run per target class (Croce & Hein, ICML 2020).

Distance: L-inf per modality, in the rescaled coordinates of :mod:`robench.attacks.apgd`, or with
``norm="l2"`` the per-clip L2 ball per modality (APGD's L2 version, Croce & Hein 2020). For each
sample the targets are the classes with the 2nd to (``targets`` + 1)-th largest clean logits; a run
of APGD maximises ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12)`` towards target t, and the
next target's run starts only if no iterate of the previous runs fooled the sample. Any
misclassification counts (not only the target), as in AutoAttack. The standard version runs 9
targets of 100 iterations each: up to 909 gradient passes for a sample that survives.

Example::

    from robench.attacks import APGDT
    adv = APGDT(modalities=["skeleton"], eps=8 / 255, targets=9)(model.eval(), inputs, labels)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor

from robench.attacks.apgd import APGD
from robench.attacks.base import Bounds, Plausible
from robench.attacks.losses import dlr_targeted_loss, target_classes
from robench.registry import register_attack


@register_attack("apgd_t")
class APGDT(APGD):
    """Targeted APGD over the top ``targets`` wrong classes (AutoAttack's APGD-T).

    Args:
        modalities: inputs to perturb, jointly.
        eps: radius of the L-inf (or, with ``norm="l2"``, per-clip L2) ball, per modality or shared (RGB
            in [0, 1] units, skeleton in metres).
        steps: iterations per target (standard: 100).
        targets: target classes tried in turn (standard: 9; at most classes - 1). Needs >= 4 classes.
        rho: the checkpoints' oscillation threshold (0.75).
        eot_iter: gradient samples per step (1; EOT for randomised defenses).
        early_stop: stop attacking a sample at its first fooling iterate.
        bounds: valid range per modality.
        plausible: plausible-skeleton limits (see :class:`~robench.attacks.base.Attack`).
        norm: ``"linf"`` or ``"l2"``.
    """

    version = 1
    seed_tag = "apgd_t"

    def __init__(self, modalities: Sequence[str], eps: float | Mapping[str, float], steps: int = 100,
                 targets: int = 9, rho: float = 0.75, eot_iter: int = 1, early_stop: bool = True,
                 bounds: Bounds | None = None, plausible: Plausible = None, norm: str = "linf") -> None:
        super().__init__(modalities, eps, steps=steps, restarts=1, loss="dlr", rho=rho, eot_iter=eot_iter,
                         early_stop=early_stop, bounds=bounds, plausible=plausible, norm=norm)
        if targets < 1:
            raise ValueError(f"targets must be >= 1, got {targets}")
        self.targets = int(targets)

    def run_targets(self, clean_logits: Tensor) -> Tensor:
        n_classes = clean_logits.shape[1]
        if n_classes < 4:
            raise ValueError(f"APGD-T's targeted DLR loss needs at least 4 classes, the model has {n_classes}")
        return target_classes(clean_logits, self.targets)

    def loss(self, logits: Tensor, labels: Tensor, targets: Tensor) -> Tensor:
        return dlr_targeted_loss(logits, labels, targets)
