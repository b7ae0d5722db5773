"""Who computes what: claims on cells and locks on models, so that many workers on one plan do each thing once.

A worker is a process, named ``host:pid`` (:func:`worker_id`). Before computing a cell a worker claims
it in the store (:func:`claim`); a claim ends when the worker releases it, when its lease expires, or at
once when its worker ran on this host and that process is gone (a killed run), so the next worker takes
the cell over. On PostgreSQL the claim row is read ``FOR UPDATE SKIP LOCKED``: a claim another worker is
taking at this instant counts as held, and nobody waits. A model is trained under :func:`lock`, an
advisory lock that holds across machines on PostgreSQL (on SQLite, which serves one host, the model
cache's file lock does that job).
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import sqlalchemy as sa

from robench.store.schema import CLAIMS, RESULTS

if TYPE_CHECKING:
    from robench.store.results import ResultsStore

#: how long a claim holds without its worker releasing it
LEASE_S = 6 * 3600.0


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


def lock_key(name: str) -> int:
    """A PostgreSQL advisory-lock key (signed 64-bit) for ``name``."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def claim(store: ResultsStore, cell_id: str, worker: str, lease_s: float = LEASE_S) -> bool:
    """Take ``cell_id`` for ``worker`` unless it is stored or another live worker holds it; returns whether
    ``worker`` now holds it (see the module docstring)."""
    now = time.time()
    mine = {"cell_id": cell_id, "worker": worker, "expires": now + lease_s}
    with store.transaction() as con:
        if con.execute(sa.select(RESULTS.c.cell_id).where(RESULTS.c.cell_id == cell_id)).first():
            return False
        query = sa.select(CLAIMS.c.worker, CLAIMS.c.expires).where(CLAIMS.c.cell_id == cell_id)
        row = con.execute(query.with_for_update(skip_locked=True) if store.server else query).first()
        if row is None and store.server:  # no claim, or one locked by another transaction right now
            return bool(con.execute(store.insert(CLAIMS, mine)).rowcount == 1)
        if row is not None and row.worker != worker and row.expires > now and worker_alive(row.worker):
            return False
        con.execute(store.insert(CLAIMS, mine, replace=True))
        return True


def release(store: ResultsStore, cell_id: str, worker: str) -> None:
    """Drop ``worker``'s claim on ``cell_id`` (after writing it, or on the way out)."""
    with store.transaction() as con:
        con.execute(CLAIMS.delete().where((CLAIMS.c.cell_id == cell_id) & (CLAIMS.c.worker == worker)))


@contextmanager
def lock(store: ResultsStore, name: str, wait: bool = True) -> Iterator[bool]:
    """An exclusive lock on ``name`` across every machine that uses the store; yields whether it is held.

    On PostgreSQL a session advisory lock, held on its own connection for the ``with`` block (waiting
    for it is exempt from the statement timeout) and released if the process dies, since the server
    drops its connection. On SQLite it yields True at once.
    """
    if not store.server:
        yield True
        return
    key = lock_key(name)
    with store.connection() as con:
        con = con.execution_options(isolation_level="AUTOCOMMIT")
        if wait:
            con.execute(sa.text("SET statement_timeout = 0"))
            con.execute(sa.text("SET lock_timeout = 0"))
            con.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": key})
        elif not con.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar_one():
            yield False
            return
        try:
            yield True
        finally:
            con.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
