"""Decoding videos once, at preparation time, with PyAV (FFmpeg inside the ``av`` wheel).

A clip becomes ``uint8 [3, T, S, S]``: T frames spread evenly over the whole clip (the centre of
each of T equal segments), a square crop, resized to S x S with antialiasing. Crops:

* ``person``: a square around the people in the clip (their joints' pixel coordinates over the
  whole clip, plus a margin), shifted to stay inside the frame; falls back to ``center``;
* ``center``: the largest centred square;
* ``full``: the whole frame, squeezed to a square.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F


def sample_indices(length: int, count: int) -> np.ndarray:
    """``count`` frame indices spread over ``length`` frames: the centre of each of ``count`` equal segments."""
    if length <= 0:
        raise ValueError("clip has no frames")
    return np.minimum(((np.arange(count) + 0.5) * length / count).astype(np.int64), length - 1)


def resample(array: np.ndarray, count: int, axis: int) -> np.ndarray:
    """Take ``count`` evenly spread entries of ``array`` along ``axis`` (see :func:`sample_indices`)."""
    return np.take(array, sample_indices(array.shape[axis], count), axis=axis)


#: FFmpeg decoder threads per video: 0 lets FFmpeg use every core; preparation workers lower it
#: to their share of the cores (see :func:`robench.data.prepare.writer.prepare_folder`)
decoder_threads = 0


def threaded(stream: av.video.stream.VideoStream) -> av.video.stream.VideoStream:
    """``stream`` set to decode with frame and slice threads (:data:`decoder_threads` of them)."""
    stream.thread_type = "AUTO"
    stream.codec_context.thread_count = decoder_threads
    return stream


def decode(path: str | Path, wanted: int | None = None) -> tuple[np.ndarray, int]:
    """All frames (or ``wanted`` evenly spread ones) as ``uint8 [T, H, W, 3]``, and the clip's frame count.

    When the container states its frame count, only the wanted frames are kept while decoding (a
    300-frame 1080p clip would otherwise hold 1.9 GB); otherwise every frame is decoded first.
    """
    with av.open(str(path)) as container:
        stream = threaded(container.streams.video[0])
        stated = int(stream.frames or 0)
        if wanted is not None and stated > 0:
            picks = sample_indices(stated, wanted)
            wanted_set = set(picks.tolist())
            keep: dict[int, np.ndarray] = {}
            total = 0
            for k, frame in enumerate(container.decode(stream)):
                total = k + 1
                if k in wanted_set:
                    keep[k] = frame.to_ndarray(format="rgb24")
            if total == stated and wanted_set <= set(keep):
                return np.stack([keep[int(i)] for i in picks]), total
            container.seek(0)  # the stated count was wrong: decode everything
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    if not frames:
        raise ValueError(f"{Path(path).name}: no decodable video frames")
    total = len(frames)
    if wanted is not None:
        frames = [frames[i] for i in sample_indices(total, wanted)]
    return np.stack(frames), total


def square_box(width: int, height: int, crop: str, box: tuple[float, float, float, float] | None = None,
               margin: float = 0.15) -> tuple[int, int, int]:
    """``(x0, y0, side)`` of the square to cut from a ``width`` x ``height`` frame."""
    side = min(width, height)
    if crop == "person" and box is not None:
        x0, y0, x1, y1 = box
        size = max(x1 - x0, y1 - y0) * (1 + 2 * margin)
        side = int(min(max(size, 0.25 * min(width, height)), min(width, height)))
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        left = round(min(max(cx - side / 2, 0), width - side))
        top = round(min(max(cy - side / 2, 0), height - side))
        return left, top, side
    return (width - side) // 2, (height - side) // 2, side


def to_clip(frames: np.ndarray, size: int, crop: str = "center",
            box: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """``uint8 [T, H, W, 3]`` frames -> ``uint8 [3, T, size, size]`` (crop, then antialiased resize)."""
    _, h, w, _ = frames.shape
    if crop == "full":
        cut = frames
    else:
        left, top, side = square_box(w, h, crop, box)
        cut = frames[:, top : top + side, left : left + side]
    x = torch.from_numpy(np.ascontiguousarray(cut)).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(1, 0, 2, 3).numpy()
