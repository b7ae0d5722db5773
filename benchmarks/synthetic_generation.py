"""Time the generation of the synthetic dataset (both splits, in memory, no cache).

Example::

    python benchmarks/synthetic_generation.py                      # quickstart size at 32, 64, 112 px
    python benchmarks/synthetic_generation.py --sizes 32 --classes 16 --train 96 --test 32

Prints one line per resolution: clips, seconds and clips per second (best of ``--repeat`` runs).
"""

from __future__ import annotations

import argparse
import time

import torch

from robench.data.synthetic import SyntheticDataset
from timing import recorded


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 112], help="frame heights (= widths), pixels")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--train", type=int, default=48, help="train clips per class")
    p.add_argument("--test", type=int, default=16, help="test clips per class")
    p.add_argument("--frames-rgb", type=int, default=16)
    p.add_argument("--frames-skeleton", type=int, default=32)
    p.add_argument("--repeat", type=int, default=1, help="runs per size; the best is reported")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    clips = args.classes * (args.train + args.test)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.classes} classes x "
          f"({args.train} train + {args.test} test) = {clips} clips, {args.frames_rgb} RGB frames, "
          f"{args.frames_skeleton} skeleton frames")
    print(f"{'resolution':>10} {'clips':>6} {'seconds':>8} {'clips/s':>8} {'MB (rgb)':>9}")
    for size in args.sizes:
        best = float("inf")
        for _ in range(args.repeat):
            ds = SyntheticDataset(classes=args.classes, train_clips_per_class=args.train,
                                  test_clips_per_class=args.test, frames_rgb=args.frames_rgb,
                                  frames_skeleton=args.frames_skeleton, resolution=size)
            start = time.perf_counter()
            splits = [ds.split("train"), ds.split("test")]
            best = min(best, time.perf_counter() - start)
        mb = sum(s.rgb.numel() for s in splits) / 1e6
        print(f"{size:>7}x{size:<3}{clips:>6} {best:>8.2f} {clips / best:>8.1f} {mb:>9.1f}")


if __name__ == "__main__":
    with recorded("synthetic_generation"):
        main()
