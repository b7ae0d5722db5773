"""The dataset interface every RGB+skeleton dataset implements.

Two levels:

* a **provider** (:class:`DatasetProvider`) is what the ``datasets`` registry holds and a protocol
  names (``dataset: {name: synthetic, ...}``); it is built from the protocol's parameters and
  returns splits;
* a **split** (:class:`ClipDataset`) is a sequence of clips that yields whole batches.

Tensors, as stored (compact) and as a batch from :meth:`ClipDataset.get_batch`:

=============  =========================  ==========================================================
key            dtype, shape               meaning
=============  =========================  ==========================================================
``rgb``        uint8 ``[B, 3, T, H, W]``  RGB frames, 0..255 (converted to float in [0, 1] by
                                          :func:`to_model_inputs`, the model's input unit)
``skeleton``   float32 ``[B, 3, T, V, M]``  joint coordinates x, y, z in metres (camera space),
                                          V joints, M bodies (absent bodies are zeros)
``label``      int64 ``[B]``              class index, 0-based
=============  =========================  ==========================================================
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from robench.registry import Registrable

Batch = dict[str, Tensor]
MODALITIES: tuple[str, ...] = ("rgb", "skeleton")


class ClipDataset(abc.ABC):
    """One split of an RGB+skeleton action dataset."""

    #: class names, index = label
    class_names: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @property
    @abc.abstractmethod
    def labels(self) -> Tensor:
        """int64 ``[N]``: every clip's label, without loading clips."""

    @abc.abstractmethod
    def get_batch(self, indices: Tensor) -> Batch:
        """Clips ``indices`` (int64 ``[B]``) as a batch with the layout in the module docstring."""

    def __getitem__(self, indices: Sequence[int] | Tensor) -> Batch:
        """Batch indexing, so that a torch ``DataLoader`` with a ``BatchSampler`` can drive it."""
        return self.get_batch(torch.as_tensor(indices, dtype=torch.long))


@dataclass
class TensorClipDataset(ClipDataset):
    """A split held in memory as tensors (the synthetic dataset, tests, small real subsets)."""

    rgb: Tensor  # uint8 [N, 3, T, H, W]
    skeleton: Tensor  # float32 [N, 3, T, V, M]
    label: Tensor  # int64 [N]
    class_names: list[str]
    meta: dict[str, Tensor] = field(default_factory=dict)  # per-clip extras, e.g. "subject"

    def __post_init__(self) -> None:
        n = self.label.shape[0]
        if self.rgb.dtype != torch.uint8 or self.rgb.dim() != 5 or self.rgb.shape[0] != n:
            raise ValueError(f"rgb must be uint8 [N={n}, 3, T, H, W], got {self.rgb.dtype} {tuple(self.rgb.shape)}")
        if self.skeleton.dim() != 5 or self.skeleton.shape[0] != n or self.skeleton.shape[1] != 3:
            raise ValueError(f"skeleton must be [N={n}, 3, T, V, M], got {tuple(self.skeleton.shape)}")

    def __len__(self) -> int:
        return int(self.label.shape[0])

    @property
    def labels(self) -> Tensor:
        return self.label

    def get_batch(self, indices: Tensor) -> Batch:
        return {"rgb": self.rgb[indices], "skeleton": self.skeleton[indices], "label": self.label[indices]}


class DatasetProvider(Registrable, abc.ABC):
    """What the ``datasets`` registry holds: built from protocol parameters, returns splits.

    Subclasses take their parameters as keyword arguments (validated against the signature
    when a protocol is checked) plus ``cache_dir``, a directory they may use for derived data.
    """

    #: names of the splits :meth:`split` accepts; "train" and "test" are what the runner uses
    split_names: ClassVar[tuple[str, ...]] = ("train", "test")
    harness_params: ClassVar[tuple[str, ...]] = ("cache_dir",)
    location_params: ClassVar[tuple[str, ...]] = ("cache_dir",)

    def __init__(self, cache_dir: Path | None = None) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None

    @abc.abstractmethod
    def split(self, name: str) -> ClipDataset:
        """The split ``name`` (one of :attr:`split_names`)."""

    @property
    @abc.abstractmethod
    def num_classes(self) -> int: ...

    @abc.abstractmethod
    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-clip shapes without loading data: ``{"rgb": (3, T, H, W), "skeleton": (3, T, V, M)}``."""

    def check_available(self) -> None:
        """Raise :class:`~robench.errors.DataError` (what is missing, how to make it) before any work."""

    def describe(self) -> dict[str, Any]:
        """A few facts for ``robench list`` and provenance."""
        return {"classes": self.num_classes}


def to_model_inputs(batch: Batch, device: torch.device | str,
                    modalities: Sequence[str] = MODALITIES) -> dict[str, Tensor]:
    """Move a batch to ``device`` in model units: RGB as float32 in [0, 1], skeleton in metres."""
    out: dict[str, Tensor] = {}
    if "rgb" in modalities:
        out["rgb"] = batch["rgb"].to(device, non_blocking=True).float().div_(255.0)
    if "skeleton" in modalities:
        out["skeleton"] = batch["skeleton"].to(device, non_blocking=True).float()
    return out


def batch_indices(
    n: int, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None,
    indices: Tensor | None = None, drop_last: bool = False,
) -> list[Tensor]:
    """The index batches of an epoch over ``n`` clips (or ``indices``), in order or shuffled with ``generator``."""
    idx = indices if indices is not None else torch.arange(n)
    if shuffle:
        idx = idx[torch.randperm(len(idx), generator=generator)]
    stop = len(idx) - (len(idx) % batch_size if drop_last else 0)
    return [idx[start : start + batch_size] for start in range(0, stop, batch_size)]

