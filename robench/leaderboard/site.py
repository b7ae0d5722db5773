"""``robench leaderboard site --out DIR``: the whole leaderboard as a static site, rendered from Jinja2 templates.

The site (``templates/site_*.html.j2``)::

    index.html                  the tracks: title, version, entries, the top entry, what ranks them
    site.css, site.js           the shared style and the table's sorting and filtering (no external file, no CDN)
    <track>/index.html          the track's board: the sortable, filterable table of ``robench leaderboard render``
    <track>/<entry>.html        everything the entry's record holds: metadata, the results with their intervals,
                                every attack and AutoAttack member, flags, reliance, reported numbers, challenges,
                                provenance, and a download link for its weights
    <track>/<entry>.json        the record, byte for byte (its SHA-256 is on the entry page)
    weights/<sha256>.<ext>      the weights the track's zoo manifest names for an entry, copied once per file

Every link is relative, so the folder works from ``file://`` and from any static host. An entry's weights are
linked when the zoo manifest of its track (``robench/zoo/weights/<track>/manifest.json``) names them for that entry
id and model id (:mod:`robench.zoo.manifest`) and the file is local: the file is checked against the manifest's
SHA-256 before it is copied; otherwise the page says that no weights are published (or where they are, for a
manifest that names a URL).

Names come from records, so from strangers: every field is escaped (autoescape), every file name derived from a
track name or an entry id is a checked name (:func:`~robench.leaderboard.names.check_name`), and every file is
resolved, symlinks included, and refused unless it lies under ``out``; each is written atomically
(:func:`~robench.files.atomic_write`). Nothing is written outside ``out`` and nothing in it is deleted.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robench import __version__
from robench.errors import RobenchError
from robench.files import atomic_write
from robench.leaderboard.names import check_name, resolve, safe_link
from robench.leaderboard.render import (
    NOT_RANKED,
    Board,
    Row,
    asset,
    before,
    board,
    environment,
    rank_key,
    table,
)
from robench.leaderboard.tracks import CORRUPTIONS, SCENARIO_LABELS, Track, bundled_tracks, load_track
from robench.report.metrics import interval_text

#: the site's own files and folders, which no track's folder may be named
RESERVED = ("index.html", "site.css", "site.js", "weights")
#: the labels of a record's result keys
LABELS = {**SCENARIO_LABELS, "worst": "Worst case", "avg": "Avg", "ri": "RI", "mean": "Mean"}


@dataclass
class Site:
    """What :func:`build_site` wrote: every file, under ``out``."""

    out: Path
    files: list[Path] = field(default_factory=list)
    weights: int = 0

    def summary(self) -> str:
        pages = sum(1 for f in self.files if f.suffix == ".html")
        return f"{pages} pages and {self.weights} weights files, {len(self.files)} files in all, under {self.out}"


class _Writer:
    """Writes files under ``out`` only: each part of a file's relative name is a checked name, and the target,
    resolved (symlinks included), must lie under ``out`` resolved."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def target(self, name: str) -> Path:
        for part in name.split("/"):
            check_name(part, f"site file {name!r}")
        base = resolve(self.out, "site folder")
        found = resolve(self.out.joinpath(*name.split("/")), "site file")
        if not found.is_relative_to(base) or found == base:
            raise RobenchError(f"site file {name} resolves to {found}, outside the site folder {base}; robench "
                               "writes nothing there")
        return found

    def write(self, name: str, data: bytes | str) -> Path:
        return atomic_write(self.target(name), data)


def build_site(root: Path, out: Path, tracks: list[str] | None = None, zoo: Path | None = None) -> Site:
    """Build the static site of every track with records under ``root`` (or of ``tracks``: bundled names or track
    files) into ``out`` (see the module docstring). ``zoo`` is the folder of the zoo manifests, one per track
    (``<zoo>/<track>/manifest.json``; default: the weights robench ships)."""
    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise RobenchError(f"leaderboard site --root {root}: {'not a folder' if root.exists() else 'does not exist'}; "
                           "give the leaderboard folder (the one with a folder of records per track)")
    if out.exists() and not out.is_dir():
        raise RobenchError(f"leaderboard site --out {out}: a file is there; give a folder (created if missing)")
    names = list(tracks) if tracks else [n for n in bundled_tracks() if (root / n).is_dir()]
    if not names:
        raise RobenchError(f"no records under {root}: add an entry first (robench leaderboard add ENTRY --track NAME)")
    boards: dict[str, Board] = {}
    for name in names:
        track = load_track(name)
        check_name(track.name, f"track {track.path}: key 'name'")
        folder = root / track.name
        if not folder.is_dir():
            raise RobenchError(f"no records of track {track.name} under {root}: add an entry first")
        boards.setdefault(track.name, board(track, folder))
    env = environment()

    def render(template: str, **context: Any) -> str:
        return env.get_template(template).render(version=__version__, **context)

    # everything is rendered and checked first, so that bad input leaves ``out`` as it was
    files: dict[str, bytes | str] = {}
    copied: dict[str, str] = {}  # sha256 -> the site's weights file

    def add(name: str, data: bytes | str, what: str) -> None:
        if name in files:  # an entry id 'index' (its page would be the track's)
            raise RobenchError(f"leaderboard site: {what} would be {name}, a file the site already has; rename it")
        files[name] = data

    for t, b in ((b.track, b) for b in boards.values()):
        if t.name in RESERVED:
            raise RobenchError(f"leaderboard site: track {t.name}: its folder would clash with the site's own "
                               f"{t.name}; rename the track")
        zoo_entries = _zoo(t, zoo)
        for row in b.rows:
            entry_id = check_name(str(row.entry["id"]), f"record {row.file}: entry.id")
            record_bytes = row.file.read_bytes()
            add(f"{t.name}/{entry_id}.json", record_bytes, f"the record of entry {entry_id}")
            weights = _weights(t, row, zoo_entries.get(entry_id), files, copied)
            record = {"href": f"{entry_id}.json", "sha256": hashlib.sha256(record_bytes).hexdigest(),
                      "size": len(record_bytes)}
            add(f"{t.name}/{entry_id}.html", render("site_entry.html.j2", base="../", track=t, e=entry_view(b, row),
                                                    weights=weights, record=record), f"the page of entry {entry_id}")
        add(f"{t.name}/index.html", render("site_track.html.j2", base="../", track=t, **table(b, site=True)),
            f"the page of track {t.name}")
    add("site.css", asset("board.css") + "\n" + asset("pages.css"), "the style sheet")
    add("site.js", asset("board.js"), "the script")
    summaries = sorted((track_summary(b) for b in boards.values()), key=lambda s: s["verified"] == 0)  # measured first
    add("index.html", render("site_index.html.j2", base="", tracks=summaries), "the index")
    writer = _Writer(out)
    for name in files:
        writer.target(name)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RobenchError(f"leaderboard site --out {out}: cannot create it ({exc.strerror or exc})") from None
    site = Site(out, [writer.write(name, data) for name, data in files.items()], len(copied))
    return site


# -- the index ---------------------------------------------------------------------------------------------

def track_summary(b: Board) -> dict[str, Any]:
    """A track's line on the index: title, name, version, kind, entries, the top entry (all those ranked first,
    when tied) and what ranks them."""
    t = b.track
    key = rank_key(t)
    label = "Mean" if t.kind == CORRUPTIONS else SCENARIO_LABELS.get(key, key)
    top = [{"name": r.entry["name"], "href": f"{t.name}/{r.entry['id']}.html", "rank": r.ranked.label,
            "value": _num(r.value(key))} for r in b.rows if r.ranked is not None and r.ranked.rank == 1]
    verified = sum(1 for r in b.rows if r.verified)
    kind = "corruptions" if t.kind == CORRUPTIONS else "attacks, plausible skeletons" if t.plausible else "attacks"
    return {"name": t.name, "title": t.title, "version": t.version, "description": t.description, "kind": kind,
            "href": f"{t.name}/index.html", "entries": len(b.rows), "verified": verified, "top": top,
            "ranked_by": label}


# -- an entry's page ---------------------------------------------------------------------------------------

def _num(x: object, digits: int = 2) -> str:
    return "–" if x is None or isinstance(x, bool) or not isinstance(x, (int, float)) else f"{x:.{digits}f}"


def _summary(cell: Any, reported: Any = None, before: float | None = None) -> dict[str, str]:
    """A result cell (``{accuracy, correct, n, interval}``, or a bare number) for a table: accuracy, interval,
    clips, the authors' number, and the accuracy robench's own attacks gave when accepted challenges lowered it."""
    if isinstance(cell, dict):
        iv = cell.get("interval")
        return {"accuracy": _num(cell.get("accuracy")), "before": _num(before) if before is not None else "",
                "interval": interval_text(float(iv[0]), float(iv[1]), "detail") if isinstance(iv, list) and len(
                    iv) == 2 else "",
                "clips": f"{cell['correct']} / {cell['n']}" if "correct" in cell and "n" in cell else "",
                "reported": _num(reported) if reported is not None else ""}
    return {"accuracy": _num(cell), "before": "", "interval": "", "clips": "",
            "reported": _num(reported) if reported is not None else ""}


def _text(value: Any) -> str:
    """A value of a record as text: strings as they are, lists joined, mappings as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
        return ", ".join(map(str, value))
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return "–" if value is None else str(value)


def _status(row: Row) -> str:
    if not row.verified:
        return "unverified: the numbers its authors reported, not measured by robench; not ranked"
    if row.ranked is None:
        return f"{NOT_RANKED} ({', '.join(row.doubtful)}): a sanity check doubts its numbers"
    p = row.ranked.p_above
    return f"rank {row.ranked.label}" + (f" (McNemar's exact test against the entry above: p = {p:.3g})"
                                         if p is not None else "")


def entry_view(b: Board, row: Row) -> dict[str, Any]:
    """What an entry's page shows, from its record (see the module docstring)."""
    t, record, e = b.track, row.record, row.entry
    res = record["results"] if row.verified else {}
    reported = dict(record["reported"])
    meta = [("Entry id", e["id"], None), ("Authors", ", ".join(e["authors"]) or "–", None),
            ("Venue", e.get("venue") or "–", None), ("Paper", e.get("paper") or "–", safe_link(e.get("paper"))),
            ("Architecture", e.get("architecture") or "–", None), ("Defense", e.get("defense") or "–", None),
            ("Extra data", e.get("extra_data") or "none", None), ("Forward passes", e.get("forward_passes", 1), None),
            ("Note", e.get("footnote") or "–", None), ("Entry file", e.get("source") or "–", None)]
    view: dict[str, Any] = {
        "id": e["id"], "name": e["name"], "status": _status(row), "verified": row.verified,
        "meta": [{"label": k, "value": _text(v), "href": h} for k, v, h in meta],
        "flags": [{**f, "doubts": f["code"] in row.doubtful} for f in row.flags],
        "reported": [{"label": LABELS.get(k, k), "value": _num(v)} for k, v in reported.items()],
        "reliance": _reliance(res.get("reliance"), row.replaced),
        "challenges": [_challenge(c) for c in record["challenges"]] if isinstance(record.get("challenges"), list)
        else None,
        "transfer": _transfer(b, row),
        "provenance": _provenance(record),
        "corruption": t.kind == CORRUPTIONS,
    }
    if not row.verified:
        view.update(results=[], attacks=None, members=None, corruptions=None)
        return view
    if t.kind == CORRUPTIONS:
        results = [{"label": "Clean", **_summary(res.get("clean"), reported.get("clean"))}]
        results += [{"label": f"{f.capitalize()} (family mean)", **_summary((res.get("families") or {}).get(f))}
                    for f in t.families]
        results.append({"label": "Mean (every corruption and severity)", **_summary(res.get("mean"),
                                                                                     reported.get("mean"))})
        severities = [str(s) for s in record["track"].get("corruptions", {}).get("severities", t.severities)]
        types = record["track"].get("corruptions", {}).get("types", {})
        corruptions = [{"name": c, "family": str((types.get(c) or {}).get("family", "")),
                        "input": str((types.get(c) or {}).get("modality", "")), "accuracy": _num(cell.get("accuracy")),
                        "severities": [_summary((cell.get("severities") or {}).get(s)) for s in severities]}
                       for c, cell in sorted((res.get("corruptions") or {}).items())]
        view.update(results=results, attacks=None, members=None,
                    corruptions={"severities": severities, "rows": corruptions})
        return view
    keys = ["clean", "R", "S", "RS", "worst", "avg", "ri"]
    ranking = f" (ranking: {LABELS.get(t.rank_by, t.rank_by)})"
    view["results"] = [{"label": LABELS[k] + (ranking if k == "worst" else ""),
                        **_summary(res.get(k), reported.get(k), before(row, k))}
                       for k in keys if k in res or k in reported]
    scenarios = [s for s in ("R", "S", "RS") if any(s in per for per in (res.get("by_attack") or {}).values())]
    view["attacks"] = {"scenarios": [LABELS[s] for s in scenarios],
                       "rows": [{"label": str(per.get("label", a)), "key": a,
                                 "cells": [_summary(per.get(s)) for s in scenarios]}
                                for a, per in (res.get("by_attack") or {}).items()]}
    owners = {m: a for a, stages in (record["per_sample"].get("members") or {}).items() for m in stages}
    labels = {a: str(per.get("label", a)) for a, per in (res.get("by_attack") or {}).items()}
    view["members"] = {"scenarios": [LABELS[s] for s in scenarios],
                       "rows": [{"label": m, "key": labels.get(owners.get(m, ""), owners.get(m, "")),
                                 "cells": [_summary(per.get(s)) for s in scenarios]}
                                for m, per in (res.get("autoattack") or {}).items()]}
    view["corruptions"] = None
    return view


def _transfer(b: Board, row: Row) -> dict[str, Any] | None:
    """The entry's row and column of the board's transfer matrix (None without one, or if the matrix does not
    list the entry): its accuracy under each entry's adversarial clips, how well its own clips fool each other
    entry, and what transfer lowered."""
    sec = b.transfer
    entry_id = str(row.entry["id"])
    if sec is None or entry_id not in sec.ids:
        return None
    j = sec.ids.index(entry_id)
    mine = sec.matrix[j]
    return {"label": sec.label, "note": sec.note,
            "rows": [{"other": r[0], "against": r[1 + j], "by": mine[1 + i], "self": i == j}
                     for i, r in enumerate(sec.matrix)],
            "lowered": [{"scenario": LABELS.get(s, s), "before": _num(low.before), "after": _num(low.after),
                         "clips": len(low.broken), "sources": ", ".join(f"{k} {v}" for k, v in low.sources.items())}
                        for s, low in row.transfer.items()]}


def _reliance(found: Any, replaced: dict[str, float]) -> dict[str, Any] | None:
    """The record's reliance on each input: the share of the first batch's predictions that change with it swapped
    (the flag's check) and the accuracy with it replaced by another action's clip's, in percent (None when neither
    was measured)."""
    if not (isinstance(found, dict) and found) and not replaced:
        return None
    found = found if isinstance(found, dict) else {}
    share = {m: f"{100 * float(v):.0f}%" if isinstance(v, (int, float)) else "–"
             for m in ("rgb", "skeleton") for v in [found.get(m)]}
    without = {m: _num(replaced[m]) if m in replaced else "–" for m in ("rgb", "skeleton")}
    return {**share, "clips": found.get("clips"), "without": without if replaced else None}


def _challenge(found: Any) -> dict[str, str]:
    """One accepted challenge (:mod:`robench.leaderboard.challenge`) for the page (a field it lacks shows as a dash)."""
    c = found if isinstance(found, dict) else {}
    broken = c.get("clips_broken")
    return {"date": _text(c.get("date")), "author": _text(c.get("author")), "attack": _text(c.get("attack")),
            "scenario": LABELS.get(str(c.get("scenario")), _text(c.get("scenario"))),
            "broken": str(len(broken)) if isinstance(broken, list) else "–", "clips": _text(c.get("clips")),
            "sha256": _text(c.get("sha256")), "by": f"robench {_text(c.get('robench'))} on {_text(c.get('device'))}"}


#: the provenance keys shown first, in this order, with their labels (any other key follows, as it is)
PROVENANCE = {"robench": "robench", "git_commit": "Commit", "torch": "torch", "device": "Device",
              "precision": "Precision", "seeds": "Seeds", "model_ids": "Model ids", "protocol_hash": "Protocol hash",
              "files": "Entry files (digests)", "evaluated_at": "Evaluated",
              "evaluation_seconds": "Evaluation time (s)"}


def _provenance(record: dict[str, Any]) -> list[dict[str, str]]:
    """Provenance, verification, the track and the digests, as (label, text) lines."""
    prov, ver, track = record["provenance"], record["verification"], record["track"]
    lines = [(label, prov[k]) for k, label in PROVENANCE.items() if k in prov and prov[k] not in (None, {}, [])]
    if isinstance(prov.get("cell_ids"), list):
        lines.append(("Cells", f"{len(prov['cell_ids'])}: {', '.join(map(str, prov['cell_ids']))}"))
    lines += [(k, v) for k, v in prov.items() if k not in PROVENANCE and k != "cell_ids"]
    if record["status"] != "verified":
        lines.append(("Verified", "reported numbers only: nothing was evaluated"))
    elif ver:
        lines.append(("Verified", " ".join(_text(ver[k]) for k in ("verified_at", "robench", "device") if k in ver)
                      if {"verified_at", "robench"} <= set(ver) else ver))
    else:
        lines.append(("Verified", "not re-evaluated since it was evaluated (robench leaderboard verify)"))
    lines.append(("Track", f"{track.get('name')} v{track.get('version')}, {track.get('digest')}"))
    clips = track.get("clips") or {}
    if isinstance(clips, dict) and clips:
        lines.append(("Clips", ", ".join(str(clips[k]) for k in ("count", "digest") if clips.get(k) is not None)))
    if track.get("eps") is not None:
        units = track.get("eps_units")
        said = "; ".join(f"{k}: {v}" for k, v in units.items()) if isinstance(units, dict) else _text(units)
        lines.append(("eps", f"{float(track['eps']):.6g}" + (f" ({said})" if units else "")))
    if track.get("plausible"):
        lines.append(("Plausible skeletons", track["plausible"]))
    lines.append(("Per-clip results digest", record.get("per_sample_digest") or "–"))
    seal = record["seal"]
    lines.append(("Seal", f"{seal.get('algorithm')}: {seal.get('value')}"))
    return [{"label": k, "value": _text(v)} for k, v in lines]


# -- weights -------------------------------------------------------------------------------------------------

def _zoo(track: Track, zoo: Path | None) -> dict[str, Any]:
    """The entries of the track's zoo manifest (``<zoo>/<track>/manifest.json``), or none."""
    from robench.zoo.manifest import MANIFEST, read_manifest, shipped_root

    path = (zoo if zoo is not None else shipped_root()) / track.name / MANIFEST
    return {k: v for k, v in read_manifest(path).items() if v.track == track.name} if path.is_file() else {}


def _weights(track: Track, row: Row, found: Any, files: dict[str, bytes | str], copied: dict[str, str]
             ) -> dict[str, Any]:
    """An entry's weights on its page: ``href`` (relative to the page) and SHA-256 when the zoo names a local file
    of this entry's model (added to ``files`` as ``weights/<sha256>.<ext>``, once), else what the page says
    instead."""
    from robench.zoo.fetch import source_kind
    from robench.zoo.weights import FORMATS

    command = f"robench leaderboard get {track.name} {row.entry['id']}"
    none = {"href": None, "sha256": None, "format": None, "size": None, "model_id": None, "command": None}
    if found is None:
        return {**none, "note": "No weights are published for this entry (the track's model zoo does not list it)."}
    model_ids = row.record["provenance"].get("model_ids") or []
    if row.verified and model_ids and found.model_id not in model_ids:
        return {**none, "note": f"No weights are published for this entry: the model zoo lists model "
                f"{found.model_id} under its id, not the model this record evaluated ({', '.join(model_ids)})."}
    spec = found.weights
    if source_kind(spec.source) != "path":
        return {**none, "sha256": spec.sha256, "format": spec.format, "size": spec.size, "model_id": found.model_id,
                "command": command, "note": f"Published at {spec.source} (not copied into this site); fetch and "
                "verify them with the command below."}
    if spec.sha256 not in copied:
        source = found.base / spec.source
        try:
            data = source.read_bytes()
        except OSError as exc:
            raise RobenchError(f"zoo manifest {found.manifest}: entry {found.id}: cannot read its weights {source} "
                               f"({exc.strerror or exc})") from None
        got = hashlib.sha256(data).hexdigest()
        if got != spec.sha256:
            raise RobenchError(f"zoo manifest {found.manifest}: entry {found.id}: {source} has SHA-256 {got}, not the "
                               f"{spec.sha256} the manifest names; the site links no weights but the ones it names")
        name = f"weights/{spec.sha256}.{FORMATS.get(spec.format, 'bin')}"
        files[name] = data
        copied[spec.sha256] = name
    size = len(files[copied[spec.sha256]])
    return {"href": f"../{copied[spec.sha256]}", "sha256": spec.sha256, "format": spec.format, "size": size,
            "model_id": found.model_id, "command": command, "note": None}
