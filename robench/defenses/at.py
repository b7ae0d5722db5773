"""Adversarial training (Madry et al., ICLR 2018), per modality: the paper's AT with XR, XS and XRS.

Training minimises the cross-entropy on adversarial examples only (paper Eq. 2 and 5), made by
the protocol's training attack (PGD-10, eps 8/255, step 2/255, random start in the paper) on the
chosen modalities: ``[rgb]`` = AT with XR, ``[skeleton]`` = AT with XS, ``[rgb, skeleton]`` = AT
with XRS (both modalities perturbed jointly, Eq. 6-7). Unattacked modalities stay clean.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor

from robench.data.base import MODALITIES
from robench.defenses.base import Defense, Inputs, LossOutput
from robench.models.two_stream import TwoStreamModel
from robench.registry import register_defense
from robench.train.context import TrainContext


@register_defense("at")
@dataclass
class AdversarialTraining(Defense):
    """Madry adversarial training on PGD examples of the chosen modalities (AT with XR / XS / XRS).

    Args:
        modalities: which inputs the training attack perturbs: [rgb], [skeleton] or [rgb, skeleton].
    """

    modalities: list[str] = field(default_factory=lambda: ["rgb", "skeleton"])
    uses_training_attack: ClassVar[bool] = True

    def __post_init__(self) -> None:
        bad = [m for m in self.modalities if m not in MODALITIES]
        if not self.modalities or bad or len(set(self.modalities)) != len(self.modalities):
            raise ValueError(f"modalities must be a non-empty subset of {list(MODALITIES)}, got {self.modalities}")
        self.modalities = [m for m in MODALITIES if m in self.modalities]  # canonical order for the cache key

    def loss(self, model: TwoStreamModel, inputs: Inputs, labels: Tensor, ctx: TrainContext) -> LossOutput:
        adv = ctx.adversarial(model, inputs, labels, self.modalities)
        logits = model(adv)
        return LossOutput(F.cross_entropy(logits, labels), logits)
