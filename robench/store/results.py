"""The results store: one row per evaluated cell, with the models and runs behind them.

``ResultsStore(location)`` opens a store for writing, ``ResultsStore(location, read_only=True)`` for
reading only (``robench report``, ``leaderboard render`` and the sources of ``store merge``: nothing is
ever written, and it works on read-only media). ``location`` is a file path (SQLite, embedded, the
default) or a ``postgresql://`` URL; both run the same SQLAlchemy Core statements.

Opened, never adopted: a new store is created only where nothing exists; an existing file or database
must be a robench store (:func:`~robench.store.schema.inspect_sqlite`), and anything else, an empty
file included, is refused before a byte is written. Every write is one transaction keyed by content
(``INSERT ... ON CONFLICT DO NOTHING``), so a killed process leaves complete rows only, a re-run skips
them, and concurrent writers lose nothing. A database error (a damaged file, a full disk, read-only
media, a lost or silent server) is a :class:`~robench.errors.StoreError` naming the store and what to
do, never a traceback.
"""

from __future__ import annotations

import json
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
from sqlalchemy.engine import Connection

from robench.errors import StoreError
from robench.locations import is_url
from robench.store.bits import pack_bits
from robench.store.engines import Timeouts, display, server_engine, sqlite_engine
from robench.store.schema import (
    META,
    METADATA,
    MODELS,
    RESULTS,
    RUNS,
    SCHEMA_VERSION,
    create_sqlite,
    inspect_sqlite,
    migrate_sqlite,
)

#: a run's ``status``: started, finished, failed with an error, stopped by a signal or Ctrl-C
RUN_STATUSES = ("running", "complete", "failed", "interrupted")


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class CellRow:
    """A result row to write (see :mod:`robench.store.schema` for the columns)."""

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


def explain(exc: BaseException, location: str, doing: str, timeouts: Timeouts) -> str:
    """A one-line message for a database error: what happened to which store, and what to do."""
    orig = getattr(exc, "orig", None) or exc
    first = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    text = first.lower()
    if "full" in text or "no space" in text or "disk i/o error" in text or "too large" in text:
        return (f"{doing} {location}: the disk is full ({first}); free space and run the command again: what was "
                "stored before is intact, and a run resumes where it stopped")
    if "readonly" in text or "read-only" in text or "unable to open database file" in text:
        return (f"cannot write to results store {location}: it is read-only here ({first}); commands that only "
                "read it (report, store merge's sources, leaderboard render) work; for this one pass --store a "
                "writable location, or copy the store to one")
    if "malformed" in text or "not a database" in text or "corrupt" in text:
        return (f"{doing} {location}: the database file is damaged ({first}); restore it from a copy, or rebuild it "
                "with robench store merge from the stores it was made of")
    if "locked" in text and "database" in text:
        return (f"{doing} {location}: another process held its write lock for more than {timeouts.lock:.0f} s "
                f"({first}); retry when that process is done")
    if "statement timeout" in text or "canceling statement" in text or "timeout" in text:
        return (f"{doing} {location}: the database server did not answer in time ({first}); check the server, or "
                "raise $ROBENCH_DB_CONNECT_TIMEOUT / $ROBENCH_DB_STATEMENT_TIMEOUT")
    if "connection failed" in text or "connection refused" in text or "could not connect" in text \
            or "could not translate host" in text or "authentication failed" in text:
        return (f"cannot connect to results store {location}: {first}; check the URL, and that the server runs and "
                "accepts this user")
    if isinstance(exc, sa.exc.OperationalError) or "connection" in text or "server" in text:
        return (f"{doing} {location}: lost the connection to the database server ({first}); check the URL, and that "
                "the server runs and accepts this user")
    return f"{doing} {location}: {first}"


class ResultsStore:
    """A results store at ``location`` (see the module docstring).

    Args:
        location: the database file (the command line's default: ``results/robench.sqlite``) or a
            ``postgresql://user:password@host:port/database`` URL.
        read_only: open for reading only: nothing is written, not even a journal; the store must exist.
        timeout: seconds a writer waits for another process's write transaction (SQLite).
    """

    def __init__(self, location: str | Path, read_only: bool = False, timeout: float = 60.0) -> None:
        self.timeouts = Timeouts.from_env(lock=timeout)
        self.read_only = read_only
        #: True for a database server (PostgreSQL), False for an SQLite file
        self.server = is_url(location)
        #: where the store is, for messages (a URL without its password)
        self.location = display(location)
        #: the SQLite file (None for a database server)
        self.path: Path | None = None if self.server else Path(location)
        if self.server:
            self.engine = server_engine(str(location), self.timeouts)
            self._open_on_server()
            return
        assert self.path is not None
        found = inspect_sqlite(self.path, self.timeouts.lock)
        if read_only and not found.exists:
            raise StoreError(f"results store {self.path} does not exist; run a protocol first (robench run ...)")
        if not read_only:
            if not found.exists:
                create_sqlite(self.path, self.timeouts.lock)
            elif found.version is not None and found.version < SCHEMA_VERSION:
                migrate_sqlite(self.path, found.version, self.timeouts.lock)
        elif found.version is not None and found.version < SCHEMA_VERSION:
            raise StoreError(f"results store {self.path} has schema {found.version}; open it once for writing "
                             f"(robench run, or robench store merge into it) to upgrade it to {SCHEMA_VERSION}")
        self.engine = sqlite_engine(self.path, self.timeouts, read_only)

    def _open_on_server(self) -> None:
        """Check that the database is a robench store this robench reads; for writing, create the tables in
        an empty database (once, under an advisory lock, so that workers starting together do not race)."""
        from robench.store.claims import lock_key

        with self._guard("cannot open results store"), self.engine.begin() as con:
            if not self.read_only:
                con.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_key("robench schema")})
            tables = set(sa.inspect(con).get_table_names())
            if tables and "meta" not in tables:
                raise StoreError(f"{self.location} is a database but not a robench results store (its tables: "
                                 f"{', '.join(sorted(tables))}); robench leaves it as it is; pass --store another "
                                 "database")
            if not tables and self.read_only:
                raise StoreError(f"results store {self.location} holds no robench tables; run a protocol into it "
                                 "first (robench run ... --store URL)")
            if not self.read_only:
                METADATA.create_all(con, checkfirst=True)
                con.execute(postgresql.insert(META).values(key="schema_version", value=str(SCHEMA_VERSION))
                            .on_conflict_do_nothing(index_elements=["key"]))
            found = int(con.execute(sa.select(META.c.value).where(META.c.key == "schema_version")).scalar_one())
        if found > SCHEMA_VERSION:
            raise StoreError(f"results store {self.location} has schema {found}, newer than this robench reads "
                             f"({SCHEMA_VERSION}); upgrade robench or pass another --store")

    # -- connections -----------------------------------------------------------------------------
    @contextmanager
    def _guard(self, doing: str) -> Iterator[None]:
        """Turn a database error raised in the block into a one-line :class:`StoreError`."""
        try:
            yield
        except (sa.exc.DBAPIError, sqlite3.DatabaseError) as exc:
            raise StoreError(explain(exc, self.location, doing, self.timeouts)) from None

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """A plain connection (for session-level work such as advisory locks), errors explained."""
        with self._guard("cannot use results store"), self.engine.connect() as con:
            yield con

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for reading (SQLite: no transaction, so readers never wait for the write lock)."""
        with self._guard("cannot read results store"), self.engine.connect() as con:
            yield con.execution_options(isolation_level="AUTOCOMMIT") if not self.server else con

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One write transaction: committed when the block ends, rolled back on any exception (a signal
        included). SQLite's ``BEGIN IMMEDIATE`` takes the write lock at once and is retried when it fails
        fast on a lock held across a WAL checkpoint."""
        if self.read_only:
            raise StoreError(f"results store {self.location} was opened read-only; nothing may be written to it")
        with self._guard("cannot write results store"), ExitStack() as stack:
            for attempt in range(20):
                try:
                    con = stack.enter_context(self.engine.begin())
                    break
                except sa.exc.OperationalError as exc:
                    if attempt == 19 or self.server or "locked" not in str(exc).lower():
                        raise
                    time.sleep(0.05 * (attempt + 1))
            yield con

    def insert(self, table: sa.Table, values: dict[str, Any], replace: bool = False) -> Any:
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
        with self.transaction() as con:
            return bool(con.execute(self.insert(RESULTS, values)).rowcount == 1)

    def write_model(self, model_id: str, spec: dict[str, Any], summary: dict[str, Any], history: list[dict[str, Any]],
                    train_seconds: float | None, device: str) -> None:
        """Record a trained model (replacing an older record of the same id)."""
        with self.transaction() as con:
            con.execute(self.insert(MODELS, {
                "model_id": model_id, "spec": json.dumps(spec, sort_keys=True), "summary": json.dumps(summary),
                "history": json.dumps(history), "train_seconds": train_seconds, "device": device,
                "created_at": utc_now()}, replace=True))

    def start_run(self, protocol: str, protocol_path: str | None, overrides: list[str], data: dict[str, Any],
                  layout: dict[str, Any], robench_version: str, git_commit: str | None, device: str) -> int:
        """Record a run as ``running``; returns its id (:meth:`finish_run` records how it ended)."""
        with self.transaction() as con:
            result = con.execute(RUNS.insert().values(
                protocol=protocol, protocol_path=protocol_path, overrides=json.dumps(overrides),
                data=json.dumps(data, default=str), layout=json.dumps(layout), started_at=utc_now(), status="running",
                robench_version=robench_version, git_commit=git_commit, device=device))
            key = result.inserted_primary_key
            if not key or key[0] is None:
                raise StoreError(f"results store {self.location}: the new run got no id")
            return int(key[0])

    def finish_run(self, run_id: int, status: str) -> None:
        """Record how a run ended (one of :data:`RUN_STATUSES` but ``running``)."""
        if status not in RUN_STATUSES[1:]:
            raise ValueError(f"run status {status!r}; allowed: {', '.join(RUN_STATUSES[1:])}")
        with self.transaction() as con:
            con.execute(RUNS.update().where(RUNS.c.run_id == run_id).values(finished_at=utc_now(), status=status))

    # -- reading ---------------------------------------------------------------------------------
    def existing(self, cell_ids: Iterable[str]) -> set[str]:
        """Which of ``cell_ids`` are already stored."""
        ids = list(cell_ids)
        found: set[str] = set()
        with self.read() as con:
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                found.update(con.execute(sa.select(RESULTS.c.cell_id).where(RESULTS.c.cell_id.in_(chunk))).scalars())
        return found

    def cells(self, cell_ids: Iterable[str] | None = None, con: Connection | None = None) -> dict[str, dict[str, Any]]:
        """Stored rows as dicts keyed by cell id (all rows if ``cell_ids`` is None); ``con`` reads inside an
        open transaction (a merge reads the target under its write lock)."""
        with ExitStack() as stack:
            c = con if con is not None else stack.enter_context(self.read())
            if cell_ids is None:
                rows = [dict(r._mapping) for r in c.execute(sa.select(RESULTS))]
            else:
                ids = list(cell_ids)
                rows = []
                for i in range(0, len(ids), 500):
                    query = sa.select(RESULTS).where(RESULTS.c.cell_id.in_(ids[i : i + 500]))
                    rows += [dict(r._mapping) for r in c.execute(query)]
        for r in rows:
            if r["per_sample"] is not None:
                r["per_sample"] = bytes(r["per_sample"])
        return {r["cell_id"]: r for r in rows}

    def models(self, con: Connection | None = None) -> dict[str, dict[str, Any]]:
        """Stored model records keyed by model id (JSON columns decoded)."""
        with ExitStack() as stack:
            c = con if con is not None else stack.enter_context(self.read())
            rows = [dict(r._mapping) for r in c.execute(sa.select(MODELS))]
        out = {}
        for d in rows:
            for k in ("spec", "summary", "history"):
                d[k] = json.loads(d[k])
            out[d["model_id"]] = d
        return out

    def runs(self, con: Connection | None = None) -> list[dict[str, Any]]:
        """All runs, oldest first (JSON columns decoded)."""
        with ExitStack() as stack:
            c = con if con is not None else stack.enter_context(self.read())
            rows = [dict(r._mapping) for r in c.execute(sa.select(RUNS).order_by(RUNS.c.run_id))]
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
        with self.read() as con:
            df = pd.read_sql_query(sa.select(RESULTS).order_by(RESULTS.c.created_at, RESULTS.c.cell_id), con)
        for col in ("dataset_params", "defense_params", "attack_params", "spec", "details"):
            df[col] = df[col].map(lambda s: json.loads(s) if isinstance(s, str) else None)
        return df

    def count(self) -> int:
        """How many cells are stored."""
        with self.read() as con:
            return int(con.execute(sa.select(sa.func.count()).select_from(RESULTS)).scalar_one())

    def same_as(self, other: ResultsStore) -> bool:
        """Whether ``other`` is this very store (the same file, or the same database URL)."""
        if self.path is not None and other.path is not None:
            return self.path.resolve() == other.path.resolve()
        return self.location == other.location
