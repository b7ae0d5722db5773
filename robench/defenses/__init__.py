"""Built-in defenses, one per file (installed as ``robench.defenses``).

Registered names: ``none`` (standard training), ``at`` (adversarial training on chosen
modalities), ``minsim``, ``exfmem`` and ``minsim_exfmem`` (Tian & Xu 2021) and ``amr`` (the
paper's Attention-based Modality Reweighter); ``pretrained`` loads a model trained elsewhere, and
``provided`` stands for a model object handed to ``robench.evaluate``.
Write your own by subclassing
:class:`~robench.defenses.base.Defense` in one file and decorating it with
``@robench.register_defense("name")``; see ``defenses/base.py``.
"""

from robench.defenses.amr import AMR
from robench.defenses.at import AdversarialTraining
from robench.defenses.base import Defense, LossOutput
from robench.defenses.exfmem import ExFMem, MinSimExFMem
from robench.defenses.minsim import MinSim
from robench.defenses.none import NoDefense
from robench.defenses.pretrained import Pretrained
from robench.defenses.provided import Provided

__all__ = ["AMR", "AdversarialTraining", "Defense", "ExFMem", "LossOutput", "MinSim", "MinSimExFMem", "NoDefense",
           "Pretrained",
           "Provided"]
