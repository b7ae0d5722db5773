"""The results store's tables, their version, and what an existing file or database is.

Tables (both back ends; SQLite keeps the same columns in :data:`SQLITE_DDL`):

``meta``
    ``schema_version`` and nothing else today.
``results``
    one row per cell (model x attack x scenario x eps), keyed by the cell's content hash: model id,
    defense, attack with all parameters, scenario, eps, n, correct, accuracy, the per-clip outcomes
    (packed bits), seed, duration, provenance (protocol, robench version, git commit, torch version,
    device, time) and, for attacked cells, ``details`` (JSON, :mod:`robench.store.details`).
``models``
    one row per trained model: its spec, the defense's summary (e.g. AMR weights), training history.
``runs``
    one row per ``robench run``: the protocol as run and the map from its tables to cells (its layout),
    so that a report is rendered from the store alone; ``status`` running, complete, failed or interrupted.
``claims``
    cells being computed right now: which worker (``host:pid``) took each and until when.

A store of an older schema is migrated when it is opened for writing (nothing is lost); a store of a
newer schema, a file that is not SQLite, an empty file, and a database with other tables are refused
before anything is written to them (:func:`inspect_sqlite`).
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from robench.errors import StoreError

#: version of the tables below; bump with a migration in :func:`migrate_sqlite`
SCHEMA_VERSION = 3
#: the tables every robench store has
REQUIRED_TABLES = frozenset({"meta", "results", "models", "runs"})

SQLITE_DDL = """
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

#: the same tables for SQLAlchemy's statements (and to create them on PostgreSQL)
METADATA = sa.MetaData()
META = sa.Table("meta", METADATA, sa.Column("key", sa.Text, primary_key=True),
                sa.Column("value", sa.Text, nullable=False))
RESULTS = sa.Table(
    "results", METADATA,
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
    "models", METADATA, sa.Column("model_id", sa.Text, primary_key=True),
    *(sa.Column(c, sa.Text, nullable=False) for c in ("spec", "summary", "history")),
    sa.Column("train_seconds", sa.Float), sa.Column("device", sa.Text),
    sa.Column("created_at", sa.Text, nullable=False),
)
CLAIMS = sa.Table("claims", METADATA, sa.Column("cell_id", sa.Text, primary_key=True),
                  sa.Column("worker", sa.Text, nullable=False), sa.Column("expires", sa.Float, nullable=False))
RUNS = sa.Table(
    "runs", METADATA, sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("protocol", sa.Text, nullable=False), sa.Column("protocol_path", sa.Text),
    *(sa.Column(c, sa.Text, nullable=False) for c in ("overrides", "data", "layout", "started_at")),
    sa.Column("finished_at", sa.Text), sa.Column("status", sa.Text, nullable=False),
    *(sa.Column(c, sa.Text) for c in ("robench_version", "git_commit", "device")),
)

#: what to do about a store that cannot be used as it is
_FIX = "pass --store a robench results store, or a file name that does not exist yet"


@dataclass(frozen=True)
class Found:
    """What :func:`inspect_sqlite` found at a path: nothing yet, or a robench store of ``version``."""

    exists: bool
    version: int | None = None


def inspect_sqlite(path: Path, timeout: float) -> Found:
    """What is at ``path``, read without writing a byte: nothing, or a robench store (its schema version).

    Raises :class:`~robench.errors.StoreError`, naming the file, for anything else: a folder, an empty
    file, a file that is not SQLite, a damaged database, an SQLite database without robench's tables
    (another program's, or an empty one), a store of a newer schema.
    """
    if path.is_dir():
        raise StoreError(f"results store {path} is a directory, not a file; pass --store a file such as "
                         f"{path / 'robench.sqlite'}")
    if not path.exists():
        return Found(False)
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise StoreError(f"cannot read results store {path}: {exc.strerror or exc}; {_FIX}") from None
    if not head:
        raise StoreError(f"results store {path} is an empty file, not a robench store; robench leaves it as it is; "
                         f"{_FIX}")
    if head != b"SQLite format 3\x00":
        raise StoreError(f"results store {path} is not an SQLite database (it starts with {head[:8]!r}); robench "
                         f"leaves it as it is; {_FIX}")
    tables, row = _read_meta(path, timeout)
    if not REQUIRED_TABLES <= tables:
        what = f"its tables: {', '.join(sorted(tables))}" if tables else "it has no tables"
        raise StoreError(f"{path} is an SQLite database but not a robench results store ({what}); robench leaves "
                         f"it as it is; {_FIX}")
    try:
        version = int(row) if row is not None else None
    except (TypeError, ValueError):
        version = None
    if version is None:
        raise StoreError(f"results store {path} has no schema version (a damaged meta table); {_FIX}")
    if version > SCHEMA_VERSION:
        raise StoreError(f"results store {path} has schema {version}, newer than this robench reads "
                         f"({SCHEMA_VERSION}); upgrade robench or pass another --store")
    return Found(True, version)


def _read_meta(path: Path, timeout: float) -> tuple[set[str], str | None]:
    """The table names and the schema version of an SQLite file, read-only: first as immutable (no lock or
    journal files appear beside a file that may not be ours), then, should another process be writing it
    at this moment, with the usual locking."""
    last: sqlite3.DatabaseError | None = None
    for query in ("mode=ro&immutable=1", "mode=ro"):
        try:
            con = sqlite3.connect(f"{path.resolve().as_uri()}?{query}", uri=True, timeout=timeout)
            try:
                tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                row = (con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                       if "meta" in tables else None)
            finally:
                con.close()
            return tables, (row[0] if row else None)
        except sqlite3.DatabaseError as exc:
            last = exc
    raise StoreError(f"cannot open results store {path}: {last} (a damaged or unfinished database file); robench "
                     f"leaves it as it is; {_FIX}")


def create_sqlite(path: Path, timeout: float) -> None:
    """Create a new store at ``path`` (with its folder) if nothing is there yet.

    The store is built in a temporary file beside ``path`` and linked into place only when complete, so
    a file at ``path`` is always a whole store: two processes creating the same store at once both end
    with the one that was linked first (the other's temporary file is removed), and neither ever sees a
    half-made database.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the folder of results store {path}: {exc.strerror or exc} "
                         f"({path.parent}); pass --store a file in a folder that exists or can be made") from None
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".new")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        con = sqlite3.connect(tmp, timeout=timeout, isolation_level=None)
        try:
            con.executescript(SQLITE_DDL)
            con.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            con.execute("PRAGMA journal_mode=WAL")
        finally:
            con.close()
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # fails if a store appeared meanwhile: then that one is used
        except FileExistsError:
            pass
        except OSError:  # a filesystem without hard links: a rename, unless a store appeared meanwhile
            if not path.exists():
                os.replace(tmp, path)
    except (sqlite3.DatabaseError, OSError) as exc:
        raise StoreError(f"cannot create results store {path}: {exc}") from None
    finally:
        for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            leftover.unlink(missing_ok=True)


def migrate_sqlite(path: Path, version: int, timeout: float) -> None:
    """Bring a store of schema ``version`` up to :data:`SCHEMA_VERSION` in one transaction (nothing is lost)."""
    try:
        con = sqlite3.connect(path, timeout=timeout, isolation_level=None)
        try:
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
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot upgrade results store {path} from schema {version}: {exc}") from None
