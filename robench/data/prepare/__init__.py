"""``robench prepare``: decode real datasets once into prepared folders (see :mod:`robench.data.prepared`).

Inputs: raw NTU RGB+D 60/120 trees, iMiGUE in a documented layout, PYSKL/MMAction2 skeleton pickles
with a video folder, and a generic CSV manifest (see :mod:`.sources`). Preparation runs on all
cores, shows progress, resumes after an interruption without redoing finished clips, and reports
unreadable files by name while going on with the rest (:mod:`.writer`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from robench.data.imigue import IMIGUE_CLASSES
from robench.data.ntu import NTU_CLASSES
from robench.data.prepare import sources
from robench.data.prepare.writer import ClipSource, Settings, Summary, prepare_folder
from robench.errors import DataError

FORMATS = ("ntu60", "ntu120", "imigue", "pyskl", "manifest")


def prepare(fmt: str, out: str | Path, settings: Settings, workers: int = 1, root: str | Path | None = None,
            missing_skeletons: str | Path | None = None, pickle: str | Path | None = None,
            videos: str | Path | None = None, dataset: str | None = None, manifest: str | Path | None = None,
            label_base: int = 0, limit: int | None = None,
            progress: Callable[[int, int], None] | None = None) -> Summary:
    """Prepare one dataset into ``out``; returns the counts (written, skipped by reason, failed by clip)."""
    for flag, value in (("--frames-rgb", settings.frames_rgb), ("--resolution", settings.resolution),
                        ("--frames-skeleton", settings.frames_skeleton), ("--shard-size", settings.shard_size),
                        ("persons", settings.persons), ("--limit", 1 if limit is None else limit)):
        if value < 1:
            raise DataError(f"robench prepare {fmt}: {flag} {value}; allowed: an integer >= 1")

    def need(value: object, flag: str) -> Path:
        if value is None:
            raise DataError(f"robench prepare {fmt} needs {flag}")
        path = Path(str(value)).expanduser()
        if not path.exists():
            raise DataError(f"robench prepare {fmt}: {flag} {path} does not exist")
        return path

    if fmt in ("ntu60", "ntu120"):
        clips, skipped = sources.find_ntu(need(root, "--root"), fmt,
                                          need(missing_skeletons, "--missing-skeletons") if missing_skeletons else None)
        name, classes = fmt, list(NTU_CLASSES[: 60 if fmt == "ntu60" else 120])
    elif fmt == "imigue":
        clips, skipped = sources.find_imigue(need(root, "--root"), label_base)
        name, classes = "imigue", list(IMIGUE_CLASSES)
    elif fmt == "pyskl":
        name = dataset or "manifest"
        clips, skipped = sources.find_pyskl(need(pickle, "--pickle"), need(videos, "--videos"), name)
        classes = (list(NTU_CLASSES[: 60 if name == "ntu60" else 120]) if name.startswith("ntu")
                   else [str(i) for i in range(max((c.label for c in clips), default=-1) + 1)])
    elif fmt == "manifest":
        clips, skipped = sources.find_manifest(need(manifest, "--manifest"))
        name, classes = "manifest", [str(i) for i in range(max((c.label for c in clips), default=-1) + 1)]
    else:
        raise DataError(f"unknown format {fmt!r}; robench prepare reads {', '.join(FORMATS)}")
    if limit is not None:
        clips = sorted(clips, key=lambda c: c.clip)[:limit]
    source = str(root or pickle or manifest)
    return prepare_folder(out, name, classes, clips, settings, workers=workers, skipped=skipped, source=source,
                          progress=progress)


__all__ = ["FORMATS", "ClipSource", "Settings", "Summary", "prepare", "prepare_folder"]
