"""Progress reporting: rich progress bars on a terminal, one plain line per finished task otherwise.

Training and evaluation report through a :class:`Progress`; they never print directly. Bars show
what runs (cells, epochs, batches), how far it is, elapsed time and ETA; nested bars disappear when
finished, and each finished epoch or cell leaves one log line.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress


class Task:
    """A handle to one progress bar."""

    def __init__(self, owner: Progress, task_id: TaskID | None, description: str, total: int | None) -> None:
        self.owner, self.task_id, self.description, self.total = owner, task_id, description, total
        self.completed = 0

    def advance(self, n: int = 1, **fields: Any) -> None:
        self.completed += n
        if self.owner.rich is not None and self.task_id is not None:
            self.owner.rich.update(self.task_id, advance=n, info=_fmt(fields))


def _fmt(fields: dict[str, Any]) -> str:
    parts = []
    for k, v in fields.items():
        parts.append(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}")
    return "  ".join(parts)


class Progress:
    """Progress bars and log lines.

    Args:
        mode: "rich" (live bars, needs a terminal), "plain" (log lines only), "quiet" (nothing) or
            "auto" (rich on a terminal, plain otherwise).
        console: where to draw (stderr by default, so that stdout carries only results).
    """

    def __init__(self, mode: str = "auto", console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        if mode == "auto":
            mode = "rich" if self.console.is_terminal else "plain"
        self.mode = mode
        self.rich: RichProgress | None = None
        if mode == "rich":
            self.rich = RichProgress(
                SpinnerColumn(), TextColumn("[progress.description]{task.description}"), BarColumn(bar_width=28),
                MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"), console=self.console, transient=False,
            )

    def __enter__(self) -> Progress:
        if self.rich is not None:
            self.rich.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.rich is not None:
            self.rich.stop()

    @contextmanager
    def task(self, description: str, total: int | None, transient: bool = True) -> Iterator[Task]:
        """A bar for the duration of the block; removed at the end if ``transient``."""
        tid = self.rich.add_task(description, total=total, info="") if self.rich is not None else None
        handle = Task(self, tid, description, total)
        try:
            yield handle
        finally:
            if self.rich is not None and tid is not None:
                if transient:
                    self.rich.remove_task(tid)
                else:
                    self.rich.update(tid, completed=handle.completed)

    def log(self, message: str) -> None:
        """A line that stays (above the bars on a terminal)."""
        if self.mode == "quiet":
            return
        if self.rich is not None:
            self.rich.console.print(message, highlight=False)
        else:
            print(message, file=sys.stderr, flush=True)
