"""Connections for the review queue: engine set-up per backend, write transactions, and migrations.

Owns the engine-specific parts, so the store's queries can be written once:
- URL handling: `sqlite:///path.db` (embedded default) or `postgresql://...` (driven by psycopg 3).
- SQLite: WAL, synchronous=FULL, a busy timeout, and transactions begun by us, so a write transaction can
  be `BEGIN IMMEDIATE` (it takes the single write lock up front instead of failing to upgrade mid-way).
- PostgreSQL: every write transaction asks for a synchronous commit, whatever the server default.
- Migrations: Alembic, run programmatically at open, under a lock so many replicas may start at once.

Why Alembic rather than a hand-rolled version table: the schema lives on two engines, SQLite can only change
a table by rebuilding it (Alembic's batch mode does this correctly), and Alembic's revision graph and
version table are what operators already know how to inspect.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy.engine import URL, Connection, Engine, make_url

from .schema import VERSION_TABLE

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SUPPORTED = "sqlite:///path/to/queue.db or postgresql://user@host:port/dbname"
MIN_SQLITE = (3, 35)
SQLITE_BUSY_TIMEOUT_S = 30  # how long a writer waits for SQLite's single write lock before failing
_WRITE = "review_queue_write"  # execution option marking a connection whose transaction will write
_MIGRATION_LOCK_KEY = 0x7265766965777131  # pg_advisory_xact_lock key ("reviewq1"): one migrator at a time


def create_queue_engine(url: str) -> Engine:
    """An Engine for `url`, configured for this queue; raises ValueError for any other kind of URL."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed)
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")  # psycopg 3 is the driver we ship with
        # pre_ping: replicas outlive database restarts and failovers; a dead pooled connection is replaced.
        return sa.create_engine(parsed, pool_pre_ping=True)
    shown = parsed.render_as_string(hide_password=True)
    raise ValueError(f"review queue URL {shown!r}: backend {backend!r} is not supported (use {SUPPORTED})")


def _sqlite_engine(url: URL) -> Engine:
    # INSERT ... ON CONFLICT DO NOTHING RETURNING (idempotent enqueue in one statement) needs SQLite 3.35.
    if sqlite3.sqlite_version_info < MIN_SQLITE:
        raise RuntimeError(
            f"SQLite {sqlite3.sqlite_version} is too old for the review queue (needs "
            f"{'.'.join(map(str, MIN_SQLITE))}+); use a newer Python build or PostgreSQL"
        )
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file::memory:") or "mode=memory" in str(url):
        raise ValueError(f"review queue URL {str(url)!r}: an in-memory SQLite database is not durable; use {SUPPORTED}")
    Path(database).resolve().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        # We emit BEGIN ourselves (below); the sqlite3 module's own implicit BEGIN cannot be IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_S * 1000}")
        # WAL: readers (the reviewer page, stats) never block the writer, and the writer never blocks them.
        cursor.execute("PRAGMA journal_mode = WAL")
        # FULL, not NORMAL: in WAL mode NORMAL survives a process crash but a power loss or OS crash can
        # roll back the last commits. A decision is a person's work and `decide` promises durability on
        # return; one fsync per commit costs little at human-review rates.
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # A deferred transaction that later writes can fail with SQLITE_BUSY without waiting (another
        # writer got in first); IMMEDIATE takes the write lock at BEGIN, waiting up to the busy timeout.
        # This is also what makes a claim exclusive on SQLite: one claimer at a time selects and updates.
        immediate = connection.get_execution_options().get(_WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection inside a transaction that will write; commits on normal exit, rolls back on error.

    Once the block has exited normally the commit is durable (see the synchronous settings above).
    """
    with engine.connect() as connection:
        connection.execution_options(**{_WRITE: True})
        with connection.begin():
            if connection.dialect.name == "postgresql":
                # The server may run with synchronous_commit=off for speed; our writes must not be lost.
                connection.exec_driver_sql("SET LOCAL synchronous_commit TO on")
            yield connection


def alembic_config() -> AlembicConfig:
    """The Alembic config of the queue's migrations (no .ini file: everything is set here)."""
    config = AlembicConfig()
    # ConfigParser interpolates '%'; a path that contains one must be escaped.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.attributes["version_table"] = VERSION_TABLE
    return config


def migrate(engine: Engine) -> None:
    """Bring the database to the newest schema; safe when many processes call it at once.

    All pending migrations run in one transaction that first takes a lock (PostgreSQL: an advisory
    transaction lock; SQLite: BEGIN IMMEDIATE), so a second process waits, then finds nothing to do.
    """
    config = alembic_config()
    with write_transaction(engine) as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    log.debug("review queue schema is at head (%s)", engine.url.render_as_string(hide_password=True))


class EngineOwner:
    """Plumbing shared by the stores on one database (queue, prediction log): the engine, closing, use as a
    context manager, and a clock that must be timezone-aware. Subclasses set `_engine`, `_clock`, `_what`."""

    _engine: Engine
    _what = "store"

    @property
    def engine(self) -> Engine:
        """The underlying engine (health checks, maintenance)."""
        return self._engine

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _now(self):
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError(f"the {self._what}'s clock returned a naive datetime {now!r}; it must be timezone-aware")
        return now
