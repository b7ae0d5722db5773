"""The results store on a real PostgreSQL server: the same store as SQLite, claims that skip locked rows,
a model lock across machines, and four workers on one plan computing every cell once.

The server: ``ROBENCH_TEST_POSTGRES`` is the URL of a role that may create databases (``.ci/run``
starts Debian's PostgreSQL and sets it); each test gets a database of its own, dropped after. Without
it these tests skip, unless ``ROBENCH_REQUIRE_POSTGRES=1`` (CI), where they fail instead.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from conftest import TINY_PROTOCOL, admin_engine
from robench.cli import main
from robench.errors import StoreError
from robench.store import CellRow, ResultsStore, claims, unpack_bits, worker_id
from robench.store.merge import merge_into


def _row(cell_id: str, correct: list[bool]) -> CellRow:
    return CellRow(cell_id, "m1", "p", "synthetic", {"a": 1}, "none", {}, "pgd", {"eps": {"rgb": 0.03}}, "R", 8 / 255,
                   8 / 255, None, len(correct), sum(correct), np.array(correct), 0, 1.5, "0.1.0", None, "2.x", "cpu",
                   {"cell": cell_id}, {"stages": ["pgd"]})


def test_postgres_store_reads_back_what_it_writes_and_merges_with_sqlite(pg_url: str, tmp_path: Path) -> None:
    store = ResultsStore(pg_url)
    if sa.engine.make_url(pg_url).password:
        assert ":***@" in store.location  # messages never show the password
    assert store.write_cell(_row("c1", [True, False, True]))
    assert not store.write_cell(_row("c1", [False, False, False]))  # the first result stays
    store.write_model("m1", {"spec": 1}, {"s": 2}, [{"epoch": 1}], 3.0, "cpu")
    run = store.start_run("p", "p.yaml", ["a=1"], {"d": 1}, {"layout": 1}, "0.1.0", None, "cpu")
    store.finish_run(run, "complete")
    row = store.cells()["c1"]
    assert (row["n"], row["correct"], row["seed"]) == (3, 2, 0) and isinstance(row["per_sample"], bytes)
    assert list(unpack_bits(row["per_sample"], 3)) == [True, False, True]  # type: ignore[arg-type]
    assert store.existing(["c1", "c2"]) == {"c1"} and store.count() == 1
    assert store.models()["m1"]["history"] == [{"epoch": 1}]
    assert [(r["run_id"], r["status"], r["overrides"]) for r in store.runs()] == [(run, "complete", ["a=1"])]
    assert len(store.dataframe()) == 1
    again = ResultsStore(pg_url)  # opening an existing store changes nothing
    assert again.count() == 1
    # shards move both ways, by content key
    shard = ResultsStore(tmp_path / "shard.sqlite")
    shard.write_cell(_row("c2", [True]))
    assert merge_into(store, [shard]).cells_added == 1
    back = ResultsStore(tmp_path / "all.sqlite")
    assert merge_into(back, [store]).cells_added == 2 and back.cells()["c1"]["per_sample"] == row["per_sample"]
    clash = ResultsStore(tmp_path / "clash.sqlite")
    clash.write_cell(_row("c1", [False, False, False]))
    with pytest.raises(StoreError, match="1 conflict"):
        merge_into(store, [clash])


def test_claims_skip_rows_another_worker_is_locking_and_leases_expire(pg_url: str) -> None:
    store = ResultsStore(pg_url)
    assert claims.claim(store, "c1", "host-a:1")
    assert not claims.claim(store, "c1", "host-b:2")  # a live claim of another host
    assert claims.claim(store, "c2", "host-a:1", lease_s=-1.0)
    assert claims.claim(store, "c2", "host-b:2")  # its lease is over: taken over
    store.write_cell(_row("c3", [True]))
    assert not claims.claim(store, "c3", "host-b:2")  # stored: nothing to claim
    # a transaction holding c4's claim row: another worker neither waits nor takes it
    assert claims.claim(store, "c4", "host-a:1", lease_s=-1.0)
    with admin_engine(pg_url).connect() as con:
        con.exec_driver_sql("BEGIN")
        con.exec_driver_sql("SELECT * FROM claims WHERE cell_id = 'c4' FOR UPDATE")
        t0 = time.perf_counter()
        assert not claims.claim(store, "c4", "host-b:2")
        assert time.perf_counter() - t0 < 5
        con.exec_driver_sql("ROLLBACK")
    assert claims.claim(store, "c4", "host-b:2")
    claims.release(store, "c4", "host-b:2")
    assert claims.claim(store, "c4", worker_id())


def test_model_lock_holds_across_connections_and_is_released(pg_url: str) -> None:
    first, second = ResultsStore(pg_url), ResultsStore(pg_url)
    with claims.lock(first, "model abc", wait=False) as held:
        assert held
        with claims.lock(second, "model abc", wait=False) as other:
            assert not other
        with claims.lock(second, "model xyz", wait=False) as unrelated:
            assert unrelated
        waited: list[float] = []

        def wait_for_it() -> None:
            t0 = time.perf_counter()
            with claims.lock(second, "model abc", wait=True) as got:
                assert got
                waited.append(time.perf_counter() - t0)

        thread = threading.Thread(target=wait_for_it)
        thread.start()
        time.sleep(0.5)
        assert not waited  # still waiting
    thread.join(timeout=30)
    assert waited and waited[0] >= 0.4


def test_a_database_that_is_not_a_robench_store_is_left_alone(pg_url: str) -> None:
    with admin_engine(pg_url).connect() as con:
        con.exec_driver_sql("CREATE TABLE invoices (id integer)")
    with pytest.raises(StoreError, match=r"not a robench results store.*invoices"):
        ResultsStore(pg_url)
    with admin_engine(pg_url).connect() as con:
        assert con.exec_driver_sql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").scalar_one() == 1


def test_bad_store_urls_get_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(TINY_PROTOCOL), "--store", "mysql://u@localhost/db", "--cache", str(tmp_path)]) == 2
    assert "database 'mysql' is not supported; allowed: a file path (SQLite) or a postgresql:// URL" in \
        capsys.readouterr().err
    with pytest.raises(StoreError, match="cannot connect to results store postgresql"):
        ResultsStore("postgresql://nobody:secret@127.0.0.1:1/none", timeout=3)


def _run(store: str, cache: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "robench", "run", str(TINY_PROTOCOL), "--store", store, "--cache",
                             str(cache), "--progress", "plain", "--threads", "1"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_four_workers_on_postgres_compute_each_cell_once_with_the_serial_sqlite_numbers(pg_url: str,
                                                                                      tmp_path: Path) -> None:
    serial = _run(str(tmp_path / "serial.sqlite"), tmp_path / "serial-cache")
    assert serial.wait(timeout=600) == 0
    workers = [_run(pg_url, tmp_path / "cache") for _ in range(4)]
    outputs = [p.communicate(timeout=900)[0] for p in workers]
    assert [p.returncode for p in workers] == [0] * 4, outputs
    computed = [m.group(1) for out in outputs for m in re.finditer(r"^(.+?): [0-9.]+% of \d+ \(", out, re.M)]
    assert len(computed) == 8 and len(set(computed)) == 8, outputs  # every cell once, over the four
    trained = sum(int(m) for out in outputs for m in re.findall(r"(\d+) model\(s\) trained", out))
    assert trained == 2, outputs
    mine, reference = ResultsStore(pg_url).cells(), ResultsStore(tmp_path / "serial.sqlite").cells()
    assert mine.keys() == reference.keys() and len(mine) == 8
    for cid, row in reference.items():
        assert (mine[cid]["n"], mine[cid]["correct"], mine[cid]["per_sample"]) == \
            (row["n"], row["correct"], row["per_sample"]), row["scenario"]
