"""Temporal and codec corruptions of the RGB video: H.264 compression, dropped frames, a lower frame rate.

These follow the video robustness benchmark of Yi et al. (2021, "Benchmarking the Robustness of
Spatial-Temporal Models Against Corruptions"), which adds codec (H.264, H.265), bit-error and frame-rate
corruptions to ImageNet-C's per-image ones (Hendrycks & Dietterich 2019). Here they run in memory, on the
decoded clip the model sees, rather than on the source video files.

Every corruption takes an RGB clip ``[3, T, H, W]`` (float, [0, 1]) and returns one of the same shape and
dtype, in [0, 1].
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from robench.corruptions.base import Corruption
from robench.registry import register_corruption


def _check_rgb(x: Tensor) -> None:
    if x.dim() != 4 or x.shape[0] != 3:
        raise ValueError(f"expected an RGB clip [3, T, H, W], got shape {tuple(x.shape)}")


#: the frame rate the H.264 bitrate is computed for (frames per second); the clip's real rate is unknown
NOMINAL_FPS = 30
#: H.264 encoders tried in order (PyAV names); the first one the installed FFmpeg has is used
H264_ENCODERS = ("libx264", "libopenh264", "h264")

#: the smallest frame side the clip is encoded at (smaller clips are padded, then cropped back)
MIN_SIDE = 16

_encoder_name: str | None = None


def h264_encoder() -> str:
    """The name of the first available H.264 encoder of :data:`H264_ENCODERS` (RuntimeError if none)."""
    global _encoder_name
    if _encoder_name is None:
        import av

        for name in H264_ENCODERS:
            try:
                codec = av.codec.Codec(name, "w")
            except Exception:
                continue
            if codec.type == "video":
                _encoder_name = name
                break
        else:
            raise RuntimeError(f"the h264 corruption needs an H.264 encoder, but the FFmpeg that PyAV "
                               f"{av.__version__} was built with has none of {', '.join(H264_ENCODERS)}; "
                               "install a PyAV wheel with libx264 (pip install av)")
    return _encoder_name


def rgb_to_yuv420(rgb: Tensor) -> np.ndarray:
    """RGB frames ``[T, 3, H, W]`` (float in [0, 1], even H and W) as 8-bit YUV 4:2:0 planes in PyAV's
    ``yuv420p`` layout ``[T, 3H/2, W]``: BT.601 limited range, chroma averaged over 2x2 pixels. Computed here
    in float64 (not by FFmpeg's swscale, whose SIMD paths may round differently on another CPU)."""
    x = rgb.double()
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    y = 16.0 + 219.0 * (0.299 * r + 0.587 * g + 0.114 * b)
    cb = 128.0 + 224.0 * (-0.168736 * r - 0.331264 * g + 0.5 * b)
    cr = 128.0 + 224.0 * (0.5 * r - 0.418688 * g - 0.081312 * b)
    t, h, w = y.shape
    cb = F.avg_pool2d(cb.unsqueeze(1), 2).view(t, h // 2, w // 2)
    cr = F.avg_pool2d(cr.unsqueeze(1), 2).view(t, h // 2, w // 2)

    def u8(p: Tensor) -> Tensor:
        return p.round().clamp(0, 255).to(torch.uint8)

    flat = torch.cat([u8(y).reshape(t, -1), u8(cb).reshape(t, -1), u8(cr).reshape(t, -1)], dim=1)
    return flat.reshape(t, h * 3 // 2, w).numpy()


def yuv420_to_rgb(planes: np.ndarray, h: int, w: int) -> Tensor:
    """The inverse of :func:`rgb_to_yuv420`: RGB ``[T, 3, H, W]`` float64 in [0, 1], chroma upsampled
    bilinearly."""
    t = planes.shape[0]
    p = torch.from_numpy(planes).double().reshape(t, -1)
    n, c = h * w, (h // 2) * (w // 2)
    y = (p[:, :n].reshape(t, h, w) - 16.0) / 219.0
    cb = p[:, n : n + c].reshape(t, 1, h // 2, w // 2)
    cr = p[:, n + c :].reshape(t, 1, h // 2, w // 2)
    pb = (F.interpolate(cb, scale_factor=2, mode="bilinear", align_corners=False)[:, 0] - 128.0) / 224.0
    pr = (F.interpolate(cr, scale_factor=2, mode="bilinear", align_corners=False)[:, 0] - 128.0) / 224.0
    r = y + 1.402 * pr
    g = y - 0.344136 * pb - 0.714136 * pr
    b = y + 1.772 * pb
    return torch.stack([r, g, b], dim=1).clamp(0.0, 1.0)


def h264_roundtrip(planes: np.ndarray, width: int, height: int, bitrate: int, gop: int = NOMINAL_FPS) -> np.ndarray:
    """Encode YUV 4:2:0 frames (``[T, 3H/2, W]`` uint8, even H and W) with H.264 at ``bitrate`` bits per
    second and decode them back (same layout).

    Deterministic: one thread, fixed settings and, for libx264, its portable C code (``asm=0``): with its
    SIMD code on, the libx264 (core 165) in PyAV 18's wheel was seen to give outputs that depend on the
    encodes run before in the same process.
    """
    import av

    name = h264_encoder()
    enc: Any = av.CodecContext.create(name, "w")
    enc.width, enc.height = width, height
    enc.pix_fmt = "yuv420p"
    enc.time_base = Fraction(1, NOMINAL_FPS)
    enc.framerate = Fraction(NOMINAL_FPS, 1)
    enc.bit_rate = bitrate
    enc.gop_size = gop
    enc.thread_count = 1
    if enc.codec.name == "libx264":
        enc.options = {"preset": "medium", "x264-params": "threads=1:lookahead-threads=1:sync-lookahead=0:asm=0:"
                       f"scenecut=0:keyint={gop}:min-keyint={gop}"}
    enc.open()
    dec: Any = av.CodecContext.create("h264", "r")
    dec.thread_count = 1
    out: list[np.ndarray] = []

    def decode(packets: list[Any]) -> None:
        for packet in packets:
            out.extend(frame.to_ndarray(format="yuv420p") for frame in dec.decode(packet))

    for i, array in enumerate(planes):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="yuv420p")
        frame.pts = i
        decode(enc.encode(frame))
    decode(enc.encode(None))
    out.extend(frame.to_ndarray(format="yuv420p") for frame in dec.decode(None))
    if len(out) != len(planes):
        raise RuntimeError(f"the H.264 round trip returned {len(out)} frames for {len(planes)}")
    return np.stack(out)


@register_corruption("h264")
class H264(Corruption):
    """H.264 compression at a low bitrate (bits per pixel per frame), encoded and decoded with libx264.

    H.264 compression artefacts (blocking, smearing, lost texture): the clip encoded with H.264 at a low
    bitrate and decoded back, as after streaming or storing video at a low quality.

    Unit: bits per pixel per frame; the encoder's bitrate is ``level * W * H * 30`` bit/s (a nominal 30 fps,
    :data:`NOMINAL_FPS`, whatever the clip's real rate), rounded to whole kbit/s (at least 1), so ``level``
    is the average number of bits each pixel of each frame may cost. The clip is converted to 8-bit YUV 4:2:0
    (BT.601; an odd side, or one under 16 px, padded by repeating the last row/column and cropped back after
    decoding), encoded with libx264 (preset medium, average bitrate, one thread, its portable C code, a
    keyframe every 30 frames) into an in-memory H.264 stream (no container), decoded with FFmpeg's H.264
    decoder and converted back. Yi et al. (2021) compress with libx264 at an average bitrate too (a share of
    the source video's bitrate, which a decoded clip no longer has). The result does not depend on the seed.
    On very busy (noise-like) frames the encoder cannot go as low as the lowest bitrates ask and the two top
    severities come out alike. With the blurs, the slowest corruption: one encode and decode per clip (up to
    about 0.1 s for 16 frames at 112 px and 0.5 s at 224 px on one CPU core, on noise-like frames).
    """

    version = 1
    modality = "rgb"
    family = "video"
    levels = (0.2, 0.1, 0.05, 0.025, 0.0125)
    unit = "bits per pixel per frame"

    def corrupt(self, x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
        _check_rgb(x)
        _, t, h, w = x.shape
        if t == 0:
            return x.clone()
        frames = x.detach().double().cpu().clamp(0.0, 1.0).permute(1, 0, 2, 3)  # [T, 3, H, W]
        # 4:2:0 needs even sizes, and libx264 a frame of at least 16 x 16: repeat the last row / column
        ph, pw = max(h % 2, MIN_SIDE - h), max(w % 2, MIN_SIDE - w)
        hh, ww = h + ph, w + pw
        # libx264 takes whole kbit/s
        bitrate = 1000 * max(1, round(self.level(severity) * hh * ww * NOMINAL_FPS / 1000))
        with torch.autocast(device_type="cpu", enabled=False):  # float64 colour conversion, whatever the caller
            if ph or pw:
                frames = F.pad(frames, (0, pw, 0, ph), mode="replicate")
            decoded = h264_roundtrip(rgb_to_yuv420(frames), ww, hh, bitrate)
            y = yuv420_to_rgb(decoded, hh, ww)[:, :, :h, :w].permute(1, 0, 2, 3)  # [3, T, H, W]
        return y.to(device=x.device, dtype=x.dtype).clamp_(0.0, 1.0)


def _count(share: float, n: int) -> int:
    """How many of ``n`` items a ``share`` is, rounded to the nearest whole item."""
    return min(n, max(0, math.floor(share * n + 0.5)))


@register_corruption("frame-drop")
class FrameDrop(Corruption):
    """Dropped frames: a random share of frames replaced by the last kept frame (the first is kept).

    Dropped frames, as from a congested network or an overloaded recorder: a share of the frames, chosen
    at random per clip, each replaced by the last frame kept before it; the first frame is always kept.

    Unit: the share of frames dropped; ``round(level * T)`` frames (at most ``T - 1``) are dropped, chosen
    among frames 2..T. Unlike a lower frame rate (``frame-rate``), the gaps are irregular; it stands for
    the lost frames that Yi et al. (2021) produce with bit errors in the stream, without a codec.
    """

    version = 1
    modality = "rgb"
    family = "video"
    levels = (0.1, 0.2, 0.35, 0.5, 0.65)
    unit = "share of frames dropped"

    def corrupt(self, x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
        _check_rgb(x)
        t = x.shape[1]
        if t < 2:
            return x.clone()
        n = min(t - 1, _count(self.level(severity), t))
        dropped = (torch.randperm(t - 1, generator=generator)[:n] + 1).tolist()
        keep = torch.ones(t, dtype=torch.bool)
        keep[dropped] = False
        source = torch.arange(t)
        source[~keep] = 0
        source = torch.cummax(source, dim=0).values  # each frame shows the last kept frame at or before it
        return x[:, source.to(x.device)].clone()


@register_corruption("frame-rate")
class FrameRate(Corruption):
    """A lower frame rate: every k-th frame kept and held for k frames.

    A lower frame rate: every k-th frame kept and shown k times (frames 1, 1, ..., k+1, k+1, ...), as a
    camera recording at 1/k of the rate, played back at the model's rate.

    Unit: frames per held frame (k); deterministic, the held frames always start at the first frame.
    Yi et al. (2021) convert videos to a lower frame rate with FFmpeg; holding frames gives the clip the
    model then samples, at a fixed length.
    """

    version = 1
    modality = "rgb"
    family = "video"
    levels = (2.0, 3.0, 4.0, 6.0, 8.0)
    unit = "frames per held frame"

    def corrupt(self, x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
        _check_rgb(x)
        k = int(self.level(severity))
        source = (torch.arange(x.shape[1], device=x.device) // k) * k
        return x[:, source].clone()
