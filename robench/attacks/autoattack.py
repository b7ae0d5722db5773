"""AutoAttack for two inputs: a parameter-free ensemble, each member run on the clips still robust.

Croce & Hein, ICML 2020 (``autoattack/autoattack.py``). Distance: L-inf per modality, every member
in the rescaled coordinates ``u_m = delta_m / eps_m`` (docs/attacks.md), so one budget
``(eps_R, eps_S)`` is one threat model for all of them.

``norm="l2"`` runs AutoAttack's L2 version (Croce & Hein 2020): every member gets the norm, so
APGD-CE, APGD-T, FAB-T and Square all attack the per-clip, per-modality L2 balls of radius eps_m
(input units: RGB on the [0, 1] scale, skeleton in metres).

Versions:

* ``standard``: APGD-CE (``steps`` iterations, 1 restart), APGD-T (``targets`` target classes of
  ``steps`` iterations), FAB-T (``targets`` targets of ``steps`` iterations), Square (``queries``
  queries). A member attacks only the clips every member before it left correctly classified, and
  every returned point is re-checked by the evaluation.
* ``rand`` (randomised defenses): APGD-CE and APGD-DLR with ``eot_iter`` (20) gradient samples per step.

``members`` picks a subset, in the version's order. The evaluation stores, per clip, which member
fooled it, and reports the robust accuracy after each member.

Example::

    from robench.attacks import AutoAttack
    aa = AutoAttack(modalities=["rgb", "skeleton"], eps=8 / 255, version="standard")  # APGD-CE, APGD-T, FAB-T, Square
    adv = aa(model.eval(), inputs, labels)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar

import torch
from torch import Tensor

from robench.attacks.apgd import APGD
from robench.attacks.apgd_t import APGDT
from robench.attacks.base import Attack, Bounds, Inputs, Plausible
from robench.attacks.fab_t import FABT
from robench.attacks.square import Square
from robench.registry import register_attack

VERSIONS: dict[str, tuple[str, ...]] = {
    "standard": ("apgd-ce", "apgd-t", "fab-t", "square"),
    "rand": ("apgd-ce", "apgd-dlr"),
}


@register_attack("autoattack")
class AutoAttack(Attack):
    """The AutoAttack ensemble over the attacked modalities.

    Args:
        modalities: inputs to perturb, jointly.
        eps: radius of the L-inf (or, with ``norm="l2"``, per-clip L2) ball, per modality or shared (RGB
            in [0, 1] units, skeleton in metres).
        version: "standard" or "rand" (randomised defenses: EOT gradients).
        members: the members to run, a subset of the version's (default: all), run in the version's order.
        steps: iterations of APGD-CE, APGD-DLR and of each APGD-T and FAB-T target (standard: 100).
        targets: APGD-T's and FAB-T's target classes (standard: 9).
        queries: Square's queries (standard: 5000).
        eot_iter: gradient samples per step in the ``rand`` version (20).
        bounds: valid range per modality.
        plausible: plausible-skeleton limits (see :class:`~robench.attacks.base.Attack`).
        norm: ``"linf"`` or ``"l2"``, passed to every member.
    """

    version = 2
    norms: ClassVar[tuple[str, ...]] = ("linf", "l2")

    def __init__(self, modalities: Sequence[str], eps: float | Mapping[str, float], version: str = "standard",
                 members: list[str] | None = None, steps: int = 100, targets: int = 9, queries: int = 5000,
                 eot_iter: int = 20, bounds: Bounds | None = None, plausible: Plausible = None,
                 norm: str = "linf") -> None:
        super().__init__(modalities, eps, bounds, plausible, norm=norm)
        if version not in VERSIONS:
            raise ValueError(f"version must be one of {sorted(VERSIONS)}, got {version!r}")
        chosen = list(VERSIONS[version]) if members is None else list(members)
        for name in chosen:
            if name not in VERSIONS[version]:
                raise ValueError(f"member {name!r} is not part of AutoAttack's {version!r} version; choose from "
                                 f"{list(VERSIONS[version])}")
        if not chosen:
            raise ValueError("members must name at least one attack")
        self.aa_version = version
        self.members = [m for m in VERSIONS[version] if m in chosen]
        mods, eps, bounds, limits = self.modalities, self.eps, self.bounds, plausible
        eot = eot_iter if version == "rand" else 1
        build: dict[str, Callable[[], Attack]] = {
            "apgd-ce": lambda: APGD(mods, eps, steps=steps, loss="ce", eot_iter=eot, bounds=bounds, plausible=limits,
                                    norm=norm),
            "apgd-dlr": lambda: APGD(mods, eps, steps=steps, loss="dlr", eot_iter=eot, bounds=bounds,
                                     plausible=limits, norm=norm),
            "apgd-t": lambda: APGDT(mods, eps, steps=steps, targets=targets, bounds=bounds, plausible=limits,
                                    norm=norm),
            "fab-t": lambda: FABT(mods, eps, steps=steps, targets=targets, bounds=bounds, plausible=limits,
                                  norm=norm),
            "square": lambda: Square(mods, eps, queries=queries, bounds=bounds, plausible=limits, norm=norm),
        }
        self._stages = [(name, build[name]()) for name in self.members]

    def stages(self) -> Sequence[tuple[str, Attack]]:
        return list(self._stages)

    def perturb(self, model: Callable[[Inputs], Tensor], inputs: Inputs, labels: Tensor,
                sample_seeds: Tensor | None = None) -> Inputs:
        adv = {m: t.clone() for m, t in inputs.items()}
        with torch.no_grad():
            robust = model(inputs).argmax(1) == labels
        for _, stage in self._stages:
            idx = robust.nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            sub = {m: t[idx] for m, t in inputs.items()}
            seeds = None if sample_seeds is None else sample_seeds[idx.cpu()]
            out = stage(model, sub, labels[idx], seeds)
            with torch.no_grad():
                fooled = model(out).argmax(1) != labels[idx]
            for m in self.modalities:
                adv[m][idx[fooled]] = out[m][fooled]
            robust[idx[fooled]] = False
        return adv
