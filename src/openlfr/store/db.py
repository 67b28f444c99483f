"""Engines, sessions and schema migrations.

SQLite (the embedded default, ``openlfr.db`` in the data directory) runs in WAL mode with
foreign keys on, ``secure_delete`` on and checked on every connection (deleted rows are
overwritten, so deleted ciphertext does not linger in free pages) and every writing
transaction opened with ``BEGIN IMMEDIATE``, so that the audit chain's
read-the-head-then-append never races another process. PostgreSQL takes a
transaction-scoped advisory lock for the same purpose (:mod:`openlfr.audit.log`).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from sqlalchemy import CursorResult, Engine, Result, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from alembic.config import Config

from openlfr import errors
from openlfr.privatefile import create_private, make_private, sqlite_files

MIGRATIONS = Path(__file__).with_name("migrations")


#: The PostgreSQL advisory lock that serialises writers; the same key as
#: :data:`openlfr.audit.log.ADVISORY_LOCK` ("olfr"), which takes it again before each append.
T = TypeVar("T")
_MEMO = "openlfr.memo"


def memo(session: Session, key: Hashable, compute: Callable[[], T]) -> T:
    """``compute()``, once per transaction of ``session`` for the same ``key``: for what a
    batch of writes in one transaction asks again and again (is this subject still enrolled,
    this deployment's data key) and that only this transaction could change, because it holds
    the write lock. A caller that changes such a thing in the same transaction must not memo
    it."""
    values: dict[Hashable, Any] = session.info.setdefault(_MEMO, {})
    if key not in values:
        values[key] = compute()
    return cast(T, values[key])


#: The key in a session's ``info`` that says it holds :data:`WRITE_LOCK` already.
LOCKED = "openlfr.write_lock"
WRITE_LOCK = 0x6F6C6672


class StoreError(errors.Unavailable):
    """The database cannot be used: missing, not initialised, or from another version."""


def _sqlite_setup(engine: Engine, path: str | None) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (below)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        if path:  # the database and its WAL files: 0600 (SQLite gives its files the db's mode)
            for file in sqlite_files(path):
                make_private(file)
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA secure_delete=ON")
        cur.execute("PRAGMA secure_delete")
        if cur.fetchone()[0] != 1:  # e.g. a build with SQLITE_SECURE_DELETE forced off
            raise StoreError("SQLite refused secure_delete: deleted biometric data would "
                             "linger in free pages")
        cur.execute("PRAGMA synchronous=NORMAL")  # WAL: durable across a process crash
        cur.execute("PRAGMA busy_timeout=15000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        readonly = conn.get_execution_options().get("openlfr_readonly", False)
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"database URL {url!r} is not a valid URL: {exc}") from None
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database if parsed.database not in (None, "", ":memory:") else None
        if path and Path(path).parent.is_dir():
            create_private(path)  # 0600 from its first byte
        engine = create_engine(url, connect_args={"timeout": 15})
        _sqlite_setup(engine, path)
        return engine
    if parsed.get_backend_name() != "postgresql":
        raise StoreError(f"database URL {url!r}: only sqlite and postgresql are supported")
    return create_engine(url, pool_pre_ping=True)


def alembic_config(url: str) -> Config:
    # Alembic is imported when needed: it costs a quarter of a second every command would pay.
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


class Database:
    """One database: the engine and its session factories."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._write = sessionmaker(self.engine, expire_on_commit=False)
        self._read = sessionmaker(
            self.engine.execution_options(openlfr_readonly=True), expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def upgrade(self) -> None:
        """Create or migrate the schema to the newest revision."""
        from alembic import command

        cfg = alembic_config(self.url)
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def head_revision(self) -> str | None:
        from alembic.script import ScriptDirectory

        return ScriptDirectory.from_config(alembic_config(self.url)).get_current_head()

    def check(self) -> None:
        """Refuse a database that is unreachable, empty or at another schema revision."""
        try:
            current = self.revision()
        except OperationalError as exc:
            raise StoreError(f"cannot open the database: {exc.orig}") from None
        if current is None:
            raise StoreError("the database is not initialised: run `openlfr init` first")
        head = self.head_revision()
        if current != head:
            raise StoreError(f"the database schema is at revision {current}, this openlfr "
                             f"needs {head}: run `openlfr init` to upgrade it")

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A writing transaction: committed at the end, rolled back on any exception.

        Writers are serialised from their first statement, on both databases: SQLite by
        ``BEGIN IMMEDIATE``, PostgreSQL by the audit log's transaction-scoped advisory lock
        (re-entrant, so :func:`openlfr.audit.log.record` taking it again is free). Taken only at
        the audit entry, the lock would come after the transaction had read and changed rows:
        two writers could both pass a check on the same state (two decisions on one pending
        alert) and, holding rows and the lock in opposite orders, deadlock."""
        with self._write() as session, session.begin():
            if not self.is_sqlite:
                session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": WRITE_LOCK})
                session.info[LOCKED] = True  # (the audit log need not ask again)
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A read-only transaction (no write lock on SQLite)."""
        with self._read() as session, session.begin():
            yield session

    def checkpoint(self, attempts: int = 3, busy_ms: int = 100) -> bool:
        """Fold SQLite's write-ahead log into the database file and empty it, so that deleted
        (overwritten) pages do not survive in the log. True when that was done: the checkpoint
        was not blocked, every frame of the log was copied and the log file is empty.

        A reader holding an old snapshot (a backup tool, another process mid-read) blocks it;
        each of ``attempts`` waits at most ``busy_ms`` for it, and then this returns False
        rather than blocking the caller: the purge is *pending*
        (:mod:`openlfr.governance.purge`). Always True on PostgreSQL, which has no such log
        in the data directory."""
        if not self.is_sqlite:
            return True
        raw = self.engine.raw_connection()
        try:
            dbapi = raw.driver_connection
            assert isinstance(dbapi, sqlite3.Connection)
            dbapi.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
            try:
                for attempt in range(max(1, attempts)):
                    if attempt:
                        time.sleep(busy_ms / 1000)
                    try:
                        busy, log, done = dbapi.execute(
                            "PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                    except sqlite3.OperationalError:  # locked: same as busy
                        continue
                    if busy == 0 and log in (0, -1) and done in (0, -1) and self._wal_empty():
                        return True
                return False
            finally:
                dbapi.execute("PRAGMA busy_timeout=15000")
        finally:
            raw.close()

    def _wal_empty(self) -> bool:
        path = self.engine.url.database
        if not path:
            return True
        wal = Path(f"{path}-wal")
        return not wal.exists() or wal.stat().st_size == 0

    def dispose(self) -> None:
        self.engine.dispose()


def affected(result: Result[Any]) -> int:
    """How many rows the UPDATE or DELETE that gave ``result`` changed.

    ``Session.execute`` is typed to return a :class:`Result`; for a data-changing statement it
    is a :class:`CursorResult`, which has the count."""
    return cast(CursorResult[Any], result).rowcount or 0
