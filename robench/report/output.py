"""A report from a results store to text (and, when written to a file, to its figures beside it).

What ``robench report`` and :func:`robench.report` both run: the store is checked to exist and hold
runs, the report is built from the latest run of each protocol (or of the protocols asked for),
rendered in the format asked for, and, when a file is named, written atomically with its figures in
``figures/`` beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from robench.errors import RobenchError
from robench.files import atomic_write
from robench.locations import is_url


@dataclass(frozen=True)
class RenderedReport:
    """A rendered report: its ``text``, and how many figure files went to ``figure_dir``."""

    text: str
    figure_files: int
    figure_dir: Path


def render_report(store: Path | str, fmt: str, protocols: list[str], out: Path | None) -> RenderedReport:
    """Render the report of ``store`` in ``fmt``; with ``out``, write it there (atomically) and its figures
    in ``figures/`` beside it (without ``out``, figures go beside a store file)."""
    from robench.report.render import build_report, render
    from robench.store import ResultsStore

    if out is not None and out.is_dir():
        raise RobenchError(f"report --out {out} is a directory; give a file name, e.g. {out / 'index.html'}")
    figure_dir = (out.parent if out else Path(store).parent if not is_url(store) else Path(".")) / "figures"
    results = ResultsStore(store if is_url(store) else Path(store), read_only=True)  # a report writes nothing to it
    if not protocols and not results.latest_runs():
        raise RobenchError(f"results store {store} holds no runs yet; run a protocol first (robench run PROTOCOL "
                           f"--store {store})")
    report = build_report(results, protocols or None, figure_dir)
    text = render(report, fmt, out)
    if out is not None:
        atomic_write(out, text)
    return RenderedReport(text, 2 * sum(len(p.figures) for p in report.protocols), figure_dir)


def report_text(store: Path | str, fmt: str, protocols: list[str], out: Path | None) -> str:
    """:func:`render_report`'s text."""
    return render_report(store, fmt, protocols, out).text
