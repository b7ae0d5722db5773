"""The results store: one row per evaluated cell, in SQLite (embedded, the default) or PostgreSQL.

``--store`` takes a file path (SQLite) or a database URL (``postgresql://user@host/db``). Both back ends
run the same SQLAlchemy Core statements; only what each database does differently is branched on:
SQLite serialises writers with ``BEGIN IMMEDIATE`` on a WAL journal (one host), PostgreSQL lets
workers on many hosts claim cells with ``SELECT ... FOR UPDATE SKIP LOCKED`` and gives a model lock
that holds across machines (an advisory lock, :meth:`ResultsStore.lock`).

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

Writes are atomic (one transaction per row, ``INSERT ... ON CONFLICT DO NOTHING`` on the content key):
a killed run leaves only complete rows, a re-run skips them, and two processes writing the same store
at the same time lose nothing (SQLite: WAL journal, busy timeout; PostgreSQL: row locks).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

from robench.errors import StoreError
from robench.locations import is_url

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


#: the same tables as :data:`_SCHEMA`, for SQLAlchemy's statements (and to create them on PostgreSQL)
_META = sa.MetaData()
META = sa.Table("meta", _META, sa.Column("key", sa.Text, primary_key=True), sa.Column("value", sa.Text, nullable=False))
RESULTS = sa.Table(
    "results", _META,
    sa.Column("cell_id", sa.Text, primary_key=True), sa.Column("model_id", sa.Text, nullable=False, index=True),
    *(sa.Column(c, sa.Text, nullable=False) for c in ("protocol", "dataset", "dataset_params", "defense",
                                                      "defense_params")),
    sa.Column("attack", sa.Text), sa.Column("attack_params", sa.Text), sa.Column("scenario", sa.Text, nullable=False),
    sa.Column("eps", sa.Float, nullable=False), sa.Column("eps_rgb", sa.Float), sa.Column("eps_skeleton", sa.Float),
    sa.Column("n", sa.Integer, nullable=False), sa.Column("correct", sa.Integer, nullable=False),
    sa.Column("accuracy", sa.Float, nullable=False), sa.Column("per_sample", sa.LargeBinary),
    sa.Column("seed", sa.BigInteger, nullable=False), sa.Column("duration_s", sa.Float, nullable=False),
    *(sa.Column(c, sa.Text) for c in ("robench_version", "git_commit", "torch_version", "device")),
    sa.Column("created_at", sa.Text, nullable=False), sa.Column("spec", sa.Text, nullable=False),
    sa.Column("details", sa.Text),
)
MODELS = sa.Table(
    "models", _META, sa.Column("model_id", sa.Text, primary_key=True),
    *(sa.Column(c, sa.Text, nullable=False) for c in ("spec", "summary", "history")),
    sa.Column("train_seconds", sa.Float), sa.Column("device", sa.Text),
    sa.Column("created_at", sa.Text, nullable=False),
)
CLAIMS = sa.Table("claims", _META, sa.Column("cell_id", sa.Text, primary_key=True),
                  sa.Column("worker", sa.Text, nullable=False), sa.Column("expires", sa.Float, nullable=False))
RUNS = sa.Table(
    "runs", _META, sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("protocol", sa.Text, nullable=False), sa.Column("protocol_path", sa.Text),
    *(sa.Column(c, sa.Text, nullable=False) for c in ("overrides", "data", "layout", "started_at")),
    sa.Column("finished_at", sa.Text), sa.Column("status", sa.Text, nullable=False),
    *(sa.Column(c, sa.Text) for c in ("robench_version", "git_commit", "device")),
)
_TABLES = {"meta", "results", "models", "runs", "claims"}


class ResultsStore:
    """A results store: an SQLite file at ``location`` (created with its folder if missing) or a
    PostgreSQL database given by URL (``postgresql://user:password@host:5432/db``; its tables are
    created on first use).

    Args:
        location: the database file (default used by the CLI: ``results/robench.sqlite``) or URL.
        timeout: seconds a writer waits for another process's transaction (SQLite) or a connection.
    """

    def __init__(self, location: str | Path, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self.server = is_url(location)
        #: where the store is, for messages (a URL without its password)
        self.location: str
        #: the SQLite file (None for a database server)
        self.path: Path | None
        if self.server:
            self.path = None
            self.engine = self._server_engine(str(location))
            self.location = self.engine.url.render_as_string(hide_password=True)
            self._create_on_server()
            return
        self.path = Path(location)
        self.location = str(self.path)
        self.engine = self._sqlite_engine(self.path)
        if self._inspect() == SCHEMA_VERSION:
            return  # a store of this version: opening it writes nothing
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the folder of results store {self.path}: {exc.strerror or exc} "
                             f"({self.path.parent}); pass --store a file in a folder that exists or can be made"
                             ) from None
        try:
            con = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
            try:
                con.execute("PRAGMA journal_mode=WAL")
                con.executescript(_SCHEMA)
                con.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                found = con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
                if int(found) < SCHEMA_VERSION:
                    found = self._migrate(con, int(found))
            finally:
                con.close()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open results store {self.path}: {exc}") from None
        if int(found) > SCHEMA_VERSION:
            raise StoreError(f"results store {self.path} has schema {found}, newer than this robench "
                             f"({SCHEMA_VERSION})")

    # -- engines -------------------------------------------------------------------------------------
    def _sqlite_engine(self, path: Path) -> Engine:
        """SQLite through SQLAlchemy, with robench's settings on every connection: WAL journal, a busy
        timeout, and transactions that take the write lock at their start (``BEGIN IMMEDIATE``)."""
        engine = sa.create_engine(sa.engine.URL.create("sqlite", database=str(path)), poolclass=NullPool,
                                  connect_args={"timeout": self.timeout, "check_same_thread": False})
        busy_ms = int(self.timeout * 1000)

        @sa.event.listens_for(engine, "connect")
        def _connect(dbapi: Any, _record: Any) -> None:
            dbapi.isolation_level = None  # SQLAlchemy's events issue BEGIN themselves
            for pragma in ("journal_mode=WAL", "synchronous=NORMAL", f"busy_timeout={busy_ms}"):
                dbapi.execute(f"PRAGMA {pragma}")

        @sa.event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            if conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine

    def _server_engine(self, url: str) -> Engine:
        try:
            parsed = sa.engine.make_url(url)
        except sa.exc.ArgumentError:
            raise StoreError(f"--store {url!r} is not a database URL; allowed: a file path (SQLite) or "
                             "postgresql://user:password@host:port/database") from None
        if parsed.get_backend_name() != "postgresql":
            raise StoreError(f"--store {parsed.render_as_string(hide_password=True)}: database "
                             f"{parsed.get_backend_name()!r} is not supported; allowed: a file path (SQLite) or a "
                             "postgresql:// URL")
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        try:
            return sa.create_engine(parsed, poolclass=NullPool, connect_args={"connect_timeout": int(self.timeout)})
        except ImportError as exc:
            raise StoreError(f"--store {parsed.render_as_string(hide_password=True)}: the PostgreSQL driver is "
                             f"missing ({exc}); pip install 'psycopg[binary]'") from None

    def _create_on_server(self) -> None:
        """Create the tables on a database server (once, under an advisory lock, so that workers starting
        together do not race), or check that the database holds a robench store this robench reads."""
        try:
            with self.engine.begin() as con:
                con.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_key("robench schema")})
                tables = set(sa.inspect(con).get_table_names())
                if tables and "meta" not in tables:
                    raise StoreError(f"{self.location} is a database but not a robench results store (its tables: "
                                     f"{', '.join(sorted(tables))}); robench leaves it as it is; pass --store "
                                     "another database")
                _META.create_all(con, checkfirst=True)
                con.execute(postgresql.insert(META).values(key="schema_version", value=str(SCHEMA_VERSION))
                            .on_conflict_do_nothing(index_elements=["key"]))
                found = int(con.execute(sa.select(META.c.value).where(META.c.key == "schema_version")).scalar_one())
        except sa.exc.OperationalError as exc:
            raise StoreError(f"cannot connect to results store {self.location}: "
                             f"{str(exc.orig).strip().splitlines()[0] if exc.orig else exc}; check the URL, and that "
                             "the server runs and accepts this user") from None
        if found > SCHEMA_VERSION:
            raise StoreError(f"results store {self.location} has schema {found}, newer than this robench reads "
                             f"({SCHEMA_VERSION}); upgrade robench (pip install -U robench) or pass another --store")

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
        assert path is not None  # SQLite only
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
    def _read(self) -> Iterator[Connection]:
        """A connection for reading (SQLite: no transaction, so readers never wait for the write lock)."""
        con = self.engine.connect()
        try:
            if not self.server:
                con = con.execution_options(isolation_level="AUTOCOMMIT")
            yield con
        finally:
            con.close()

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """One write transaction; SQLite's ``BEGIN IMMEDIATE`` is retried when it fails fast on a lock held
        across a WAL checkpoint."""
        with ExitStack() as stack:  # commits when the block ends, rolls back on an exception
            for attempt in range(20):
                try:
                    con = stack.enter_context(self.engine.begin())
                    break
                except sa.exc.OperationalError:
                    if attempt == 19 or self.server:
                        raise
                    time.sleep(0.05 * (attempt + 1))
            yield con

    def _insert(self, table: sa.Table, values: dict[str, Any], replace: bool = False) -> Any:
        """``INSERT ... ON CONFLICT DO NOTHING`` (or ``DO UPDATE`` when ``replace``) on the primary key."""
        stmt = (postgresql.insert(table) if self.server else sqlite.insert(table)).values(values)
        stmt = stmt.execution_options(preserve_rowcount=True)  # rowcount: 1 if written, 0 if it was there
        key = [c.name for c in table.primary_key]
        if replace:
            return stmt.on_conflict_do_update(index_elements=key,
                                              set_={c: stmt.excluded[c] for c in values if c not in key})
        return stmt.on_conflict_do_nothing(index_elements=key)

    # -- writing ---------------------------------------------------------------------------------
    def write_cell(self, row: CellRow) -> bool:
        """Insert one result atomically; returns False if the cell was already there (left as is)."""
        values = {
            "cell_id": row.cell_id, "model_id": row.model_id, "protocol": row.protocol, "dataset": row.dataset,
            "dataset_params": json.dumps(row.dataset_params, sort_keys=True), "defense": row.defense,
            "defense_params": json.dumps(row.defense_params, sort_keys=True), "attack": row.attack,
            "attack_params": json.dumps(row.attack_params, sort_keys=True) if row.attack_params is not None else None,
            "scenario": row.scenario, "eps": row.eps, "eps_rgb": row.eps_rgb, "eps_skeleton": row.eps_skeleton,
            "n": row.n, "correct": row.correct, "accuracy": row.accuracy, "per_sample": pack_bits(row.per_sample),
            "seed": row.seed, "duration_s": row.duration_s, "robench_version": row.robench_version,
            "git_commit": row.git_commit, "torch_version": row.torch_version, "device": row.device,
            "created_at": utc_now(), "spec": json.dumps(row.spec, sort_keys=True),
            "details": json.dumps(row.details, sort_keys=True) if row.details is not None else None,
        }
        with self._transaction() as con:
            return con.execute(self._insert(RESULTS, values)).rowcount == 1

    def write_model(self, model_id: str, spec: dict[str, Any], summary: dict[str, Any], history: list[dict[str, Any]],
                    train_seconds: float | None, device: str) -> None:
        """Record a trained model (replacing an older record of the same id)."""
        with self._transaction() as con:
            con.execute(self._insert(MODELS, {
                "model_id": model_id, "spec": json.dumps(spec, sort_keys=True), "summary": json.dumps(summary),
                "history": json.dumps(history), "train_seconds": train_seconds, "device": device,
                "created_at": utc_now()}, replace=True))

    def start_run(self, protocol: str, protocol_path: str | None, overrides: list[str], data: dict[str, Any],
                  layout: dict[str, Any], robench_version: str, git_commit: str | None, device: str) -> int:
        with self._transaction() as con:
            result = con.execute(RUNS.insert().values(
                protocol=protocol, protocol_path=protocol_path, overrides=json.dumps(overrides),
                data=json.dumps(data, default=str), layout=json.dumps(layout), started_at=utc_now(), status="running",
                robench_version=robench_version, git_commit=git_commit, device=device))
            key = result.inserted_primary_key
            if not key or key[0] is None:
                raise StoreError(f"results store {self.location}: the new run got no id")
            return int(key[0])

    def finish_run(self, run_id: int, status: str) -> None:
        with self._transaction() as con:
            con.execute(RUNS.update().where(RUNS.c.run_id == run_id).values(finished_at=utc_now(), status=status))

    # -- claiming work --------------------------------------------------------------------------
    def claim(self, cell_id: str, worker: str, lease_s: float = 6 * 3600.0) -> bool:
        """Take ``cell_id`` for ``worker`` (``host:pid``, see :func:`worker_id`) unless it is stored or
        another live worker holds it; returns whether this worker now holds it.

        A claim is free again when its lease expires, or at once when its worker ran on this host and
        that process is gone (a killed run): the next worker, or a re-run, takes the cell over. On
        PostgreSQL the claim row is read ``FOR UPDATE SKIP LOCKED``: a claim another worker is taking at
        this instant counts as held, and nobody waits.
        """
        now = time.time()
        mine = {"cell_id": cell_id, "worker": worker, "expires": now + lease_s}
        with self._transaction() as con:
            if con.execute(sa.select(RESULTS.c.cell_id).where(RESULTS.c.cell_id == cell_id)).first():
                return False
            query = sa.select(CLAIMS.c.worker, CLAIMS.c.expires).where(CLAIMS.c.cell_id == cell_id)
            row = con.execute(query.with_for_update(skip_locked=True) if self.server else query).first()
            if row is None and self.server:  # no claim, or one locked by another transaction right now
                return bool(con.execute(self._insert(CLAIMS, mine)).rowcount == 1)
            if row is not None and row.worker != worker and row.expires > now and worker_alive(row.worker):
                return False
            con.execute(self._insert(CLAIMS, mine, replace=True))
            return True

    def release(self, cell_id: str, worker: str) -> None:
        """Drop ``worker``'s claim on ``cell_id`` (after writing it, or on the way out)."""
        with self._transaction() as con:
            con.execute(CLAIMS.delete().where((CLAIMS.c.cell_id == cell_id) & (CLAIMS.c.worker == worker)))

    @contextmanager
    def lock(self, name: str, wait: bool = True) -> Iterator[bool]:
        """An exclusive lock on ``name`` across every machine that uses this store; yields whether it is held.

        On PostgreSQL a session advisory lock, held on its own connection for the ``with`` block and
        released if the process dies (the server drops the connection). On SQLite, which serves one
        host, it yields True at once: the model cache's file lock serialises that host's processes.
        """
        if not self.server:
            yield True
            return
        key = _lock_key(name)
        with self.engine.connect() as con:
            con = con.execution_options(isolation_level="AUTOCOMMIT")
            if wait:
                con.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": key})
            elif not con.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar_one():
                yield False
                return
            try:
                yield True
            finally:
                con.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})

    # -- reading ---------------------------------------------------------------------------------
    def existing(self, cell_ids: Iterable[str]) -> set[str]:
        """Which of ``cell_ids`` are already stored."""
        ids = list(cell_ids)
        found: set[str] = set()
        with self._read() as con:
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                found.update(con.execute(sa.select(RESULTS.c.cell_id).where(RESULTS.c.cell_id.in_(chunk))).scalars())
        return found

    def cells(self, cell_ids: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
        """Stored rows as dicts keyed by cell id (all rows if ``cell_ids`` is None)."""
        with self._read() as con:
            if cell_ids is None:
                rows = [dict(r._mapping) for r in con.execute(sa.select(RESULTS))]
            else:
                ids = list(cell_ids)
                rows = []
                for i in range(0, len(ids), 500):
                    query = sa.select(RESULTS).where(RESULTS.c.cell_id.in_(ids[i : i + 500]))
                    rows += [dict(r._mapping) for r in con.execute(query)]
        for r in rows:
            if r["per_sample"] is not None:
                r["per_sample"] = bytes(r["per_sample"])
        return {r["cell_id"]: r for r in rows}

    def models(self) -> dict[str, dict[str, Any]]:
        """Stored model records keyed by model id (JSON columns decoded)."""
        with self._read() as con:
            rows = [dict(r._mapping) for r in con.execute(sa.select(MODELS))]
        out = {}
        for d in rows:
            for k in ("spec", "summary", "history"):
                d[k] = json.loads(d[k])
            out[d["model_id"]] = d
        return out

    def runs(self) -> list[dict[str, Any]]:
        """All runs, oldest first (JSON columns decoded)."""
        with self._read() as con:
            rows = [dict(r._mapping) for r in con.execute(sa.select(RUNS).order_by(RUNS.c.run_id))]
        for d in rows:
            for k in ("overrides", "data", "layout"):
                d[k] = json.loads(d[k])
        return rows

    def latest_runs(self) -> dict[str, dict[str, Any]]:
        """The most recent run of each protocol name, in order of first appearance."""
        latest: dict[str, dict[str, Any]] = {}
        for r in self.runs():
            latest[r["protocol"]] = r
        return latest

    def dataframe(self) -> pd.DataFrame:
        """All results as a DataFrame (JSON parameter columns decoded, per-sample bits left packed)."""
        with self._read() as con:
            df = pd.read_sql_query(sa.select(RESULTS).order_by(RESULTS.c.created_at, RESULTS.c.cell_id), con)
        for col in ("dataset_params", "defense_params", "attack_params", "spec", "details"):
            df[col] = df[col].map(lambda s: json.loads(s) if isinstance(s, str) else None)
        return df

    def count(self) -> int:
        with self._read() as con:
            return int(con.execute(sa.select(sa.func.count()).select_from(RESULTS)).scalar_one())

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
        summary = MergeSummary(sources=[s.location for s in sources])
        new_cells: dict[str, dict[str, Any]] = {}
        new_models: dict[str, dict[str, Any]] = {}
        new_runs: list[dict[str, Any]] = []
        conflicts: list[str] = []
        for src in sources:
            if src.same_as(self):
                raise StoreError(f"store merge: {src.location} is also the target (--into); merge other stores into it")
            for cid, row in src.cells().items():
                other = mine.get(cid) or new_cells.get(cid)
                if other is None:
                    new_cells[cid] = row
                elif (other["n"], other["correct"], other["per_sample"]) != (row["n"], row["correct"],
                                                                             row["per_sample"]):
                    conflicts.append(f"cell {cid} ({row['defense']}, {row['attack'] or 'clean'}, {row['scenario']}): "
                                     f"{other['correct']}/{other['n']} vs {row['correct']}/{row['n']} in "
                                     f"{src.location}")
                else:
                    summary.cells_present += 1
            for mid, model in src.models().items():
                other_model = my_models.get(mid) or new_models.get(mid)
                if other_model is None:
                    new_models[mid] = model
                elif other_model["spec"] != model["spec"]:
                    conflicts.append(f"model {mid}: another spec in {src.location}")
            for run in src.runs():
                key = (run["protocol"], run["started_at"], json.dumps(run["layout"], sort_keys=True))
                if key not in my_runs:
                    my_runs.add(key)
                    new_runs.append(run)
        if conflicts:
            raise StoreError(f"store merge into {self.location}: {len(conflicts)} conflict(s), nothing written (the "
                             f"same key with another result: runs of different code, precision or device?): "
                             + "; ".join(conflicts[:5]) + (" ..." if len(conflicts) > 5 else ""))
        with self._transaction() as con:
            for row in new_cells.values():
                con.execute(self._insert(RESULTS, {c.name: row.get(c.name) for c in RESULTS.columns}))
            for m in new_models.values():
                con.execute(self._insert(MODELS, {
                    "model_id": m["model_id"], "spec": json.dumps(m["spec"], sort_keys=True),
                    "summary": json.dumps(m["summary"]), "history": json.dumps(m["history"]),
                    "train_seconds": m["train_seconds"], "device": m["device"], "created_at": m["created_at"]}))
            for r in new_runs:
                con.execute(RUNS.insert().values(
                    protocol=r["protocol"], protocol_path=r["protocol_path"], overrides=json.dumps(r["overrides"]),
                    data=json.dumps(r["data"], default=str), layout=json.dumps(r["layout"]),
                    started_at=r["started_at"], finished_at=r["finished_at"], status=r["status"],
                    robench_version=r["robench_version"], git_commit=r["git_commit"], device=r["device"]))
        summary.cells_added, summary.models_added, summary.runs_added = len(new_cells), len(new_models), len(new_runs)
        return summary

    def same_as(self, other: ResultsStore) -> bool:
        """Whether ``other`` is this very store (the same file, or the same database URL)."""
        if self.path is not None and other.path is not None:
            return self.path.resolve() == other.path.resolve()
        return self.location == other.location


def _lock_key(name: str) -> int:
    """A PostgreSQL advisory-lock key (signed 64-bit) for ``name``."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


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
