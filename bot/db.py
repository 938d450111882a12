"""Database engine and sessions (SQLite with WAL by default, PostgreSQL by URL)."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from bot.migrations import migrate
from bot.models import Base

LOCK_TIMEOUT = 30.0
READ_ONLY = "supportbot_read_only"


class WriteLock:
    """The write lock of one SQLite file: a thread lock for this process's connections, then an
    advisory file lock (``flock`` on ``<database>.lock``) shared with every other process that
    opens the file through :func:`make_engine` (the server's workers, the CLI).

    SQLite's own wait for its write lock polls with sleeps of up to 100 ms, so under load most
    of a request's time went to sleeping (66 replies/s at 8 customers). Here a thread waiting in
    the same process is woken the moment the previous transaction ends, and one waiting for
    another process polls every millisecond at most. The file lock goes with its process, so a
    worker that dies mid-transaction cannot leave it held.
    """

    def __init__(self, database: str | None) -> None:
        self.thread_lock = threading.Lock()
        self.path = Path(f"{database}.lock") if database else None
        self._fd: int | None = None
        self._pid = os.getpid()

    def acquire(self, timeout: float = LOCK_TIMEOUT) -> bool:
        deadline = time.monotonic() + timeout
        if not self.thread_lock.acquire(timeout=timeout):
            return False
        try:
            if self.path is not None and not self._lock_file(deadline):
                self.thread_lock.release()
                return False
        except BaseException:
            self.thread_lock.release()
            raise
        return True

    def _lock_file(self, deadline: float) -> bool:
        if self._fd is None or self._pid != os.getpid():  # opened once per process (not shared
            # with a forked child: a shared open file would share the lock too)
            self._pid = os.getpid()
            # read-only is enough for flock, so a lock file another user created still works
            self._fd = os.open(self.path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        pause = 0.0001
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(pause)
                pause = min(pause * 2, 0.001)

    def release(self) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self.thread_lock.release()


_WRITE_LOCKS: dict[str, WriteLock] = {}
_LOCKS_GUARD = threading.Lock()


class _SQLiteConnection(sqlite3.Connection):
    """A connection whose write transactions take the file's :class:`WriteLock` first."""

    write_lock: WriteLock
    holding = False

    def begin_immediate(self) -> None:
        if not self.write_lock.acquire():
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


def _write_lock(database: str) -> WriteLock:
    key = str(Path(database).resolve())
    with _LOCKS_GUARD:
        return _WRITE_LOCKS.setdefault(key, WriteLock(key))  # opens no file until first used


def make_engine(url: str, pool_size: int = 5) -> Engine:
    """An engine for ``url``; creates the SQLite file's folder and turns on WAL and foreign keys.
    ``pool_size`` connections are kept, and up to 10 more are opened when needed."""
    parsed = make_url(url)
    pool = {"pool_size": pool_size, "max_overflow": 10}
    if parsed.get_backend_name() == "sqlite":
        file_backed = parsed.database and parsed.database != ":memory:"
        if file_backed:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        lock = _write_lock(parsed.database) if file_backed else WriteLock(None)
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


def core(session: Session) -> Connection:
    """The session's connection, for Core statements on the chat's hot path: a plain select run
    on it costs about a tenth of the same select through ``Session.execute`` (no ORM compile
    step, no identity map). The session's pending changes are flushed first, as an ORM query
    would."""
    session.flush()
    return session.connection()


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
