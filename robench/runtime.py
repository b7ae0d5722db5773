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
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from robench.errors import RobenchError


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
        raise RobenchError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RobenchError(f"device {name!r} requested but CUDA is not available (torch {torch.__version__})")
    return dev


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def configure(device: torch.device) -> None:
    """Per-run settings: deterministic kernels on CPU, TF32 matmuls on CUDA."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
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
