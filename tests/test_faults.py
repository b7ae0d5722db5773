"""Fault injection: robench as an attacker, a crash or a full disk would meet it.

Every test here breaks something on purpose and checks that nothing is lost, nothing is half-written
and nothing lands outside its folder:

- ``kill -9`` at random moments of ``run``, ``store merge``, ``report`` and ``leaderboard render``;
- SIGTERM and SIGINT during training and during evaluation, on SQLite and PostgreSQL: the run row says
  interrupted, the message says how to resume, and the re-run ends with the numbers of an uninterrupted run;
- a full disk (a small tmpfs when the tests run as root, else a file-size limit) under the store, a
  report and a leaderboard page;
- read-only media under a store and a model cache;
- damaged and foreign databases, a server that never answers;
- two conflicting merges at once, on SQLite and PostgreSQL;
- tampered records, names that try to leave the leaderboard folder, hostile HTML and markdown.

Processes run with one thread, so that a resumed run repeats an uninterrupted one bit for bit.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import TINY_PROTOCOL, tiny_entry
from robench.leaderboard.record import RecordError, read_record, write_record
from robench.store import CellRow, ResultsStore

REPO = Path(__file__).resolve().parent.parent
TRACK = REPO / "tests" / "data" / "tiny_track.yaml"
SETS = ("--set", "training.epochs=2")
pytestmark = pytest.mark.slow
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "ROBENCH_DEVICE": "cpu", **extra}


def _robench(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300,
             preexec: Any = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "robench", *args], cwd=cwd, env=env or _env(), capture_output=True,
                          text=True, timeout=timeout, preexec_fn=preexec)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``robench ARGS`` in this process (for the cases that end in a message: no interpreter start-up to pay)."""
    from robench.cli import main

    out, err = io.StringIO(), io.StringIO()
    here = Path.cwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 2
    finally:
        os.chdir(here)
    return subprocess.CompletedProcess(["robench", *args], code, out.getvalue(), err.getvalue())


class Running:
    """A ``robench`` process whose output lines are read as they come (to signal it at a chosen moment)."""

    def __init__(self, *args: str, cwd: Path, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "robench", *args], cwd=cwd, env=env or _env(),
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"never printed {text!r}:\n" + "".join(self.lines)[-3000:])
            time.sleep(0.02)

    def finish(self, timeout: float = 300) -> tuple[int, str]:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code, "".join(self.lines)


def _per_clip(store: Path | str) -> dict[str, tuple[int, bytes]]:
    return {cid: (row["n"], row["per_sample"]) for cid, row in ResultsStore(store, read_only=True).cells().items()}


def _intact(path: Path) -> None:
    """An SQLite store that passes its integrity check and whose every row is complete."""
    con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        for n, blob in con.execute("SELECT n, per_sample FROM results"):
            assert blob is not None and len(blob) == (n + 7) // 8
    finally:
        con.close()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The tiny protocol, two epochs, run once without interruption: the numbers every resumed run must reach."""
    work = tmp_path_factory.mktemp("reference")
    done = _robench("run", str(TINY_PROTOCOL), *SETS, "--store", "r.sqlite", "--cache", "cache", "--progress", "plain",
                    cwd=work)
    assert done.returncode == 0, done.stderr[-3000:]
    return {"dir": work, "store": work / "r.sqlite", "cells": _per_clip(work / "r.sqlite")}


# -- signals ----------------------------------------------------------------------------------------

def _store_arg(backend: str, work: Path, pg_url: str | None) -> str:
    return str(work / "r.sqlite") if backend == "sqlite" else str(pg_url)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_sigterm_in_training_and_sigint_in_evaluation_stop_cleanly_and_resume(
        backend: str, reference: dict[str, Any], tmp_path: Path, request: pytest.FixtureRequest) -> None:
    pg_url = request.getfixturevalue("pg_url") if backend == "postgres" else None
    store = _store_arg(backend, tmp_path, pg_url)
    args = ("run", str(TINY_PROTOCOL), *SETS, "--store", store, "--cache", "cache", "--progress", "plain")
    first = Running(*args, cwd=tmp_path)
    first.wait_for("epoch 1/2")  # training: the first model's first epoch is done
    first.proc.send_signal(signal.SIGTERM)
    code, out = first.finish()
    assert code == 128 + signal.SIGTERM, out[-2000:]
    assert "interrupted (SIGTERM)" in out and "run the same command again to resume" in out
    assert "Traceback" not in out
    runs = ResultsStore(store, read_only=True).runs()
    assert [r["status"] for r in runs] == ["interrupted"]
    second = Running(*args, cwd=tmp_path)
    second.wait_for("% of 12")  # evaluation: a first cell is stored
    second.proc.send_signal(signal.SIGINT)
    code, out = second.finish()
    assert code == 130 and "interrupted (SIGINT)" in out and "Traceback" not in out, out[-2000:]
    assert "resuming" in out  # the second run resumed training from the first one's last epoch
    assert [r["status"] for r in ResultsStore(store, read_only=True).runs()] == ["interrupted", "interrupted"]
    stored = _per_clip(store)
    assert 0 < len(stored) < len(reference["cells"])
    third = _robench(*args, cwd=tmp_path)
    assert third.returncode == 0, third.stderr[-2000:]
    assert _per_clip(store) == reference["cells"]  # the numbers of the uninterrupted run, bit for bit
    assert ResultsStore(store, read_only=True).runs()[-1]["status"] == "complete"


# -- kill -9 ----------------------------------------------------------------------------------------

def test_kill_9_during_a_run_leaves_complete_rows_and_a_resume_reaches_the_same_numbers(
        reference: dict[str, Any], tmp_path: Path) -> None:
    rng = random.Random(21)
    args = ("run", str(TINY_PROTOCOL), *SETS, "--store", "r.sqlite", "--cache", "cache", "--progress", "plain")
    for marker in ("epoch 1/2", "% of 12"):  # once in training, once in evaluation
        victim = Running(*args, cwd=tmp_path)
        victim.wait_for(marker)
        time.sleep(rng.uniform(0.0, 0.5))
        victim.proc.kill()
        victim.finish()
        _intact(tmp_path / "r.sqlite")
        assert all(ResultsStore(tmp_path / "r.sqlite", read_only=True).cells()[c]["per_sample"] is not None
                   for c in _per_clip(tmp_path / "r.sqlite"))
    done = _robench(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _per_clip(tmp_path / "r.sqlite") == reference["cells"]


def _rows(n: int, tag: str, flip: bool = False) -> Iterator[CellRow]:
    for i in range(n):
        bits = np.zeros(8, dtype=bool)
        bits[i % 8] = not flip
        yield CellRow(cell_id=f"{tag}{i:05d}", model_id="m", protocol="p", dataset="d", dataset_params={},
                      defense="none", defense_params={}, attack=None, attack_params=None, scenario="clean", eps=0.0,
                      eps_rgb=None, eps_skeleton=None, n=8, correct=int(bits.sum()), per_sample=bits, seed=0,
                      duration_s=0.0, robench_version="t", git_commit=None, torch_version="t", device="cpu",
                      spec={"i": i})


def _store_of(path: Path | str, rows: Iterator[CellRow]) -> Path | str:
    store = ResultsStore(path)
    for row in rows:
        store.write_cell(row)
    return path


def test_kill_9_during_a_merge_leaves_the_target_as_it_was_or_complete(tmp_path: Path) -> None:
    source = _store_of(tmp_path / "source.sqlite", _rows(1500, "c"))
    rng = random.Random(5)
    for attempt in range(3):
        target = tmp_path / f"target{attempt}.sqlite"
        _store_of(target, _rows(3, "t"))
        proc = subprocess.Popen([sys.executable, "-m", "robench", "store", "merge", str(source), "--into", str(target)],
                                cwd=tmp_path, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(1.5, 3.0))  # the interpreter starts in about a second; the merge is the rest
        proc.kill()
        proc.wait()
        _intact(target)
        assert ResultsStore(target, read_only=True).count() in (3, 1503)


def test_kill_9_while_writing_a_report_or_a_page_leaves_the_old_file_or_the_new_one(reference: dict[str, Any],
                                                                                    tmp_path: Path) -> None:
    rng = random.Random(8)
    out = tmp_path / "report.md"
    for _ in range(3):
        out.write_text("OLD REPORT\n")
        proc = subprocess.Popen([sys.executable, "-m", "robench", "report", "--store", str(reference["store"]),
                                 "--out", str(out)], cwd=tmp_path, env=_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.5, 4.0))
        proc.kill()
        proc.wait()
        text = out.read_text()
        assert text == "OLD REPORT\n" or (text.startswith("# robench report") and "| AT-RS |" in text)


# -- full disks ----------------------------------------------------------------------------------------

@contextlib.contextmanager
def _small_disk(path: Path, size_kb: int, cap_bytes: int | None = None) -> Iterator[Any]:
    """A folder on a filesystem of ``size_kb`` KiB (a tmpfs, as root); yields a ``preexec_fn`` for processes that
    write there. Without root the folder is an ordinary one and the preexec_fn caps each file's size at
    ``cap_bytes`` (default ``size_kb``) instead: writes past it fail with EFBIG, reported as a full disk too."""
    path.mkdir(parents=True, exist_ok=True)
    if IS_ROOT and subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path)],
                                  capture_output=True).returncode == 0:
        try:
            yield None
        finally:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)
        return

    limit = cap_bytes if cap_bytes is not None else size_kb * 1024

    def cap() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    yield cap


def _fill(folder: Path) -> None:
    """Leave no free space on ``folder``'s filesystem (a tmpfs)."""
    with open(folder / "filler", "wb") as fh, contextlib.suppress(OSError):
        while True:
            fh.write(b"\0" * 65536)
            fh.flush()


def test_a_full_disk_under_the_store_is_one_clear_error_and_loses_nothing(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    with _small_disk(disk, 512, cap_bytes=96 * 1024) as preexec:
        if preexec is None:  # a tmpfs: the store, then a filler that leaves room for a few rows only
            ResultsStore(disk / "r.sqlite")
            free = shutil.disk_usage(disk).free
            (disk / "filler").write_bytes(b"\0" * max(0, free - 24 * 1024))
        done = _robench("run", str(TINY_PROTOCOL), "--set", "training.epochs=1", "--store", str(disk / "r.sqlite"),
                        "--cache", str(tmp_path / "cache"), "--progress", "quiet", cwd=tmp_path, preexec=preexec)
        assert done.returncode == 2, done.stdout[-1000:] + done.stderr[-2000:]
        assert "full" in done.stderr and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        (disk / "filler").unlink(missing_ok=True)  # (SQLite needs a little room even to read a WAL store)
        _intact(disk / "r.sqlite")
        statuses = [r["status"] for r in ResultsStore(disk / "r.sqlite", read_only=True).runs()]
        assert statuses in ([], ["failed"], ["running"]), statuses  # no half-written run row


def test_a_full_disk_under_a_report_or_a_page_keeps_the_old_file(reference: dict[str, Any], tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    with _small_disk(disk, 64, cap_bytes=512) as preexec:
        (disk / "report.md").write_text("OLD REPORT\n")
        (disk / "board").mkdir()
        (disk / "board.md").write_text("OLD PAGE\n")
        if preexec is None:
            _fill(disk)
        report = _robench("report", "--store", str(reference["store"]), "--out", str(disk / "report.md"), cwd=tmp_path,
                          preexec=preexec)
        assert report.returncode == 2 and "cannot write" in report.stderr and "Traceback" not in report.stderr
        assert (disk / "report.md").read_text() == "OLD REPORT\n"
        page = _robench("leaderboard", "render", "--format", "markdown", "--track", "synthetic", "--root",
                        str(REPO / "leaderboard"), "--out", str(disk / "board.md"), cwd=tmp_path, preexec=preexec)
        assert page.returncode == 2 and "Traceback" not in page.stderr, page.stderr
        assert (disk / "board.md").read_text() == "OLD PAGE\n"
        assert not [p for p in disk.iterdir() if p.name.endswith(".tmp")]  # no temporary file left behind


# -- read-only media ----------------------------------------------------------------------------------

@contextlib.contextmanager
def _read_only(source: Path, where: Path) -> Iterator[Path]:
    """``source`` (a folder) copied to read-only media: a tmpfs remounted read-only (as root), else files and
    folders without write permission."""
    where.mkdir(parents=True)
    if IS_ROOT and subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(where)], capture_output=True).returncode == 0:
        shutil.copytree(source, where / "media")
        subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)
        try:
            yield where / "media"
        finally:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)
        return
    shutil.copytree(source, where / "media")
    for p in sorted((where / "media").rglob("*"), reverse=True):
        p.chmod(0o555 if p.is_dir() else 0o444)
    (where / "media").chmod(0o555)
    yield where / "media"


def test_a_store_and_a_cache_on_read_only_media_serve_reports_and_models(reference: dict[str, Any],
                                                                        tmp_path: Path) -> None:
    with _read_only(reference["dir"], tmp_path / "ro") as media:
        before = {p: p.read_bytes() for p in media.rglob("*.sqlite")}
        report = _cli("report", "--store", str(media / "r.sqlite"), "--format", "csv", cwd=tmp_path)
        assert report.returncode == 0 and "AT-RS" in report.stdout, report.stderr
        merged = _cli("store", "merge", str(media / "r.sqlite"), "--into", str(tmp_path / "copy.sqlite"),
                          cwd=tmp_path)
        assert merged.returncode == 0, merged.stderr
        assert _per_clip(tmp_path / "copy.sqlite") == reference["cells"]
        rerun = _robench("run", str(TINY_PROTOCOL), *SETS, "--store", str(tmp_path / "new.sqlite"), "--cache",
                         str(media / "cache"), cwd=tmp_path)
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        assert "0 model(s) trained, 2 loaded from cache" in rerun.stdout
        assert _per_clip(tmp_path / "new.sqlite") == reference["cells"]
        write = _robench("run", str(TINY_PROTOCOL), *SETS, "--store", str(media / "r.sqlite"), "--cache",
                         str(tmp_path / "c2"), cwd=tmp_path)
        assert write.returncode == 2 and "read-only" in write.stderr and "Traceback" not in write.stderr
        assert {p: p.read_bytes() for p in media.rglob("*.sqlite")} == before


# -- damaged, foreign and silent stores -------------------------------------------------------------

def test_damaged_empty_and_foreign_databases_are_refused_without_a_write(reference: dict[str, Any],
                                                                         tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.sqlite"
    raw = bytearray(reference["store"].read_bytes())
    raw[4096:4096 + 2048] = os.urandom(2048)  # a damaged page
    damaged.write_bytes(bytes(raw))
    empty = tmp_path / "empty.sqlite"
    empty.write_bytes(b"")
    foreign = tmp_path / "foreign.sqlite"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE invoices (id INTEGER)")
    con.commit()
    con.close()
    for path, words in ((damaged, "damaged"), (empty, "empty file"), (foreign, "not a robench results store")):
        before = path.read_bytes()
        for args in (("report", "--store", str(path)), ("run", str(TINY_PROTOCOL), "--store", str(path), "--cache",
                                                         str(tmp_path / "cache"))):
            done = _cli(*args, cwd=tmp_path)
            assert done.returncode == 2 and words in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert path.read_bytes() == before
        if path is not damaged:  # refused before opening: not even SQLite's side files appear
            assert not Path(str(path) + "-wal").exists() and not Path(str(path) + "-shm").exists()


def test_a_server_that_never_answers_fails_in_seconds_without_showing_the_password(tmp_path: Path) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                accepted.append(server.accept()[0])  # accept, then never answer

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    url = f"postgresql://robench:s3cret@127.0.0.1:{server.getsockname()[1]}/db"
    try:
        t0 = time.monotonic()
        done = _robench("report", "--store", url, cwd=tmp_path, env=_env(ROBENCH_DB_CONNECT_TIMEOUT="2"))
        took = time.monotonic() - t0
    finally:
        stop.set()
        thread.join()
        for s in accepted:
            s.close()
        server.close()
    assert done.returncode == 2 and took < 20, (took, done.stderr)
    assert "s3cret" not in done.stderr + done.stdout and "***" in done.stderr and "Traceback" not in done.stderr


# -- concurrent merges -------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_two_conflicting_merges_at_once_one_wins_the_other_is_refused(backend: str, tmp_path: Path,
                                                                     request: pytest.FixtureRequest) -> None:
    target = str(tmp_path / "target.sqlite") if backend == "sqlite" else request.getfixturevalue("pg_url")
    ResultsStore(target)
    a = _store_of(tmp_path / "a.sqlite", _rows(800, "c"))
    b = _store_of(tmp_path / "b.sqlite", _rows(800, "c", flip=True))  # the same cells with other results
    procs = [subprocess.Popen([sys.executable, "-m", "robench", "store", "merge", str(src), "--into", target],
                              cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for src in (a, b)]
    results = [(p.wait(timeout=300), p.stderr.read() if p.stderr else "") for p in procs]
    assert sorted(code for code, _ in results) == [0, 2], results
    loser = next(err for code, err in results if code == 2)
    assert "conflict" in loser and "nothing written" in loser and "s3cret" not in loser
    winner = a if results[0][0] == 0 else b
    assert _per_clip(target) == _per_clip(winner)


def test_the_same_merge_twice_at_once_copies_each_run_once(reference: dict[str, Any], tmp_path: Path) -> None:
    target = tmp_path / "target.sqlite"
    ResultsStore(target)
    procs = [subprocess.Popen([sys.executable, "-m", "robench", "store", "merge", str(reference["store"]), "--into",
                               str(target)], cwd=tmp_path, env=_env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for _ in range(2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    assert len(ResultsStore(target, read_only=True).runs()) == len(ResultsStore(reference["store"]).runs())
    assert _per_clip(target) == reference["cells"]


# -- the leaderboard ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A leaderboard folder with one record of the tiny track (the untrained tiny model: seconds)."""
    work = tmp_path_factory.mktemp("board")
    tiny_entry(work, "Honest", entry_id="honest")
    done = _cli("leaderboard", "add", str(work / "entry.yaml"), "--track", str(TRACK), "--root",
                    str(work / "root"), "--store", str(work / "s.sqlite"), "--cache", str(work / "cache"), cwd=work)
    assert done.returncode == 0, done.stderr[-3000:]
    return work


def test_tampered_records_are_refused_by_render_and_verify(board: Path, tmp_path: Path) -> None:
    record = board / "root" / "tiny" / "honest.json"
    original = json.loads(record.read_text())
    root = tmp_path / "root"
    shutil.copytree(board / "root", root)
    copy = root / "tiny" / "honest.json"
    cases = {
        "results": lambda r: r["results"]["RS"].update(accuracy=99.0),
        "per-clip bits": lambda r: r["per_sample"].update(clean=r["per_sample"]["clean"][::-1]),
    }
    for what, edit in cases.items():
        data = json.loads(json.dumps(original))
        edit(data)
        copy.write_text(json.dumps(data))  # a hand edit: the seal no longer matches
        for args in (("leaderboard", "render", "--format", "html", "--track", str(TRACK), "--root", str(root)),
                     ("leaderboard", "verify", str(copy), "--track", str(TRACK), "--cache", str(board / "cache"))):
            done = _cli(*args, cwd=tmp_path)
            assert done.returncode == 2 and "key 'seal'" in done.stderr, (what, done.stderr)
        data.pop("seal")
        from robench.leaderboard.record import seal

        data["seal"] = seal(data)  # resealed: the numbers must still follow from the bits
        copy.write_text(json.dumps(data))
        with pytest.raises(RecordError, match=r"key '(results|per_sample)"):
            read_record(copy)


def test_names_that_leave_the_leaderboard_folder_are_refused(board: Path, tmp_path: Path) -> None:
    track = tmp_path / "escape.yaml"
    track.write_text(TRACK.read_text().replace("name: tiny", "name: ../../escaped"))
    outside = tmp_path / "escaped"
    done = _cli("leaderboard", "add", str(board / "entry.yaml"), "--track", str(track), "--root",
                    str(tmp_path / "root"), "--reported-only", cwd=tmp_path)
    assert done.returncode == 2 and "allowed: 1 to 80 letters" in done.stderr and not outside.exists()
    entry = tmp_path / "entry.yaml"
    shutil.copy(board / "model.pt", tmp_path / "model.pt")
    for bad_id in ("../x", "a/b", "x\\n", "/abs"):
        entry.write_text((board / "entry.yaml").read_text().replace("id: honest", f"id: {json.dumps(bad_id)}")
                         + "reported: {tiny: {clean: 10}}\n")
        done = _cli("leaderboard", "add", str(entry), "--track", str(TRACK), "--root", str(tmp_path / "root"),
                        "--reported-only", cwd=tmp_path)
        assert done.returncode == 2 and "key 'id'" in done.stderr, (bad_id, done.stderr)
    (tmp_path / "root").mkdir(exist_ok=True)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "root" / "tiny").symlink_to(tmp_path / "elsewhere")  # the track folder leads outside the root
    entry.write_text((board / "entry.yaml").read_text() + "reported: {tiny: {clean: 10}}\n")
    done = _cli("leaderboard", "add", str(entry), "--track", str(TRACK), "--root", str(tmp_path / "root"),
                    "--reported-only", cwd=tmp_path)
    assert done.returncode == 2 and "outside the leaderboard folder" in done.stderr
    assert not list((tmp_path / "elsewhere").iterdir())
    loop = tmp_path / "loop.yaml"
    loop.symlink_to(loop)
    done = _cli("leaderboard", "add", str(loop), "--track", str(TRACK), "--root", str(tmp_path / "r2"),
                    cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr and "loop" in done.stderr.lower(), done.stderr


def test_hostile_fields_are_escaped_in_every_format(board: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(board / "root", root)
    data = read_record(root / "tiny" / "honest.json")
    data["entry"].update(name="<script>alert(1)</script> | [x](javascript:alert(2))",
                         paper="javascript:alert(3)", defense="<img src=x onerror=alert(4)>", venue="{}\\",
                         footnote="<b>bold</b>")
    write_record(root / "tiny" / "honest.json", data)
    pages = {}
    for fmt in ("html", "markdown", "csv", "bibtex", "latex"):
        out = tmp_path / f"board.{fmt}"
        done = _cli("leaderboard", "render", "--format", fmt, "--track", str(TRACK), "--root", str(root), "--out",
                        str(out), cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        pages[fmt] = out.read_text()
    for fmt in ("html", "markdown"):
        assert "<script>alert" not in pages[fmt] and "<img" not in pages[fmt] and "<b>" not in pages[fmt], fmt
    assert 'href="javascript:' not in pages["html"] and "&lt;script&gt;" in pages["html"]
    assert not re.search(r"(?<!\\)\]\(javascript:", pages["markdown"])  # no live markdown link
    assert "\\|" in pages["markdown"] and "&lt;script&gt;" in pages["markdown"]
    assert "\\{\\}\\textbackslash{}" in pages["bibtex"]
