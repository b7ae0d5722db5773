"""Overhead of data-parallel training: two gloo ranks against one process, per adversarial training step.

Trains the adversarial-training model of a protocol (default: the quickstart's AT with XRS, PGD-10)
for a few steps, three ways, on the same global batches:

- one process with all the threads this script is given (``--threads``, default 2);
- one process with one thread;
- two ranks (``torch.multiprocessing.spawn``, gloo, the environment torchrun sets) with one thread
  each and half of every global batch, gradients averaged by DistributedDataParallel.

Each is timed as (time for 1 + k steps) - (time for 1 step), divided by k, so model building, data
generation and the process group's start are left out. It prints seconds per global step and the
ratios against the one-process runs of the same run. On a 2-core machine two ranks cannot beat one
process with two threads: the point is the cost of the machinery (the all-reduce of every gradient,
the split batches), read from ``2 ranks x 1 thread`` against ``1 process x 1 thread`` (ideal 0.5).

    python benchmarks/data_parallel.py [--protocol quickstart] [--steps 8] [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp

from timing import recorded

REPO = Path(__file__).resolve().parent.parent
#: the defense whose model is trained: adversarial training (the quickstart's AT with XRS)
DEFENSE = "at"


def _train(ranks_world: int, rank: int, port: int, protocol: str, sets: list[str], steps: int, threads: int,
           out: str) -> None:
    """Train ``steps`` steps on this rank and write the wall time to ``out`` (rank 0)."""
    if ranks_world > 1:
        os.environ.update(RANK=str(rank), WORLD_SIZE=str(ranks_world), LOCAL_RANK=str(rank),
                          MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(threads)
    from robench.data.base import DatasetProvider
    from robench.distributed import Ranks
    from robench.plan import make_plan
    from robench.progress import Progress
    from robench.protocol import load_protocol
    from robench.registry import DATASETS
    from robench.train.trainer import train_model

    ranks = Ranks.from_env("cpu")
    overrides = [*sets, "training.epochs=1", f"training.max_steps_per_epoch={steps}", "training.batchnorm=per-rank"]
    proto = load_protocol(protocol, overrides)
    plan = make_plan(proto, ranks=ranks.world)
    job = next(j for j in plan.models.values() if j.defense.type == DEFENSE)
    ds = proto.variants[job.variant].dataset
    provider: DatasetProvider = DATASETS.build(ds.type, cache_dir=None, **ds.params)
    train = provider.split("train")
    train.get_batch(torch.arange(min(len(train), 4)))  # data ready before the clock starts
    with tempfile.TemporaryDirectory() as work:
        ranks.barrier()
        t0 = time.perf_counter()
        train_model(job, train, torch.device("cpu"), Progress("quiet"), Path(work), ranks=ranks)
        ranks.barrier()
        seconds = time.perf_counter() - t0
    if ranks.main:
        Path(out).write_text(json.dumps({"seconds": seconds}))
    ranks.close()


def _spawned(rank: int, world: int, port: int, *args: object) -> None:
    _train(world, rank, port, *args)  # type: ignore[arg-type]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def timed(world: int, threads: int, steps: int, protocol: str, sets: list[str]) -> float:
    """Wall seconds of ``steps`` training steps on ``world`` ranks of ``threads`` threads."""
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "t.json")
        args = (protocol, sets, steps, threads, out)
        if world == 1:
            ctx = mp.get_context("spawn")  # a fresh process as well, so imports and caches start alike
            p = ctx.Process(target=_train, args=(1, 0, 0, *args))
            p.start()
            p.join()
            if p.exitcode:
                sys.exit(f"one-process run failed (exit {p.exitcode})")
        else:
            mp.spawn(_spawned, args=(world, _free_port(), *args), nprocs=world, join=True)
        return float(json.loads(Path(out).read_text())["seconds"])


def per_step(world: int, threads: int, steps: int, protocol: str, sets: list[str]) -> float:
    """Seconds per global step: (1 + steps) steps minus 1 step, over ``steps``."""
    return (timed(world, threads, 1 + steps, protocol, sets) - timed(world, threads, 1, protocol, sets)) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", default="quickstart")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per configuration (after one untimed)")
    parser.add_argument("--threads", type=int, default=2, help="threads of the many-thread one-process baseline")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; the configurations alternate within each")
    args = parser.parse_args()
    rows = [(f"1 process x {args.threads} threads", 1, args.threads), ("1 process x 1 thread", 1, 1),
            ("2 ranks x 1 thread (gloo)", 2, 1)]
    times: dict[str, list[float]] = {name: [] for name, _, _ in rows}
    for r in range(args.repeats):  # interleaved, so that the machine's drift hits every configuration alike
        for name, world, threads in rows:
            times[name].append(per_step(world, threads, args.steps, args.protocol, args.set))
            print(f"round {r + 1}: {name:28s} {times[name][-1]:7.3f} s per global step", flush=True)
    med = {name: statistics.median(t) for name, t in times.items()}
    for name, t in times.items():
        print(f"{name:28s} median {med[name]:7.3f} s per global step (range {min(t):.3f}-{max(t):.3f})")
    ratios = [[two / base for two, base in zip(times[rows[2][0]], times[rows[k][0]])] for k in (0, 1)]
    print(f"2 ranks / 1 process x {args.threads} threads: median {statistics.median(ratios[0]):.2f}x the time per "
          f"step (rounds: {', '.join(f'{x:.2f}' for x in ratios[0])})")
    print(f"2 ranks / 1 process x 1 thread:  median {statistics.median(ratios[1]):.2f}x (rounds: "
          f"{', '.join(f'{x:.2f}' for x in ratios[1])}; 0.50 would be perfect scaling)")


if __name__ == "__main__":
    with recorded("data_parallel"):
        main()
