"""Several ``robench run`` workers on one plan against one: wall time and cells computed twice.

Runs a protocol (default: the tests' tiny protocol with three eps values, 2 models and 20 cells) from
an empty store and cache, first with one worker, then with ``--workers`` (default 4) processes started
together on a fresh store and cache. Every computed cell prints one log line; the script counts them
across the workers and reports how many cells were computed more than once (must be 0), how many
models were trained (must be the plan's count), the store's row count, and the wall-time ratio.
On this project's 2-core machine four workers share two cores, so no speed-up is expected: the figure
is the cost of the claims and locks.

    python benchmarks/workers.py [--workers 4] [--protocol tests/data/tiny.yaml] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from timing import recorded

REPO = Path(__file__).resolve().parent.parent
CELL_LINE = re.compile(r"^(.+?): [0-9.]+% of \d+ \(", re.M)
TRAINED = re.compile(r"(\d+) model\(s\) trained")


def run_workers(count: int, protocol: str, sets: list[str], threads: int) -> tuple[float, list[str], int, int]:
    """Start ``count`` workers on one fresh store and cache; returns wall seconds, the computed cells'
    labels (one per computation), models trained and rows stored."""
    with tempfile.TemporaryDirectory() as tmp:
        store, cache = Path(tmp) / "r.sqlite", Path(tmp) / "cache"
        cmd = [sys.executable, "-m", "robench", "run", protocol, "--store", str(store), "--cache", str(cache),
               "--progress", "plain", "--threads", str(threads), *(a for s in sets for a in ("--set", s))]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        t0 = time.perf_counter()
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
                 for _ in range(count)]
        outputs = [p.communicate()[0] for p in procs]
        wall = time.perf_counter() - t0
        if any(p.returncode for p in procs):
            sys.exit("a worker failed:\n" + "\n".join(outputs))
        from robench.store import ResultsStore

        rows = ResultsStore(store).count()
    cells = [m for out in outputs for m in CELL_LINE.findall(out)]
    trained = sum(int(m) for out in outputs for m in TRAINED.findall(out))
    return wall, cells, trained, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--protocol", default=str(REPO / "tests" / "data" / "tiny.yaml"))
    parser.add_argument("--set", action="append", default=None, metavar="KEY=VALUE")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    args = parser.parse_args()
    sets = args.set if args.set is not None else ["eps=[2/255, 4/255, 8/255]"]
    results = {}
    for count in (1, args.workers):
        wall, cells, trained, rows = run_workers(count, args.protocol, sets, args.threads)
        twice = sum(n - 1 for n in Counter(cells).values() if n > 1)
        results[count] = wall
        print(f"{count} worker(s): {wall:6.1f} s wall, {len(cells)} cells computed ({twice} more than once), "
              f"{trained} model(s) trained, {rows} rows stored", flush=True)
    print(f"{args.workers} workers / 1 worker: {results[args.workers] / results[1]:.2f}x the wall time")


if __name__ == "__main__":
    with recorded("workers"):
        main()
