"""Wall time of the embedded paper (the ten paper protocols on the ``synthetic`` profile), and where it goes.

Runs the reproduction command of docs/reproduction.md from scratch (an empty store and model cache, the
synthetic data generated) under ``/usr/bin/time -v`` where that exists, then reads the store it wrote:
training seconds per defense, evaluation seconds per protocol and per attack, and the costliest groups
of cells. Run it with nothing else on the machine: the figure is the wall of the whole command.

    python benchmarks/embedded_paper.py [--keep DIR] [--threads N]
    python benchmarks/embedded_paper.py --summarise STORE     # only the breakdown of an existing store

``--keep DIR`` leaves the store (``DIR/synthetic.sqlite``) and the cache there, e.g. to render the report.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from robench.store import ResultsStore
from timing import recorded

PROTOCOLS = ("table1", "table2", "table3", "table4", "table5", "table6", "table7", "table8", "figure2", "figure4")
TIME_FIELDS = ("Elapsed (wall clock) time", "User time (seconds)", "System time (seconds)",
               "Percent of CPU this job got", "Maximum resident set size (kbytes)")


def run(workdir: Path, threads: int | None) -> None:
    """The reproduction command in ``workdir``, timed; prints the wall and ``/usr/bin/time -v``'s main lines."""
    command = [sys.executable, "-m", "robench", "run", *PROTOCOLS, "--profile", "synthetic",
               "--store", str(workdir / "synthetic.sqlite"), "--cache", str(workdir / "cache"), "--progress", "quiet"]
    if threads:
        command += ["--threads", str(threads)]
    timer = shutil.which("time", path="/usr/bin:/bin")  # GNU time (its -v), not the shell's keyword
    log = workdir / "time.txt"
    full = [timer, "-v", "-o", str(log), *command] if timer else command
    env = {**os.environ, "ROBENCH_DEVICE": os.environ.get("ROBENCH_DEVICE", "cpu")}
    t0 = time.perf_counter()
    subprocess.run(full, cwd=workdir, env=env, check=True)
    wall = time.perf_counter() - t0
    print(f"robench run {' '.join(PROTOCOLS)} --profile synthetic: {wall:.0f} s wall ({wall / 60:.1f} min)")
    if timer and log.exists():
        for line in log.read_text().splitlines():
            if line.strip().startswith(TIME_FIELDS):
                print("  " + line.strip())


def summarise(store_path: Path) -> None:
    """Print where the stored run's time went: training per defense, evaluation per protocol and attack."""
    store = ResultsStore(store_path, read_only=True)
    models = store.models()
    cells = store.cells()
    train: dict[str, list[float]] = defaultdict(list)
    for m in models.values():
        train[m["spec"]["defense"]["type"]].append(float(m["train_seconds"] or 0.0))
    by_protocol: dict[str, list[float]] = defaultdict(list)
    by_attack: dict[str, list[float]] = defaultdict(list)
    for c in cells.values():
        by_protocol[re.sub(r"@.*", "", c["protocol"])].append(float(c["duration_s"]))
        by_attack[f"{c['attack'] or 'clean'} / {c['defense']}"].append(float(c["duration_s"]))
    total_train = sum(sum(v) for v in train.values())
    total_eval = sum(sum(v) for v in by_protocol.values())
    print(f"\nstored: {len(models)} models, {total_train:.0f} s of training; {len(cells)} cells, {total_eval:.0f} s of "
          f"evaluation; {total_train + total_eval:.0f} s in all")
    print("\ntraining, per defense          models   seconds   share")
    for name, secs in sorted(train.items(), key=lambda kv: -sum(kv[1])):
        print(f"  {name:28s} {len(secs):6d} {sum(secs):9.0f} {100 * sum(secs) / max(total_train, 1e-9):6.1f}%")
    print("\nevaluation, per protocol that first asked for the cell      cells   seconds   share")
    for name, secs in sorted(by_protocol.items(), key=lambda kv: -sum(kv[1])):
        print(f"  {name:56s} {len(secs):6d} {sum(secs):9.0f} {100 * sum(secs) / max(total_eval, 1e-9):6.1f}%")
    print("\nevaluation, the ten costliest attack / defense pairs          cells   seconds   share")
    for name, secs in sorted(by_attack.items(), key=lambda kv: -sum(kv[1]))[:10]:
        print(f"  {name:56s} {len(secs):6d} {sum(secs):9.0f} {100 * sum(secs) / max(total_eval, 1e-9):6.1f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, default=None, help="run in this (new or empty) folder and keep it")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--summarise", type=Path, default=None, help="only summarise this existing store")
    args = parser.parse_args()
    if args.summarise:
        summarise(args.summarise)
        return
    print(f"cpu cores: {os.cpu_count()}, python {sys.version.split()[0]}")
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        if any(args.keep.iterdir()):
            sys.exit(f"{args.keep} is not empty: the run must start from nothing")
        run(args.keep, args.threads)
        summarise(args.keep / "synthetic.sqlite")
        return
    with tempfile.TemporaryDirectory() as tmp:
        run(Path(tmp), args.threads)
        summarise(Path(tmp) / "synthetic.sqlite")


if __name__ == "__main__":
    if "--summarise" in sys.argv:
        main()
    else:
        with recorded("embedded_paper"):
            main()
