"""The webhook: deliveries enqueued in the handoff's or rating's own transaction, signed POSTs to
a real local receiver, retries with backoff, giving up, and the API end to end."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import SMALL_KB, make_settings, seed, wait_ready
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.app import create_app
from bot.db import init_db, make_engine, make_sessionmaker, session_scope
from bot.models import Conversation, CsatResponse, Handoff, WebhookDelivery
from bot.settings import Settings
from bot.webhooks import deliver_due, install_webhooks, sign, start_worker, stop_worker

SECRET = "webhook secret"
T0 = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)  # every delivery is due by then


class Receiver:
    """A real HTTP server on a free loopback port that records requests and fails the first
    ``fail_first`` of them with ``fail_status``."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.fail_first = 0
        self.fail_status = 503
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body}
                )
                failing = len(receiver.requests) <= receiver.fail_first
                self.send_response(receiver.fail_status if failing else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:  # keep the test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/supportbot"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def settings(tmp_path: Path, db_url: str, receiver: Receiver) -> Settings:
    return make_settings(
        tmp_path,
        database_url=db_url,
        webhook_url=receiver.url,
        webhook_secret=SECRET,
        public_url="https://bot.example.com",
    )


@pytest.fixture
def factory(settings: Settings) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(settings.database_url)
    init_db(engine)
    sessions = make_sessionmaker(engine)
    install_webhooks(sessions, settings)
    yield sessions
    engine.dispose()


def _handoff(session: Session, **fields) -> Handoff:
    conv = Conversation(id=uuid.uuid4().hex, token_hash="x", status="queued")
    handoff = Handoff(conversation=conv, reason="low_confidence", **fields)
    session.add_all([conv, handoff])
    return handoff


def _deliveries(factory) -> list[WebhookDelivery]:
    with session_scope(factory) as session:
        return list(session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def _as_utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# --- enqueueing -------------------------------------------------------------------------------


def test_a_handoff_enqueues_one_delivery_in_its_transaction(factory) -> None:
    with session_scope(factory) as session:
        handoff = _handoff(session, offline=True)
        session.flush()
        # added by the flush, in the handoff's own transaction
        assert [d.event for d in session.scalars(select(WebhookDelivery))] == ["handoff"]
    [delivery] = _deliveries(factory)
    payload = delivery.payload
    assert delivery.event == "handoff" and delivery.status == "pending" and delivery.attempts == 0
    assert payload["event"] == "handoff" and len(payload["id"]) == 32
    assert payload["conversation_id"] == handoff.conversation_id
    assert payload["handoff_id"] == handoff.id
    assert (payload["reason"], payload["offline"], payload["contact_email"]) == (
        "low_confidence",
        True,
        None,
    )
    assert payload["console_url"] == (
        f"https://bot.example.com/agent/conversations/{handoff.conversation_id}"
    )
    created = datetime.fromisoformat(payload["created_at"])
    assert abs(created - _as_utc(handoff.created_at)) < timedelta(seconds=1)


def test_a_rolled_back_handoff_enqueues_nothing(factory) -> None:
    session = factory()
    _handoff(session)
    session.flush()
    session.rollback()
    session.close()
    with pytest.raises(RuntimeError), session_scope(factory) as session:
        _handoff(session)
        session.flush()
        raise RuntimeError("the request failed after the handoff was flushed")
    assert _deliveries(factory) == []


def test_no_webhook_url_enqueues_nothing(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    assert settings.webhook_url == ""
    engine = make_engine(settings.database_url)
    init_db(engine)
    sessions = make_sessionmaker(engine)
    install_webhooks(sessions, settings)
    with session_scope(sessions) as session:
        _handoff(session)
    assert _deliveries(sessions) == []
    assert deliver_due(sessions, settings, T0) == 0
    engine.dispose()


def test_installing_twice_enqueues_once(factory, settings: Settings) -> None:
    install_webhooks(factory, settings)
    with session_scope(factory) as session:
        _handoff(session)
    assert len(_deliveries(factory)) == 1


def test_csat_new_and_changed_ratings_are_sent(factory) -> None:
    with session_scope(factory) as session:
        handoff = _handoff(session)
        session.flush()
        csat = CsatResponse(
            conversation_id=handoff.conversation_id, handoff_id=handoff.id, score=4, comment="ok"
        )
        session.add(csat)
    with session_scope(factory) as session:
        session.get(CsatResponse, csat.id).score = 4  # the same rating again: nothing to send
    with session_scope(factory) as session:
        session.get(CsatResponse, csat.id).score = 2
    events = [
        (d.event, d.payload.get("score"), d.payload.get("changed")) for d in _deliveries(factory)
    ]
    assert events == [("handoff", None, None), ("csat", 4, False), ("csat", 2, True)]
    payload = _deliveries(factory)[1].payload
    assert payload["conversation_id"] == handoff.conversation_id
    assert (payload["handoff_id"], payload["csat_id"], payload["comment"]) == (
        handoff.id,
        csat.id,
        "ok",
    )


# --- sending ----------------------------------------------------------------------------------


def test_delivery_is_signed_and_marked_delivered(factory, settings, receiver) -> None:
    with session_scope(factory) as session:
        _handoff(session)
    [queued] = _deliveries(factory)
    assert deliver_due(factory, settings, T0) == 1
    [request] = receiver.requests
    headers, body = request["headers"], request["body"]
    assert request["path"] == "/hooks/supportbot"
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Supportbot-Event"] == "handoff"
    assert headers["X-Supportbot-Delivery"] == queued.payload["id"]
    timestamp = headers["X-Supportbot-Timestamp"]
    assert timestamp == str(int(T0.timestamp()))
    expected = hmac.new(SECRET.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    assert hmac.compare_digest(headers["X-Supportbot-Signature"], "sha256=" + expected.hexdigest())
    assert sign(SECRET, int(timestamp), body) == headers["X-Supportbot-Signature"]
    assert json.loads(body) == queued.payload
    [done] = _deliveries(factory)
    assert (done.status, done.attempts, done.last_error) == ("delivered", 1, None)
    assert _as_utc(done.delivered_at) == T0
    assert deliver_due(factory, settings, T0 + timedelta(hours=2)) == 0  # never sent again


def test_failures_are_retried_with_backoff(factory, settings, receiver) -> None:
    receiver.fail_first = 3
    with session_scope(factory) as session:
        _handoff(session)
    now = T0
    for waited in (10, 30, 120):  # each failure: retried only once the backoff has passed
        assert deliver_due(factory, settings, now) == 1
        [row] = _deliveries(factory)
        assert row.status == "pending" and row.last_error.startswith("HTTP 503")
        assert _as_utc(row.next_attempt_at) == now + timedelta(seconds=waited)
        assert deliver_due(factory, settings, now + timedelta(seconds=waited - 1)) == 0
        now += timedelta(seconds=waited)
    assert deliver_due(factory, settings, now) == 1
    [row] = _deliveries(factory)
    assert (row.status, row.attempts, row.last_error) == ("delivered", 4, None)
    assert len(receiver.requests) == 4
    ids = {r["headers"]["X-Supportbot-Delivery"] for r in receiver.requests}
    assert ids == {row.payload["id"]}  # the same id on every retry: receivers drop duplicates


def test_gives_up_after_max_attempts(factory, settings, receiver) -> None:
    settings.webhook_max_attempts = 3
    receiver.fail_first, receiver.fail_status = 100, 500
    with session_scope(factory) as session:
        _handoff(session)
    now = T0
    for _ in range(3):
        assert deliver_due(factory, settings, now) == 1
        now += timedelta(hours=2)
    [row] = _deliveries(factory)
    assert (row.status, row.attempts) == ("failed", 3)
    assert row.last_error.startswith("HTTP 500")
    assert deliver_due(factory, settings, now + timedelta(days=1)) == 0
    assert len(receiver.requests) == 3


def test_an_unreachable_receiver_is_an_error_not_a_crash(factory, settings, receiver) -> None:
    receiver.close()  # nothing listens on the port any more
    with session_scope(factory) as session:
        _handoff(session)
    assert deliver_due(factory, settings, T0) == 1
    [row] = _deliveries(factory)
    assert row.status == "pending" and "Connect" in row.last_error


def test_due_deliveries_go_oldest_first_in_batches(factory, settings, receiver) -> None:
    with session_scope(factory) as session:
        for _ in range(25):
            _handoff(session)
    assert deliver_due(factory, settings, T0) == 20
    assert deliver_due(factory, settings, T0) == 5
    sent = [json.loads(r["body"])["handoff_id"] for r in receiver.requests]
    assert sent == sorted(sent)
    assert {d.status for d in _deliveries(factory)} == {"delivered"}


# --- end to end -------------------------------------------------------------------------------


def test_the_api_handoff_fires_the_webhook(settings: Settings, receiver, fake_embedder) -> None:
    seed(settings, SMALL_KB, fake_embedder)
    with TestClient(create_app(settings, embedder=fake_embedder)) as client:
        wait_ready(client)
        sessions = client.app.state.sessionmaker
        created = client.post("/api/v1/conversations").json()
        r = client.post(
            f"/api/v1/conversations/{created['id']}/handoff",
            headers={"X-Conversation-Token": created["token"]},
        )
        assert r.status_code == 200
        [delivery] = _deliveries(sessions)
        assert delivery.event == "handoff"
        assert delivery.payload["conversation_id"] == created["id"]
        assert delivery.payload["reason"] == "customer_button"
        assert delivery.payload["offline"] is True  # nobody is signed in to the console
        # the app's own worker sends it, soon after the commit
        deadline = time.monotonic() + 10
        while not receiver.requests and time.monotonic() < deadline:
            time.sleep(0.05)
        assert json.loads(receiver.requests[0]["body"])["conversation_id"] == created["id"]


def test_the_worker_thread_sends_soon_after_commit(factory, settings, receiver) -> None:
    worker = start_worker(factory, settings)
    try:
        with session_scope(factory) as session:
            _handoff(session)
        deadline = time.monotonic() + 10
        while not receiver.requests and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(receiver.requests) == 1
    finally:
        stop_worker(worker)
    assert worker._thread is not None and not worker._thread.is_alive()
    deadline = time.monotonic() + 5
    while _deliveries(factory)[0].status != "delivered" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _deliveries(factory)[0].status == "delivered"


def test_the_worker_does_not_start_without_a_url(factory, settings) -> None:
    settings.webhook_url = ""
    worker = start_worker(factory, settings)
    assert worker._thread is None
    stop_worker(worker)
    stop_worker(None)
