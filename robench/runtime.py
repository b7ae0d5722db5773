"""Run-time choices: which device, how many threads, determinism, seeding.

robench never assumes a device: ``auto`` picks CUDA when available, else Apple's MPS, else the
CPU. On the CPU runs are bit-for-bit repeatable for a given seed (every random draw is seeded
from the protocol's seeds through :func:`robench.hashing.derive_seed`).
"""

from __future__ import annotations

import os
import platform
import random
import subprocess
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from robench.errors import RobenchError
from robench.identity import Precision

if TYPE_CHECKING:
    from robench.models.two_stream import TwoStreamModel


def select_device(name: str | None = None) -> torch.device:
    """``"auto"`` (default, or env ``ROBENCH_DEVICE``), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``."""
    name = name or os.environ.get("ROBENCH_DEVICE") or "auto"
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise RobenchError(f"unknown device {name!r}; allowed: auto, cpu, cuda, cuda:N or mps") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise RobenchError(f"device {name!r}: robench runs on cpu, cuda or mps; allowed: auto, cpu, cuda, cuda:N, mps")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RobenchError(f"device {name!r} requested but CUDA is not available (torch {torch.__version__}); "
                               "use --device cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise RobenchError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)  # absent from some torch builds
        if mps is None or not mps.is_available():
            raise RobenchError(f"device {name!r} requested but MPS (Apple GPUs) is not available on this machine "
                               f"(torch {torch.__version__}); use --device cpu or auto")
    return dev


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def configure(device: torch.device, tf32: bool = False) -> None:
    """Per-run settings: TF32 matmuls and convolutions on CUDA only when ``tf32`` (part of result ids)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cudnn.benchmark = True


def device_name(device: torch.device) -> str:
    """A human-readable device description for provenance."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    if device.type == "cpu":
        return f"cpu:{platform.processor() or platform.machine()}x{torch.get_num_threads()}"
    return device.type


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The robench source's git commit (with ``+dirty`` if modified), or None outside a checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


@dataclass(frozen=True)
class RuntimeOptions:
    """How models run on a device; none of it changes which clips are seen in which order.

    Attributes:
        amp: automatic mixed precision in bfloat16 for forward passes (training and attacks).
        tf32: TF32 tensor cores for fp32 matmuls and convolutions (CUDA).
        channels_last: channels-last memory format for the 3D convolutions of RGB backbones.
        workers: DataLoader worker processes reading batches (0 = read in the main process).
        pin_memory: page-locked host buffers for asynchronous copies to the GPU.

    :meth:`for_device` turns all of it on for CUDA. On the CPU it turns on channels-last only
    (``python benchmarks/model_throughput.py``: 1.2x faster training steps at the quickstart's size on 2
    cores) and leaves bf16 autocast off (slower or only partly supported) and reading inline (fast enough).
    ``amp`` and ``tf32`` change results, so they are part of every model and cell id
    (:attr:`precision`); the others do not.
    """

    amp: bool = False
    tf32: bool = False
    channels_last: bool = False
    workers: int = 0
    pin_memory: bool = False

    @property
    def precision(self) -> Precision:
        """The numeric precision these options compute in (part of model and cell ids)."""
        return Precision("bf16" if self.amp else None, self.tf32)

    @classmethod
    def for_device(cls, device: torch.device, amp: str = "auto", channels_last: str = "auto",
                   workers: int | None = None, tf32: str = "auto") -> RuntimeOptions:
        cuda = device.type == "cuda"

        def pick(value: str, default: bool) -> bool:
            if value not in ("auto", "on", "off"):
                raise RobenchError(f"expected auto, on or off, got {value!r}")
            return default if value == "auto" else value == "on"

        bf16 = cuda and torch.cuda.is_bf16_supported()
        if pick(tf32, cuda) and not cuda:
            raise RobenchError("--tf32 on needs a CUDA device (TF32 is a property of NVIDIA tensor cores)")
        return cls(amp=pick(amp, bf16), tf32=pick(tf32, cuda), channels_last=pick(channels_last, True),
                   workers=workers if workers is not None else (min(8, os.cpu_count() or 1) if cuda else 0),
                   pin_memory=cuda)

    def autocast(self, device: torch.device) -> AbstractContextManager[Any]:
        """bfloat16 autocast around a forward pass when ``amp`` is on (a no-op context otherwise)."""
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=self.amp)

    def prepare_model(self, model: TwoStreamModel) -> TwoStreamModel:
        """Switch RGB backbones to channels-last 3D memory format when asked."""
        if self.channels_last:
            for m in model.modalities:
                backbone = model.backbone(m)
                if backbone.modality == "rgb":
                    backbone.to(memory_format=torch.channels_last_3d)
                    backbone.channels_last = True
        return model

    def batches(self, dataset: Any, index_batches: Sequence[Tensor]) -> Iterable[dict[str, Tensor]]:
        """The batches ``dataset[idx]`` for each index tensor, in order; read by workers when ``workers > 0``."""
        if self.workers <= 0 and not self.pin_memory:
            return (dataset.get_batch(idx) for idx in index_batches)
        return torch.utils.data.DataLoader(dataset, sampler=list(index_batches), batch_size=None,
                                           num_workers=self.workers, pin_memory=self.pin_memory)
