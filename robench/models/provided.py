"""Models robench did not build: a model object handed to :func:`robench.evaluate` from Python.

Such a model is any ``nn.Module`` (or callable) mapping robench's input dict to logits. robench never
trains, builds or caches it; it evaluates it exactly as it evaluates its own models, through the same
plan, attacks, results store and records. To give it an identity in that pipeline:

- :func:`model_digest` hashes what determines its predictions: every parameter and buffer (names,
  dtypes, shapes and bytes) and the source code of every module class it is made of. A class whose
  source cannot be read (defined in an interactive session that keeps no source) makes the digest
  unique to this call, so nothing stored for it can ever be reused for another model;
- :class:`ProvidedBranch` stands for each of its inputs in the plan's model section (it is never run),
  so the model's id is the content hash of its digest and its modalities, and its cells are keyed by
  that id like every other cell.
"""

from __future__ import annotations

import hashlib
import inspect
import secrets
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from robench.data.base import MODALITIES
from robench.errors import RobenchError
from robench.models.backbone import Backbone
from robench.registry import register_backbone


@register_backbone("provided")
class ProvidedBranch(Backbone):
    """One input of a model object handed to ``robench.evaluate`` (:mod:`robench.models.provided`).

    A placeholder in the plan: it names the model by content (``digest``) and is never built into a
    network or run. Protocol files do not use it.

    Args:
        digest: the model object's content digest (:func:`model_digest`).
    """

    def __init__(self, digest: str = "") -> None:
        super().__init__()
        self.digest = digest
        self.feature_dim, self.feature_stages = 0, ()

    def forward(self, x: Tensor, record: object = (), use_taps: bool = True,
                shapes: object = None) -> tuple[Tensor, dict[str, Tensor]]:
        raise RobenchError("a provided model's branch is a placeholder: robench evaluates the model object itself")


class ProvidedModel(nn.Module):
    """A model object to evaluate as it is, with the inputs it reads and its content digest.

    Attributes:
        net: maps ``{modality: tensor}`` (RGB float ``[B, 3, T, H, W]`` in [0, 1], skeleton float
            ``[B, 3, T, V, M]`` in metres) to logits ``[B, classes]``.
        digest: its content digest (:func:`model_digest`), taken when it was wrapped.
    """

    def __init__(self, net: nn.Module | Callable[[dict[str, Tensor]], Tensor],
                 modalities: Sequence[str] | None = None) -> None:
        """Wrap ``net``; it reads ``modalities``, else those of a robench model or adapter
        (:class:`~robench.models.TwoStreamModel`, :class:`~robench.models.adapters.TwoInputs`), else both."""
        from robench.models.adapters import TwoInputs
        from robench.models.two_stream import TwoStreamModel

        super().__init__()
        if modalities is not None:
            mods = tuple(modalities)
        elif isinstance(net, (TwoStreamModel, TwoInputs)):
            mods = net.modalities
        else:
            mods = MODALITIES
        unknown = [m for m in mods if m not in MODALITIES]
        if not mods or unknown:
            raise RobenchError(f"model modalities {list(mods)}: allowed: a non-empty subset of {list(MODALITIES)}")
        self.net = net if isinstance(net, nn.Module) else _Callable(net)
        self._modalities = tuple(m for m in MODALITIES if m in mods)
        self.digest = model_digest(self.net)

    @property
    def modalities(self) -> tuple[str, ...]:
        """The inputs the model reads, in robench's order."""
        return self._modalities

    def forward(self, inputs: Mapping[str, Tensor]) -> Tensor:
        return self.net({m: inputs[m] for m in self._modalities})


class _Callable(nn.Module):
    """A plain function as a module (no parameters: its digest is its source code)."""

    def __init__(self, fn: Callable[[dict[str, Tensor]], Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, inputs: Mapping[str, Tensor]) -> Tensor:
        return self.fn(dict(inputs))


def _source_digest(obj: object) -> str | None:
    """SHA-256 of ``obj``'s source text, or None when it cannot be read."""
    try:
        source = inspect.getsource(obj)  # type: ignore[arg-type]
    except (OSError, TypeError):
        return None
    return hashlib.sha256(source.encode()).hexdigest()


def model_digest(module: nn.Module) -> str:
    """``sha256:<hex>`` over a module's parameters and buffers (names, dtypes, shapes, bytes) and the source
    code of every class in it (and of a wrapped function); unique per call when some source is unknown."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous().reshape(-1)
        h.update(f"{name}|{t.dtype}|{tuple(tensor.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    pieces: list[object] = [type(m) for m in module.modules()]
    pieces += [m.fn for m in module.modules() if isinstance(m, _Callable)]
    for obj in dict.fromkeys(pieces):  # each class once, in order
        if getattr(obj, "__module__", "").startswith("torch."):
            h.update(f"{obj!r}".encode())  # torch's own layers: named by class (their code is torch's version)
            continue
        digest = _source_digest(obj)
        h.update(f"{getattr(obj, '__qualname__', obj)!r}|{digest or 'unknown:' + secrets.token_hex(16)}".encode())
    return "sha256:" + h.hexdigest()
