"""Rendering tables with Jinja2 templates: markdown, HTML, LaTeX and CSV.

Accuracies are printed in percent with two decimals; the best value of each column within a
dataset block is bold (``**x**``, ``<b>``, ``\\textbf``). HTML and CSV also carry each accuracy's
95% Wilson confidence interval and the number of evaluated clips.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timezone
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from robench import __version__
from robench.report.tables import Table, Value

FORMATS = ("markdown", "html", "latex", "csv")
_TEMPLATES = {"markdown": "report.md.j2", "html": "report.html.j2", "latex": "report.tex.j2", "csv": "report.csv.j2"}


def fmt(v: Value | None, digits: int = 2) -> str:
    """A value in percent with ``digits`` decimals, or an en dash when missing."""
    if v is None or v.value is None:
        return "–"
    return f"{v.value:.{digits}f}"


def latex_escape(text: str) -> str:
    repl = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
            "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    return "".join(repl.get(ch, ch) for ch in str(text))


def csv_row(values: list[Any]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(values)
    return buf.getvalue()


def md_escape(text: str) -> str:
    return str(text).replace("|", "\\|")


def _env() -> Environment:
    env = Environment(loader=PackageLoader("robench.report", "templates"), undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False)
    env.filters.update(fmt=fmt, tex=latex_escape, csv_row=csv_row, md=md_escape)
    return env


def render(tables: list[Table], fmt_name: str, extra: dict[str, Any] | None = None) -> str:
    """Render ``tables`` in one of :data:`FORMATS`."""
    if fmt_name not in _TEMPLATES:
        raise ValueError(f"unknown format {fmt_name!r}; choose from {', '.join(FORMATS)}")
    env = _env()
    if fmt_name == "html":
        env.autoescape = True
    template = env.get_template(_TEMPLATES[fmt_name])
    return template.render(tables=tables, version=__version__,
                           generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), **(extra or {}))
