"""Render a track's records: HTML (one self-contained, sortable, filterable page), markdown, LaTeX, CSV, BibTeX.

The HTML page is rendered from Jinja2 templates (``robench/leaderboard/templates``: ``board.html.j2``, the table in
``_board.html.j2``, its style and script in ``board.css`` and ``board.js``), which the static site of every track
(:mod:`robench.leaderboard.site`) shares.

Rows come from :func:`board`: reliable verified records ranked by the track's ranking column with paired
tests (:mod:`robench.leaderboard.ranking`), then verified records whose sanity flags doubt their numbers
(listed without a rank, whatever their numbers), then unverified ones (reported numbers only, unranked).
Records made for another version of the track are left out and named in the notes.

A corruption track's board has other columns: Clean, one per family of corruptions and Mean (the accuracy
over every corruption and severity), ranked by Mean; neighbours are compared on the pooled (clip,
corruption, severity) outcomes (:func:`~robench.leaderboard.record.pooled`), and the notes say that these
are not independent draws. Its CSV adds a column per corruption. An attack track under the plausible-skeleton
threat model gets a note stating the limits.

Every field a submitter wrote (names, authors, descriptions, venues, footnotes, links) is escaped for the
format it is written in: HTML-escaped in the page, markdown and HTML characters escaped (table pipes
included) in markdown, LaTeX and BibTeX specials escaped, and a CSV cell that a spreadsheet would run as a
formula (``=``, ``+``, ``-``, ``@``) starts with a quote. Links are http(s) only.
"""

from __future__ import annotations

import csv
import functools
import html
import io
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from robench.errors import RobenchError
from robench.leaderboard.challenged import challenge_notes, lowered
from robench.leaderboard.names import safe_link
from robench.leaderboard.ranking import ALPHA, Ranked, doubtful, rank
from robench.leaderboard.record import TRANSFER_FILE, ranking_of, read_record, record_files, summary
from robench.leaderboard.tracks import CORRUPTIONS, SCENARIO_LABELS, Track
from robench.leaderboard.transfer import (
    Lowering,
    Section,
    attack_label,
    current_models,
    lowering_notes,
    lowerings,
    markdown_section,
    read_transfer,
    section,
    transfer_min,
)
from robench.report.metrics import INTERVAL_DECIMALS, avg, interval_text, widen

FORMATS = ("html", "markdown", "latex", "csv", "bibtex")
#: the accuracy columns of every format: (record key, header)
COLUMNS = (("clean", "Clean"), ("R", "XR"), ("S", "XS"), ("RS", "XRS"))


@dataclass
class Row:
    """One entry on the board: its record, file and place (``ranked`` is None for unverified entries and for
    flagged ones, whose numbers a sanity check doubts)."""

    record: dict[str, Any]
    file: Path
    ranked: Ranked | None
    #: the columns other entries' adversarial clips lowered (black-box transfer), by scenario; its ``results`` are
    #: then the lowered ones (in memory: the sealed record on disk is the entry's own evaluation)
    transfer: dict[str, Lowering] = field(default_factory=dict)
    #: the lowest accuracy (%) under another entry's adversarial clips on the ranking scenario (black-box transfer)
    transfer_low: float | None = None

    @property
    def entry(self) -> dict[str, Any]:
        return dict(self.record["entry"])

    @property
    def verified(self) -> bool:
        return bool(self.record["status"] == "verified")

    @property
    def flags(self) -> list[dict[str, Any]]:
        """The record's flags, one per code (a record holds one per cell that raised it): ``{code, message,
        cells}``, the distinct messages joined, and the cells it concerns (``PGD-20 on XRS``; empty for records
        that do not name them)."""
        grouped: dict[str, dict[str, list[str]]] = {}
        for f in self.record["flags"]:
            g = grouped.setdefault(str(f["code"]), {"messages": [], "cells": []})
            for key, value in (("messages", f.get("message")), ("cells", f.get("where"))):
                if value and str(value) not in g[key]:
                    g[key].append(str(value))
        return [{"code": code, "message": "; ".join(g["messages"]), "cells": g["cells"]} for code, g in grouped.items()]

    @property
    def doubtful(self) -> list[str]:
        """The codes of the flags that doubt the record's numbers (:func:`~robench.leaderboard.ranking.doubtful`):
        a verified entry with any is listed without a rank."""
        return doubtful(self.record["flags"]) if self.verified else []

    @property
    def reliance(self) -> dict[str, Any]:
        """The record's reliance on each input (``{rgb, skeleton, clips}``; empty when not measured)."""
        return dict(self.record["results"].get("reliance") or {}) if self.verified else {}

    @property
    def replaced(self) -> dict[str, float]:
        """The accuracy (%) with each input replaced by another action's clip's (``{rgb, skeleton}``:
        :mod:`robench.leaderboard.reliance`); empty when not measured."""
        found = self.record["results"].get("replaced") or {} if self.verified else {}
        return {m: float(found[m]["accuracy"]) for m in ("rgb", "skeleton") if isinstance(found.get(m), dict)}

    def value(self, key: str) -> float | None:
        """A column's number (percent): a results key, ``family:<family>`` or ``corruption:<name>`` (corruption
        tracks), ``transfer`` (:attr:`transfer_low`); an unverified entry's reported number."""
        if key == "transfer":
            return self.transfer_low
        if self.verified:
            kind, _, name = key.partition(":")
            if kind in ("family", "corruption") and name:
                cell = (self.record["results"].get("families" if kind == "family" else "corruptions") or {}).get(name)
            else:
                cell = self.record["results"].get(key)
            return None if cell is None else float(cell["accuracy"] if isinstance(cell, dict) else cell)
        reported = self.record["reported"].get(key)
        return None if reported is None else float(reported)

    def interval(self, key: str) -> tuple[float, float] | None:
        cell = self.record["results"].get(key) if self.verified else None
        if not isinstance(cell, dict) or "interval" not in cell:
            return None  # a number without one (Avg, RI, a family's mean, a corruption track's Mean)
        return float(cell["interval"][0]), float(cell["interval"][1])


@dataclass
class Board:
    """A track's rows in display order, and notes (left-out records, how ranks were decided)."""

    track: Track
    rows: list[Row]
    notes: list[str] = field(default_factory=list)
    #: the transfer matrix's section, when a transfer artefact lies beside the records
    transfer: Section | None = None


def board(track: Track, folder: Path) -> Board:
    """Read every record under ``folder`` (``leaderboard/<track>/*.json``) and rank the verified ones."""
    rows: list[Row] = []
    notes: list[str] = []
    for path in record_files(folder):
        record = read_record(path)
        t = record["track"]
        if t["name"] != track.name or t["digest"] != track.digest:
            notes.append(f"{path.name} was made for track {t['name']} v{t['version']}, not {track.name} "
                         f"v{track.version}: left out (run robench leaderboard add again)")
            continue
        rows.append(Row(record, path, None))
    verified = [r for r in rows if r.verified]
    # challenges' notes quote the numbers challenges left: taken before transfer lowers them further
    challenged = {id(r.record): challenge_notes([r.record]) for r in verified}
    transfer = read_transfer(folder / TRANSFER_FILE) \
        if track.kind != CORRUPTIONS and (folder / TRANSFER_FILE).is_file() else None
    transferred: list[str] = []
    if transfer is not None and transfer["track"]["digest"] != track.digest:
        notes.append(f"{TRANSFER_FILE} was made for track {transfer['track']['name']} "
                     f"v{transfer['track'].get('version', '?')}, not {track.name} v{track.version}: left out (run "
                     "robench leaderboard transfer again)")
        transfer = None
    if transfer is not None:
        attack_records = {str(r.entry["id"]): r.record for r in verified}
        lowered_by = lowerings(transfer, attack_records)
        usable, _ = current_models(transfer, attack_records)
        lows = transfer_min(transfer, track.rank_by, usable) if track.rank_by in transfer["scenarios"] else {}
        for r in verified:
            r.transfer = lowered_by.get(str(r.entry["id"]), {})
            low = lows.get(str(r.entry["id"]))
            r.transfer_low = None if low is None else low[0]
            _apply_transfer(r, track.rank_by)
        transferred = [f"Transfer: the lowest accuracy on {SCENARIO_LABELS.get(track.rank_by, track.rank_by)} under "
                       f"another entry's {attack_label(transfer)} adversarial clips (black-box; the matrix is below). "
                       "A clip that another entry's adversarial version fools is not robust: it counts in the worst "
                       "case like the track's own attacks."]
        transferred += lowering_notes(transfer, attack_records, lowered_by)
    base = next((r for r in verified if r.entry["id"] == track.baseline), None)
    for r in verified if track.kind != CORRUPTIONS else []:  # RI against the track's baseline as it stands now
        res = r.record["results"]
        res["ri"] = None if base is None or res.get("avg") is None else (res["clean"]["accuracy"] + res["avg"]) - (
            base.record["results"]["clean"]["accuracy"] + base.record["results"]["avg"])
    clips = {json.dumps(r.record["track"]["clips"], sort_keys=True) for r in verified}
    if len(clips) > 1:
        raise RobenchError(f"records under {folder} evaluated different clips ({len(clips)} clip lists); "
                           "re-run robench leaderboard add for the stale ones")
    by_key = {r.entry["id"]: r for r in verified if not r.doubtful}
    scored = {k: (r.transfer[track.rank_by].after, r.transfer[track.rank_by].bits) if track.rank_by in r.transfer
              else ranking_of(r.record, str(r.file)) for k, r in by_key.items()}
    ranked = rank({k: score for k, (score, _) in scored.items()}, {k: bits for k, (_, bits) in scored.items()})
    ordered = [Row(by_key[x.key].record, by_key[x.key].file, x, by_key[x.key].transfer, by_key[x.key].transfer_low)
               for x in ranked]
    flagged = sorted((r for r in verified if r.doubtful),
                     key=lambda r: (-(r.value(rank_key(track)) or 0.0), str(r.entry["id"])))
    unverified = sorted((r for r in rows if not r.verified), key=lambda r: -(r.value(rank_key(track)) or -1))
    notes[:0] = _ranking_notes(track)
    if flagged:
        said = ", ".join(f"{r.entry['name']} ({', '.join(r.doubtful)})" for r in flagged)
        notes.append(f"{NOT_RANKED.capitalize()}: {said}. A sanity check says their numbers may overstate their "
                     "robustness (⚠ below, docs/flags.md), so they are listed after the ranked entries, without a "
                     "rank, whatever their numbers.")
    if unverified:
        notes.append("Unverified entries show the numbers their authors reported, not measured by robench; they "
                     "are not ranked.")
    notes += [n for r in ordered + flagged for n in challenged[id(r.record)]]  # numbers external challenges lowered
    notes += transferred
    return Board(track, ordered + flagged + unverified, notes, section(track, transfer) if transfer else None)


def _apply_transfer(row: Row, rank_by: str) -> None:
    """Put the columns transfer lowered into ``row``'s results (in memory), with the worst case and Avg they
    change; RI follows from them when the board computes it."""
    res = row.record["results"]
    for scenario, low in row.transfer.items():
        res[scenario] = summary(low.bits)
        if scenario == rank_by:
            res["worst"] = summary(low.bits)
    if row.transfer and all(res.get(s) is not None for s in ("R", "S", "RS")):
        res["avg"] = avg(*(float(res[s]["accuracy"]) for s in ("R", "S", "RS")))


def rank_key(track: Track) -> str:
    """The results key a track ranks by: its ``rank_by`` scenario, or ``mean`` for a corruption track."""
    return "mean" if track.kind == CORRUPTIONS else track.rank_by


def _percent(x: float) -> str:
    return f"{100 * x:.3g}%"


def _ranking_notes(track: Track) -> list[str]:
    """The notes that say how a track's board is ranked (and, for a plausible or corruption track, what it
    measures)."""
    alpha = f"{int(100 * ALPHA)}%"
    if track.kind != CORRUPTIONS:
        label = SCENARIO_LABELS.get(track.rank_by, track.rank_by)
        notes = [f"Ranked by the worst case on {label} (a clip counts only if no attack of the track fooled it). "
                 f"Neighbours are compared clip by clip with McNemar's exact test; '=' marks ranks that "
                 f"the test cannot separate at {alpha}."]
        if (limits := track.plausible) is not None:
            notes.append(f"Plausible skeletons: every attack on the skeleton (XS, XRS) keeps bone lengths within "
                         f"{_percent(limits['bone'])} of the clean clip's, joint angles within "
                         f"{_percent(limits['angle'])}, and each joint's velocity and acceleration changed by at "
                         f"most {_percent(limits['velocity'])} of the clean clip's mean speed and "
                         f"{_percent(limits['acceleration'])} of its mean acceleration (threat.skeleton.plausible). "
                         "XR attacks the RGB alone, as without the limits.")
        return notes
    severities = ", ".join(map(str, track.severities))
    info = track.corruptions
    one_level = [n for n, i in info.items() if not i.graded]
    families = "; ".join(f"{f.capitalize()}: {', '.join(n for n, i in info.items() if i.family == f)}"
                         for f in track.families)
    return [
        f"Ranked by Mean: the accuracy over every corruption at every severity ({severities}), the mean of the "
        "per-corruption accuracies; a corruption with one level (" + ", ".join(one_level) + ") is evaluated once "
        "and counted at every severity. Neighbours are compared with McNemar's exact test on the pooled outcomes "
        "of every (clip, corruption, severity); these are not independent draws (each clip is seen under every "
        "corruption and severity, and a one-level corruption's outcome is counted once per severity), so the "
        f"test is optimistic: '=' marks ranks it cannot separate at {alpha}, and a separation is weaker evidence "
        "than on an attack track.",
        f"Family columns: the mean accuracy of the family's corruptions, each averaged over its severities ("
        f"{families}); docs/corruptions.md gives every corruption's levels. Clean: with its 95% Wilson interval; "
        "Mean has none, its outcomes not being independent.",
    ]


def _num(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _flag_mark(row: Row) -> str:
    return " ⚠" if row.flags else ""


def _reported(row: Row) -> str:
    names = {"clean": "clean", "R": "XR", "S": "XS", "RS": "XRS", "avg": "Avg", "ri": "RI", "worst": "worst case",
             "mean": "Mean"}
    return ", ".join(f"{names.get(k, k)} {_num(v) if isinstance(v, (int, float)) else v}"
                     for k, v in row.record["reported"].items())


#: the rank column of a verified entry whose flags doubt its numbers
NOT_RANKED = "not ranked: flagged"


def _rank(row: Row) -> str:
    return row.ranked.label if row.ranked else NOT_RANKED if row.verified else "unverified"


def _reliance(row: Row) -> str:
    """The accuracy with the RGB / the skeleton replaced by another action's clip's (``91 / 12``)."""
    rep = row.replaced
    if "rgb" not in rep or "skeleton" not in rep:
        return "–"
    return f"{rep['rgb']:.0f} / {rep['skeleton']:.0f}"


#: what the *Without R / S* column shows
RELIANCE_NOTE = ("Without R / S: the accuracy (%) when the RGB / the skeleton of each evaluated clip is replaced by "
                 "that of a clip of another action (the next such clip in the track's order); near the clean accuracy, "
                 "the model ignores that input, near 0 it reads that input alone (docs/leaderboard.md#reliance).")


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


def _md_url(link: str) -> str:
    """An http(s) link (:func:`~robench.leaderboard.names.safe_link`) safe as a markdown link target inside a table:
    the characters that could end the target or the table cell (``( ) [ ] | \\``) percent-encoded."""
    return "".join(f"%{ord(ch):02X}" if ch in "()[]|\\" else ch for ch in link)


def corruption_columns(track: Track) -> list[tuple[str, str]]:
    """A corruption track's accuracy columns: (row key, header): Clean, each family, Mean."""
    return [("clean", "Clean"), *[(f"family:{f}", f.capitalize()) for f in track.families], ("mean", "Mean")]


def _md_name(row: Row) -> str:
    e = row.entry
    link = safe_link(e.get("paper"))
    return (f"[{_md(e['name'])}]({_md_url(link)})" if link else _md(e["name"])) + _flag_mark(row)


def _md_interval(row: Row, key: str) -> str:
    iv = row.interval(key)
    return _lowered(row, key) + _num(row.value(key)) + (f" <sub>{interval_text(*iv)}</sub>" if iv else "")


def before(row: Row, key: str) -> float | None:
    """What column ``key`` (``R``, ``S``, ``RS`` or ``worst``) of ``row`` was under the track's attacks alone, when
    accepted challenges (:func:`~robench.leaderboard.challenged.lowered`) or other entries' transferred adversarial
    clips lowered it; else None."""
    if not row.verified:
        return None
    challenged = lowered(row.record, key)
    if challenged is not None:
        return challenged
    low = row.transfer.get(str(row.record["track"]["rank_by"]) if key == "worst" else key)
    return None if low is None else low.before


def _lowered(row: Row, key: str) -> str:
    """``"35.00 → "`` before a number that challenges or transfer lowered (:func:`before`), else ``""``."""
    was = before(row, key)
    return "" if was is None else f"{_num(was)} → "


def markdown(b: Board) -> str:
    """The board as Markdown (with the transfer section, if any, at the end)."""
    return _markdown_table(b) + (markdown_section(b.transfer) if b.transfer is not None else "")


def _markdown_table(b: Board) -> str:
    t = b.track
    # (a track's name is a checked name: letters, digits, '_', '.', '-', shown as code)
    lines = [f"# {_md(t.title)}", "", f"Track `{t.name}` v{t.version} ({t.digest[:19]}…). {_md(t.description)}", ""]
    if t.kind == CORRUPTIONS:
        columns = corruption_columns(t)
        lines += ["| Rank | Model | Defense | " + " | ".join(h for _, h in columns)
                  + " | Extra data | Passes | Checked |", "|---|---|---|" + "---:|" * len(columns) + "---|---:|---|"]
        for row in b.rows:
            e = row.entry
            rank_text = _rank(row) if row.ranked else f"*{_rank(row)}*"
            lines.append(f"| {rank_text} | {_md_name(row)} | {_md(e['defense'])} | "
                         + " | ".join(_md_interval(row, key) for key, _ in columns)
                         + f" | {_md(e.get('extra_data') or 'none')} | {int(e.get('forward_passes', 1))} | "
                         f"{_md(_checked(row))} |")
        lines.append("")
        lines += [f"- {_md(n)}" for n in b.notes]
        return "\n".join(lines + _md_footnotes(b)) + "\n"
    extra = [("avg", "Avg"), ("ri", "RI"), *([("transfer", "Transfer")] if b.transfer is not None else [])]
    lines += ["| Rank | Model | Defense | " + " | ".join(h for _, h in [*COLUMNS, *extra]) + " | Extra data | Passes "
              "| Without R / S | Checked |",
              "|---|---|---|" + "---:|" * (len(COLUMNS) + len(extra)) + "---|---:|---:|---|"]
    for row in b.rows:
        e = row.entry
        cells = [_md_interval(row, key) for key, _ in COLUMNS] + [_num(row.value(key)) for key, _ in extra]
        rank_text = _rank(row) if row.ranked else f"*{_rank(row)}*"
        lines.append(f"| {rank_text} | {_md_name(row)} | {_md(e['defense'])} | " + " | ".join(cells)
                     + f" | {_md(e.get('extra_data') or 'none')}"
                     f" | {int(e.get('forward_passes', 1))} | {_reliance(row)} | {_md(_checked(row))} |")
    lines.append("")
    lines += [f"- {_md(n)}" for n in b.notes]
    lines.append(f"- {RELIANCE_NOTE}")
    return "\n".join(lines + _md_footnotes(b)) + "\n"


def _md_footnotes(b: Board) -> list[str]:
    """The lines below a markdown table's notes: footnotes, reported numbers, flags."""
    lines = []
    footnotes: dict[str, list[str]] = {}
    for row in b.rows:
        if row.entry.get("footnote"):
            footnotes.setdefault(row.entry["footnote"], []).append(row.entry["name"])
    lines += [f"- {_md(', '.join(names))}: {_md(text)}" for text, names in footnotes.items()]
    for row in b.rows:
        if row.verified and row.record["reported"]:
            lines.append(f"- {_md(row.entry['name'])}: reported by its authors {_md(_reported(row))}; measured above")
    for row in b.rows:
        for f in row.flags:
            concerns = f" ({_md(', '.join(f['cells']))})" if f["cells"] else ""
            lines.append(f"- ⚠ {_md(row.entry['name'])}: {_md(f['code'])}{concerns}: {_md(f['message'])} "
                         f"(docs/flags.md#{_md(f['code'])})")
    return lines


def _cell(value: object) -> object:
    """A CSV field that a spreadsheet will not run: text starting with =, +, -, @ or a tab gets a leading quote."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r") and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


_NUMBER = re.compile(r"-?\d+(\.\d+)?")


def _reliance_fields(row: Row) -> list[str]:
    return [*(f"{float(row.reliance[m]):.4f}" if m in row.reliance else "" for m in ("rgb", "skeleton")),
            *(_num(row.replaced[m]) if m in row.replaced else "" for m in ("rgb", "skeleton"))]


def csv_text(b: Board) -> str:
    if b.track.kind == CORRUPTIONS:
        return _corruption_csv(b)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["rank", "id", "name", "status", "defense", "architecture", *[k for k, _ in COLUMNS],
                *[f"{k}_lo" for k, _ in COLUMNS], *[f"{k}_hi" for k, _ in COLUMNS], "avg", "ri", "n",
                "transfer", "extra_data", "forward_passes", "reliance_rgb", "reliance_skeleton", "without_rgb",
                "without_skeleton", "flags", "paper"])
    for row in b.rows:
        e = row.entry
        ivs = [row.interval(k) for k, _ in COLUMNS]
        n = row.record["results"].get("clean", {}).get("n", "") if row.verified else ""
        fields = [_rank(row), e["id"], e["name"], row.record["status"], e["defense"], e["architecture"],
                  *[_num(row.value(k)) if row.value(k) is not None else "" for k, _ in COLUMNS],
                  *[widen(*iv, INTERVAL_DECIMALS["data"])[0] if iv else "" for iv in ivs],
                  *[widen(*iv, INTERVAL_DECIMALS["data"])[1] if iv else "" for iv in ivs],
                  _num(row.value("avg")) if row.value("avg") is not None else "",
                  _num(row.value("ri")) if row.value("ri") is not None else "", n,
                  _num(row.transfer_low) if row.transfer_low is not None else "", e.get("extra_data") or "none",
                  e.get("forward_passes", 1), *_reliance_fields(row), " ".join(f["code"] for f in row.flags),
                  e.get("paper") or ""]
        w.writerow([_cell(x) for x in fields])
    return buf.getvalue()


def _corruption_csv(b: Board) -> str:
    """A corruption track's CSV: clean (with its interval), each family, Mean, then each corruption (mean over
    severities), in percent."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    families = [k for k, _ in corruption_columns(b.track)[1:-1]]
    corruptions = [f"corruption:{c}" for c in b.track.corruption_types]
    w.writerow(["rank", "id", "name", "status", "defense", "architecture", "clean", "clean_lo", "clean_hi",
                *families, "mean", *corruptions, "n", "extra_data", "forward_passes", "flags", "paper"])
    for row in b.rows:
        e = row.entry
        iv = row.interval("clean")
        lo, hi = widen(*iv, INTERVAL_DECIMALS["data"]) if iv else ("", "")
        n = row.record["results"].get("clean", {}).get("n", "") if row.verified else ""
        keys = ["clean", *families, "mean", *corruptions]
        values = [_num(v) if (v := row.value(k)) is not None else "" for k in keys]
        fields = [_rank(row), e["id"], e["name"], row.record["status"], e["defense"], e["architecture"], values[0], lo,
                  hi, *values[1:], n, e.get("extra_data") or "none", e.get("forward_passes", 1),
                  " ".join(f["code"] for f in row.flags), e.get("paper") or ""]
        w.writerow([_cell(x) for x in fields])
    return buf.getvalue()


_TEX = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
        "^": r"\textasciicircum{}", "\\": r"\textbackslash{}"}


def _tex(text: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in text)


def latex(b: Board) -> str:
    columns = corruption_columns(b.track) if b.track.kind == CORRUPTIONS else [*COLUMNS, ("avg", "Avg"), ("ri", "RI")]
    head = " & ".join(["Rank", "Model", "Defense", *[h for _, h in columns]])
    lines = [r"\begin{table}[t]", r"\centering", f"\\caption{{{_tex(b.track.title)} (robench track "
             f"{_tex(b.track.name)} v{b.track.version})}}", r"\begin{tabular}{lll" + "r" * len(columns) + "}",
             r"\toprule", head + r" \\", r"\midrule"]
    for row in b.rows:
        e = row.entry
        mark = r"\textsuperscript{!}" if row.flags else ""
        rank_text = _rank(row) if row.ranked else f"\\textit{{{_tex(_rank(row))}}}"
        vals = [_num(row.value(k)) for k, _ in columns]
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


#: where the standalone page (``leaderboard/<track>/index.html``) finds the flags' documentation
FLAGS_DOC = "../../docs/flags.md"


def _escaped(value: object) -> Markup:
    """How a template shows a value: escaped as :func:`html.escape` does (quotes included), unless it is markup
    already (a macro's output, a page's style and script); the pages have always used these entities."""
    return value if isinstance(value, Markup) else Markup(html.escape(str(value)))


@functools.cache
def environment() -> Environment:
    """The Jinja2 environment of the leaderboard's HTML templates (``robench/leaderboard/templates``): autoescape on,
    undefined names an error."""
    return Environment(loader=PackageLoader("robench.leaderboard", "templates"), undefined=StrictUndefined,
                       autoescape=True, finalize=_escaped, trim_blocks=True, lstrip_blocks=True,
                       keep_trailing_newline=True)


def asset(name: str) -> Markup:
    """A style sheet or script of the templates folder (``board.css``, ``board.js``, ``pages.css``), as it is."""
    return Markup((resources.files("robench.leaderboard") / "templates" / name).read_text(encoding="utf-8"))


def _th(col: str, label: str, num: bool = False, title: str | None = None) -> dict[str, Any]:
    """A column's header: its ``data-col`` key, label, whether it holds numbers, its hover text."""
    return {"col": col, "label": label, "num": num, "title": title}


def table(b: Board, flags_doc: str = FLAGS_DOC, site: bool = False) -> dict[str, Any]:
    """What the board's table shows (``head``, ``rows``, ``notes``), for the templates: per row its cells' text, sort
    keys and hover titles. On the standalone page a model's name links its paper (http(s) only), ``record`` its
    record file and a flag ``flags_doc``; on the static site (``site``) the name links the entry's page, ``record``
    the record copied beside it and a flag the entry page's account of it."""
    t = b.track
    corruption = t.kind == CORRUPTIONS
    columns = corruption_columns(t) if corruption else [*COLUMNS, ("avg", "Avg"), ("ri", "RI"), *(
        [("transfer", "Transfer")] if b.transfer is not None else [])]
    head = [_th("rank", "Rank", True), _th("model", "Model"), _th("defense", "Defense")]
    head += [_th(k, h, True) for k, h in columns]
    head += [_th("extra", "Extra data"), _th("passes", "Passes", True)]
    if not corruption:
        head.append(_th("reliance", "Without R / S", True, "accuracy (%) with the RGB / the skeleton of each clip "
                        "replaced by that of a clip of another action"))
    head.append(_th("checked", "Checked"))
    rows = []
    for row in b.rows:
        e = row.entry
        entry_id = str(e["id"])
        flags = []
        for f in row.flags:
            concerns = f' ({", ".join(f["cells"])})' if f["cells"] else ""
            href = f"{entry_id}.html#flag-{f['code']}" if site else f"{flags_doc}#{f['code']}"
            flags.append({"title": f"{f['code']}{concerns}: {f['message']}", "href": href})
        values = []
        for key, _ in columns:
            v = row.value(key)
            iv = row.interval(key)
            said = row.record["reported"].get(key) if row.verified else None
            extra = f"; reported {said:.2f}" if said is not None else ""
            title = f"95% interval {interval_text(*iv, 'detail')}{extra}" if iv else None
            if key.startswith("family:") and row.verified:
                title = _family_detail(t, row, key.partition(":")[2])
            values.append({"sort": "" if v is None else f"{v:.4f}", "title": title,
                           "text": _lowered(row, key) + _num(v), "interval": interval_text(*iv) if iv else None})
        reliance = None if corruption else {"sort": f"{row.replaced.get('rgb', -1.0):.4f}", "text": _reliance(row)}
        rows.append({
            "id": entry_id, "cls": "unverified" if not row.verified else "flagged" if row.doubtful else "",
            "search": " ".join([e["name"], e["defense"], e["architecture"], " ".join(e["authors"])]).lower(),
            "rank": _rank(row), "rank_sort": str(row.ranked.rank) if row.ranked else "9998" if row.verified else "9999",
            "name": e["name"], "name_sort": e["name"].lower(), "paper": safe_link(e.get("paper")),
            "entry_href": f"{entry_id}.html" if site else None,
            "record_href": f"{entry_id}.json" if site else row.file.name, "flags": flags,
            "footnote": e.get("footnote"), "defense": e["defense"], "defense_sort": e["defense"].lower(),
            "cells": values, "extra": str(e.get("extra_data") or "none"), "passes": int(e.get("forward_passes", 1)),
            "reliance": reliance, "checked": _checked(row)})
    return {"head": head, "rows": rows, "notes": b.notes}


def page(b: Board, flags_doc: str = FLAGS_DOC) -> str:
    """One self-contained HTML page (no external files; ``templates/board.html.j2`` with ``board.css`` and
    ``board.js`` inline): the table sorts by clicking a header and filters by typing; intervals show inline and on
    hover; each entry links to its record. On a corruption track a family's cell lists its corruptions' accuracies
    on hover."""
    return environment().get_template("board.html.j2").render(
        track=b.track, style=asset("board.css"), script=asset("board.js"), transfer=b.transfer, **table(b, flags_doc))


def _family_detail(track: Track, row: Row, family: str) -> str:
    """A family cell's hover text: each of its corruptions' accuracy (mean over severities)."""
    names = [n for n, i in track.corruptions.items() if i.family == family]
    return "; ".join(f"{n} {_num(row.value(f'corruption:{n}'))}" for n in names)


def render(b: Board, fmt: str) -> str:
    """The board in one of :data:`FORMATS`."""
    if fmt not in FORMATS:
        raise RobenchError(f"leaderboard render --format {fmt}: allowed: {', '.join(FORMATS)}")
    return {"html": page, "markdown": markdown, "latex": latex, "csv": csv_text, "bibtex": bibtex}[fmt](b)
