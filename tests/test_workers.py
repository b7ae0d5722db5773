"""Several ``robench run`` processes on one plan: they split the work, compute each cell once, and a
killed worker's cells are taken over (one host: SQLite store, shared model cache)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from robench.store import ResultsStore, claims, worker_id
from robench.store.claims import worker_alive

TINY = Path(__file__).parent / "data" / "tiny.yaml"


def _start(store: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "robench", "run", str(TINY), "--store", str(store),
                             "--progress", "plain", *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)


def _cell_lines(text: str) -> list[str]:
    """The log line each computed cell prints: ``<label>: <accuracy>% of <n> (<seconds>s)``."""
    return [m.group(1) for m in re.finditer(r"^(.+?): [0-9.]+% of \d+ \(", text, re.M)]


def test_claims_free_a_dead_workers_cells_and_keep_a_live_ones(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "r.sqlite")
    me = worker_id()
    assert worker_alive(me)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = f"{socket.gethostname()}:{gone.pid}"
    assert not worker_alive(dead) and worker_alive(f"other-host:{gone.pid}")
    assert claims.claim(store, "c1", dead)
    assert claims.claim(store, "c1", me)  # its worker is gone: taken over at once
    other = f"{socket.gethostname()}:{os.getppid()}"
    assert claims.claim(store, "c2", other)
    assert not claims.claim(store, "c2", me)  # a live worker holds it
    assert claims.claim(store, "c3", "far-away:1", lease_s=-1.0)
    assert claims.claim(store, "c3", me)  # another host's claim, expired
    claims.release(store, "c2", other)
    assert claims.claim(store, "c2", me)


def test_two_workers_split_one_plan_and_compute_each_cell_once(tmp_path: Path) -> None:
    store = tmp_path / "r.sqlite"
    procs = [_start(store), _start(store)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    lines = [line for out in outputs for line in _cell_lines(out)]
    assert len(lines) == 8 and len(set(lines)) == 8, outputs  # every cell once, across both workers
    trained = sum(int(re.search(r"(\d+) model\(s\) trained", out).group(1)) for out in outputs)  # type: ignore[union-attr]
    assert trained == 2, outputs  # each model trained by one of them
    assert ResultsStore(store).count() == 8
    # a third run finds everything done
    again = _start(store)
    out = again.communicate(timeout=600)[0]
    assert again.returncode == 0 and "0 cell(s) written, 8 already stored" in out


def test_a_killed_worker_leaves_work_that_a_rerun_finishes(tmp_path: Path) -> None:
    store = tmp_path / "r.sqlite"
    victim = _start(store)
    deadline = time.time() + 300
    while time.time() < deadline:  # kill it once it has written a cell (so it is in the middle of evaluating)
        if store.exists() and ResultsStore(store).count() >= 1:
            break
        time.sleep(0.2)
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    written = ResultsStore(store).count()
    assert 1 <= written < 8
    survivor = _start(store)
    out = survivor.communicate(timeout=600)[0]
    assert survivor.returncode == 0, out
    assert ResultsStore(store).count() == 8
    assert len(_cell_lines(out)) == 8 - written  # nothing recomputed, nothing lost
