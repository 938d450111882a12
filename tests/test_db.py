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
