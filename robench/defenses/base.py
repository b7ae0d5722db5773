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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from torch import Tensor

from robench.models.two_stream import TwoStreamModel
from robench.registry import Registrable
from robench.report.contrib import SummaryTable
from robench.train.context import TrainContext

if TYPE_CHECKING:  # matplotlib is imported only where a figure is drawn
    from matplotlib.figure import Figure

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


class Defense(Registrable, abc.ABC):
    """Base class of all defenses (see the module docstring)."""

    #: True if the defense makes adversarial examples during training (``ctx.adversarial``): the
    #: protocol's training attack then becomes part of the model's identity. Declared once, here;
    #: ``ctx.adversarial`` raises for a defense that did not declare it.
    uses_training_attack: ClassVar[bool] = False
    #: False for a defense whose weights come from elsewhere (:meth:`prepare` loads them): the runner
    #: then skips the main training loop and runs only :meth:`finalize` (``pretrained``)
    trains: ClassVar[bool] = True

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

    # -- report contributions ---------------------------------------------------------------------
    #: table kinds this defense contributes: a protocol asks for one with
    #: ``tables: - {kind: KIND, defense: ID}`` (ID a row of this type) and the report builds it with
    #: :meth:`summary_table` (AMR: ``amr_weights``, the paper's Table 3). Not a protocol parameter:
    #: declare it without an annotation, or as a ``ClassVar``, in a dataclass.
    report_tables: ClassVar[tuple[str, ...]] = ()
    #: figure kinds this defense contributes (``figures: - {kind: KIND, defense: ID}``), drawn by
    #: :meth:`summary_figure` (AMR: ``amr_weights``, the paper's Figure 4)
    report_figures: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def summary_table(cls, kind: str, params: dict[str, Any], summaries: list[dict[str, Any]]) -> SummaryTable:
        """One dataset's block of a contributed table of ``kind`` (one of :attr:`report_tables`).

        Args:
            kind: the table kind the protocol asked for.
            params: the row's defense parameters on that dataset (protocol values, defaults filled in).
            summaries: the stored :meth:`summary` of the row's trained model for each seed found in
                the store (empty before any is trained: return the rows with None values; protocol
                validation calls it so to learn the row ids and columns its ``reference:`` may give).

        Returns:
            The block's columns and rows (values in the units the table title states); robench adds
            the protocol's reference values and differences and renders it in every report format.
        """
        raise NotImplementedError(f"defense '{cls.registry_name or cls.__name__}' lists no summary table "
                                  f"{kind!r} (report_tables: {', '.join(cls.report_tables) or 'none'})")

    @classmethod
    def summary_figure(cls, kind: str, panels: list[tuple[str, dict[str, Any]]], title: str) -> Figure:
        """A contributed figure of ``kind`` (one of :attr:`report_figures`), drawn with matplotlib.

        Args:
            kind: the figure kind the protocol asked for.
            panels: one ``(dataset label, stored summary)`` per dataset of the figure, in order (one
                panel row each); the summary is ``{}`` where no trained model is stored yet.
            title: the figure's title from the protocol.

        Returns:
            A ``matplotlib.figure.Figure``; robench saves it (PNG and SVG) and closes it. Import
            matplotlib inside this method, so that importing the defense stays cheap.
        """
        raise NotImplementedError(f"defense '{cls.registry_name or cls.__name__}' lists no figure {kind!r} "
                                  f"(report_figures: {', '.join(cls.report_figures) or 'none'})")
