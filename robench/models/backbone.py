"""Backbones as sequences of named stages, with insertion points between stages.

A :class:`Backbone` turns one modality's input into a pooled feature vector ``[B, D]``. It is
written as an ordered ``stages`` dict so that defenses can

* insert a module after any stage (``insert(stage, module)``; AMR's reweighting goes here), and
* read any stage's output (``forward(x, record=...)``; AMR's auxiliary heads read these),

without subclassing or editing the backbone. Inserted modules live in ``taps`` (a ModuleDict keyed by
stage name) so that the original stages keep their state-dict keys and pretrained checkpoints still load.
"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Collection
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from robench.errors import RobenchError
from robench.models.weights import weights_path
from robench.registry import Registrable


class Backbone(nn.Module, Registrable):
    """Base class for per-modality feature extractors.

    Subclasses fill ``self.stages`` (forward order) and implement :meth:`preprocess`, :meth:`head`
    and :meth:`pool`, and set :attr:`feature_dim` and :attr:`feature_stages`.
    """

    #: "rgb" or "skeleton": which input key the backbone reads ("" only for the placeholder of a model
    #: object robench did not build, :class:`~robench.models.provided.ProvidedBranch`, which stands for either)
    modality: ClassVar[str] = ""
    #: parameters filled from the dataset's clip shape when a protocol leaves them out:
    #: ``{parameter: axis of the per-clip shape}`` (e.g. I3D ``{"frames": 1, "resolution": 2}``)
    input_size_params: ClassVar[dict[str, int]] = {}
    #: convert inputs to channels-last 3D memory format (set by :meth:`RuntimeOptions.prepare_model`)
    channels_last: bool = False
    #: width of the pooled feature vector returned by :meth:`forward`
    feature_dim: int
    #: stages whose outputs are feature maps that defenses may reweight, in forward order
    feature_stages: tuple[str, ...]

    def __init__(self) -> None:
        super().__init__()
        self.stages = nn.ModuleDict()
        self.taps = nn.ModuleDict()

    # -- what subclasses implement ---------------------------------------------------------------
    def preprocess(self, x: Tensor) -> Tensor:
        """Model-internal normalisation of the raw input (RGB in [0, 1], skeleton in metres)."""
        return x

    def head(self, x: Tensor) -> Tensor:
        """Last stage output -> pooled feature vector ``[B, feature_dim]``."""
        raise NotImplementedError

    def pool(self, x: Tensor) -> Tensor:
        """Global-average-pool any stage's feature map to ``[B, C]`` (B = clips, not persons)."""
        raise NotImplementedError

    # -- shared machinery --------------------------------------------------------------------------
    @property
    def stage_names(self) -> list[str]:
        return list(self.stages.keys())

    def insert(self, stage: str, module: nn.Module) -> None:
        """Apply ``module`` to the output of ``stage`` on every forward pass."""
        if stage not in self.stages:
            raise KeyError(f"{type(self).__name__} has no stage {stage!r}; stages: {', '.join(self.stages)}")
        if stage in self.taps:
            raise ValueError(f"stage {stage!r} already has an inserted module")
        self.taps[stage] = module

    def last_feature_stages(self, count: int) -> list[str]:
        """The last ``count`` feature stages, counted back from the head (AMR's default insertion points)."""
        if count > len(self.feature_stages):
            raise ValueError(
                f"{type(self).__name__} has {len(self.feature_stages)} feature stages, {count} requested"
            )
        return list(reversed(self.feature_stages))[:count]

    def stage_shapes(self, x: Tensor | None = None) -> dict[str, tuple[int, ...]]:
        """Output shape (without batch) of every stage for input ``x`` (default: the configured size).

        Computed on a copy on PyTorch's ``meta`` device: shapes only, no arithmetic, so it is
        instant even for the full-size I3D.
        """
        example = x if x is not None else self.example_input(1)
        meta = copy.deepcopy(self).to("meta").eval()
        shapes: dict[str, tuple[int, ...]] = {}
        with torch.no_grad():
            meta.forward(example.to("meta"), use_taps=False, shapes=shapes)
        return shapes

    def example_input(self, batch: int = 1) -> Tensor:
        """A zero input of the configured size."""
        raise NotImplementedError

    # -- pretrained weights ----------------------------------------------------------------------
    #: key prefixes of a checkpoint's classification head, which a backbone does not have
    head_keys: tuple[str, ...] = ()

    def checkpoint_key(self, key: str) -> str:
        """This backbone's name for a key of another implementation's checkpoint (identity by default)."""
        return key

    def load_weights(self, path: str | Path) -> None:
        """Load weights from a local file: a robench model or backbone checkpoint, or the reference's.

        Accepted: a ``torch.save``d state dict, or a dict holding one under ``state_dict`` /
        ``model`` (a robench ``model.pt``, whose ``backbones.<modality>.`` keys are picked). Keys
        of the reference implementations are translated (:meth:`checkpoint_key`); the
        classification head of a checkpoint is ignored. The file is read with
        ``torch.load(weights_only=True)`` (:func:`read_state_dict`): tensors only, never pickled code.
        Raises :class:`RobenchError` naming the file and the missing, unexpected and mis-shaped keys.
        """
        mapped = self._checkpoint_state(read_state_dict(path))
        self._check_fit(path, mapped, shapes=True)
        self.load_state_dict({**self.state_dict(), **mapped})

    @classmethod
    def check_checkpoint(cls, params: dict[str, Any]) -> None:
        """Read ``params["checkpoint"]`` (if set) and check its key names against this backbone.

        For protocol validation: a file that cannot be read, or holds weights of something else, is
        reported before any model trains. Shapes are checked when the weights are loaded (they may
        depend on the input size the dataset fills in).
        """
        path = params.get("checkpoint")
        if not path or not weights_path(path).is_file():
            return  # a missing file is reported where the plan hashes it (robench.identity)
        state = read_state_dict(path)
        model = cls(**{**params, "checkpoint": None})
        mapped = model._checkpoint_state(state)
        model._check_fit(path, mapped, shapes=False)

    def _checkpoint_state(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """A checkpoint's tensors under this backbone's key names (head dropped, prefixes removed)."""
        prefix = f"backbones.{self.modality}."
        if any(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        state = {k.removeprefix("module."): v for k, v in state.items()}  # saved from DataParallel
        return {self.checkpoint_key(k): v for k, v in state.items() if not k.startswith(self.head_keys or ("\0",))}

    def _check_fit(self, path: str | Path, mapped: dict[str, Tensor], shapes: bool) -> None:
        own = {k: v for k, v in self.state_dict().items() if not k.startswith("taps.")}
        missing = sorted(set(own) - set(mapped))
        unexpected = sorted(set(mapped) - set(own))
        wrong = [f"{k} {tuple(mapped[k].shape)} vs {tuple(own[k].shape)}" for k in own
                 if shapes and k in mapped and mapped[k].shape != own[k].shape]
        if missing or unexpected or wrong:
            parts = []
            if missing:
                parts.append(f"{len(missing)} missing ({', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''})")
            if unexpected:
                parts.append(f"{len(unexpected)} unexpected ({', '.join(unexpected[:4])}"
                             f"{' ...' if len(unexpected) > 4 else ''})")
            if wrong:
                parts.append(f"{len(wrong)} with other shapes (checkpoint vs model: {'; '.join(wrong[:3])}"
                             f"{' ...' if len(wrong) > 3 else ''})")
            raise RobenchError(f"checkpoint {path} does not fit "
                               f"{type(self).__name__}(width={getattr(self, 'width', '?')}): "
                               + "; ".join(parts) + "; give a checkpoint of this backbone at this width")

    def forward(
        self,
        x: Tensor,
        record: Collection[str] = (),
        use_taps: bool = True,
        shapes: dict[str, tuple[int, ...]] | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Run the stages; return ``(features [B, D], {stage: output after its tap})`` for ``record``."""
        recorded: dict[str, Tensor] = {}
        h = self.preprocess(x)
        for name, stage in self.stages.items():
            h = stage(h)
            if use_taps and name in self.taps:
                h = self.taps[name](h)
            if name in record:
                recorded[name] = h
            if shapes is not None:
                shapes[name] = tuple(h.shape[1:])
        return self.head(h), recorded


def _load_problem(exc: Exception) -> str:
    """The useful part of torch.load's error (its weights-only refusal says what it met, and more we do not want)."""
    if isinstance(exc, pickle.UnpicklingError):
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        keep = [ln for ln in lines if not ln.startswith(("Weights only load failed", "Please file an issue",
                                                          "Check the documentation"))]
        return "not a plain file of tensors (" + ("; ".join(keep)[:200] or "refused") + ")"
    text = (str(exc).strip().splitlines() or [""])[0].split(". ")[0][:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The state dict in a weights file (a path or ``builtin:NAME``), read with ``torch.load(weights_only=True)``.

    Accepts a state dict or a dict holding one under ``state_dict`` / ``model``. Anything else, a
    file torch cannot parse, or one holding pickled Python objects (which could run code when
    unpickled), is a :class:`RobenchError` naming the file and how to make a good one.
    """
    path = weights_path(path)
    if not path.is_file():
        raise RobenchError(f"checkpoint {path} not found" + (" (it is a directory)" if path.is_dir() else ""))
    fix = "save weights with torch.save(model.state_dict(), PATH)"
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load parsing untrusted bytes: any failure is the file's
        raise RobenchError(f"cannot read checkpoint {path}: {_load_problem(exc)}; robench reads only weights files "
                           f"(torch.load with weights_only=True: tensors, never pickled code): {fix}") from None
    state = obj
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not state or not all(isinstance(v, Tensor) for v in state.values()):
        found = (f"a {type(state).__name__}" if not isinstance(state, dict) else
                 "an empty dict" if not state else f"a dict with keys {', '.join(map(str, list(state)[:4]))}")
        raise RobenchError(f"checkpoint {path} holds no state dict of tensors ({found}); {fix}")
    return state
