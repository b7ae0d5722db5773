"""The defense interface: how a model is trained, and how it may be changed, to resist attacks.

A defense is registered by name and configured from a protocol's ``defenses:`` entry. It may:

* change the freshly built model before training (:meth:`Defense.prepare`): insert modules
  between backbone stages (AMR), add parameters to ``model.extras`` (projections, auxiliary heads)
  or set ``model.feature_transforms`` (feature-level denoising, ExFMem);
* own the training loss (:meth:`Defense.loss`), using ``ctx.adversarial`` for adversarial examples;
* do work after the main loop (:meth:`Defense.finalize`): build memory banks, fine-tune with
  ``ctx.fit``;
* start from another defense's trained model instead of training its own (:meth:`Defense.derives_from`);
* report facts about the trained model (:meth:`Defense.summary`), stored with the checkpoint and
  shown by reports (AMR's learned weights).

``prepare`` must be deterministic given the defense's parameters: a cached model is reloaded by
building the base model, calling ``prepare`` and loading the saved state dict, so every parameter
and buffer a defense adds must be created there.

Write a defense as a dataclass: its fields are its protocol parameters (typed, with defaults),
validated against the protocol before anything runs, and hashed into the model's cache key::

    from dataclasses import dataclass
    import torch.nn.functional as F
    from robench import Defense, LossOutput, register_defense

    @register_defense("gaussian_aug")
    @dataclass
    class GaussianAugmentation(Defense):
        \"\"\"Train on inputs with Gaussian noise added to the skeleton.\"\"\"
        sigma: float = 0.01  # metres

        def loss(self, model, inputs, labels, ctx):
            noisy = {**inputs, "skeleton": inputs["skeleton"] + self.sigma * torch.randn_like(inputs["skeleton"])}
            logits = model(noisy)
            return LossOutput(F.cross_entropy(logits, labels), logits)
"""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import Tensor

from robench.models.two_stream import TwoStreamModel
from robench.train.context import TrainContext

Inputs = dict[str, Tensor]


@dataclass
class LossOutput:
    """A defense's training loss for one batch.

    Attributes:
        loss: the scalar to minimise.
        logits: predictions to compute the running training accuracy from (optional).
        logs: extra scalars to report per epoch (averaged over batches), e.g. loss terms.
    """

    loss: Tensor
    logits: Tensor | None = None
    logs: dict[str, float] = field(default_factory=dict)


class Defense(abc.ABC):
    """Base class of all defenses (see the module docstring)."""

    #: True if the defense makes adversarial examples during training: the protocol's training
    #: attack then becomes part of the model's identity (cache key)
    uses_training_attack: ClassVar[bool] = False
    #: name under which the class was registered (set by the registry)
    registry_name: ClassVar[str] = ""

    def derives_from(self) -> tuple[str, dict[str, Any]] | None:
        """``(defense type, parameters)`` whose trained model this defense starts from, or None.

        A derived defense skips the main training loop: the runner trains (or loads from the cache)
        the base defense's model, copies its weights into this defense's model (after
        :meth:`prepare`) and runs :meth:`finalize`. ExFMem derives from ``none`` and
        MinSim+ExFMem from ``minsim``: their backbones are trained once and shared.
        """
        return None

    def prepare(self, model: TwoStreamModel) -> None:
        """Change the freshly built model in place before training (and before loading a checkpoint)."""

    @abc.abstractmethod
    def loss(self, model: TwoStreamModel, inputs: Inputs, labels: Tensor, ctx: TrainContext) -> LossOutput:
        """Training loss for one batch; ``model`` is in train mode."""

    def finalize(self, model: TwoStreamModel, ctx: TrainContext) -> None:
        """Work after the main training loop (memory banks, fine-tuning)."""

    def summary(self, model: TwoStreamModel) -> dict[str, Any]:
        """JSON-serialisable facts about the trained model, stored with it (for reports)."""
        return {}

    def describe(self) -> dict[str, Any]:
        """The defense's parameters (part of the model's cache key)."""
        if dataclasses.is_dataclass(self):
            return dataclasses.asdict(self)
        return {}
