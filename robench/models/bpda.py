"""Backward-pass approximations for adaptive attacks (BPDA: Athalye, Carlini & Wagner, ICML 2018).

A defense that transforms features at test time (ExFMem's ISTA reconstruction) may make white-box
gradients useless without making the model robust: they vanish, explode or point nowhere useful
through hundreds of unrolled iterations with a per-sample stopping rule. BPDA keeps the forward
pass exactly as it is and replaces only the backward pass of such a layer by that of a simpler
function. A layer offers this by subclassing :class:`BackwardApproximable`. The protocol picks
the mode with ``evaluation: {bpda: identity | linear}`` (default ``off``: exact gradients), and
:func:`backward_approximation` switches every such layer of the model while a cell is evaluated.
Predictions do not change; only the attacks' gradients do.

Modes:
``off``       the exact gradient through the layer's forward pass.
``identity``  the layer's backward is the identity, the classic BPDA for a purifier with output
              close to its input.
``linear``    the backward of the layer's linear part, as the layer defines it (ExFMem: the lasso
              solution's local linear map on the support of the converged code).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

BPDA_MODES = ("off", "identity", "linear")


class BackwardApproximable(nn.Module):
    """A layer whose backward pass an attack may replace (:data:`BPDA_MODES`); its forward never changes.

    Subclasses read :attr:`bpda` in ``forward`` and build the approximate backward with the usual
    trick ``y = approx(x) + (exact(x) - approx(x)).detach()``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.bpda = "off"


@contextmanager
def backward_approximation(model: nn.Module, mode: str) -> Iterator[int]:
    """Set every :class:`BackwardApproximable` layer of ``model`` to ``mode`` for the block; yields how many."""
    if mode not in BPDA_MODES:
        raise ValueError(f"bpda must be one of {BPDA_MODES}, got {mode!r}")
    layers = [m for m in model.modules() if isinstance(m, BackwardApproximable)]
    before = [layer.bpda for layer in layers]
    for layer in layers:
        layer.bpda = mode
    try:
        yield len(layers)
    finally:
        for layer, old in zip(layers, before):
            layer.bpda = old
