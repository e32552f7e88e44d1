"""The database connection of the study store: the default URL and an SQLAlchemy engine set up for safe
concurrent writes.

On SQLite every connection runs in WAL mode (readers never block the writer) with foreign keys on and a 30 s
busy timeout, and write transactions start with BEGIN IMMEDIATE (SQLAlchemy's documented pysqlite recipe:
pysqlite's own transaction handling off, our BEGIN emitted in a "begin" event), so concurrent writers queue
for the lock instead of failing half-way. Any other SQLAlchemy URL is used as given; ``postgresql://`` means
psycopg 3, the driver installed.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool

from neurofusion.studies.schema import StudyError

STUDY_DB_ENV = "NEUROFUSION_STUDY_DB"  # an SQLAlchemy URL; overrides the default
STUDY_DIR_ENV = "NEUROFUSION_STUDY_DIR"  # the folder of the default SQLite file
STUDY_FILE = "studies.sqlite"
REPO_ROOT = Path(__file__).resolve().parents[2]
BUSY_TIMEOUT_S = 30


def default_url() -> str:
    """$NEUROFUSION_STUDY_DB if set, else the SQLite file studies.sqlite in $NEUROFUSION_STUDY_DIR (default:
    the repository's git-ignored studies/ folder)."""
    if os.environ.get(STUDY_DB_ENV):
        return os.environ[STUDY_DB_ENV]
    folder = Path(os.environ.get(STUDY_DIR_ENV) or REPO_ROOT / "studies").expanduser().resolve()
    return f"sqlite:///{folder / STUDY_FILE}"


def masked_url(url: str) -> str:
    """``url`` with any password hidden, fit for messages and display ("(the URL given)" if it does not parse)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(the URL given)"


def make_engine(url: str) -> Engine:
    """An engine for ``url``; a write transaction is a connection with the execution option
    ``study_write=True`` (BEGIN IMMEDIATE on SQLite)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StudyError(f"{url!r} is not an SQLAlchemy database URL; expected e.g. sqlite:///path/studies.sqlite "
                         "or postgresql+psycopg://user@host/database") from None
    if parsed.drivername == "postgresql":  # the installed driver is psycopg 3, not SQLAlchemy's default psycopg2
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() != "sqlite":
        try:
            return create_engine(parsed, pool_pre_ping=True)
        except (ArgumentError, ImportError) as err:
            raise StudyError(f"cannot use database URL {parsed.render_as_string(hide_password=True)}: {err}") from None
    memory = parsed.database in (None, "", ":memory:")
    if not memory:
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    options = {"poolclass": StaticPool} if memory else {}
    engine = create_engine(parsed, connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False}, **options)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        # pysqlite's own transaction handling off (it would BEGIN DEFERRED lazily); _on_begin emits ours
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
        if not memory:
            _use_wal(cursor)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # a writer takes the write lock up front, so two writers queue on the busy timeout instead of both
        # reading, then one failing to upgrade its lock; readers take a snapshot and never block (WAL)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("study_write") else "BEGIN")

    return engine


def _use_wal(cursor: sqlite3.Cursor) -> None:
    """Switch the database file to WAL (a persistent setting: once per file). The switch needs the file to
    itself and SQLite answers "database is locked" at once, without its busy handler, while another connection
    holds it (several processes opening a fresh database together): retried here for the busy timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
