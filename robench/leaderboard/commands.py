"""``robench leaderboard add | verify | render``: what each command does with files (the CLI parses)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from robench.errors import RobenchError
from robench.leaderboard.entry import load_entry
from robench.leaderboard.evaluate import (
    build_record,
    evaluate_entry,
    relative_source,
    reported_record,
    run_entry,
)
from robench.leaderboard.record import read_record, write_record
from robench.leaderboard.render import FORMATS, board, render
from robench.leaderboard.tracks import bundled_tracks, load_track
from robench.progress import Progress
from robench.store import ResultsStore
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


def add(entry_path: str, track_name: str, where: Where, reported_only: bool = False) -> Path:
    """Evaluate the entry on the track (or take its reported numbers) and write its record; returns the path.

    Everything is checked before the record is written, and the record is written atomically: a bad
    entry leaves the leaderboard as it was.
    """
    track = load_track(track_name)
    entry = load_entry(entry_path)
    target = where.root / track.name / f"{entry.id}.json"
    source = relative_source(entry.path, where.root)
    if reported_only:
        write_record(target, reported_record(entry, track, source))
        return target
    baseline = None
    if track.baseline and track.baseline != entry.id and (where.root / track.name / f"{track.baseline}.json").is_file():
        candidate = read_record(where.root / track.name / f"{track.baseline}.json")
        baseline = candidate if candidate["status"] == "verified" else None
    record = evaluate_entry(entry, track, ResultsStore(where.store), where.cache, where.device, where.progress, source,
                            baseline)
    write_record(target, record)
    return target


@dataclass
class Verification:
    """The outcome of re-evaluating a record: ``match`` and, if not, which columns differ."""

    record: Path
    match: bool
    expected: str
    found: str
    differing: list[str]


def verify(record_path: str, where: Where, track_file: str | None = None) -> Verification:
    """Re-evaluate a record's entry from scratch (a temporary results store; trained models may come from
    the cache) and compare the per-clip results bit for bit. The track is the bundled one the record
    names, or ``track_file``."""
    path = Path(record_path).resolve()
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
    source = Path(record["entry"]["source"])
    root = path.parent.parent
    entry = load_entry(source if source.is_absolute() else root / source)
    with tempfile.TemporaryDirectory(prefix="robench-verify-") as tmp, Progress(where.progress) as progress:
        ev = run_entry(entry, track, ResultsStore(Path(tmp) / "verify.sqlite"), ModelCache(where.cache),
                       where.cache / "data", where.device, progress)
        fresh = build_record(entry, track, ev, where.device, record["entry"]["source"])
    found = fresh["per_sample_digest"]
    differing = [c for c in record["per_sample"] if record["per_sample"][c] != fresh["per_sample"].get(c)]
    return Verification(path, found == record["per_sample_digest"], record["per_sample_digest"], found, differing)


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
        target.write_text(render(board(track, folder), fmt), encoding="utf-8")
        written.append(target)
    return written
