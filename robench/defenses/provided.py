"""A model object handed to ``robench.evaluate``: robench evaluates it and never trains, builds or caches it.

The row of the plan that stands for such a model uses this defense and :class:`~robench.models.provided.ProvidedBranch`
backbones; the model itself comes from the caller (:mod:`robench.models.provided`). Protocol files do
not use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from robench.defenses.base import Defense, Inputs, LossOutput
from robench.errors import RobenchError
from robench.models.two_stream import TwoStreamModel
from robench.registry import register_defense
from robench.train.context import TrainContext


@register_defense("provided")
@dataclass
class Provided(Defense):
    """A model object evaluated as it is (``robench.evaluate``); robench never builds or trains it.

    Attributes:
        digest: the object's content digest (:func:`robench.models.provided.model_digest`).
    """

    digest: str = ""
    trains: ClassVar[bool] = False

    def prepare(self, model: TwoStreamModel) -> None:
        raise RobenchError(f"model {self.digest[:19]}… is a Python object handed to robench.evaluate: robench "
                           "cannot build it; pass the object again")

    def loss(self, model: TwoStreamModel, inputs: Inputs, labels: Tensor, ctx: TrainContext) -> LossOutput:
        raise RobenchError("a provided model is never trained by robench")
