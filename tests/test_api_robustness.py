"""Regressions from review: commits before responses, bad path parameters, concurrent
messages, customers writing to a person while the index is unavailable, index load recovery."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from conftest import SMALL_KB, make_settings, seed, wait_ready
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.app import create_app
from bot.models import Conversation, Handoff, Message
from indexer.embedder import FakeEmbedder

API = "/api/v1/conversations"


def start(client: TestClient) -> tuple[str, dict[str, str]]:
    body = client.post(API).json()
    return body["id"], {"X-Conversation-Token": body["token"]}


def test_a_failed_commit_is_an_error_not_a_success(client, monkeypatch):
    conv, h = start(client)

    def broken_commit(self):
        raise RuntimeError("disk full")

    monkeypatch.setattr(Session, "commit", broken_commit)
    c = TestClient(client.app, raise_server_exceptions=False)  # no `with`: reuse the running app
    r = c.post(f"{API}/{conv}/messages", json={"text": "hi"}, headers=h)
    assert r.status_code == 500
    assert r.json()["detail"]
    assert c.post(API).status_code == 500
    monkeypatch.undo()
    assert client.get(f"{API}/{conv}", headers=h).json()["messages"] == []


@pytest.mark.parametrize(
    "path",
    [
        f"{API}/ab%00cd",
        f"{API}/../../etc",
        f"{API}/{'a' * 33}",
        f"{API}/{'0' * 32}/messages/99999999999999999999999/feedback",
        f"{API}/{'0' * 32}/messages/0/feedback",
    ],
)
def test_bad_path_parameters_are_4xx(client, path):
    _, h = start(client)
    method = client.post if path.endswith("feedback") else client.get
    kwargs = {"json": {"rating": "up"}} if path.endswith("feedback") else {}
    r = method(path, headers=h, **kwargs)
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["detail"]


def test_customer_can_write_to_a_person_while_the_index_is_unavailable(tmp_path: Path):
    settings = make_settings(tmp_path, answer_threshold=0.42, clarify_threshold=0.2)
    embedder = FakeEmbedder()
    seed(settings, SMALL_KB, embedder)
    with TestClient(create_app(settings, embedder=embedder)) as client:
        wait_ready(client)
        conv, h = start(client)
        r = client.post(f"{API}/{conv}/messages", json={"text": "talk to a human"}, headers=h)
        assert r.json()["conversation_status"] == "queued"
        client.app.state.pipeline.holder.index = None  # e.g. a refused or missing index
        assert client.get("/health").status_code == 503
        r = client.post(f"{API}/{conv}/messages", json={"text": "still there?"}, headers=h)
        assert r.status_code == 200, r.text
        assert r.json()["action"] == "none"
        texts = [m["text"] for m in client.get(f"{API}/{conv}", headers=h).json()["messages"]]
        assert "still there?" in texts


def test_index_load_failure_at_start_recovers_when_a_good_index_appears(tmp_path: Path):
    settings = make_settings(tmp_path)
    settings.index_dir.mkdir(parents=True)
    (settings.index_dir / "CURRENT").write_text("a-version-that-was-pruned")
    embedder = FakeEmbedder()
    with TestClient(create_app(settings, embedder=embedder)) as client:
        assert client.app.state.loaded.wait(30)
        assert client.get("/health").status_code == 503
        seed(settings, SMALL_KB, embedder)
        wait_ready(client, timeout=30)


@pytest.mark.postgres
def test_concurrent_requests_for_a_person_make_one_handoff(tmp_path: Path, postgres_url):
    from bot.db import make_engine
    from bot.models import Base

    engine = make_engine(postgres_url)
    Base.metadata.drop_all(engine)
    engine.dispose()
    settings = make_settings(tmp_path, database_url=postgres_url)
    embedder = FakeEmbedder()
    seed(settings, SMALL_KB, embedder)
    with TestClient(create_app(settings, embedder=embedder)) as client:
        wait_ready(client)
        conv, h = start(client)
        barrier = threading.Barrier(4)
        results: list[dict] = []

        def ask() -> None:
            barrier.wait()
            r = client.post(f"{API}/{conv}/messages", json={"text": "agent please"}, headers=h)
            results.append(r.json())

        threads = [threading.Thread(target=ask) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(r["action"] for r in results) == ["escalate", "none", "none", "none"]
        with client.app.state.sessionmaker() as session:
            assert (
                len(session.scalars(select(Handoff).where(Handoff.conversation_id == conv)).all())
                == 1
            )
            bot = session.scalars(
                select(Message).where(Message.conversation_id == conv, Message.role == "bot")
            ).all()
            assert len(bot) == 1
            assert session.get(Conversation, conv).status == "queued"
