"""Connections to a results store: an SQLite file (read-write or read-only) or a PostgreSQL server.

- **SQLite, read-write**: WAL journal, a busy timeout, and write transactions that take the write lock
  at their start (``BEGIN IMMEDIATE``), so that concurrent writers queue instead of failing midway.
- **SQLite, read-only** (``robench report``, ``leaderboard render``, the sources of ``store merge``):
  opened with ``mode=ro``, so nothing is ever written; on read-only media, where SQLite cannot create
  the files its locking needs, the file is read as immutable.
- **PostgreSQL**: psycopg 3 through SQLAlchemy, with a connection timeout and a statement timeout
  (:class:`Timeouts`, both a few seconds by default, set with ``$ROBENCH_DB_CONNECT_TIMEOUT`` and
  ``$ROBENCH_DB_STATEMENT_TIMEOUT``), so a server that stops answering is an error in seconds, not a hang.

Every message names the store by :func:`display`: a URL never shows its password.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

from robench.errors import StoreError


@dataclass(frozen=True)
class Timeouts:
    """Seconds robench waits on a store.

    Attributes:
        lock: for another process's SQLite write transaction to end.
        connect: to connect to a database server.
        statement: for one statement on a database server (a lock that is meant to wait, a model lock
            held while another worker trains, is exempt).
    """

    lock: float = 60.0
    connect: float = 5.0
    statement: float = 30.0

    @classmethod
    def from_env(cls, lock: float = 60.0) -> Timeouts:
        """Defaults, overridden by ``$ROBENCH_DB_CONNECT_TIMEOUT`` and ``$ROBENCH_DB_STATEMENT_TIMEOUT`` (seconds)."""
        out = {}
        for key, var in (("connect", "ROBENCH_DB_CONNECT_TIMEOUT"), ("statement", "ROBENCH_DB_STATEMENT_TIMEOUT")):
            raw = os.environ.get(var)
            if raw is None:
                continue
            try:
                value = float(raw)
            except ValueError:
                value = float("nan")
            if not 0 < value < float("inf"):
                raise StoreError(f"${var}={raw!r}: allowed: a number of seconds > 0")
            out[key] = value
        return cls(lock=lock, **out)


def display(location: str | Path) -> str:
    """The store as messages show it: a path, or a URL without its password."""
    text = str(location)
    if "://" not in text:
        return text
    try:
        return sa.engine.make_url(text).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return text.split("://", 1)[0] + "://(unreadable URL)"


def sqlite_engine(path: Path, timeouts: Timeouts, read_only: bool) -> Engine:
    """SQLite through SQLAlchemy with robench's settings on every connection (see the module docstring)."""
    busy_ms = int(timeouts.lock * 1000)
    uri = path.resolve().as_uri()

    def connect() -> sqlite3.Connection:
        if not read_only:
            return sqlite3.connect(path, timeout=timeouts.lock, check_same_thread=False)
        try:
            con = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=timeouts.lock, check_same_thread=False)
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()  # fails here on read-only media
            return con
        except sqlite3.OperationalError:
            return sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, check_same_thread=False)

    engine = sa.create_engine("sqlite://", creator=connect, poolclass=NullPool)

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi: Any, _record: Any) -> None:
        dbapi.isolation_level = None  # SQLAlchemy's events issue BEGIN themselves
        pragmas = [f"busy_timeout={busy_ms}"] if read_only else ["journal_mode=WAL", "synchronous=NORMAL",
                                                                  f"busy_timeout={busy_ms}"]
        for pragma in pragmas:
            dbapi.execute(f"PRAGMA {pragma}")

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        if conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def server_engine(url: str, timeouts: Timeouts) -> Engine:
    """A PostgreSQL engine with the connection and statement timeouts of ``timeouts``."""
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        raise StoreError(f"--store {display(url)!r} is not a database URL; allowed: a file path (SQLite) or "
                         "postgresql://user:password@host:port/database") from None
    if parsed.get_backend_name() != "postgresql":
        raise StoreError(f"--store {display(url)}: database {parsed.get_backend_name()!r} is not supported; allowed: "
                         "a file path (SQLite) or a postgresql:// URL")
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    options = f"-c statement_timeout={int(timeouts.statement * 1000)} -c lock_timeout={int(timeouts.statement * 1000)}"
    try:
        return sa.create_engine(parsed, poolclass=NullPool, connect_args={
            "connect_timeout": max(1, round(timeouts.connect)), "options": options,
            # a server that stops answering mid-statement: the kernel gives up on unacknowledged data
            "tcp_user_timeout": int(timeouts.statement * 1000), "keepalives": 1, "keepalives_idle": 10,
            "keepalives_interval": 5, "keepalives_count": 3})
    except ImportError as exc:
        raise StoreError(f"--store {display(url)}: the PostgreSQL driver is missing ({exc}); "
                         "pip install 'psycopg[binary]'") from None
