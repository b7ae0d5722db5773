"""No defense: standard training on clean data (the paper's "None" row, Eq. 1)."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from robench.defenses.base import Defense, Inputs, LossOutput
from robench.models.two_stream import TwoStreamModel
from robench.registry import register_defense
from robench.train.context import TrainContext


@register_defense("none")
@dataclass
class NoDefense(Defense):
    """Standard training: cross-entropy on clean inputs (the undefended baseline)."""

    def loss(self, model: TwoStreamModel, inputs: Inputs, labels: Tensor, ctx: TrainContext) -> LossOutput:
        logits = model(inputs)
        return LossOutput(F.cross_entropy(logits, labels), logits)
