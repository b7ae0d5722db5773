"""Built-in defenses, one per file (installed as ``robench.defenses``).

Registered names: ``none`` (standard training) and ``at`` (adversarial training on chosen
modalities). Write your own by subclassing :class:`~robench.defenses.base.Defense` in one file and
decorating it with ``@robench.register_defense("name")``; see ``defenses/base.py``.
"""

from robench.defenses.at import AdversarialTraining
from robench.defenses.base import Defense, LossOutput
from robench.defenses.none import NoDefense

__all__ = ["AdversarialTraining", "Defense", "LossOutput", "NoDefense"]
