"""Built-in attacks, one per file (installed as ``robench.attacks``).

Each attack perturbs chosen modalities of a ``{"rgb", "skeleton"}`` input under a per-modality
L-inf budget (or, with ``norm="l2"``, a per-clip L2 budget per modality: every attack but ``cw``) and
is registered by name: ``fgsm``, ``pgd``, ``cw``, ``apgd``, ``apgd_t``, ``fab_t``, ``square`` and the
``autoattack`` ensemble. Attacks written on :class:`~robench.attacks.engine.EngineAttack` stream the
evaluation set through one fixed-size, refilled batch (:mod:`robench.attacks.engine`). Add your own by subclassing
:class:`~robench.attacks.base.Attack` (or :class:`~robench.attacks.iterative.IterativeAttack`) and
decorating it with ``@robench.register_attack("name")``.
"""

from robench.attacks.apgd import APGD
from robench.attacks.apgd_t import APGDT
from robench.attacks.autoattack import AutoAttack
from robench.attacks.base import Attack, check_adversarial
from robench.attacks.cw import CW
from robench.attacks.engine import EngineAttack
from robench.attacks.fab_t import FABT
from robench.attacks.fgsm import FGSM
from robench.attacks.iterative import IterativeAttack
from robench.attacks.pgd import PGD
from robench.attacks.square import Square

__all__ = [
    "APGD",
    "APGDT",
    "CW",
    "FABT",
    "FGSM",
    "PGD",
    "Attack",
    "AutoAttack",
    "EngineAttack",
    "IterativeAttack",
    "Square",
    "check_adversarial",
]
