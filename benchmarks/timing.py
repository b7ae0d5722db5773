"""Timing helper shared by the benchmark scripts (imported as a sibling: run them as ``python benchmarks/X.py``)."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def seconds_per_call(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Mean wall seconds of ``fn()`` over ``repeats`` calls, after one warm-up call; CUDA work is waited for."""
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - t0) / repeats
