"""Finding the clips of each supported input format, and reading one clip of each.

Formats (``robench prepare FORMAT``):

``ntu60`` / ``ntu120``
    a folder tree of raw NTU files: ``<name>.skeleton`` and ``<name>_rgb.avi`` anywhere below
    ``--root`` (NTU-60 keeps setups 1-17). Clips listed in ``--missing-skeletons`` (the official
    list) are skipped (named in ``prepare-skipped.csv``); those whose skeleton has no body in any frame fail.
``imigue``
    iMiGUE's raw files are not public, so robench reads this documented layout (that of public
    challenge loaders)::

        <root>/subjects.csv             video,subject           one row per video
        <root>/labels/<video>.csv       gestureID,startFrame,endFrame (no header; one clip per row,
                                        frames 0-based and inclusive; gestureID = class 0-31, or
                                        1-32 with --label-base 1)
        <root>/skeletons/<video>.csv    no header, one row per frame: frame index, then 35 joints x
                                        (x, y, score): OpenPose BODY_25 (0-24), then the 5 fingertips
                                        of the left hand (thumb first), then of the right hand
        <root>/videos/<video>.<ext>     the video (any container FFmpeg reads)

    The 2D keypoints go to the NTU 25-joint layout (:data:`BODY25_TO_NTU`), in units of the frame
    height (x / H, y / H) with z = 0.
``pyskl``
    a PYSKL / MMAction2 skeleton pickle (``--pickle``) with a folder of videos named after each
    annotation's ``frame_dir`` (``<frame_dir>_rgb.avi``, ``.mp4`` or ``.avi``); ``keypoint`` is
    ``[M, T, V, C]``; the pickle's ``split`` lists become a ``splits`` column.
``manifest``
    a CSV (``--manifest``) with columns ``clip,label,split,video,skeleton`` (optional ``subject``):
    ``skeleton`` is a ``.npy`` of shape ``[3, T, V, M]``, ``[M, T, V, C]`` or ``[T, V, C]``.
"""

from __future__ import annotations

import csv
import pickle
from pathlib import Path
from typing import Any

import av
import numpy as np

from robench.data.ntu import parse_name
from robench.data.prepare.ntu import missing_skeletons, read_skeleton
from robench.data.prepare.video import decode, resample, sample_indices, threaded, to_clip
from robench.data.prepare.writer import READERS, ClipSource, Settings
from robench.errors import DataError

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".webm")
#: clips left out before reading: (clip, reason)
Skipped = list[tuple[str, str]]

#: NTU joint (0-based) <- OpenPose BODY_25 joint(s), averaged; 25-29 / 30-34 are left / right fingertips
BODY25_TO_NTU: tuple[tuple[int, ...], ...] = (
    (8,),              # 1 SpineBase <- MidHip
    (8, 1),            # 2 SpineMid <- between MidHip and Neck
    (1,),              # 3 Neck
    (0,),              # 4 Head <- Nose
    (5,), (6,), (7,),  # 5-7 left shoulder, elbow, wrist
    (7,),              # 8 left hand <- wrist
    (2,), (3,), (4,),  # 9-11 right shoulder, elbow, wrist
    (4,),              # 12 right hand <- wrist
    (12,), (13,), (14,), (19,),  # 13-16 left hip, knee, ankle, foot (big toe)
    (9,), (10,), (11,), (22,),   # 17-20 right hip, knee, ankle, foot (big toe)
    (1,),              # 21 SpineShoulder <- Neck
    (26, 27, 28, 29),  # 22 HandTipLeft <- left finger tips
    (25,),             # 23 ThumbLeft
    (31, 32, 33, 34),  # 24 HandTipRight
    (30,),             # 25 ThumbRight
)


def _resample_skeleton(x: np.ndarray, settings: Settings) -> np.ndarray:
    """``[3, T, V, M]`` -> ``[3, frames_skeleton, V, persons]`` (even frames, bodies cut or zero-padded)."""
    x = resample(x, settings.frames_skeleton, axis=1).astype(np.float32)
    m = x.shape[3]
    if m >= settings.persons:
        return np.ascontiguousarray(x[..., : settings.persons])
    return np.concatenate([x, np.zeros((*x.shape[:3], settings.persons - m), np.float32)], axis=3)


# -- NTU --------------------------------------------------------------------------------------------

def read_ntu(args: dict[str, Any], settings: Settings) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    skel = read_skeleton(args["skeleton_path"])
    if not skel.xyz or not any(p.any() for p in skel.present.values()):
        raise ValueError("no body in any frame")
    frames, video_frames = decode(args["video_path"], settings.frames_rgb)
    rgb = to_clip(frames, settings.resolution, settings.crop, skel.color_box(settings.persons))
    info = {"frames": skel.frames, "video_frames": video_frames, "bodies": min(len(skel.xyz), settings.persons)}
    return _resample_skeleton(skel.to_array(settings.persons), settings), rgb, info


def find_ntu(root: Path, dataset: str, missing_list: Path | None = None) -> tuple[list[ClipSource], Skipped]:
    """Clips of raw NTU files below ``root``; returns (clips, skipped clips with their reasons)."""
    max_setup = 17 if dataset == "ntu60" else 32
    skeletons = {p.name[: -len(".skeleton")]: p for p in root.rglob("*.skeleton")}
    videos = {p.name[: -len("_rgb.avi")]: p for p in root.rglob("*_rgb.avi")}
    missing = missing_skeletons(missing_list) if missing_list else set()
    clips, skipped = [], []
    for name in sorted(set(skeletons) | set(videos)):
        try:
            meta = parse_name(name)
        except ValueError:
            skipped.append((name, "not an NTU name"))
            continue
        if meta["setup"] > max_setup:
            continue
        reason = ("listed as missing skeleton" if name in missing else "no .skeleton file" if name not in skeletons
                  else "no _rgb.avi video" if name not in videos else None)
        if reason:
            skipped.append((name, reason))
            continue
        clips.append(ClipSource(name, meta["action"] - 1, "ntu",
                                {"skeleton_path": str(skeletons[name]), "video_path": str(videos[name])},
                                {k: meta[k] for k in ("setup", "camera", "subject", "replication")}))
    return clips, skipped


# -- iMiGUE -----------------------------------------------------------------------------------------

def openpose_to_ntu(points: np.ndarray, height: float) -> np.ndarray:
    """``[T, 35, 3]`` (x, y, score) pixels -> ``[3, T, 25, 1]`` NTU layout in frame-height units, z = 0."""
    xy = points[..., :2] / max(height, 1.0)
    out = np.zeros((3, points.shape[0], 25, 1), dtype=np.float32)
    for j, sources in enumerate(BODY25_TO_NTU):
        out[:2, :, j, 0] = xy[:, list(sources)].mean(axis=1).T
    return out


def decode_range(path: str, start: int, end: int, wanted: int) -> tuple[np.ndarray, int, int]:
    """``wanted`` frames spread over frames ``start..end`` (inclusive) of a video, and the video's height."""
    with av.open(path) as container:
        stream = threaded(container.streams.video[0])
        height = stream.codec_context.height
        rate = float(stream.average_rate or 25)
        if start > 0 and stream.time_base is not None:  # jump to the keyframe before the clip
            container.seek(int(max(start - 2, 0) / rate / stream.time_base), stream=stream, backward=True)
        time_base = stream.time_base
        frames: list[np.ndarray] = []
        for frame in container.decode(stream):
            if frame.pts is not None and time_base is not None:
                index = round(float(frame.pts * time_base) * rate)
            else:
                index = len(frames)
            if index > end:
                break
            if index >= start:
                frames.append(frame.to_ndarray(format="rgb24"))
    if not frames:
        raise ValueError(f"no frames {start}-{end} in {Path(path).name}")
    picked = [frames[i] for i in sample_indices(len(frames), wanted)]
    return np.stack(picked), len(frames), height


def read_imigue(args: dict[str, Any], settings: Settings) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    start, end = int(args["start"]), int(args["end"])
    frames, n_frames, height = decode_range(args["video_path"], start, end, settings.frames_rgb)
    rows = np.loadtxt(args["skeleton_path"], delimiter=",", ndmin=2)
    if rows.shape[1] != 1 + 35 * 3:
        raise ValueError(f"{rows.shape[1]} columns, expected 106 (frame index + 35 joints x 3)")
    sel = rows[(rows[:, 0] >= start) & (rows[:, 0] <= end)]
    if not len(sel):
        raise ValueError(f"no skeleton rows for frames {start}-{end}")
    skel = openpose_to_ntu(sel[:, 1:].reshape(len(sel), 35, 3), height)
    xs = sel[:, 1:].reshape(len(sel), 35, 3)[..., 0]
    ys = sel[:, 1:].reshape(len(sel), 35, 3)[..., 1]
    box = (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))
    rgb = to_clip(frames, settings.resolution, settings.crop, box)
    return _resample_skeleton(skel, settings), rgb, {"frames": len(sel), "video_frames": n_frames, "bodies": 1}


def find_imigue(root: Path, label_base: int = 0) -> tuple[list[ClipSource], Skipped]:
    subjects_file = root / "subjects.csv"
    if not subjects_file.is_file():
        raise DataError(f"{subjects_file} not found: robench reads iMiGUE in the layout documented in "
                        "robench/data/prepare/sources.py (subjects.csv, labels/, skeletons/, videos/)")
    clips, skipped = [], []
    with open(subjects_file, newline="") as fh:
        videos = [(r["video"], r["subject"]) for r in csv.DictReader(fh)]
    for video, subject in videos:
        label_file, skel_file = root / "labels" / f"{video}.csv", root / "skeletons" / f"{video}.csv"
        video_file = next((p for ext in VIDEO_EXTENSIONS if (p := root / "videos" / f"{video}{ext}").is_file()), None)
        if not label_file.is_file():
            skipped.append((video, "no label file"))  # its clips are unknown: the video is named
            continue
        with open(label_file, newline="") as fh:
            segments = [r for r in csv.reader(fh) if r and r[0].strip()]
        if skel_file is None or not skel_file.is_file() or video_file is None:
            key = "no skeleton file" if not skel_file.is_file() else "no video"
            skipped.extend((f"{video}_{k:04d}", key) for k in range(len(segments)))
            continue
        for k, (gesture, start, end) in enumerate(segments):
            clips.append(ClipSource(f"{video}_{k:04d}", int(gesture) - label_base, "imigue",
                                    {"skeleton_path": str(skel_file), "video_path": str(video_file),
                                     "start": int(start), "end": int(end)},
                                    {"subject": subject, "video": video}))
    return clips, skipped


# -- PYSKL / MMAction2 pickles and generic manifests ------------------------------------------------

def read_array_video(args: dict[str, Any], settings: Settings) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    skel = np.asarray(args["skeleton"] if "skeleton" in args else load_skeleton_file(args["skeleton_path"]),
                      dtype=np.float32)
    frames, video_frames = decode(args["video_path"], settings.frames_rgb)
    rgb = to_clip(frames, settings.resolution, "center" if settings.crop == "person" else settings.crop)
    return _resample_skeleton(skel, settings), rgb, {"frames": skel.shape[1], "video_frames": video_frames,
                                                      "bodies": int((np.abs(skel).sum(axis=(0, 1, 2)) > 0).sum())}


def load_skeleton_file(path: str | Path) -> np.ndarray:
    """A ``.npy`` skeleton as ``[3, T, V, M]`` (accepts ``[3, T, V, M]``, ``[M, T, V, C]`` or ``[T, V, C]``)."""
    x = np.load(path)
    if x.ndim == 3:  # [T, V, C]
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"skeleton array of shape {x.shape}; expected [3, T, V, M], [M, T, V, C] or [T, V, C]")
    if x.shape[0] == 3 and x.shape[-1] != 3:
        return x
    return _channels_first(x)


def _channels_first(x: np.ndarray) -> np.ndarray:
    """``[M, T, V, C]`` keypoints (PYSKL, MMAction2) as ``[C, T, V, M]``, keeping the first three channels."""
    return np.ascontiguousarray(x[..., :3].transpose(3, 1, 2, 0))


class _DataUnpickler(pickle.Unpickler):
    """Unpickles plain data and numpy arrays only: what a PYSKL / MMAction2 annotation file holds.

    Any other class or function named in a pickle could run code while it loads; such a file is refused.
    """

    ALLOWED = frozenset({
        *((f"numpy.{core}.multiarray", name) for core in ("core", "_core") for name in ("_reconstruct", "scalar")),
        *((f"numpy.{core}.numeric", "_frombuffer") for core in ("core", "_core")),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"), ("collections", "OrderedDict"),
    })

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it names {module}.{name}, which is not plain data or a numpy array "
                                     "(robench does not load it: unpickling it could run code)")


def find_pyskl(pickle_path: Path, video_dir: Path, dataset: str) -> tuple[list[ClipSource], Skipped]:
    try:
        with open(pickle_path, "rb") as fh:
            data = _DataUnpickler(fh).load()
    except (OSError, EOFError, ValueError, TypeError, AttributeError, IndexError, pickle.UnpicklingError) as exc:
        raise DataError(f"cannot read the PYSKL pickle {pickle_path}: {exc}; robench reads pickles of plain data "
                        "and numpy arrays (lists/dicts with frame_dir, label, keypoint)") from None
    if not (isinstance(data, list) or (isinstance(data, dict) and isinstance(data.get("annotations"), list))):
        raise DataError(f"{pickle_path} is not a PYSKL annotation file: expected a dict with 'annotations' (a list) "
                        f"or a list of annotations, found {type(data).__name__}")
    annotations = data["annotations"] if isinstance(data, dict) else data
    membership: dict[str, list[str]] = {}
    for split, names in (data.get("split", {}) if isinstance(data, dict) else {}).items():
        for name in names:
            membership.setdefault(str(name), []).append(split)
    clips, skipped = [], []
    for ann in annotations:
        name = str(ann["frame_dir"])
        video = next((p for suffix in ("_rgb.avi", ".mp4", ".avi", ".mkv")
                      if (p := video_dir / f"{name}{suffix}").is_file()), None)
        if video is None:
            skipped.append((name, "no video"))
            continue
        kp = np.asarray(ann["keypoint"], dtype=np.float32)  # [M, T, V, C]
        meta: dict[str, Any] = {"splits": " ".join(sorted(membership.get(name, [])))}
        if dataset.startswith("ntu"):
            meta.update({k: v for k, v in parse_name(name).items() if k != "action"})
        clips.append(ClipSource(name, int(ann["label"]), "array_video",
                                {"skeleton": _channels_first(kp), "video_path": str(video)}, meta))
    return clips, skipped


def find_manifest(manifest: Path) -> tuple[list[ClipSource], Skipped]:
    base = manifest.parent
    clips = []
    with open(manifest, newline="") as fh:
        reader = csv.DictReader(fh)
        need = {"clip", "label", "split", "video", "skeleton"}
        if not need <= set(reader.fieldnames or []):
            raise DataError(f"{manifest}: columns {sorted(need - set(reader.fieldnames or []))} missing; "
                            "expected clip,label,split,video,skeleton[,subject]")
        for r in reader:
            meta = {"split": r["split"], **({"subject": r["subject"]} if r.get("subject") else {})}
            clips.append(ClipSource(r["clip"], int(r["label"]), "array_video",
                                    {"skeleton_path": str(base / r["skeleton"]), "video_path": str(base / r["video"])},
                                    meta))
    return clips, []


READERS.update({"ntu": read_ntu, "imigue": read_imigue, "array_video": read_array_video})
