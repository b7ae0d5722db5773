"""Wall time and peak memory of the quickstart (``robench run`` + ``robench report``) from scratch.

Runs both commands in a fresh temporary directory (no cached data or models), as the README's
first set-up command does after installing, and prints wall time, peak resident memory of the
run and the rendered table. The report is also written to ``reports/quickstart/README.md`` (the
table the README and the documentation show).

    python benchmarks/quickstart.py [--protocol quickstart] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from timing import recorded

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", default="quickstart")
    parser.add_argument("--report", default=str(REPO / "reports" / "quickstart" / "README.md"),
                        help="where to write the rendered report")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    env = {**os.environ, "ROBENCH_DEVICE": os.environ.get("ROBENCH_DEVICE", "auto")}
    with tempfile.TemporaryDirectory() as tmp:
        run = [sys.executable, "-m", "robench", "run", args.protocol, "--progress", "quiet"]
        if args.threads:
            run += ["--threads", str(args.threads)]
        t0 = time.perf_counter()
        subprocess.run(run, cwd=tmp, env=env, check=True)
        t_run = time.perf_counter() - t0
        rss_run = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        t1 = time.perf_counter()
        table = subprocess.run([sys.executable, "-m", "robench", "report", "--format", "markdown"], cwd=tmp, env=env,
                               check=True, capture_output=True, text=True).stdout
        t_report = time.perf_counter() - t1
        subprocess.run([sys.executable, "-m", "robench", "report", "--format", "markdown", "--out", args.report],
                       cwd=tmp, env=env, check=True)
    print(table)
    print(f"robench run:    {t_run:7.1f} s wall")
    print(f"robench report: {t_report:7.1f} s wall")
    print(f"total:          {t_run + t_report:7.1f} s wall; peak RSS of the run {rss_run:.0f} MiB "
          f"(of which importing torch alone is ~700 MiB with the CUDA build)")
    print(f"cpu cores: {os.cpu_count()}, python {sys.version.split()[0]}")


if __name__ == "__main__":
    with recorded("quickstart"):
        main()
