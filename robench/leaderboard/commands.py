"""``robench leaderboard add | verify | render``: what each command does with files (the CLI parses)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robench import __version__
from robench.errors import RobenchError
from robench.files import atomic_write
from robench.leaderboard.entry import Entry, load_entry
from robench.leaderboard.evaluate import (
    build_record,
    entry_files,
    evaluate_entry,
    model_code_errors,
    relative_source,
    reported_record,
    run_entry,
)
from robench.leaderboard.names import check_name, inside
from robench.leaderboard.record import CORRUPTION_KIND, bits_of, corruption_bits_of, kind_of, read_record, write_record
from robench.leaderboard.render import FORMATS, board, render
from robench.leaderboard.site import Site, build_site
from robench.leaderboard.tracks import Track, bundled_tracks, load_track
from robench.progress import Progress
from robench.runtime import device_name
from robench.store import ResultsStore
from robench.store.results import utc_now
from robench.train.cache import ModelCache

#: the default file each format is written to, inside ``<root>/<track>/``
DEFAULT_FILES = {"html": "index.html", "markdown": "README.md", "latex": "leaderboard.tex", "csv": "leaderboard.csv",
                 "bibtex": "entries.bib"}


@dataclass
class Where:
    """The folders a leaderboard command works in: the records' ``root``, the results store and the cache."""

    root: Path
    store: Path | str
    cache: Path
    device: torch.device
    progress: str = "auto"


def record_path(root: Path, track: Track, entry_id: str) -> Path:
    """Where an entry's record goes: ``<root>/<track>/<entry id>.json``, both names checked, the result
    resolved (symlinks included) and refused unless it lies under ``root``."""
    check_name(track.name, f"track {track.path}: key 'name'")
    check_name(entry_id, "entry id")
    return inside(root, root / track.name / f"{entry_id}.json", "record")


def add(entry_path: str, track_name: str, where: Where, reported_only: bool = False) -> Path:
    """Evaluate the entry on the track (or take its reported numbers) and write its record; returns the path.

    Everything is checked before the record is written (names, the target folder, the clips), and the
    record is written atomically: a bad entry, a kill or a full disk leaves the leaderboard as it was.
    """
    track = load_track(track_name)
    entry = load_entry(entry_path)
    target = record_path(where.root, track, entry.id)
    source = relative_source(entry.path, where.root)
    if reported_only:
        write_record(target, reported_record(entry, track, source))
        return target
    baseline = None
    base_file = where.root / track.name / f"{track.baseline}.json" if track.baseline else None
    if base_file is not None and track.baseline != entry.id and base_file.is_file():
        candidate = read_record(base_file)
        baseline = candidate if candidate["status"] == "verified" else None
    record = evaluate_entry(entry, track, ResultsStore(where.store), where.cache, where.device, where.progress, source,
                            baseline)
    from robench.leaderboard.challenge import carry_over  # (it imports this module)

    write_record(target, carry_over(target, record, track))  # the accepted challenges of the same model stay
    return target


@dataclass
class Verification:
    """The outcome of re-evaluating a record: ``match``, and each cell whose clips differ with how many."""

    record: Path
    match: bool
    differing: list[str]


def compare_bits(record: dict[str, Any], fresh: dict[str, Any], where: str) -> list[str]:
    """``"<cell>: k of n clips differ"`` for every cell (clean, each attack and scenario, each AutoAttack member;
    on a corruption track, each corruption at each severity) whose per-clip results differ between a stored record
    and a fresh evaluation of its entry."""
    if kind_of(record) == CORRUPTION_KIND or kind_of(fresh) == CORRUPTION_KIND:
        return _compare_corruption_bits(record, fresh, where)
    old_clean, old_attacks, old_members = bits_of(record, where)
    new_clean, new_attacks, new_members = bits_of(fresh, "the fresh evaluation")
    pairs: list[tuple[str, np.ndarray | None, np.ndarray | None]] = [("clean", old_clean, new_clean)]
    for a in sorted(set(old_attacks) | set(new_attacks)):
        for sc in sorted(set(old_attacks.get(a, {})) | set(new_attacks.get(a, {}))):
            pairs.append((f"{a} on {sc}", old_attacks.get(a, {}).get(sc), new_attacks.get(a, {}).get(sc)))
    for a in sorted(set(old_members) | set(new_members)):
        for m in sorted(set(old_members.get(a, {})) | set(new_members.get(a, {}))):
            old_m, new_m = old_members.get(a, {}).get(m, {}), new_members.get(a, {}).get(m, {})
            for sc in sorted(set(old_m) | set(new_m)):
                pairs.append((f"{a}@{m} on {sc}", old_m.get(sc), new_m.get(sc)))
    return _differing(pairs)


def _compare_corruption_bits(record: dict[str, Any], fresh: dict[str, Any], where: str) -> list[str]:
    """:func:`compare_bits` for a corruption track's records: the clean cell and every (corruption, severity) cell."""
    if kind_of(record) != kind_of(fresh):
        return [f"the record is of a {kind_of(record)} track, the fresh evaluation of a {kind_of(fresh)} track"]
    old_clean, old_cells = corruption_bits_of(record, where)
    new_clean, new_cells = corruption_bits_of(fresh, "the fresh evaluation")
    pairs: list[tuple[str, np.ndarray | None, np.ndarray | None]] = [("clean", old_clean, new_clean)]
    for c in sorted(set(old_cells) | set(new_cells)):
        for sev in sorted(set(old_cells.get(c, {})) | set(new_cells.get(c, {}))):
            pairs.append((f"{c} at severity {sev}", old_cells.get(c, {}).get(sev), new_cells.get(c, {}).get(sev)))
    return _differing(pairs)


def _differing(pairs: list[tuple[str, np.ndarray | None, np.ndarray | None]]) -> list[str]:
    out = []
    for name, old, new in pairs:
        if old is None or new is None:
            out.append(f"{name}: {'not in the record' if old is None else 'not evaluated again'}")
        elif old.shape != new.shape:
            out.append(f"{name}: {old.size} clips in the record, {new.size} evaluated again")
        elif (diff := int((old != new).sum())):
            out.append(f"{name}: {diff} of {old.size} clips differ")
    return out


def entry_of(record: dict[str, Any], path: Path) -> Path:
    """The entry file a record was made from: ``entry.source`` relative to the leaderboard folder the record lies
    in (``<root>/<track>/<id>.json``), or an absolute path (records of robench before portable records, for an
    entry outside that folder). Missing, a :class:`RobenchError` saying where it was looked for and why."""
    source = str(record["entry"].get("source") or "")
    root = path.parent.parent
    if source.startswith("python object "):
        raise RobenchError(f"record {path} is of a model object handed to robench.evaluate ({source}): there is no "
                           "entry file to re-evaluate; evaluate the object again with robench.evaluate")
    if not source:
        raise RobenchError(f"record {path}: key 'entry.source' is empty: it does not say which entry file it was "
                           "made from; make it again with robench leaderboard add")
    given = Path(source)
    found = given if given.is_absolute() else root / given
    if not found.is_file():
        if given.is_absolute():
            raise RobenchError(f"record {path} names its entry by the absolute path {source} (a record of an older "
                               "robench, made on another machine or before the files moved), which does not exist "
                               "here; put the entry file there, or add the entry again (robench leaderboard add) to "
                               "get a record that names it relative to the leaderboard folder")
        raise RobenchError(f"record {path}: its entry file {source} (relative to the leaderboard folder {root}) does "
                           f"not exist ({found}); entries move with the leaderboard folder: keep the entry at the "
                           "same place relative to it")
    return found


def changed_files(record: dict[str, Any], entry: Entry) -> list[str]:
    """The entry's files whose content is not the one the record was made from (``provenance.files``, by digest;
    plugins compared by content, whatever their names; nothing to compare for a record without it)."""
    stored = record["provenance"].get("files")
    if not isinstance(stored, dict) or not stored:
        return []
    now = entry_files(entry)
    out = []
    if stored.get("weights") != now.get("weights"):
        out.append(f"weights: {str(stored.get('weights'))[:19]}… in the record, {str(now.get('weights'))[:19]}… "
                   "now (another weights file)")
    old_plugins, new_plugins = dict(stored.get("plugins") or {}), dict(now.get("plugins") or {})
    if sorted(map(str, old_plugins.values())) != sorted(map(str, new_plugins.values())):
        known = set(map(str, old_plugins.values()))
        changed = [name for name, digest in new_plugins.items() if digest not in known] or ["(one fewer)"]
        out.append(f"plugins: {', '.join(changed)}: not the code the record was made with")
    return out


def verify(record_path_: str, where: Where, track_file: str | None = None, stamp: bool = True) -> Verification:
    """Re-evaluate a record's entry from scratch (a temporary results store; trained models may come from the
    cache) and compare every cell's per-clip results with the record's, clip by clip: a stored digest is never
    trusted over the recomputation. The track is the bundled one the record names, or ``track_file``. The entry
    file is found relative to the leaderboard folder the record lies in (:func:`entry_of`); an outside model's
    weights or plugins that are not the files the record was made from (by digest) are named without evaluating
    anything. When every clip agrees and ``stamp`` is set, the record's ``verification`` says when and with which
    robench."""
    path = Path(record_path_).resolve()
    record = read_record(path)
    if record["status"] != "verified":
        raise RobenchError(f"record {path} is unverified (reported numbers only): nothing to re-evaluate; "
                           "evaluate the entry with robench leaderboard add")
    track = load_track(track_file or record["track"]["name"])
    if track.name != record["track"]["name"]:
        raise RobenchError(f"record {path} is of track {record['track']['name']}, not {track.name}")
    if track.digest != record["track"]["digest"]:
        raise RobenchError(f"record {path} was made for track {track.name} v{record['track']['version']}; the "
                           f"bundled track is v{track.version} (another digest): run robench leaderboard add again")
    entry = load_entry(entry_of(record, path))
    if changed := changed_files(record, entry):
        return Verification(path, False, changed)
    with model_code_errors(entry), tempfile.TemporaryDirectory(prefix="robench-verify-") as tmp, \
            Progress(where.progress) as progress:
        ev = run_entry(entry, track, ResultsStore(Path(tmp) / "verify.sqlite"), ModelCache(where.cache),
                       where.cache / "data", where.device, progress)
        fresh = build_record(entry, track, ev, where.device, record["entry"]["source"])
    differing = compare_bits(record, fresh, str(path))
    if not differing and stamp:
        record["verification"] = {"verified_at": utc_now(), "robench": __version__, "device": device_name(where.device)}
        write_record(path, record)
    return Verification(path, not differing, differing)


def render_tracks(root: Path, fmt: str, track_name: str | None = None, out: Path | None = None) -> list[Path]:
    """Render the board of one track (or of every track with records under ``root``); returns the files written."""
    if fmt not in FORMATS:
        raise RobenchError(f"leaderboard render --format {fmt}: allowed: {', '.join(FORMATS)}")
    names = [track_name] if track_name else [n for n in bundled_tracks() if (root / n).is_dir()]
    if not names:
        raise RobenchError(f"no records under {root}: add an entry first (robench leaderboard add ENTRY --track NAME)")
    if out is not None and len(names) > 1:
        raise RobenchError("leaderboard render --out needs --track (one file per track)")
    written = []
    for name in names:
        track = load_track(name)
        folder = root / track.name
        if not folder.is_dir():
            raise RobenchError(f"no records of track {track.name} under {root}: add an entry first")
        target = out or folder / DEFAULT_FILES[fmt]
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, render(board(track, folder), fmt))
        written.append(target)
    return written


def transfer(root: Path, track_name: str, cache: Path, device: torch.device, scenarios: list[str] | None = None,
             progress: str = "quiet", say: Any = None) -> list[Path]:
    """``robench leaderboard transfer``: the transfer artefact and heatmap of a track's entries
    (:mod:`robench.leaderboard.transfer`), then the track's Markdown and HTML boards rendered again where they exist
    (they gain the transfer section); returns the files written."""
    from robench.leaderboard.transfer.compute import run_transfer

    track = load_track(track_name)
    written = run_transfer(root, track, cache, device, scenarios, progress, say)
    for fmt in ("markdown", "html"):
        if (root / track.name / DEFAULT_FILES[fmt]).is_file():
            written += render_tracks(root, fmt, track_name)
    return written


def site(root: Path, out: Path, tracks: list[str] | None = None) -> Site:
    """``robench leaderboard site``: the static site of every track with records under ``root`` (or of ``tracks``)
    in ``out``: an index, each track's board, a page per entry (:mod:`robench.leaderboard.site`)."""
    return build_site(root, out, tracks)
