"""Prepared-data loading throughput vs full-size training throughput, and memory on data larger than RAM.

1. Writes an NTU-shaped prepared folder (clips of 16 x 224 x 224 RGB + 32-frame skeletons, the
   paper protocols' input size) filled with non-constant bytes, so that reads hit the disk or the
   page cache, not sparse holes.
2. Reads the training split in shuffled batches of 16 through robench's loader (inline, and with
   DataLoader workers) and reports clips/s.
3. Times training steps of the full-size two-stream model (I3D width 1.0 + HCN width 1.0) on the
   same input size and reports clips/s: the loader must be faster than the model for the data
   path not to be the bottleneck.
4. With ``--big-gb N`` also writes a prepared set of N GB (choose N above the machine's RAM), all
   of it in the training split, and iterates over all of it once with 2 DataLoader workers,
   reporting the peak resident memory of the process and its workers: RGB rows are read with
   plain file reads into each batch, so it stays flat whatever the dataset's size.

    python benchmarks/loader_throughput.py [--clips 512] [--workers 0,2] [--device auto] [--big-gb 0]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from robench.data.base import batch_indices
from robench.data.ntu import NTU60
from robench.data.prepare.writer import Settings, _allocate
from robench.data.prepared import FORMAT, MANIFEST
from robench.models import HCN, I3D, TwoStreamModel
from robench.runtime import RuntimeOptions, device_name, select_device
from timing import recorded, seconds_per_call


def write_prepared(folder: Path, clips: int, settings: Settings, all_train: bool = False) -> float:
    """An NTU-60-shaped prepared folder of ``clips`` clips (half X-Sub training, or all); returns its size in GB."""
    folder.mkdir(parents=True, exist_ok=True)
    sizes = _allocate(folder, settings, clips)
    rng = np.random.default_rng(0)
    block = rng.integers(0, 255, (settings.shard_size, 3, settings.frames_rgb, settings.resolution,
                                  settings.resolution), dtype=np.uint8)
    for k, size in enumerate(sizes):
        shard = np.load(folder / f"rgb-{k:05d}.npy", mmap_mode="r+")
        shard[:] = np.roll(block[:size], k, axis=-1)  # real bytes on disk, not a sparse file
        shard.flush()
        del shard
    skel = np.load(folder / "skeleton.npy", mmap_mode="r+")
    skel[:] = rng.normal(0, 0.3, skel.shape).astype(np.float32) + 3.0
    skel.flush()
    del skel
    labels = np.arange(clips, dtype=np.int64) % 60
    np.save(folder / "labels.npy", labels)
    with open(folder / "clips.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["clip", "label", "camera", "replication", "setup", "subject", "frames", "bodies", "row"])
        for i in range(clips):  # alternate X-Sub training (1) and test (3) subjects, or training only
            subject = 1 if all_train else 1 + 2 * (i % 2)
            w.writerow([f"S001C001P{subject:03d}R001A{i % 60 + 1:03d}_{i}", labels[i], 1, 1, 1, subject, 100, 1, i])
    (folder / MANIFEST).write_text(json.dumps({
        "format": FORMAT, "dataset": "ntu60", "classes": [str(i) for i in range(60)], "clips": clips,
        "rgb": {"frames": settings.frames_rgb, "height": settings.resolution, "width": settings.resolution,
                "shards": [f"rgb-{k:05d}.npy" for k in range(len(sizes))], "shard_sizes": sizes},
        "skeleton": {"frames": settings.frames_skeleton, "joints": 25, "persons": 2, "file": "skeleton.npy"},
        "labels": "labels.npy", "index": "clips.csv", "counts": {"written": clips, "skipped": {}, "failed": 0}}))
    return sum(f.stat().st_size for f in folder.iterdir()) / 1e9


def read_all(folder: Path, settings: Settings, workers: int, batch: int, limit: int | None = None) -> tuple[float, int]:
    """Clips/s reading the training split in shuffled batches; returns (rate, clips read)."""
    split = NTU60(root=str(folder), frames_rgb=settings.frames_rgb, resolution=settings.resolution,
                  frames_skeleton=settings.frames_skeleton).split("train")
    index = batch_indices(len(split), batch, shuffle=True, generator=torch.Generator().manual_seed(0))
    if limit:
        index = index[: max(1, limit // batch)]
    runtime = RuntimeOptions(workers=workers)
    t0, n = time.perf_counter(), 0
    for b in runtime.batches(split, index):
        n += b["label"].shape[0]
        _ = b["rgb"].float().mean()  # touch the data, as a training step would
    return n / (time.perf_counter() - t0), n


def train_rate(device: torch.device, settings: Settings, batch: int, steps: int) -> float:
    model = TwoStreamModel({"rgb": I3D(width=1.0, frames=settings.frames_rgb, resolution=settings.resolution),
                            "skeleton": HCN(width=1.0, frames=settings.frames_skeleton)}, 60).to(device)
    runtime = RuntimeOptions.for_device(device)
    runtime.prepare_model(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = {"rgb": torch.rand(batch, 3, settings.frames_rgb, settings.resolution, settings.resolution, device=device),
         "skeleton": torch.randn(batch, 3, settings.frames_skeleton, 25, 2, device=device)}
    y = torch.randint(0, 60, (batch,), device=device)

    def step() -> None:
        with runtime.autocast(device):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return batch / seconds_per_call(step, device, steps)


def _status_mb(pid: int | str, field: str) -> float:
    """A memory field (VmRSS, VmHWM) of /proc/<pid>/status in MB; 0 if the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _children() -> list[str]:
    pids: list[str] = []
    for task in Path("/proc/self/task").iterdir():
        try:
            pids += (task / "children").read_text().split()
        except OSError:
            pass
    return pids


class MemorySampler(threading.Thread):
    """Samples the resident memory of this process and of its children (DataLoader workers) every 0.1 s.

    ``ru_maxrss`` cannot be used here: Linux carries it across ``exec``, so a process started by
    one that had trained a model would report that model's memory.
    """

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop, self.worker_peak, self.total_peak = threading.Event(), 0.0, 0.0

    def run(self) -> None:
        while not self.stop.wait(0.1):
            workers = [_status_mb(pid, "VmRSS") for pid in _children()]
            self.worker_peak = max([self.worker_peak, *workers])
            self.total_peak = max(self.total_peak, _status_mb("self", "VmRSS") + sum(workers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=512)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--workers", default="0,2")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--train-steps", type=int, default=2)
    parser.add_argument("--big-gb", type=float, default=0.0, help="also iterate a prepared set of this many GB")
    parser.add_argument("--dir", default=None, help="where to write (default: a temporary folder)")
    parser.add_argument("--iterate", default=None, help=argparse.SUPPRESS)  # internal: iterate one prepared folder
    args = parser.parse_args()
    settings = Settings(frames_rgb=args.frames, resolution=args.resolution, frames_skeleton=32, shard_size=256)
    if args.iterate:
        start = _status_mb("self", "VmRSS")
        sampler = MemorySampler()
        sampler.start()
        t0 = time.perf_counter()
        rate, n = read_all(Path(args.iterate), settings, 2, args.batch)
        sampler.stop.set()
        sampler.join()
        print(f"iterated all {n} clips once, shuffled, 2 DataLoader workers: {rate:.1f} clips/s in "
              f"{time.perf_counter() - t0:.0f}s. Resident memory: loading process {start:.0f} MB before "
              f"(torch imported), peak {_status_mb('self', 'VmHWM'):.0f} MB; "
              f"largest worker {sampler.worker_peak:.0f} MB; "
              f"process + workers {sampler.total_peak:.0f} MB (shared library pages counted once per process)")
        return
    base = Path(args.dir or tempfile.mkdtemp(prefix="robench-loader-"))
    device = select_device(args.device)
    print(f"cpu cores {os.cpu_count()}, torch threads {torch.get_num_threads()}, device {device_name(device)}")
    try:
        gb = write_prepared(base / "small", args.clips, settings)
        print(f"prepared set: {args.clips} clips of 3x{args.frames}x{args.resolution}x{args.resolution} uint8 "
              f"+ 3x32x25x2 float32 = {gb:.2f} GB")
        for w in (int(v) for v in args.workers.split(",")):
            rate, n = read_all(base / "small", settings, w, args.batch)
            print(f"loader, {w} worker(s): {rate:8.1f} clips/s ({n} clips, batch {args.batch})")
        batch = args.batch if device.type == "cuda" else 2
        rate = train_rate(device, settings, batch, args.train_steps)
        print(f"full-size I3D + HCN training: {rate:8.2f} clips/s (batch {batch}, {device_name(device)})")
        if args.big_gb > 0:
            per_clip = 3 * args.frames * args.resolution ** 2 + 3 * 32 * 25 * 2 * 4
            clips = int(args.big_gb * 1e9 / per_clip)
            t0 = time.perf_counter()
            gb = write_prepared(base / "big", clips, settings, all_train=True)
            print(f"large prepared set: {clips} clips, {gb:.1f} GB written in {time.perf_counter() - t0:.0f}s "
                  f"(RAM: {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 1e9:.1f} GB)")
            # iterate in a fresh process, so that its peak memory is the loader's alone
            out = subprocess.run([sys.executable, __file__, "--iterate", str(base / "big"),
                                  "--frames", str(args.frames), "--resolution", str(args.resolution),
                                  "--batch", str(args.batch)],
                                 check=True, capture_output=True, text=True).stdout
            print(out.strip())
    finally:
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    with recorded("loader_throughput"):
        main()
