"""The results store: one SQLite database (standard library), one row per evaluated cell.

Tables:

``results``
    one row per cell (model x attack x scenario x eps), keyed by the cell's content hash:
    model id, defense, attack with all parameters, scenario, eps, n, correct, accuracy, the
    per-sample outcomes (packed bits), seed, duration, provenance (protocol, robench version,
    git commit, torch version, device, time) and, for attacked cells, ``details`` (JSON): which
    stage of the attack fooled each clip, the robust accuracy after each stage, and the sanity
    measurements of :mod:`robench.sanity` (schema 2; a schema-1 store gains the column on opening).
``models``
    one row per trained model: its spec, the defense's summary (e.g. AMR weights), training history.
``runs``
    one row per ``robench run``: the protocol as run and the map from its tables to cells, so a
    report can be rendered from the store alone.
``claims``
    cells being computed right now: which worker (``host:pid``) took each and until when (schema 3),
    so that several ``robench run`` processes on one plan compute each cell once
    (:meth:`ResultsStore.claim`).

Writes are atomic (one transaction per row, ``INSERT OR IGNORE`` on the content key): a killed run
leaves only complete rows, a re-run skips them, and two processes writing the same store at the
same time lose nothing (WAL journal, busy timeout).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from robench.errors import StoreError

SCHEMA_VERSION = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    cell_id TEXT PRIMARY KEY,
    model_id TEXT NOT NULL,
    protocol TEXT NOT NULL,
    dataset TEXT NOT NULL,
    dataset_params TEXT NOT NULL,
    defense TEXT NOT NULL,
    defense_params TEXT NOT NULL,
    attack TEXT,
    attack_params TEXT,
    scenario TEXT NOT NULL,
    eps REAL NOT NULL,
    eps_rgb REAL,
    eps_skeleton REAL,
    n INTEGER NOT NULL,
    correct INTEGER NOT NULL,
    accuracy REAL NOT NULL,
    per_sample BLOB,
    seed INTEGER NOT NULL,
    duration_s REAL NOT NULL,
    robench_version TEXT,
    git_commit TEXT,
    torch_version TEXT,
    device TEXT,
    created_at TEXT NOT NULL,
    spec TEXT NOT NULL,
    details TEXT
);
CREATE INDEX IF NOT EXISTS results_model ON results (model_id);
CREATE TABLE IF NOT EXISTS models (
    model_id TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    summary TEXT NOT NULL,
    history TEXT NOT NULL,
    train_seconds REAL,
    device TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS claims (cell_id TEXT PRIMARY KEY, worker TEXT NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT,
    protocol TEXT NOT NULL,
    protocol_path TEXT,
    overrides TEXT NOT NULL,
    data TEXT NOT NULL,
    layout TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL,
    robench_version TEXT,
    git_commit TEXT,
    device TEXT
);
"""


_RESULT_COLUMNS = ("cell_id, model_id, protocol, dataset, dataset_params, defense, defense_params, attack, "
                   "attack_params, scenario, eps, eps_rgb, eps_skeleton, n, correct, accuracy, per_sample, seed, "
                   "duration_s, robench_version, git_commit, torch_version, device, created_at, spec, details")


def worker_id() -> str:
    """This process as a worker: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def worker_alive(worker: str) -> bool:
    """False only for a worker of this host whose process is gone; another host's worker counts as alive
    (its claim ends with its lease)."""
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def pack_bits(values: np.ndarray | Iterable[bool]) -> bytes:
    """Per-sample booleans -> compact bytes (8 per byte)."""
    return np.packbits(np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=bool)).tobytes()


def unpack_bits(blob: bytes | None, n: int) -> np.ndarray | None:
    """Inverse of :func:`pack_bits` for ``n`` samples."""
    if blob is None:
        return None
    return np.unpackbits(np.frombuffer(blob, dtype=np.uint8))[:n].astype(bool)


@dataclass
class CellRow:
    """A result row to write (see the module docstring for the columns)."""

    cell_id: str
    model_id: str
    protocol: str
    dataset: str
    dataset_params: dict[str, Any]
    defense: str
    defense_params: dict[str, Any]
    attack: str | None
    attack_params: dict[str, Any] | None
    scenario: str
    eps: float
    eps_rgb: float | None
    eps_skeleton: float | None
    n: int
    correct: int
    per_sample: np.ndarray
    seed: int
    duration_s: float
    robench_version: str
    git_commit: str | None
    torch_version: str
    device: str
    spec: dict[str, Any]
    details: dict[str, Any] | None = None

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else float("nan")


class ResultsStore:
    """A SQLite results store at ``path`` (created with its folder if missing).

    Args:
        path: the database file (default used by the CLI: ``results/robench.sqlite``).
        timeout: seconds a writer waits for another process's transaction.
    """

    def __init__(self, path: str | Path, timeout: float = 60.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        if self._inspect() == SCHEMA_VERSION:
            return  # a store of this version: opening it writes nothing
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the folder of results store {self.path}: {exc.strerror or exc} "
                             f"({self.path.parent}); pass --store a file in a folder that exists or can be made"
                             ) from None
        try:
            with self._connect() as con:
                con.executescript(_SCHEMA)
                con.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                found = con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
                if int(found) < SCHEMA_VERSION:
                    found = self._migrate(con, int(found))
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open results store {self.path}: {exc}") from None
        if int(found) > SCHEMA_VERSION:
            raise StoreError(f"results store {self.path} has schema {found}, newer than this robench "
                             f"({SCHEMA_VERSION})")

    @staticmethod
    def _migrate(con: sqlite3.Connection, version: int) -> str:
        """Bring an older store up to :data:`SCHEMA_VERSION` in one transaction (nothing is lost)."""
        con.execute("BEGIN IMMEDIATE")
        try:
            columns = {r[1] for r in con.execute("PRAGMA table_info(results)")}
            if version < 2 and "details" not in columns:
                con.execute("ALTER TABLE results ADD COLUMN details TEXT")
            if version < 3:
                con.execute("CREATE TABLE IF NOT EXISTS claims (cell_id TEXT PRIMARY KEY, worker TEXT NOT NULL, "
                            "expires REAL NOT NULL)")
            con.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return str(SCHEMA_VERSION)

    def _inspect(self) -> int | None:
        """The schema version of the store at :attr:`path`, read without writing; None for a new or empty file.

        Anything that is not a robench store of this or an older schema (a folder, a file that is not
        SQLite, another program's database, a newer store) is refused before a byte is written to it.
        """
        path = self.path
        fix = "pass --store a robench results store or a new file name"
        if path.is_dir():
            raise StoreError(f"results store {path} is a directory, not a file; pass --store a file such as "
                             f"{path / 'robench.sqlite'}")
        if not path.exists():
            return None
        try:
            with open(path, "rb") as fh:
                head = fh.read(16)
        except OSError as exc:
            raise StoreError(f"cannot read results store {path}: {exc.strerror or exc}; {fix}") from None
        if not head:
            return None  # an empty file: a new SQLite database
        if head != b"SQLite format 3\x00":
            raise StoreError(f"results store {path} is not an SQLite database (it starts with {head[:8]!r}); robench "
                             f"leaves it as it is; {fix}")
        # read-only; first as immutable (no lock or WAL files left beside a file that is not ours), then,
        # should another process be writing the store at this moment, with the usual locking
        for query in ("mode=ro&immutable=1", "mode=ro"):
            try:
                con = sqlite3.connect(f"{path.resolve().as_uri()}?{query}", uri=True, timeout=self.timeout)
                try:
                    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                    row = (con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                           if "meta" in tables else None)
                finally:
                    con.close()
                break
            except sqlite3.DatabaseError as exc:
                if query == "mode=ro":
                    raise StoreError(f"cannot open results store {path}: {exc} (a damaged or unfinished database "
                                     f"file); robench leaves it as it is; {fix}") from None
        if not tables:
            return None  # an empty SQLite database
        try:
            version = int(row[0]) if row is not None else None
        except (TypeError, ValueError):
            version = None
        if version is None:
            raise StoreError(f"{path} is an SQLite database but not a robench results store (its tables: "
                             f"{', '.join(sorted(tables))}); robench leaves it as it is; {fix}")
        if version > SCHEMA_VERSION:
            raise StoreError(f"results store {path} has schema {version}, newer than this robench reads "
                             f"({SCHEMA_VERSION}); upgrade robench (pip install -U robench) or pass another --store")
        missing = {"meta", "results", "models", "runs"} - tables
        return version if not missing else None

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            con.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")
            yield con
        finally:
            con.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as con:
            for attempt in range(20):  # BEGIN IMMEDIATE can fail fast on a lock held across the WAL checkpoint
                try:
                    con.execute("BEGIN IMMEDIATE")
                    break
                except sqlite3.OperationalError:
                    if attempt == 19:
                        raise
                    time.sleep(0.05 * (attempt + 1))
            try:
                yield con
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    # -- writing ---------------------------------------------------------------------------------
    def write_cell(self, row: CellRow) -> bool:
        """Insert one result atomically; returns False if the cell was already there (left as is)."""
        values = (
            row.cell_id, row.model_id, row.protocol, row.dataset, json.dumps(row.dataset_params, sort_keys=True),
            row.defense, json.dumps(row.defense_params, sort_keys=True), row.attack,
            json.dumps(row.attack_params, sort_keys=True) if row.attack_params is not None else None,
            row.scenario, row.eps, row.eps_rgb, row.eps_skeleton, row.n, row.correct, row.accuracy,
            pack_bits(row.per_sample), row.seed, row.duration_s, row.robench_version, row.git_commit,
            row.torch_version, row.device, utc_now(), json.dumps(row.spec, sort_keys=True),
            json.dumps(row.details, sort_keys=True) if row.details is not None else None,
        )
        with self._transaction() as con:
            marks = ",".join("?" * len(values))
            cur = con.execute(f"INSERT OR IGNORE INTO results ({_RESULT_COLUMNS}) VALUES ({marks})", values)
            return cur.rowcount == 1

    def write_model(self, model_id: str, spec: dict[str, Any], summary: dict[str, Any], history: list[dict[str, Any]],
                    train_seconds: float | None, device: str) -> None:
        """Record a trained model (replacing an older record of the same id)."""
        with self._transaction() as con:
            con.execute(
                "INSERT OR REPLACE INTO models VALUES (?,?,?,?,?,?,?)",
                (model_id, json.dumps(spec, sort_keys=True), json.dumps(summary), json.dumps(history), train_seconds,
                 device, utc_now()),
            )

    def start_run(self, protocol: str, protocol_path: str | None, overrides: list[str], data: dict[str, Any],
                  layout: dict[str, Any], robench_version: str, git_commit: str | None, device: str) -> int:
        with self._transaction() as con:
            cur = con.execute(
                "INSERT INTO runs (protocol, protocol_path, overrides, data, layout, started_at, status,"
                " robench_version, git_commit, device) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (protocol, protocol_path, json.dumps(overrides), json.dumps(data, default=str), json.dumps(layout),
                 utc_now(), "running", robench_version, git_commit, device),
            )
            if cur.lastrowid is None:  # sqlite sets it on every INSERT
                raise StoreError(f"results store {self.path}: the new run got no id")
            return cur.lastrowid

    def finish_run(self, run_id: int, status: str) -> None:
        with self._transaction() as con:
            con.execute("UPDATE runs SET finished_at=?, status=? WHERE run_id=?", (utc_now(), status, run_id))

    # -- claiming work --------------------------------------------------------------------------
    def claim(self, cell_id: str, worker: str, lease_s: float = 6 * 3600.0) -> bool:
        """Take ``cell_id`` for ``worker`` (``host:pid``, see :func:`worker_id`) unless it is stored or
        another live worker holds it; returns whether this worker now holds it.

        A claim is free again when its lease expires, or at once when its worker ran on this host and
        that process is gone (a killed run): the next worker, or a re-run, takes the cell over.
        """
        now = time.time()
        with self._transaction() as con:
            if con.execute("SELECT 1 FROM results WHERE cell_id=?", (cell_id,)).fetchone():
                return False
            row = con.execute("SELECT worker, expires FROM claims WHERE cell_id=?", (cell_id,)).fetchone()
            if row is not None and row[0] != worker and row[1] > now and worker_alive(row[0]):
                return False
            con.execute("INSERT OR REPLACE INTO claims VALUES (?,?,?)", (cell_id, worker, now + lease_s))
            return True

    def release(self, cell_id: str, worker: str) -> None:
        """Drop ``worker``'s claim on ``cell_id`` (after writing it, or on the way out)."""
        with self._transaction() as con:
            con.execute("DELETE FROM claims WHERE cell_id=? AND worker=?", (cell_id, worker))

    # -- reading ---------------------------------------------------------------------------------
    def existing(self, cell_ids: Iterable[str]) -> set[str]:
        """Which of ``cell_ids`` are already stored."""
        ids = list(cell_ids)
        found: set[str] = set()
        with self._connect() as con:
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                marks = ",".join("?" * len(chunk))
                rows = con.execute(f"SELECT cell_id FROM results WHERE cell_id IN ({marks})", chunk)
                found.update(r[0] for r in rows)
        return found

    def cells(self, cell_ids: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
        """Stored rows as dicts keyed by cell id (all rows if ``cell_ids`` is None)."""
        with self._connect() as con:
            con.row_factory = sqlite3.Row
            if cell_ids is None:
                rows = list(con.execute("SELECT * FROM results"))
            else:
                ids = list(cell_ids)
                rows = []
                for i in range(0, len(ids), 500):
                    chunk = ids[i : i + 500]
                    rows += con.execute(f"SELECT * FROM results WHERE cell_id IN ({','.join('?' * len(chunk))})", chunk)
        return {r["cell_id"]: dict(r) for r in rows}

    def models(self) -> dict[str, dict[str, Any]]:
        """Stored model records keyed by model id (JSON columns decoded)."""
        with self._connect() as con:
            con.row_factory = sqlite3.Row
            rows = list(con.execute("SELECT * FROM models"))
        out = {}
        for r in rows:
            d = dict(r)
            for k in ("spec", "summary", "history"):
                d[k] = json.loads(d[k])
            out[d["model_id"]] = d
        return out

    def runs(self) -> list[dict[str, Any]]:
        """All runs, oldest first (JSON columns decoded)."""
        with self._connect() as con:
            con.row_factory = sqlite3.Row
            rows = list(con.execute("SELECT * FROM runs ORDER BY run_id"))
        out = []
        for r in rows:
            d = dict(r)
            for k in ("overrides", "data", "layout"):
                d[k] = json.loads(d[k])
            out.append(d)
        return out

    def latest_runs(self) -> dict[str, dict[str, Any]]:
        """The most recent run of each protocol name, in order of first appearance."""
        latest: dict[str, dict[str, Any]] = {}
        for r in self.runs():
            latest[r["protocol"]] = r
        return latest

    def dataframe(self) -> pd.DataFrame:
        """All results as a DataFrame (JSON parameter columns decoded, per-sample bits left packed)."""
        with self._connect() as con:
            df = pd.read_sql_query("SELECT * FROM results ORDER BY created_at, cell_id", con)
        for col in ("dataset_params", "defense_params", "attack_params", "spec", "details"):
            df[col] = df[col].map(lambda s: json.loads(s) if isinstance(s, str) else None)
        return df

    def count(self) -> int:
        with self._connect() as con:
            return int(con.execute("SELECT COUNT(*) FROM results").fetchone()[0])

    # -- merging ---------------------------------------------------------------------------------
    def merge_from(self, sources: list[ResultsStore]) -> MergeSummary:
        """Copy every cell, model and run of ``sources`` that this store lacks, in one transaction.

        Keys are content hashes, so shards of one plan (one store per job or machine) merge into the
        store a single run would have written. A key present on both sides must hold the same result:
        a cell with another ``n``, ``correct`` or per-clip bits, or a model with another spec, is a
        conflict, and nothing is written. Runs are copied unless an identical one (protocol, start
        time, layout) is already here. Merging the same sources again writes nothing.
        """
        mine = self.cells()
        my_models = self.models()
        my_runs = {(r["protocol"], r["started_at"], json.dumps(r["layout"], sort_keys=True)) for r in self.runs()}
        summary = MergeSummary(sources=[str(s.path) for s in sources])
        new_cells: dict[str, dict[str, Any]] = {}
        new_models: dict[str, dict[str, Any]] = {}
        new_runs: list[dict[str, Any]] = []
        conflicts: list[str] = []
        for src in sources:
            if src.path.resolve() == self.path.resolve():
                raise StoreError(f"store merge: {src.path} is also the target (--into); merge other stores into it")
            for cid, row in src.cells().items():
                other = mine.get(cid) or new_cells.get(cid)
                if other is None:
                    new_cells[cid] = row
                elif (other["n"], other["correct"], other["per_sample"]) != (row["n"], row["correct"],
                                                                             row["per_sample"]):
                    conflicts.append(f"cell {cid} ({row['defense']}, {row['attack'] or 'clean'}, {row['scenario']}): "
                                     f"{other['correct']}/{other['n']} vs {row['correct']}/{row['n']} in {src.path}")
                else:
                    summary.cells_present += 1
            for mid, model in src.models().items():
                other_model = my_models.get(mid) or new_models.get(mid)
                if other_model is None:
                    new_models[mid] = model
                elif other_model["spec"] != model["spec"]:
                    conflicts.append(f"model {mid}: another spec in {src.path}")
            for run in src.runs():
                key = (run["protocol"], run["started_at"], json.dumps(run["layout"], sort_keys=True))
                if key not in my_runs:
                    my_runs.add(key)
                    new_runs.append(run)
        if conflicts:
            raise StoreError(f"store merge into {self.path}: {len(conflicts)} conflict(s), nothing written (the same "
                             f"key with another result: runs of different code, precision or device?): "
                             + "; ".join(conflicts[:5]) + (" ..." if len(conflicts) > 5 else ""))
        with self._transaction() as con:
            for row in new_cells.values():
                cols = [c.strip() for c in _RESULT_COLUMNS.split(",")]
                con.execute(f"INSERT OR IGNORE INTO results ({_RESULT_COLUMNS}) VALUES ({','.join('?' * len(cols))})",
                            [row.get(c) for c in cols])
            for m in new_models.values():
                con.execute("INSERT OR IGNORE INTO models VALUES (?,?,?,?,?,?,?)",
                            (m["model_id"], json.dumps(m["spec"], sort_keys=True), json.dumps(m["summary"]),
                             json.dumps(m["history"]), m["train_seconds"], m["device"], m["created_at"]))
            for r in new_runs:
                con.execute("INSERT INTO runs (protocol, protocol_path, overrides, data, layout, started_at, "
                            "finished_at, status, robench_version, git_commit, device) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                            (r["protocol"], r["protocol_path"], json.dumps(r["overrides"]),
                             json.dumps(r["data"], default=str), json.dumps(r["layout"]), r["started_at"],
                             r["finished_at"], r["status"], r["robench_version"], r["git_commit"], r["device"]))
        summary.cells_added, summary.models_added, summary.runs_added = len(new_cells), len(new_models), len(new_runs)
        return summary


@dataclass
class MergeSummary:
    """What :meth:`ResultsStore.merge_from` did: rows added, and cells that were already here with the same result."""

    sources: list[str]
    cells_added: int = 0
    cells_present: int = 0
    models_added: int = 0
    runs_added: int = 0

    def line(self) -> str:
        return (f"{self.cells_added} cell(s), {self.models_added} model(s) and {self.runs_added} run(s) added from "
                f"{len(self.sources)} store(s); {self.cells_present} cell(s) were already here with the same result")
