"""The SQLite results store: round trip, no duplicates, concurrent writers, killed writers."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import store_with_schema
from robench.errors import StoreError
from robench.store import CellRow, ResultsStore, pack_bits, unpack_bits


def row(cell_id: str, correct: int = 3, n: int = 5) -> CellRow:
    bits = np.array([True] * correct + [False] * (n - correct))
    return CellRow(
        cell_id=cell_id, model_id="m1", protocol="p", dataset="synthetic", dataset_params={"classes": 4},
        defense="none", defense_params={}, attack="pgd", attack_params={"steps": 2, "eps": {"rgb": 8 / 255}},
        scenario="R", eps=8 / 255, eps_rgb=8 / 255, eps_skeleton=None, n=n, correct=correct, per_sample=bits,
        seed=0, duration_s=0.5, robench_version="0", git_commit=None, torch_version="x", device="cpu",
        spec={"cell": cell_id},
    )


def test_round_trip(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "sub" / "r.sqlite")
    assert store.write_cell(row("a", 3, 5))
    got = store.cells(["a"])["a"]
    assert got["n"] == 5 and got["correct"] == 3 and got["accuracy"] == pytest.approx(0.6)
    assert unpack_bits(got["per_sample"], 5).tolist() == [True, True, True, False, False]
    assert store.existing(["a", "b"]) == {"a"}
    df = store.dataframe()
    assert list(df["cell_id"]) == ["a"] and df.loc[0, "attack_params"]["steps"] == 2
    for col in ("model_id", "defense", "attack", "scenario", "eps", "n", "correct", "accuracy", "seed",
                "duration_s", "protocol", "robench_version", "git_commit", "torch_version", "device", "created_at"):
        assert col in df.columns


def test_second_write_of_a_cell_is_ignored(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "r.sqlite")
    assert store.write_cell(row("a", 3))
    assert not store.write_cell(row("a", 1))
    assert store.count() == 1 and store.cells()["a"]["correct"] == 3


def test_pack_bits_round_trip() -> None:
    bits = np.random.default_rng(0).random(1001) > 0.5
    assert np.array_equal(unpack_bits(pack_bits(bits), 1001), bits)


def _writer(path: str, ids: list[str]) -> None:
    store = ResultsStore(path, timeout=30)
    for i in ids:
        store.write_cell(row(i))


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "r.sqlite")
    ResultsStore(path)
    a = [f"cell{i}" for i in range(0, 60)]
    b = [f"cell{i}" for i in range(30, 90)]  # half overlaps with a
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(path, ids)) for ids in (a, b)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    store = ResultsStore(path)
    assert store.count() == 90
    assert store.existing(f"cell{i}" for i in range(90)) == {f"cell{i}" for i in range(90)}


def test_killed_writer_leaves_only_complete_rows(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    ResultsStore(path)
    tests_dir, db = str(Path(__file__).parent), str(path)
    code = (
        f"import sys; sys.path.insert(0, {tests_dir!r})\n"
        "from test_store import row\n"
        "from robench.store import ResultsStore\n"
        f"s = ResultsStore({db!r})\n"
        "i = 0\n"
        "while True:\n"
        "    s.write_cell(row(f'k{i}')); i += 1\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.time() + 60
    while time.time() < deadline and ResultsStore(path).count() < 20:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    store = ResultsStore(path)
    cells = store.cells()
    assert len(cells) >= 20
    assert all(c["n"] == 5 and c["correct"] == 3 and c["spec"] for c in cells.values())


def test_runs_and_models_tables(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "r.sqlite")
    rid = store.start_run("p", "p.yaml", ["a=1"], {"name": "p"}, {"tables": []}, "0", None, "cpu")
    store.finish_run(rid, "complete")
    store.write_model("m1", {"seed": 0}, {"amr": [0.5]}, [{"epoch": 1}], 1.5, "cpu")
    run = store.latest_runs()["p"]
    assert run["status"] == "complete" and run["overrides"] == ["a=1"]
    assert store.models()["m1"]["summary"] == {"amr": [0.5]}


def test_unreadable_store_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match=r"bad\.sqlite"):
        ResultsStore(bad)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = store_with_schema(tmp_path / "r.sqlite", 99)
    with pytest.raises(StoreError, match="newer"):
        ResultsStore(path)


def test_schema_1_store_gains_the_details_column_and_keeps_its_rows(tmp_path: Path) -> None:
    """A store written before schema 2 (no ``details``) is migrated on opening; nothing is lost."""
    from robench.store import ResultsStore
    from robench.store.schema import SCHEMA_VERSION

    path = tmp_path / "old.sqlite"
    ResultsStore(path)
    con = sqlite3.connect(path)
    con.execute("ALTER TABLE results DROP COLUMN details")
    con.execute("INSERT INTO results (cell_id, model_id, protocol, dataset, dataset_params, defense, defense_params, "
                "scenario, eps, n, correct, accuracy, seed, duration_s, created_at, spec) VALUES "
                "('c1', 'm', 'p', 'synthetic', '{}', 'none', '{}', 'clean', 0, 4, 3, 0.75, 0, 1.0, 'now', '{}')")
    con.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    con.commit()
    con.close()
    store = ResultsStore(path)
    cell = store.cells()["c1"]
    assert cell["accuracy"] == 0.75 and cell["details"] is None
    con = sqlite3.connect(path)
    assert con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    con.close()
