"""Stopping on a signal: SIGTERM (what Slurm, Kubernetes and torchrun send) and SIGHUP end a command the way
Ctrl-C (SIGINT) does, by raising an exception in the main thread.

Without this a SIGTERM kills the process where it stands: no ``finally`` runs, a run's row stays
"running", and a data-parallel rank leaves its process group undestroyed. With it every cleanup on the
way out runs: transactions roll back, the run row is marked "interrupted", the process group is left
(:func:`robench.distributed.joined`), and the command exits with ``128 + signal`` as a shell reports a
process killed by that signal (130 for SIGINT, 143 for SIGTERM).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

#: the signals turned into :class:`Interrupted` (SIGINT raises KeyboardInterrupt by itself)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """A command stopped by a signal. A :class:`KeyboardInterrupt`, so every handler that treats Ctrl-C as
    a stop (the runner marks its run "interrupted") treats a SIGTERM the same way."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


def exit_status(exc: KeyboardInterrupt) -> int:
    """The shell's status for a process ended by this signal: 128 + its number (SIGINT: 130)."""
    return 128 + (exc.signum if isinstance(exc, Interrupted) else int(signal.SIGINT))


def _raise(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise :class:`Interrupted` in the main thread; the previous
    handlers come back afterwards. Off the main thread (where Python cannot set handlers) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {s: signal.signal(s, _raise) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
