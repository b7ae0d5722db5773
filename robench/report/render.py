"""Building a report from the store and rendering it with Jinja2: markdown, HTML, LaTeX and CSV.

Accuracies are printed in percent with two decimals (tables a defense contributes with the decimals it
sets, e.g. four for AMR weights); the best value of
each column within a dataset block is bold (``**x**``, ``<b>``, ``\\textbf``). Where a protocol
carries the paper's printed values, each entry shows the paper's value and the difference. Markdown
shows each accuracy's 95% Wilson interval compactly after it (whole percent, widened outwards); HTML
and CSV carry the interval with decimals and the number of evaluated clips. Figures
are written as PNG and SVG files; the HTML page embeds them, so it is one self-contained file.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from robench import __version__
from robench.report.budgets import budget_figures, budget_tables
from robench.report.corruptions import corruption_tables
from robench.report.figures import Figure, build_figures
from robench.report.flags import run_flags
from robench.report.metrics import INTERVAL_DECIMALS, interval_text, widen
from robench.report.paper_claims import ClaimResult, check_claims
from robench.report.plausibility import PlausibilityRow, plausibility_rows
from robench.report.tables import Table, Value, build_table, select_runs
from robench.store import ResultsStore

FORMATS = ("markdown", "html", "latex", "csv")
_TEMPLATES = {"markdown": "report.md.j2", "html": "report.html.j2", "latex": "report.tex.j2", "csv": "report.csv.j2"}


@dataclass
class ProtocolReport:
    """Everything rendered for one protocol run."""

    name: str
    description: str
    profile: str | None
    tables: list[Table]
    figures: list[Figure] = field(default_factory=list)
    claims: list[ClaimResult] = field(default_factory=list)
    plausibility: list[PlausibilityRow] = field(default_factory=list)


@dataclass
class Report:
    protocols: list[ProtocolReport]
    store: str
    figure_dir: Path | None = None

    @property
    def tables(self) -> list[Table]:
        return [t for p in self.protocols for t in p.tables]

    @property
    def claims(self) -> list[ClaimResult]:
        return [c for p in self.protocols for c in p.claims]


def build_report(store: ResultsStore, protocols: list[str] | None = None, figure_dir: Path | None = None) -> Report:
    """Tables, figures (written to ``figure_dir`` if given) and claims of the latest run of each protocol."""
    layouts = select_runs(store, protocols)
    models = store.models()
    out = []
    for layout in layouts.values():  # in the order the protocols were first run
        cells = store.cells(layout.cell_ids())
        flags = run_flags(layout, cells)
        tables = [build_table(layout, spec, cells, models, flags) for spec in layout.tables]
        tables += budget_tables(layout, cells) + corruption_tables(layout, cells)
        figures = (build_figures(layout, cells, models, figure_dir) + budget_figures(layout, cells, figure_dir)
                   if figure_dir is not None else [])
        out.append(ProtocolReport(layout.name, layout.description, layout.profile, tables, figures,
                                  check_claims(layout, tables), plausibility_rows(layout, cells)))
    return Report(out, store.location, figure_dir)


# -- filters ---------------------------------------------------------------------------------------

def fmt(v: Value | None, digits: int = 2) -> str:
    """A value with ``digits`` decimals, or an en dash when missing."""
    if v is None or v.value is None:
        return "–"
    return f"{v.value:.{digits}f}"


def fmt_ci(v: Value | None) -> str:
    """An accuracy's 95% interval, compact: `` <sub>88-97</sub>`` with an en dash (percent, widened to whole
    numbers: :func:`~robench.report.metrics.interval_text`), or nothing."""
    if v is None or v.ci is None:
        return ""
    return f" <sub>{interval_text(v.ci[0], v.ci[1])}</sub>"


def fmt_ci_detail(v: Value | None) -> str:
    """An accuracy's 95% interval with one decimal, widened outwards (HTML), or nothing."""
    return interval_text(v.ci[0], v.ci[1], "detail") if v is not None and v.ci is not None else ""


def fmt_ci_bounds(v: Value | None) -> tuple[str, str]:
    """An accuracy's interval bounds with two decimals, widened outwards (CSV), or two empty strings."""
    return widen(v.ci[0], v.ci[1], INTERVAL_DECIMALS["data"]) if v is not None and v.ci is not None else ("", "")


def fmt_paper(v: Value | None, digits: int = 2) -> str:
    return "–" if v is None or v.paper is None else f"{v.paper:.{digits}f}"


def fmt_diff(v: Value | None, digits: int = 2) -> str:
    return "–" if v is None or v.diff is None else f"{v.diff:+.{digits}f}"


def latex_escape(text: str) -> str:
    repl = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
            "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "✓": r"\checkmark{}", "✗": r"$\times$",
            "⚠": r"\textsuperscript{!}"}
    return "".join(repl.get(ch, ch) for ch in str(text))


def csv_row(values: list[Any]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(values)
    return buf.getvalue()


def fmt_num(x: float, digits: int = 2) -> str:
    """A plain number with ``digits`` decimals; an en dash for a missing one (NaN)."""
    return "–" if x != x else f"{x:.{digits}f}"


def fmt_eps(eps: float) -> str:
    """A nominal radius in 255ths, as protocols write it (``8/255``)."""
    return f"{255 * eps:.3g}/255"


def md_escape(text: str) -> str:
    return str(text).replace("|", "\\|")


def _env(autoescape: bool) -> Environment:
    env = Environment(loader=PackageLoader("robench.report", "templates"), undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=autoescape)
    env.filters.update(fmt=fmt, ci=fmt_ci, ci_detail=fmt_ci_detail, ci_bounds=fmt_ci_bounds,
                       paper=fmt_paper, diff=fmt_diff, tex=latex_escape, csv_row=csv_row,
                       md=md_escape, num=fmt_num, eps=fmt_eps)
    return env


def render(report: Report, fmt_name: str, out_path: Path | None = None) -> str:
    """Render ``report`` in one of :data:`FORMATS`; figure links are relative to ``out_path``'s folder."""
    if fmt_name not in _TEMPLATES:
        raise ValueError(f"unknown format {fmt_name!r}; choose from {', '.join(FORMATS)}")
    base = (out_path.parent if out_path is not None else Path.cwd()).resolve()

    def link(path: Path) -> str:
        return Path(os.path.relpath(path.resolve(), base)).as_posix()

    template = _env(fmt_name == "html").get_template(_TEMPLATES[fmt_name])
    return template.render(report=report, version=__version__, link=link,
                           generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
