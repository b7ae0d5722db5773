"""Built-in attacks, one per file (installed as ``robench.attacks``).

Each attack perturbs chosen modalities of a ``{"rgb", "skeleton"}`` input under a per-modality
L-inf budget and is registered by name: ``fgsm``, ``pgd``, ``cw``. Add your own by subclassing
:class:`~robench.attacks.base.Attack` (or :class:`~robench.attacks.base.IterativeAttack`) and
decorating it with ``@robench.register_attack("name")``.
"""

from robench.attacks.base import Attack, IterativeAttack, check_adversarial
from robench.attacks.cw import CW
from robench.attacks.fgsm import FGSM
from robench.attacks.pgd import PGD

__all__ = ["CW", "FGSM", "PGD", "Attack", "IterativeAttack", "check_adversarial"]
