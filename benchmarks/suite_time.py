"""Wall time of the test suite as the README runs it, and where it goes: seconds per test file, the CPU the
run got, and how many processes the tests started.

Runs ``python -m pytest -q -n 2 --dist loadfile --durations=0`` (plus any extra pytest arguments) from the
repository root with the environment it is given (set ``ROBENCH_TEST_POSTGRES`` and the ``ROBENCH_REQUIRE_*``
variables as the CI does), then prints the wall, user + system CPU seconds of the run and its children, the
share of the two cores it kept busy, and the costliest files (the sum of their tests' set-up, call and
tear-down seconds on a worker: time a worker spent on them, including waiting for the other worker's processes).

    python benchmarks/suite_time.py [PYTEST ARGS...]
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from timing import recorded

REPO = Path(__file__).resolve().parent.parent
LINE = re.compile(r"^\s*([\d.]+)s (setup|call|teardown)\s+(tests/[^:]+)::")


def main() -> None:
    command = [sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist", "loadfile", "--durations=0", *sys.argv[1:]]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    per_file: Counter[str] = Counter()
    for line in done.stdout.splitlines():
        if m := LINE.match(line):
            per_file[m.group(3)] += float(m.group(1))
    summary = next((line for line in reversed(done.stdout.splitlines()) if " in " in line and "passed" in line),
                   "(no summary line)")
    cores = os.cpu_count() or 1
    print(f"{' '.join(['python -m pytest', *command[3:]])}")
    print(f"{summary.strip('= ')}")
    print(f"wall {wall:.1f} s; CPU {cpu:.0f} s (user + system, every process of the run), {100 * cpu / wall:.0f}% of "
          f"one core of {cores}: the cores were busy {100 * cpu / (wall * cores):.0f}% of the wall")
    total = sum(per_file.values())
    print(f"\nseconds of a worker per test file ({total:.0f} s over {len(per_file)} files; the ten costliest)")
    for name, secs in per_file.most_common(10):
        print(f"  {name:44s} {secs:7.1f} s {100 * secs / total:5.1f}%")
    if done.returncode != 0:
        print(done.stdout[-3000:])
        sys.exit(done.returncode)


if __name__ == "__main__":
    with recorded("suite_time"):
        main()
