"""Writing a prepared folder (format of :mod:`robench.data.prepared`): parallel, resumable, fault-tolerant.

Every clip has a fixed row in the output arrays (its position in the sorted clip list), so
workers decode clips in parallel and write their rows straight into preallocated ``.npy`` arrays
(``skeleton.npy`` and the RGB shards, see :class:`~robench.data.prepared.RowFile`), and the
parent records each finished row in an append-only ledger (``prepare-ledger.csv``). A preparation
that is killed resumes from the ledger without redoing finished clips. A clip whose files cannot be
read (a truncated skeleton, a broken video) is recorded as failed, with its file and the reason, and
the others go on; its row stays empty and is left out of ``clips.csv``; clips the source left out
before reading (no video, listed as missing, ...) are named with their reason in
``prepare-skipped.csv``. The manifest (``robench-dataset.json``) is written last, atomically: a
folder without one is not ready, whatever else is in it.
"""

from __future__ import annotations

import csv
import io
import json
import multiprocessing as mp
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from robench.data.prepared import FORMAT, MANIFEST, RowFile, npy_shape
from robench.errors import DataError
from robench.files import atomic_file, atomic_write

STATE = "prepare-state.json"
LEDGER = "prepare-ledger.csv"
FAILURES = "prepare-failures.csv"
SKIPPED = "prepare-skipped.csv"


@dataclass(frozen=True)
class Settings:
    """What every prepared clip looks like.

    Attributes:
        frames_rgb: RGB frames per clip (spread over the whole clip).
        resolution: RGB frame side, pixels (square).
        frames_skeleton: skeleton frames per clip (spread over the whole clip).
        crop: "person", "center" or "full" (see :mod:`robench.data.prepare.video`).
        persons: bodies kept per clip (the most active; zero-padded).
        shard_size: clips per RGB shard file.
    """

    frames_rgb: int = 16
    resolution: int = 224
    frames_skeleton: int = 32
    crop: str = "person"
    persons: int = 2
    shard_size: int = 256


@dataclass
class ClipSource:
    """One clip to prepare: its id, label, metadata and where its data is.

    ``reader`` names a function in :data:`READERS` that turns the source into
    ``(skeleton float32 [3, T_s, 25, M], rgb uint8 [3, T, S, S], info)``; ``args`` are its inputs
    (paths, frame ranges, or small in-memory arrays).
    """

    clip: str
    label: int
    reader: str
    args: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Summary:
    """Counts of a preparation."""

    written: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> clips left out before reading
    failed: list[tuple[str, str]] = field(default_factory=list)  # (clip, reason)
    skipped_clips: list[tuple[str, str]] = field(default_factory=list)  # (clip, reason), in prepare-skipped.csv
    resumed: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        skipped = sum(self.skipped.values())
        detail = ", ".join(f"{n} {why}" for why, n in self.skipped.items())
        return (f"{self.written} clips written, {skipped} skipped" + (f" ({detail})" if detail else "") +
                f", {len(self.failed)} failed" + (f"; {self.resumed} were already done" if self.resumed else ""))


#: reader name -> function(args, settings) -> (skeleton, rgb, info); filled by robench.data.prepare.sources
READERS: dict[str, Callable[[dict[str, Any], Settings], tuple[np.ndarray, np.ndarray, dict[str, Any]]]] = {}

_open: dict[str, RowFile] = {}  # output files opened in this process


def _output(path: Path, dtype: type[np.generic]) -> RowFile:
    key = str(path)
    if key not in _open:
        _open[key] = RowFile(path, dtype, writable=True)
    return _open[key]


def _work(job: tuple[int, ClipSource, Settings, str]) -> tuple[int, str, str, dict[str, Any]]:
    """Prepare one clip in a worker and write its row; never raises (failures are returned)."""
    row, source, settings, out = job
    try:
        skeleton, rgb, info = READERS[source.reader](source.args, settings)
        folder = Path(out)
        expected = (3, settings.frames_skeleton, 25, settings.persons)
        if skeleton.shape != expected:
            raise ValueError(f"skeleton shape {skeleton.shape}, expected {expected}")
        _output(folder / "skeleton.npy", np.float32).write_row(row, skeleton)
        shard, shard_row = divmod(row, settings.shard_size)
        _output(folder / f"rgb-{shard:05d}.npy", np.uint8).write_row(shard_row, rgb)
        return row, "ok", "", info
    except Exception as exc:  # a bad file must not stop the others
        where = source.args.get("skeleton_path") or source.args.get("video_path") or source.clip
        return row, "failed", f"{Path(str(where)).name}: {type(exc).__name__}: {exc}".replace("\n", " "), {}


def _state(settings: Settings, dataset: str, clips: list[ClipSource]) -> dict[str, Any]:
    return {"dataset": dataset, "settings": asdict(settings), "clips": [c.clip for c in clips]}


def _allocate(out: Path, settings: Settings, n: int) -> list[int]:
    np.lib.format.open_memmap(out / "skeleton.npy", mode="w+", dtype=np.float32,
                              shape=(n, 3, settings.frames_skeleton, 25, settings.persons))
    sizes = [min(settings.shard_size, n - k) for k in range(0, n, settings.shard_size)]
    for k, size in enumerate(sizes):
        np.lib.format.open_memmap(out / f"rgb-{k:05d}.npy", mode="w+", dtype=np.uint8,
                                  shape=(size, 3, settings.frames_rgb, settings.resolution, settings.resolution))
    return sizes


def _read_ledger(out: Path) -> dict[int, tuple[str, str, dict[str, Any]]]:
    done: dict[int, tuple[str, str, dict[str, Any]]] = {}
    if (out / LEDGER).is_file():
        with open(out / LEDGER, newline="") as fh:
            for rec in csv.reader(fh):
                if len(rec) == 4:  # a line cut by a kill is ignored: that clip is redone
                    try:
                        done[int(rec[0])] = (rec[1], rec[2], json.loads(rec[3]) if rec[3] else {})
                    except ValueError:  # a damaged line: that clip is redone too
                        continue
    return done


def prepare_folder(out: str | Path, dataset: str, class_names: list[str], clips: list[ClipSource], settings: Settings,
                   workers: int = 1, skipped: list[tuple[str, str]] | dict[str, int] | None = None, source: str = "",
                   progress: Callable[[int, int], None] | None = None) -> Summary:
    """Prepare ``clips`` into ``out`` (resuming an interrupted preparation with the same settings).

    ``skipped``: the clips the source left out before reading, as ``(clip, reason)`` pairs (written to
    ``prepare-skipped.csv`` and counted by reason) or as counts by reason only.
    """
    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    clips = sorted(clips, key=lambda c: c.clip)
    if len({c.clip for c in clips}) != len(clips):
        raise DataError("clip ids are not unique")
    if not clips:
        raise DataError(f"no clips to prepare for {dataset} (skipped: {skipped or {}})")
    state = _state(settings, dataset, clips)
    if isinstance(skipped, dict):
        summary = Summary(skipped=dict(skipped))
    else:
        summary = Summary(skipped=dict(Counter(why for _, why in skipped or [])), skipped_clips=list(skipped or []))
    if (out / STATE).is_file():
        try:
            old = json.loads((out / STATE).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"cannot resume the preparation in {out}: {out / STATE} is unreadable ({exc}); "
                            "move the folder away (or delete it) and prepare again") from None
        if not isinstance(old, dict):
            old = {"dataset": None, "settings": None}
        if old != state:
            raise DataError(f"{out} holds a preparation of other clips or settings ({old.get('dataset')}, "
                            f"{old.get('settings')}); choose another --out or delete the folder")
        sizes = [min(settings.shard_size, len(clips) - k) for k in range(0, len(clips), settings.shard_size)]
        damaged = [why for name in ["skeleton.npy", *(f"rgb-{k:05d}.npy" for k in range(len(sizes)))]
                   if (why := npy_shape(out / name)[1])]
        if damaged:
            raise DataError(f"cannot resume the preparation in {out}: {'; '.join(damaged[:3])}; "
                            "move the folder away (or delete it) and prepare again")
    else:
        (out / MANIFEST).unlink(missing_ok=True)
        (out / LEDGER).unlink(missing_ok=True)
        sizes = _allocate(out, settings, len(clips))
        atomic_write(out / STATE, json.dumps(state))
    done = _read_ledger(out)
    summary.resumed = len(done)
    pending = [(row, clip, settings, str(out)) for row, clip in enumerate(clips) if row not in done]
    if progress:
        progress(len(done), len(clips))
    _open.clear()  # files of an earlier call in this process may have been replaced since
    try:
        with open(out / LEDGER, "a", newline="") as ledger:
            writer = csv.writer(ledger)
            for k, (row, status, detail, info) in enumerate(_run(pending, workers), start=1):
                writer.writerow([row, status, detail, json.dumps(info) if info else ""])
                done[row] = (status, detail, info)
                if k % 32 == 0:
                    ledger.flush()
                    os.fsync(ledger.fileno())
                if progress:
                    progress(len(done), len(clips))
    finally:
        _open.clear()
    _finish(out, dataset, class_names, clips, settings, sizes, done, summary, source)
    summary.seconds = time.perf_counter() - t0
    return summary


def _run(pending: list[tuple[int, ClipSource, Settings, str]],
         workers: int) -> Iterator[tuple[int, str, str, dict[str, Any]]]:
    if workers <= 1 or len(pending) <= 1:
        for job in pending:
            yield _work(job)
        return
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ctx.Pool(workers, initializer=_worker_init, initargs=(threads,)) as pool:
        yield from pool.imap_unordered(_work, pending, chunksize=1)


def _worker_init(threads: int) -> None:
    """Each worker's share of the cores: ``threads`` FFmpeg decoder threads, one torch thread."""
    import torch

    from robench.data.prepare import video

    torch.set_num_threads(1)  # parallel over clips, not inside one
    video.decoder_threads = threads  # FFmpeg would otherwise start one thread per core in every worker
    _open.clear()


def _finish(out: Path, dataset: str, class_names: list[str], clips: list[ClipSource], settings: Settings,
            sizes: list[int], done: dict[int, tuple[str, str, dict[str, Any]]], summary: Summary, source: str) -> None:
    labels = np.full(len(clips), -1, dtype=np.int64)
    meta_keys = sorted({k for c in clips for k in c.meta})
    rows = []
    for row, clip in enumerate(clips):
        status, detail, info = done.get(row, ("missing", "", {}))
        if status == "ok":
            labels[row] = clip.label
            rows.append({"clip": clip.clip, "label": clip.label, **{k: clip.meta.get(k, "") for k in meta_keys},
                         "frames": info.get("frames", ""), "bodies": info.get("bodies", ""), "row": row})
        else:
            summary.failed.append((clip.clip, detail or status))
    summary.written = len(rows)
    with atomic_file(out / "labels.npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, labels)
    index = io.StringIO(newline="")
    w = csv.DictWriter(index, fieldnames=["clip", "label", *meta_keys, "frames", "bodies", "row"])
    w.writeheader()
    w.writerows(rows)
    atomic_write(out / "clips.csv", index.getvalue())
    for name, listed in ((FAILURES, summary.failed), (SKIPPED, summary.skipped_clips)):
        text = io.StringIO(newline="")
        w2 = csv.writer(text)
        w2.writerow(["clip", "reason"])
        w2.writerows(listed)
        atomic_write(out / name, text.getvalue())
    manifest = {
        "format": FORMAT, "dataset": dataset, "classes": class_names, "clips": len(rows),
        "rgb": {"frames": settings.frames_rgb, "height": settings.resolution, "width": settings.resolution,
                "crop": settings.crop, "shards": [f"rgb-{k:05d}.npy" for k in range(len(sizes))], "shard_sizes": sizes},
        "skeleton": {"frames": settings.frames_skeleton, "joints": 25, "persons": settings.persons,
                     "file": "skeleton.npy", "units": "metres" if dataset.startswith("ntu") else "see source"},
        "labels": "labels.npy", "index": "clips.csv",
        "counts": {"written": len(rows), "skipped": summary.skipped, "failed": len(summary.failed)},
        "source": source, "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    atomic_write(out / MANIFEST, json.dumps(manifest, indent=1))  # last: a complete manifest marks a finished folder
