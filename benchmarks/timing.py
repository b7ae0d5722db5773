"""Helpers shared by the benchmark scripts (imported as a sibling: run them as ``python benchmarks/X.py``): timing a
call, and recording a run's output in ``benchmarks/results/`` for the documentation."""

from __future__ import annotations

import contextlib
import io
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

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


RESULTS = Path(__file__).resolve().parent / "results"


class _Tee(io.TextIOBase):
    """Writes to the real stdout and keeps a copy."""

    def __init__(self, real: TextIO) -> None:
        self.real, self.copy = real, io.StringIO()

    def write(self, text: str) -> int:
        self.copy.write(text)
        return self.real.write(text)

    def flush(self) -> None:
        self.real.flush()


def machine() -> str:
    """The CPU model and core count, the GPU if one is used, and the software versions."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    gpu = f"; GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (f"{cpu}, {os.cpu_count()} cores{gpu}; torch {torch.__version__}, Python {platform.python_version()}, "
            f"{torch.get_num_threads()} torch threads")


@contextlib.contextmanager
def recorded(name: str) -> Iterator[None]:
    """Print as usual; when the block finishes, write what was printed to ``benchmarks/results/NAME.md``
    with the command, the machine and the date (the file the documentation quotes). ``$ROBENCH_BENCH_SUFFIX``
    is appended to NAME (``benchmarks/gpu_suite.sh`` sets it, so a GPU's figures do not replace the CPU's)."""
    tee = _Tee(sys.stdout)
    sys.stdout = tee
    try:
        yield
    finally:
        sys.stdout = tee.real
    command = "python benchmarks/" + " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
    text = (f"Measured {time.strftime('%Y-%m-%d')} with `{command}` on {machine()}.\n\n"
            f"```text\n{tee.copy.getvalue().rstrip()}\n```\n")
    out = RESULTS / f"{name}{os.environ.get('ROBENCH_BENCH_SUFFIX', '')}.md"  # e.g. -h100: a GPU's figures apart
    RESULTS.mkdir(exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}")
