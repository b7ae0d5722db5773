"""Preparation throughput (clips/s) on synthetic raw files shaped like NTU RGB+D's.

Writes N raw clips as NTU writes them: a ``.skeleton`` text file (two bodies, 25 joints, 12 values
per joint, ~100 frames) and an ``_rgb.avi`` video (1920 x 1080, ~100 frames at 30 fps, MPEG-4), then
runs ``robench prepare ntu60`` on them with 1 worker and with all cores, to the paper protocols'
size (16 RGB frames at 224 px, 32 skeleton frames).

    python benchmarks/prepare_throughput.py [--clips 16] [--frames 100] [--width 1920 --height 1080]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from robench.data.prepare import Settings, prepare
from timing import recorded


def write_raw(root: Path, clips: int, frames: int, width: int, height: int) -> float:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width]
    t0 = time.perf_counter()
    for i in range(clips):
        name = f"S001C00{1 + i % 3}P{1 + i % 8:03d}R001A{1 + i % 60:03d}"
        lines = [str(frames)]
        for t in range(frames):
            lines += ["2"]
            for b in range(2):
                lines += [f"{72057594037931101 + b} 0 1 1 1 1 0 0.02 0.05 2", "25"]
                for j in range(25):
                    x, y, z = 0.3 * b + 0.01 * j + 0.05 * np.sin(t / 10 + j), 0.05 * j - 0.5, 3.2 + 0.01 * rng.normal()
                    lines.append(f"{x:.7f} {y:.7f} {z:.6f} 250.1 200.2 {900 + 300 * x:.3f} {500 - 300 * y:.3f} "
                                 "-0.2 0.05 0.96 -0.12 2")
        (root / f"{name}.skeleton").write_text("\n".join(lines) + "\n")
        with av.open(str(root / f"{name}_rgb.avi"), "w") as out:
            stream = out.add_stream("mpeg4", rate=30)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.bit_rate = 4_000_000
            for t in range(frames):
                img = np.empty((height, width, 3), dtype=np.uint8)
                img[..., 0] = (xx + 7 * t) % 256
                img[..., 1] = (yy + 3 * t) % 256
                img[..., 2] = (xx // 8 + yy // 8 + i) % 256
                for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--workers", default=f"1,{os.cpu_count()}")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="robench-prepare-"))
    try:
        seconds = write_raw(base / "raw", args.clips, args.frames, args.width, args.height)
        size = sum(f.stat().st_size for f in (base / "raw").iterdir()) / 1e6
        print(f"raw NTU-shaped files: {args.clips} clips x {args.frames} frames at {args.width}x{args.height}, "
              f"{size:.0f} MB, written in {seconds:.0f}s")
        settings = Settings(frames_rgb=16, resolution=224, frames_skeleton=32, crop="person")
        for w in (int(v) for v in args.workers.split(",")):
            out = base / f"out{w}"
            summary = prepare("ntu60", out, settings, workers=w, root=base / "raw")
            print(f"prepare ntu60, {w} worker(s): {summary.written / summary.seconds:6.2f} clips/s "
                  f"({summary.line()}, {summary.seconds:.1f}s)")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"cpu cores: {os.cpu_count()}")


if __name__ == "__main__":
    with recorded("prepare_throughput"):
        main()
