"""Corruption base class: a natural, seeded change of one input of a clip at a severity from 1 to 5.

Corruptions measure what happens to a fused model when a camera is noisy, blurred, compressed or
blocked, when the pose estimator drops or confuses joints, or when one input is missing altogether.
Unlike an attack, a corruption does not look at the model: it is a fixed function of the clip, the
severity and a per-clip seed, so every defense sees exactly the same corrupted clips (paired
comparisons), and a cell's result does not depend on the batch size or the number of ranks.

Each severity is a physical quantity (a noise level in grey levels, a blur radius as a share of the
frame width, a bitrate in bits per pixel, a jitter in centimetres, ...): :attr:`Corruption.levels`
holds the five values and :attr:`Corruption.unit` says what they are; ``docs/corruptions.md`` lists them.

Inputs are in model units (``robench.data.base.to_model_inputs``): RGB ``[3, T, H, W]`` float in [0, 1],
skeleton ``[3, T, 25, M]`` in metres (x, y, z in the camera's frame; a missing body or joint is all
zeros, as in NTU RGB+D's files).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import ClassVar

import torch
from torch import Tensor

from robench.registry import Registrable

#: the severities every corruption defines, 1 (mild) to 5 (severe)
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)


class Corruption(Registrable, abc.ABC):
    """A deterministic corruption of one modality (the other passes through bit-identical).

    Subclasses set :attr:`modality`, :attr:`family`, :attr:`levels` and :attr:`unit` and implement
    :meth:`corrupt` for one clip. Call the corruption on a batch (``corruption(inputs, severity, seeds)``)
    to get corrupted inputs; it checks shapes, dtypes, the valid RGB range and that the other modality is
    untouched.
    """

    #: the input this corruption changes: "rgb" or "skeleton"
    modality: ClassVar[str] = ""
    #: the group it is reported under (report columns): "noise", "blur", "digital", "video", "occlusion",
    #: "pose", "timing", "persons" or "missing"
    family: ClassVar[str] = ""
    #: the physical parameter at severities 1..5 (a corruption with one level, e.g. a missing input,
    #: has the same value five times)
    levels: ClassVar[tuple[float, ...]] = ()
    #: what :attr:`levels` measure, for documentation and reports ("grey levels (of 255)", "cm", ...)
    unit: ClassVar[str] = ""

    def __init__(self) -> None:
        """Built-in corruptions take no parameters (the severity is their only setting); a subclass may declare
        typed keyword parameters of its own, which become part of its identity."""
        super().__init__()

    @classmethod
    def graded(cls) -> bool:
        """Whether the severities differ (a missing input has one level: evaluated once, at the first severity
        asked for, and that result stands for every severity)."""
        return len(set(cls.levels)) > 1

    def level(self, severity: int) -> float:
        """The physical parameter at ``severity`` (1..5)."""
        if severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {list(SEVERITIES)}, got {severity!r}")
        return float(self.levels[severity - 1])

    @abc.abstractmethod
    def corrupt(self, x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
        """The corrupted copy of one clip ``x`` (no batch axis) at ``severity``; randomness only from
        ``generator`` (a CPU generator seeded for this clip, corruption and severity)."""

    def __call__(self, inputs: Mapping[str, Tensor], severity: int, seeds: Tensor) -> dict[str, Tensor]:
        """Corrupt :attr:`modality` of every clip of a batch; ``seeds`` (int64 ``[B]``) seeds each clip."""
        self.level(severity)  # checks the severity
        x = inputs[self.modality]
        out = []
        for clip, seed in zip(x, seeds.tolist()):
            gen = torch.Generator().manual_seed(int(seed))
            y = self.corrupt(clip, severity, gen).to(device=clip.device, dtype=clip.dtype)
            if y.shape != clip.shape:
                raise RuntimeError(f"corruption {type(self).__name__} changed a clip's shape "
                                   f"{tuple(clip.shape)} -> {tuple(y.shape)}")
            out.append(y)
        corrupted = torch.stack(out) if out else x.clone()
        if not torch.isfinite(corrupted).all():
            raise RuntimeError(f"corruption {type(self).__name__} produced non-finite values")
        if self.modality == "rgb" and corrupted.numel() and (corrupted.min() < 0 or corrupted.max() > 1):
            raise RuntimeError(f"corruption {type(self).__name__} left the RGB range [0, 1]")
        result = dict(inputs)
        result[self.modality] = corrupted
        return result
