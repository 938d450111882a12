"""SQLite under concurrent writers: an import while conversations are being written loses nothing."""

from __future__ import annotations

import threading

from bot.article_store import import_articles
from bot.conversations import create_conversation
from bot.db import init_db, make_engine, make_sessionmaker, session_scope
from bot.models import Article, Message
from indexer.articles import SourceArticle


def test_import_while_chats_write(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'busy.db'}")
    init_db(engine)
    factory = make_sessionmaker(engine)
    stop = threading.Event()
    chat_errors: list[BaseException] = []

    def chat_writer() -> None:
        while not stop.is_set():
            try:
                with session_scope(factory) as session:
                    conv, _ = create_conversation(session)
                    session.add(Message(conversation=conv, role="customer", text="hello"))
            except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                chat_errors.append(exc)
                return

    writers = [threading.Thread(target=chat_writer) for _ in range(3)]
    for w in writers:
        w.start()
    articles = [
        SourceArticle(id=f"a-{n}", title=f"Article {n}", body=f"Body {n}", category="misc")
        for n in range(150)
    ]
    try:
        with session_scope(factory) as session:
            report = import_articles(session, articles)
    finally:
        stop.set()
        for w in writers:
            w.join()
    assert not report.errors, report.errors[:3]
    assert not chat_errors, chat_errors[:3]
    with session_scope(factory) as session:
        assert session.query(Article).count() == 150
        assert session.query(Message).count() > 0
    engine.dispose()


def test_batched_import_commits_as_it_goes_and_merges_the_report(tmp_path, monkeypatch):
    from bot.article_store import import_in_batches

    engine = make_engine(f"sqlite:///{tmp_path / 'batches.db'}")
    init_db(engine)
    factory = make_sessionmaker(engine)
    commits = []
    original = factory.class_.commit

    def counting_commit(self):
        commits.append(1)
        return original(self)

    monkeypatch.setattr(factory.class_, "commit", counting_commit)
    articles = [SourceArticle(id=f"b-{n}", title=f"T {n}", body="B") for n in range(450)]
    report = import_in_batches(factory, articles, batch=200)
    assert len(report.created) == 450 and not report.errors
    assert len(commits) == 3
    again = import_in_batches(factory, articles, batch=200)
    assert len(again.unchanged) == 450
    engine.dispose()


def test_database_slots_default_to_one_more_than_the_cores(monkeypatch):
    import os

    import pytest
    from pydantic import ValidationError

    from bot.settings import Settings

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert Settings(db_concurrency=0).database_slots() == 3
    assert Settings(db_concurrency=7).database_slots() == 7
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    assert Settings(db_concurrency=0).database_slots() == 16  # well under the worker threads
    with pytest.raises(ValidationError):
        Settings(db_concurrency=33)
    # several server processes share the cores: each gets its share plus one (at least 2)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert Settings(db_concurrency=0, workers=2).database_slots() == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    assert Settings(db_concurrency=0, workers=2).database_slots() == 5
    assert Settings(workers=0).server_processes() == 8
    with pytest.raises(ValidationError):
        Settings(workers=-1)


def _hold_file_lock(path):
    """Another process's hold on the database's write lock (a separate open file conflicts
    under flock just as another process's does)."""
    import fcntl
    import os

    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def test_writers_wait_for_another_process_holding_the_write_lock(tmp_path):
    import os
    import time

    from bot.db import WriteLock

    db = tmp_path / "shared.db"
    engine = make_engine(f"sqlite:///{db}")
    init_db(engine)
    factory = make_sessionmaker(engine)
    fd = _hold_file_lock(f"{db.resolve()}.lock")
    assert WriteLock(str(db.resolve())).acquire(timeout=0.2) is False  # waits, then gives up
    done = threading.Event()

    def write() -> None:
        with session_scope(factory) as session:
            create_conversation(session)
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    assert not done.wait(0.3)  # queued behind the other process, not failing
    os.close(fd)  # the other process ends (its lock goes with it)
    started = time.monotonic()
    assert done.wait(5)
    assert time.monotonic() - started < 1.0  # noticed within a poll, not SQLite's 100 ms sleeps
    writer.join()
    lock = WriteLock(str(db.resolve()))
    assert lock.acquire(timeout=1)
    lock.release()
    engine.dispose()


def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    import multiprocessing

    db = tmp_path / "two.db"
    engine = make_engine(f"sqlite:///{db}")
    init_db(engine)
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(2)  # both write at once, not one after the other's start-up
    procs = [ctx.Process(target=_write_conversations, args=(str(db), 150, start)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    with session_scope(make_sessionmaker(engine)) as session:
        assert session.query(Message).count() == 300
    engine.dispose()


def _write_conversations(path: str, n: int, start) -> None:
    from sqlalchemy import event

    engine = make_engine(f"sqlite:///{path}")

    @event.listens_for(engine, "connect")
    def _no_sqlite_wait(dbapi_connection, _record) -> None:
        # SQLite's own wait would serialise the two processes too; only the file lock may here
        dbapi_connection.execute("PRAGMA busy_timeout=0")

    factory = make_sessionmaker(engine)
    start.wait(30)
    for _ in range(n):
        with session_scope(factory) as session:
            conv, _ = create_conversation(session)
            session.add(Message(conversation=conv, role="customer", text="hi"))
    engine.dispose()
