"""Render a track's records: HTML (one self-contained, sortable, filterable page), markdown, LaTeX, CSV, BibTeX.

Rows come from :func:`board`: verified records ranked by the track's ranking column with paired tests
(:mod:`robench.leaderboard.ranking`), then unverified ones (reported numbers only, unranked). Records
made for another version of the track are left out and named in the notes.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robench.errors import RobenchError
from robench.leaderboard.names import safe_link
from robench.leaderboard.ranking import ALPHA, Ranked, rank
from robench.leaderboard.record import bits_of, columns_of, read_record
from robench.leaderboard.tracks import SCENARIO_LABELS, Track
from robench.report.metrics import INTERVAL_DECIMALS, interval_text, widen

FORMATS = ("html", "markdown", "latex", "csv", "bibtex")
#: the accuracy columns of every format: (record key, header)
COLUMNS = (("clean", "Clean"), ("R", "XR"), ("S", "XS"), ("RS", "XRS"))


@dataclass
class Row:
    """One entry on the board: its record, file and place (``ranked`` is None for unverified entries)."""

    record: dict[str, Any]
    file: Path
    ranked: Ranked | None

    @property
    def entry(self) -> dict[str, Any]:
        return dict(self.record["entry"])

    @property
    def verified(self) -> bool:
        return bool(self.record["status"] == "verified")

    @property
    def flags(self) -> list[dict[str, Any]]:
        """The record's flags, one per distinct code and message (several cells often raise the same one)."""
        seen: set[tuple[str, str]] = set()
        out = []
        for f in self.record["flags"]:
            key = (str(f["code"]), str(f.get("message", "")))
            if key not in seen:
                seen.add(key)
                out.append(f)
        return out

    @property
    def reliance(self) -> dict[str, Any]:
        """The record's reliance on each input (``{rgb, skeleton, clips}``; empty when not measured)."""
        return dict(self.record["results"].get("reliance") or {}) if self.verified else {}

    def value(self, key: str) -> float | None:
        if self.verified:
            cell = self.record["results"].get(key)
            return None if cell is None else float(cell["accuracy"] if isinstance(cell, dict) else cell)
        reported = self.record["reported"].get(key)
        return None if reported is None else float(reported)

    def interval(self, key: str) -> tuple[float, float] | None:
        cell = self.record["results"].get(key) if self.verified else None
        return (float(cell["interval"][0]), float(cell["interval"][1])) if isinstance(cell, dict) else None


@dataclass
class Board:
    """A track's rows in display order, and notes (left-out records, how ranks were decided)."""

    track: Track
    rows: list[Row]
    notes: list[str] = field(default_factory=list)


def board(track: Track, folder: Path) -> Board:
    """Read every record under ``folder`` (``leaderboard/<track>/*.json``) and rank the verified ones."""
    rows: list[Row] = []
    notes: list[str] = []
    for path in sorted(folder.glob("*.json")):
        record = read_record(path)
        t = record["track"]
        if t["name"] != track.name or t["digest"] != track.digest:
            notes.append(f"{path.name} was made for track {t['name']} v{t['version']}, not {track.name} "
                         f"v{track.version}: left out (run robench leaderboard add again)")
            continue
        rows.append(Row(record, path, None))
    verified = [r for r in rows if r.verified]
    base = next((r for r in verified if r.entry["id"] == track.baseline), None)
    for r in verified:  # RI against the track's baseline as it stands now, whatever order entries were added in
        res = r.record["results"]
        res["ri"] = None if base is None or res.get("avg") is None else (res["clean"]["accuracy"] + res["avg"]) - (
            base.record["results"]["clean"]["accuracy"] + base.record["results"]["avg"])
    clips = {json.dumps(r.record["track"]["clips"], sort_keys=True) for r in verified}
    if len(clips) > 1:
        raise RobenchError(f"records under {folder} evaluated different clips ({len(clips)} clip lists); "
                           "re-run robench leaderboard add for the stale ones")
    by_key = {r.entry["id"]: r for r in verified}
    ranked = rank({k: float(r.record["results"]["worst"]["accuracy"]) for k, r in by_key.items()},
                  {k: columns_of(*bits_of(r.record, str(r.file))[:2])[r.record["track"]["rank_by"]]
                   for k, r in by_key.items()})
    ordered = [Row(by_key[x.key].record, by_key[x.key].file, x) for x in ranked]
    unverified = sorted((r for r in rows if not r.verified), key=lambda r: -(r.value(track.rank_by) or -1))
    label = SCENARIO_LABELS.get(track.rank_by, track.rank_by)
    notes.insert(0, f"Ranked by the worst case on {label} (a clip counts only if no attack of the track fooled it). "
                    f"Neighbours are compared clip by clip with McNemar's exact test; '=' marks ranks that "
                    f"the test cannot separate at {int(100 * ALPHA)}%.")
    if unverified:
        notes.append("Unverified entries show the numbers their authors reported, not measured by robench; they "
                     "are not ranked.")
    return Board(track, ordered + unverified, notes)


def _num(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _flag_mark(row: Row) -> str:
    return " ⚠" if row.flags else ""


def _reported(row: Row) -> str:
    names = {"clean": "clean", "R": "XR", "S": "XS", "RS": "XRS", "avg": "Avg", "ri": "RI", "worst": "worst case"}
    return ", ".join(f"{names.get(k, k)} {v:.2f}" for k, v in row.record["reported"].items())


def _rank(row: Row) -> str:
    return row.ranked.label if row.ranked else "unverified"


def _reliance(row: Row) -> str:
    """The share of predictions that change when the RGB / the skeleton is swapped between clips."""
    rel = row.reliance
    if "rgb" not in rel or "skeleton" not in rel:
        return "–"
    return f"{100 * float(rel['rgb']):.0f}% / {100 * float(rel['skeleton']):.0f}%"


def _checked(row: Row) -> str:
    """When the record was evaluated and, if so, re-verified, and by which robench version."""
    if not row.verified:
        return "reported only"
    prov, ver = row.record["provenance"], row.record["verification"]
    said = f"evaluated {str(prov.get('evaluated_at', '?'))[:10]} (robench {prov.get('robench', '?')})"
    if ver.get("verified_at"):
        said += f"; verified {str(ver['verified_at'])[:10]} (robench {ver.get('robench', '?')})"
    return said


_MD = {"\\": "\\\\", "|": "\\|", "*": "\\*", "_": "\\_", "`": "\\`", "[": "\\[", "]": "\\]", "#": "\\#",
       "<": "&lt;", ">": "&gt;", "&": "&amp;"}


def _md(text: object) -> str:
    """``text`` as literal markdown: markup characters escaped, HTML neutralised, on one line."""
    flat = " ".join(str(text).split())
    return "".join(_MD.get(ch, ch) for ch in flat)


def markdown(b: Board) -> str:
    t = b.track
    lines = [f"# {t.title}", "", f"Track `{t.name}` v{t.version} ({t.digest[:19]}…). {t.description}", "",
             "| Rank | Model | Defense | " + " | ".join(h for _, h in COLUMNS) + " | Avg | RI | Extra data | Passes "
             "| Reliance R / S | Checked |",
             "|---|---|---|" + "---:|" * (len(COLUMNS) + 2) + "---|---:|---:|---|"]
    for row in b.rows:
        e = row.entry
        link = safe_link(e.get("paper"))
        name = f"[{_md(e['name'])}]({link})" if link else _md(e["name"])
        cells = []
        for key, _ in COLUMNS:
            iv = row.interval(key)
            cells.append(_num(row.value(key)) + (f" <sub>{interval_text(*iv)}</sub>" if iv else ""))
        rank_text = _rank(row) if row.ranked else "*unverified*"
        lines.append(f"| {rank_text} | {name}{_flag_mark(row)} | {_md(e['defense'])} | " + " | ".join(cells)
                     + f" | {_num(row.value('avg'))} | {_num(row.value('ri'))} | {_md(e.get('extra_data') or 'none')}"
                     f" | {int(e.get('forward_passes', 1))} | {_reliance(row)} | {_md(_checked(row))} |")
    lines.append("")
    lines += [f"- {_md(n)}" for n in b.notes]
    lines.append("- Reliance R / S: the share of the first evaluated batch's predictions that change when the RGB / "
                 "the skeleton of each clip is swapped with another clip's; 0% means the model ignores that input "
                 "(docs/flags.md#ignores-input).")
    footnotes: dict[str, list[str]] = {}
    for row in b.rows:
        if row.entry.get("footnote"):
            footnotes.setdefault(row.entry["footnote"], []).append(row.entry["name"])
    lines += [f"- {_md(', '.join(names))}: {_md(text)}" for text, names in footnotes.items()]
    for row in b.rows:
        if row.verified and row.record["reported"]:
            lines.append(f"- {_md(row.entry['name'])}: reported by its authors {_reported(row)}; measured above")
    for row in b.rows:
        for f in row.flags:
            lines.append(f"- ⚠ {_md(row.entry['name'])}: {_md(f['code'])}: {_md(f['message'])} "
                         f"(docs/flags.md#{_md(f['code'])})")
    return "\n".join(lines) + "\n"


def _cell(value: object) -> object:
    """A CSV field that a spreadsheet will not run: text starting with =, +, -, @ or a tab gets a leading quote."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r") and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


_NUMBER = re.compile(r"-?\d+(\.\d+)?")


def _reliance_fields(row: Row) -> list[str]:
    return [f"{float(row.reliance[m]):.4f}" if m in row.reliance else "" for m in ("rgb", "skeleton")]


def csv_text(b: Board) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["rank", "id", "name", "status", "defense", "architecture", *[k for k, _ in COLUMNS],
                *[f"{k}_lo" for k, _ in COLUMNS], *[f"{k}_hi" for k, _ in COLUMNS], "avg", "ri", "n",
                "extra_data", "forward_passes", "reliance_rgb", "reliance_skeleton", "flags", "paper"])
    for row in b.rows:
        e = row.entry
        ivs = [row.interval(k) for k, _ in COLUMNS]
        n = row.record["results"].get("clean", {}).get("n", "") if row.verified else ""
        fields = [_rank(row), e["id"], e["name"], row.record["status"], e["defense"], e["architecture"],
                  *[_num(row.value(k)) if row.value(k) is not None else "" for k, _ in COLUMNS],
                  *[widen(*iv, INTERVAL_DECIMALS["data"])[0] if iv else "" for iv in ivs],
                  *[widen(*iv, INTERVAL_DECIMALS["data"])[1] if iv else "" for iv in ivs],
                  _num(row.value("avg")) if row.value("avg") is not None else "",
                  _num(row.value("ri")) if row.value("ri") is not None else "", n, e.get("extra_data") or "none",
                  e.get("forward_passes", 1), *_reliance_fields(row), " ".join(f["code"] for f in row.flags),
                  e.get("paper") or ""]
        w.writerow([_cell(x) for x in fields])
    return buf.getvalue()


_TEX = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
        "^": r"\textasciicircum{}", "\\": r"\textbackslash{}"}


def _tex(text: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in text)


def latex(b: Board) -> str:
    head = " & ".join(["Rank", "Model", "Defense", *[h for _, h in COLUMNS], "Avg", "RI"])
    lines = [r"\begin{table}[t]", r"\centering", f"\\caption{{{_tex(b.track.title)} (robench track "
             f"{_tex(b.track.name)} v{b.track.version})}}", r"\begin{tabular}{lll" + "r" * (len(COLUMNS) + 2) + "}",
             r"\toprule", head + r" \\", r"\midrule"]
    for row in b.rows:
        e = row.entry
        mark = r"\textsuperscript{!}" if row.flags else ""
        rank_text = _rank(row) if row.ranked else r"\textit{unverified}"
        vals = [_num(row.value(k)) for k, _ in COLUMNS] + [_num(row.value("avg")), _num(row.value("ri"))]
        lines.append(" & ".join([rank_text, _tex(e["name"]) + mark, _tex(e["defense"]), *vals]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def _bib(text: object) -> str:
    """``text`` safe inside a BibTeX brace group: braces and backslashes escaped, on one line."""
    escapes = {"\\": "\\textbackslash{}", "{": "\\{", "}": "\\}"}
    return "".join(escapes.get(ch, ch) for ch in " ".join(str(text).split()))


def bibtex(b: Board) -> str:
    out = []
    for row in b.rows:
        e = row.entry
        key = re.sub(r"[^A-Za-z0-9]", "", e["id"]) or "entry"
        fields = [f"  title = {{{_bib(e['name'])}}}", f"  author = {{{_bib(' and '.join(e['authors']))}}}"]
        if e.get("venue"):
            fields.append(f"  note = {{{_bib(e['venue'])}}}")
        if link := safe_link(e.get("paper")):
            fields.append(f"  url = {{{_bib(link)}}}")
        out.append(f"@misc{{{key},\n" + ",\n".join(fields) + "\n}")
    return "\n\n".join(out) + ("\n" if out else "")


_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1d1d1f;max-width:1200px}
table{border-collapse:collapse;width:100%;font-size:14px}
th,td{padding:6px 8px;border-bottom:1px solid #ddd;text-align:left}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
th{cursor:pointer;user-select:none;background:#f5f5f7;position:sticky;top:0}
th[aria-sort=ascending]::after{content:" \\25B2"} th[aria-sort=descending]::after{content:" \\25BC"}
.iv{color:#888;font-size:11px;margin-left:3px}
.unverified{color:#777;font-style:italic}
.flag{color:#b35c00;text-decoration:none}
#filter{padding:6px;width:20rem;margin:0.5rem 0 1rem 0}
.notes{font-size:13px;color:#444}
"""

_SCRIPT = """
(function(){
  const table=document.getElementById('board');
  const body=table.tBodies[0];
  const heads=Array.from(table.tHead.rows[0].cells);
  heads.forEach(function(th,col){
    th.addEventListener('click',function(){
      const asc=th.getAttribute('aria-sort')!=='ascending';
      heads.forEach(function(h){h.removeAttribute('aria-sort');});
      th.setAttribute('aria-sort',asc?'ascending':'descending');
      const num=th.classList.contains('num');
      const rows=Array.from(body.rows);
      rows.sort(function(a,b){
        const x=a.cells[col].dataset.sort, y=b.cells[col].dataset.sort;
        if(num){
          const p=x===''?-Infinity:parseFloat(x), q=y===''?-Infinity:parseFloat(y);
          return asc?p-q:q-p;
        }
        return asc?x.localeCompare(y):y.localeCompare(x);
      });
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
  document.getElementById('filter').addEventListener('input',function(ev){
    const q=ev.target.value.toLowerCase();
    Array.from(body.rows).forEach(function(r){
      r.hidden=q!=='' && r.dataset.search.indexOf(q)<0;
    });
  });
})();
"""


def page(b: Board, flags_doc: str = "../../docs/flags.md") -> str:
    """One self-contained HTML page (no external files): the table sorts by clicking a header and filters
    by typing; intervals show inline and on hover; each entry links to its record."""
    t = b.track
    e_ = html.escape
    head = ['<th data-col="rank" class="num">Rank</th>', '<th data-col="model">Model</th>',
            '<th data-col="defense">Defense</th>']
    head += [f'<th data-col="{k}" class="num">{h}</th>' for k, h in COLUMNS]
    head += ['<th data-col="avg" class="num">Avg</th>', '<th data-col="ri" class="num">RI</th>',
             '<th data-col="extra">Extra data</th>', '<th data-col="passes" class="num">Passes</th>',
             '<th data-col="reliance" class="num" title="share of predictions that change when the RGB / the '
             'skeleton is swapped between clips">Reliance R / S</th>', '<th data-col="checked">Checked</th>']
    body = []
    for row in b.rows:
        e = row.entry
        name = e_(e["name"])
        if link := safe_link(e.get("paper")):  # http(s) only: a javascript: or data: link stays text
            name = f'<a href="{e_(link)}" rel="noopener noreferrer">{name}</a>'
        name += f' <a class="record" href="{e_(row.file.name)}">record</a>'
        for f in row.flags:
            name += (f' <a class="flag" title="{e_(f["code"])}: {e_(f["message"])}" '
                     f'href="{e_(flags_doc)}#{e_(f["code"])}">&#9888;</a>')
        if e.get("footnote"):
            name += f'<br><small>{e_(e["footnote"])}</small>'
        rank_sort = str(row.ranked.rank) if row.ranked else "9999"
        cells = [f'<td class="num" data-sort="{rank_sort}">{e_(_rank(row))}</td>',
                 f'<td data-sort="{e_(e["name"].lower())}">{name}</td>',
                 f'<td data-sort="{e_(e["defense"].lower())}">{e_(e["defense"])}</td>']
        for key in [k for k, _ in COLUMNS] + ["avg", "ri"]:
            v = row.value(key)
            iv = row.interval(key)
            said = row.record["reported"].get(key) if row.verified else None
            extra = f"; reported {said:.2f}" if said is not None else ""
            title = f' title="95% interval {interval_text(*iv, "detail")}{extra}"' if iv else ""
            inline = f'<span class="iv">{interval_text(*iv)}</span>' if iv else ""
            sort = "" if v is None else f"{v:.4f}"
            cells.append(f'<td class="num" data-sort="{sort}"{title}>{_num(v)}{inline}</td>')
        extra = e_(str(e.get("extra_data") or "none"))
        passes = int(e.get("forward_passes", 1))
        cells.append(f'<td data-sort="{extra}">{extra}</td>')
        cells.append(f'<td class="num" data-sort="{passes}">{passes}</td>')
        cells.append(f'<td class="num" data-sort="{float(row.reliance.get("rgb", -1)):.4f}">{e_(_reliance(row))}</td>')
        cells.append(f'<td data-sort="{e_(_checked(row))}"><small>{e_(_checked(row))}</small></td>')
        search = e_(" ".join([e["name"], e["defense"], e["architecture"], " ".join(e["authors"])]).lower())
        cls = "" if row.verified else ' class="unverified"'
        body.append(f'<tr data-id="{e_(e["id"])}" data-search="{search}"{cls}>' + "".join(cells) + "</tr>")
    notes = "".join(f"<li>{e_(n)}</li>" for n in b.notes)
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{e_(t.title)}</title>'
            f"<style>{_STYLE}</style></head><body>\n<h1>{e_(t.title)}</h1>\n"
            f"<p>Track <code>{e_(t.name)}</code> v{t.version} (<code>{e_(t.digest[:19])}…</code>). "
            f"{e_(t.description)}</p>\n"
            '<input id="filter" type="search" placeholder="Filter by model, defense or author" '
            'aria-label="filter">\n'
            f'<table id="board"><thead><tr>{"".join(head)}</tr></thead><tbody>\n' + "\n".join(body)
            + f'\n</tbody></table>\n<ul class="notes">{notes}</ul>\n<script>{_SCRIPT}</script>\n</body></html>\n')


def render(b: Board, fmt: str) -> str:
    """The board in one of :data:`FORMATS`."""
    if fmt not in FORMATS:
        raise RobenchError(f"leaderboard render --format {fmt}: allowed: {', '.join(FORMATS)}")
    return {"html": page, "markdown": markdown, "latex": latex, "csv": csv_text, "bibtex": bibtex}[fmt](b)
