"""Per-clip random draws in training: the clip seeds of the current step and a dropout that uses them.

By default training draws its randomness (dropout masks, the training attack's random starts) from
the process's random stream, seeded per epoch: reproducible in one process, but a clip's draws depend
on which clips share its batch and on which rank trains it. With ``training.sample_seeds: true`` the
trainer gives every clip of a step its own seed (:func:`clip_seeds`) and makes them current
(:func:`step_seeds`): :class:`SeededDropout` then draws each clip's mask from that clip's seed, and
the training attack its random start, so a model's weights no longer depend on the number of
data-parallel ranks (beyond floating-point summation order).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robench.hashing import derive_seed


@dataclass
class StepSeeds:
    """The seeds of the clips of one training step (int64 ``[B]``, in batch order) and how many seeded
    dropout calls the step has made so far (each call draws with its own key)."""

    seeds: Tensor
    calls: list[int] = field(default_factory=lambda: [0])


_CURRENT: ContextVar[StepSeeds | None] = ContextVar("robench_step_seeds", default=None)


def clip_seeds(base: Sequence[object], clips: Tensor) -> Tensor:
    """One seed per clip: ``derive_seed(*base, clip index)`` (int64 ``[B]``)."""
    return torch.tensor([derive_seed(*base, int(i)) for i in clips], dtype=torch.int64)


@contextmanager
def step_seeds(seeds: Tensor | None) -> Iterator[None]:
    """Make ``seeds`` the current step's clip seeds (None: draw from the random stream, the default)."""
    token = _CURRENT.set(StepSeeds(seeds) if seeds is not None else None)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def current_seeds() -> Tensor | None:
    """The current step's clip seeds, or None outside :func:`step_seeds`."""
    step = _CURRENT.get()
    return step.seeds if step is not None else None


class SeededDropout(nn.Module):
    """Dropout (``channels=False``: every element) or channel dropout (``channels=True``: whole feature
    maps, as ``nn.Dropout2d``) with probability ``p``.

    Outside :func:`step_seeds` it is exactly ``F.dropout`` / ``F.dropout2d`` (the same draws from the
    random stream). Inside, clip i's mask comes from a generator seeded by (its seed, the number of
    seeded dropout calls before this one in the step, the body), so it is the same whatever batch or
    rank the clip is in. A batch of k rows per clip (a backbone folding a clip's bodies into the
    batch, clip-major as HCN does) gives each body its own mask.
    """

    def __init__(self, p: float = 0.5, channels: bool = False) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p, self.channels = float(p), channels

    def extra_repr(self) -> str:
        return f"p={self.p}, channels={self.channels}"

    def forward(self, x: Tensor) -> Tensor:
        step = _CURRENT.get()
        if step is None or not self.training:  # exactly nn.Dropout / nn.Dropout2d
            return F.dropout2d(x, self.p, self.training) if self.channels else F.dropout(x, self.p, self.training)
        if self.p == 0.0:
            return x
        call = step.calls[0]
        step.calls[0] += 1
        clips = len(step.seeds)
        if clips == 0 or x.shape[0] % clips:
            raise ValueError(f"seeded dropout: a batch of {x.shape[0]} rows for {clips} clip seeds; a backbone that "
                             "folds a clip's bodies into the batch must keep them together (rows = clips x bodies)")
        per_clip = x.shape[0] // clips  # HCN: [B * M] rows, the M bodies of a clip next to each other
        shape = (x.shape[1], *([1] * (x.dim() - 2))) if self.channels else tuple(x.shape[1:])
        keep = torch.stack([
            torch.rand(shape, generator=torch.Generator().manual_seed(
                derive_seed(int(step.seeds[r // per_clip]), "dropout", call, r % per_clip))) >= self.p
            for r in range(x.shape[0])])
        return x * keep.to(device=x.device, dtype=x.dtype) / (1.0 - self.p)
