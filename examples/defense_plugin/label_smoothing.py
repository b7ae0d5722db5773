"""A defense in one file: adversarial training with label smoothing on both inputs.

It is a registered dataclass whose fields are its protocol parameters (typed, with defaults, part of
every model id), with a ``loss`` for one batch. ``ctx.adversarial`` makes adversarial examples with the
protocol's training attack (declared by ``uses_training_attack``, so that attack enters the model id
too). A protocol lists this file under ``plugins:`` and uses ``type: label_smoothing_at``; nothing in
robench changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor

from robench import Defense, LossOutput, TrainContext, TwoStreamModel, register_defense


@register_defense("label_smoothing_at")
@dataclass
class LabelSmoothingAT(Defense):
    """Madry adversarial training on both inputs with a label-smoothed cross-entropy.

    Attributes:
        smoothing: the probability mass spread over the other classes (0: plain cross-entropy).
        clean_weight: weight of the clean batch's loss beside the adversarial one (0: adversarial only).
    """

    smoothing: float = 0.1
    clean_weight: float = 0.0
    uses_training_attack: ClassVar[bool] = True

    def loss(self, model: TwoStreamModel, inputs: dict[str, Tensor], labels: Tensor, ctx: TrainContext) -> LossOutput:
        adv = ctx.adversarial(model, inputs, labels, list(model.modalities))
        logits = model(adv)
        loss = F.cross_entropy(logits, labels, label_smoothing=self.smoothing)
        if self.clean_weight:
            loss = loss + self.clean_weight * F.cross_entropy(model(inputs), labels, label_smoothing=self.smoothing)
        return LossOutput(loss, logits, {"adversarial_ce": float(loss)})
