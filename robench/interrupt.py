"""Stopping on a signal: SIGTERM (what Slurm, Kubernetes and torchrun send), SIGHUP and SIGINT (Ctrl-C) end a
command cleanly.

Without this a SIGTERM kills the process where it stands: no ``finally`` runs, a run's row stays
"running", and a data-parallel rank leaves its process group undestroyed. With it the signal becomes
:class:`Interrupted` (a :class:`KeyboardInterrupt`), so every cleanup on the way out runs: transactions
roll back, the run row is marked "interrupted", the process group is left
(:func:`robench.distributed.joined`), and the command exits with ``128 + signal`` as a shell reports a
process killed by that signal (130 for SIGINT, 143 for SIGTERM).

Two ways, chosen per command:

- **immediately** (the default): the exception is raised wherever the main thread is;
- **at the next safe point** (``deferred``, for ``robench run`` and the leaderboard's evaluations): the
  signal is only noted, and :func:`checkpoint`, called between training steps, attack batches and
  cells, raises it. Nothing is stopped halfway through a write; the longest wait is one step. A second
  signal stops at once.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

#: the signals turned into :class:`Interrupted` (SIGINT too when deferred; otherwise Python's KeyboardInterrupt)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)

#: the signal noted by a deferred handler and not yet raised
_pending: int | None = None


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


def _note(signum: int, frame: FrameType | None) -> None:
    global _pending
    if _pending is not None:  # asked twice: stop now
        raise Interrupted(signum)
    _pending = signum


def checkpoint() -> None:
    """A safe point: raise :class:`Interrupted` if a deferred stop was requested (nothing otherwise)."""
    if _pending is not None:
        raise Interrupted(_pending)


def pending() -> int | None:
    """The signal a deferred handler noted and :func:`checkpoint` has not raised yet (None when none)."""
    return _pending


@contextmanager
def stop_on_signals(deferred: bool = False) -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP (and with ``deferred`` SIGINT too) stop the command (see the module
    docstring); the previous handlers come back afterwards. Off the main thread (where Python cannot set
    handlers) it does nothing."""
    global _pending
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = (*STOP_SIGNALS, signal.SIGINT) if deferred else STOP_SIGNALS
    _pending = None
    before = {s: signal.signal(s, _note if deferred else _raise) for s in signals}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
        _pending = None
