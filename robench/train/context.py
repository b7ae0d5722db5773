"""What a defense sees of the training run: :class:`TrainContext`.

The trainer builds one context per model and passes it to every :class:`~robench.defenses.base.Defense`
hook. Through it a defense makes training-time adversarial examples with the protocol's training
attack (``ctx.adversarial``), runs extra epochs with a loss of its own (``ctx.fit``, e.g. ExFMem's
fine-tuning) and iterates over the training set (``ctx.batches``), without knowing how or where
the run happens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from robench.attacks.base import Attack
from robench.data.base import ClipDataset, batch_indices, to_model_inputs
from robench.errors import RobenchError
from robench.models.sampling import current_seeds
from robench.protocol.schema import Component, ThreatConfig
from robench.registry import ATTACKS
from robench.runtime import RuntimeOptions

Inputs = dict[str, Tensor]


@dataclass
class TrainContext:
    """Handles for one model's training.

    Attributes:
        device: where the model and batches live.
        train_set: the training split.
        batch_size: training batch size.
        epochs: epochs of the main training loop.
        lr: the main loop's initial learning rate.
        attack: the training attack (``training.attack`` in the protocol).
        attack_eps: its nominal radius (scaled per modality by ``threat``).
        threat: the threat model's units and valid ranges.
        attack_mode: "eval" (default) or "train": the model's mode while adversarial examples are made.
        seed: the model's seed.
        modalities: the model's inputs.
        fit: runs extra epochs with another loss (set by the trainer):
            ``ctx.fit(loss_fn, epochs, tag, lr=None)``.
        epoch: the current epoch (0-based), updated by the trainer.
        history: per-epoch statistics so far (the trainer appends; ``fit`` too).
        runtime: mixed precision, memory format and data loading settings of the run.
        log: writes a progress line.
        defense: registered name of the defense being trained (for messages).
        uses_training_attack: whether that defense declared ``uses_training_attack``; only then may
            it call :meth:`make_attack` or :meth:`adversarial` (the training attack is then part of
            the model's identity, so a defense that forgot the declaration fails loudly instead of
            sharing a model id with every training attack).
    """

    device: torch.device
    train_set: ClipDataset
    batch_size: int
    epochs: int
    lr: float
    attack: Component
    attack_eps: float
    threat: ThreatConfig
    attack_mode: str = "eval"
    seed: int = 0
    modalities: tuple[str, ...] = ("rgb", "skeleton")
    fit: Callable[..., None] | None = None
    epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)
    log: Callable[[str], None] = field(default=lambda msg: None)
    defense: str = ""
    uses_training_attack: bool = False

    def make_attack(self, modalities: Sequence[str]) -> Attack:
        """The training attack restricted to ``modalities``, in input units.

        Raises :class:`RobenchError` unless the defense declared ``uses_training_attack = True``.
        """
        if not self.uses_training_attack:
            raise RobenchError(
                f"defense '{self.defense}' makes training-time adversarial examples (ctx.adversarial / "
                "ctx.make_attack) but does not declare it: add 'uses_training_attack: ClassVar[bool] = True' to the "
                "class, so that the training attack becomes part of its models' identity")
        attack: Attack = ATTACKS.build(self.attack.type,
                                       **self.threat.attack_kwargs(self.attack, modalities, self.attack_eps,
                                                                   evaluation=False))
        return attack

    def adversarial(self, model: nn.Module, inputs: Inputs, labels: Tensor, modalities: Sequence[str]) -> Inputs:
        """Training-time adversarial inputs on ``modalities``.

        The attack differentiates with respect to the inputs only: the model's parameters are frozen
        while it runs (no weight gradients are computed, and under DistributedDataParallel nothing is
        all-reduced), and the model's mode and the parameters' ``requires_grad`` are restored after.
        """
        attack = self.make_attack(modalities)
        was_training = model.training
        model.train(self.attack_mode == "train")
        trainable = [p for p in model.parameters() if p.requires_grad]
        for p in trainable:
            p.requires_grad_(False)
        try:
            return attack(model, inputs, labels, current_seeds())  # per-clip starts with training.sample_seeds
        finally:
            for p in trainable:
                p.requires_grad_(True)
            model.train(was_training)

    def batches(self, shuffle: bool = True, generator: torch.Generator | None = None,
                index: Sequence[Tensor] | None = None) -> Iterator[tuple[Inputs, Tensor]]:
        """Training batches as ``(inputs on device, labels on device)``: an epoch of ``batch_size``
        batches (shuffled with ``generator``), or the index batches ``index`` of the training set."""
        if index is None:
            index = batch_indices(len(self.train_set), self.batch_size, shuffle=shuffle, generator=generator)
        for batch in self.runtime.batches(self.train_set, index):
            yield (to_model_inputs(batch, self.device, self.modalities),
                   batch["label"].to(self.device, non_blocking=True))
