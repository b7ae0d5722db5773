"""A model trained elsewhere: its weights are loaded from a file and nothing is trained.

This is how an outside model enters robench (a leaderboard entry, ``robench leaderboard add``): its
architecture is written against the public model interface, a backbone per modality registered from a
plugin file (``@robench.register_backbone``) and robench's late-fusion head
(:class:`~robench.models.TwoStreamModel`); its weights are the whole model's ``state_dict()`` saved
with ``torch.save``. The file is read with ``torch.load(weights_only=True)``: tensors only, never
pickled code. The weights enter the model's id by content, so a new file is a new model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from robench.defenses.base import Defense, Inputs, LossOutput
from robench.errors import RobenchError
from robench.models.backbone import read_state_dict
from robench.models.two_stream import TwoStreamModel
from robench.registry import register_defense
from robench.train.context import TrainContext


@register_defense("pretrained")
@dataclass
class Pretrained(Defense):
    """Load a whole two-stream model's weights from ``weights`` (a ``torch.save``d ``state_dict()``).

    Attributes:
        weights: path of the weights file; every key of the model must be in it with its shape, and
            nothing else (checked when the model is built, with the differences named).
    """

    weights: str = ""
    file_params = ("weights",)
    trains: ClassVar[bool] = False

    def prepare(self, model: TwoStreamModel) -> None:
        if not self.weights:
            raise RobenchError("defense 'pretrained' needs weights: the path of a torch.save'd model state_dict()")
        state = read_state_dict(self.weights)
        own = model.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        wrong = [f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
                 if k in state and state[k].shape != v.shape]
        if missing or unexpected or wrong:
            parts = [f"{len(keys)} {what} ({', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''})"
                     for what, keys in (("missing", missing), ("unexpected", unexpected),
                                        ("with other shapes (file vs model)", wrong)) if keys]
            raise RobenchError(f"weights {self.weights} do not match the model's architecture: " + "; ".join(parts)
                               + "; save the model built from the same backbones with torch.save(model.state_dict())")
        model.load_state_dict(state)

    def loss(self, model: TwoStreamModel, inputs: Inputs, labels: Tensor, ctx: TrainContext) -> LossOutput:
        raise RobenchError("defense 'pretrained' is never trained: its weights come from a file")
