"""Adapters between robench's model interface and models written another way.

robench's attacks and evaluation call a model with one argument, the input dict ``{"rgb": [B, 3, T, H,
W] in [0, 1], "skeleton": [B, 3, T, V, M] in metres}``. A model written as ``model(rgb, skeleton)``
is used through :class:`TwoInputs`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from torch import Tensor, nn

from robench.data.base import MODALITIES


class TwoInputs(nn.Module):
    """A model that takes one tensor per modality as positional arguments, called with robench's input dict.

    Example::

        class MyNet(nn.Module):
            def forward(self, rgb, skeleton): ...

        model = robench.TwoInputs(MyNet())            # model({"rgb": r, "skeleton": s}) == MyNet()(r, s)
        adv = robench.attack("pgd", "RS", eps="8/255")(model.eval(), {"rgb": r, "skeleton": s}, y)

    Args:
        model: a module (its parameters are this adapter's) or any callable returning logits ``[B, classes]``.
        modalities: the inputs, in the order of ``model``'s arguments (default RGB then skeleton; one of
            them for a unimodal model).
    """

    def __init__(self, model: nn.Module | Callable[..., Tensor], modalities: Sequence[str] = MODALITIES) -> None:
        super().__init__()
        unknown = [m for m in modalities if m not in MODALITIES]
        if not modalities or unknown or len(set(modalities)) != len(modalities):
            raise ValueError(f"modalities {list(modalities)}: allowed: distinct names among {list(MODALITIES)}")
        self.model = model
        self._order = tuple(modalities)

    @property
    def modalities(self) -> tuple[str, ...]:
        """The inputs the wrapped model reads, in its argument order."""
        return self._order

    def forward(self, inputs: Mapping[str, Tensor]) -> Tensor:
        missing = [m for m in self._order if m not in inputs]
        if missing:
            raise KeyError(f"the model reads {list(self._order)}; the inputs lack {missing}")
        return self.model(*(inputs[m] for m in self._order))
