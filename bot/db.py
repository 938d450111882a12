"""Database engine and sessions (SQLite with WAL by default, PostgreSQL by URL)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from bot.migrations import migrate
from bot.models import Base

_WRITE_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()
LOCK_TIMEOUT = 30.0
READ_ONLY = "supportbot_read_only"


class _SQLiteConnection(sqlite3.Connection):
    """A connection whose write transactions queue on a lock shared by this process's
    connections to the same file.

    SQLite's own wait for the write lock polls with sleeps of up to 100 ms, so under load most
    of a request's time went to sleeping (66 replies/s at 8 customers); a waiter here is woken
    the moment the previous transaction ends. Other processes (the CLI) still meet SQLite's own
    lock and its timeout.
    """

    write_lock: threading.Lock
    holding = False

    def begin_immediate(self) -> None:
        if not self.write_lock.acquire(timeout=LOCK_TIMEOUT):
            raise sqlite3.OperationalError("database is locked")
        self.holding = True
        try:
            self.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._release()
            raise

    def _release(self) -> None:
        if self.holding:
            self.holding = False
            self.write_lock.release()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._release()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._release()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._release()


def _write_lock(database: str) -> threading.Lock:
    key = str(Path(database).resolve())
    with _LOCKS_GUARD:
        return _WRITE_LOCKS.setdefault(key, threading.Lock())


def make_engine(url: str, pool_size: int = 5) -> Engine:
    """An engine for ``url``; creates the SQLite file's folder and turns on WAL and foreign keys.
    ``pool_size`` connections are kept, and up to 10 more are opened when needed."""
    parsed = make_url(url)
    pool = {"pool_size": pool_size, "max_overflow": 10}
    if parsed.get_backend_name() == "sqlite":
        file_backed = parsed.database and parsed.database != ":memory:"
        if file_backed:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        lock = _write_lock(parsed.database) if file_backed else threading.Lock()
        factory = type("SQLiteConnection", (_SQLiteConnection,), {"write_lock": lock})
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": LOCK_TIMEOUT, "factory": factory},
            **(pool if file_backed else {}),  # an in-memory database has a pool of its own kind
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:
            dbapi_connection.isolation_level = None  # we issue BEGIN ourselves, below
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin_immediate(conn) -> None:
            # A deferred transaction that reads and then writes fails at once ("database is
            # locked") when another writer got in between; taking the write lock up front makes
            # concurrent writers wait (up to the timeout) instead. Sessions made by
            # read_sessionmaker only read, so they take no lock (WAL gives them a snapshot).
            if conn.get_execution_options().get(READ_ONLY):
                conn.exec_driver_sql("BEGIN")
            else:
                conn.connection.driver_connection.begin_immediate()

        return engine
    return create_engine(url, pool_pre_ping=True, **pool)


def init_db(engine: Engine) -> None:
    """Create the tables that do not exist yet and bring older ones up to date."""
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        migrate(conn)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def read_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions that only read: on SQLite they neither take nor wait for the write lock (a
    session from here must not write)."""
    return sessionmaker(engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
