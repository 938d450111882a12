"""Live events across worker processes: a hub and several brokers linked to it, each broker with
its own event loop in a thread as in its own uvicorn worker."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import threading
import time
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bot import event_hub
from bot.app import create_app
from bot.db import init_db, make_engine, make_sessionmaker
from bot.event_hub import ADDRESS_VAR, KEY_VAR, Hub, HubLink, connect_from_environ, start_hub
from bot.events import CONSOLE, Broker, Subscription, conversation_topic
from bot.events import install as install_events
from bot.models import Conversation, Message
from tests.conftest import make_settings

WAIT = 5.0  # seconds, at most, for anything to arrive
TOPIC = conversation_topic("a" * 32)


class Worker:
    """A broker with its own event loop thread, linked to the hub through the environment."""

    def __init__(self) -> None:
        self.broker = Broker()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.link: HubLink | None = None

    def join(self) -> HubLink:
        self.link = connect_from_environ(self.broker)
        assert self.link is not None
        assert self.link.connected.wait(WAIT), "the hub never said hello"
        return self.link

    def subscribe(self, *topics: str) -> Subscription:
        async def subscribe() -> Subscription:
            return self.broker.subscribe(*topics)

        return asyncio.run_coroutine_threadsafe(subscribe(), self.loop).result(WAIT)

    def next(self, sub: Subscription) -> dict:
        future = asyncio.run_coroutine_threadsafe(asyncio.wait_for(sub.get(), WAIT), self.loop)
        return future.result(WAIT + 1)

    def until(self, sub: Subscription, last: dict) -> list[dict]:
        """The events ``sub`` gets up to and including ``last``."""
        got: list[dict] = []
        while not got or got[-1] != last:
            got.append(self.next(sub))
        return got

    def close(self) -> None:
        if self.link is not None:
            self.link.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT)
        self.loop.close()


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.fixture
def hub(monkeypatch):
    hub = start_hub()
    for name, value in hub.environ().items():
        monkeypatch.setenv(name, value)
    yield hub
    hub.close()


@pytest.fixture
def workers(hub):
    made: list[Worker] = []

    def make(count: int = 1) -> list[Worker]:
        new = [Worker() for _ in range(count)]
        made.extend(new)
        for worker in new:
            worker.join()
        wait_for(lambda: hub.workers() == len(made), "the hub to register the workers")
        return new

    yield make
    for worker in made:
        worker.close()


def test_an_event_reaches_every_worker_once_and_never_comes_back(workers) -> None:
    a, b = workers(2)
    sub_a, sub_b = a.subscribe(TOPIC), b.subscribe(TOPIC)
    first = {"type": "message", "id": 1, "text": "hi"}
    mark_a = {"type": "typing", "role": "agent", "author": "Ann"}  # as routes.agent publishes it
    a.broker.publish(TOPIC, first)
    a.broker.publish(TOPIC, mark_a)
    assert b.until(sub_b, mark_a) == [first, mark_a]
    # a copy sent back to A would be queued before anything B publishes from now on
    mark_b = {"type": "status", "status": "closed"}
    b.broker.publish(TOPIC, mark_b)
    assert a.until(sub_a, mark_b) == [first, mark_a, mark_b]
    assert b.until(sub_b, mark_b) == [mark_b]
    # a topic nobody on B listens to is simply not delivered there
    other = b.subscribe(CONSOLE)
    a.broker.publish("conversation:nobody", {"type": "typing"})
    a.broker.publish(CONSOLE, {"type": "queue"})
    assert b.until(other, {"type": "queue"}) == [{"type": "queue"}]


def test_committed_changes_reach_the_other_workers(workers, tmp_path: Path) -> None:
    a, b = workers(2)
    engine = make_engine(f"sqlite:///{tmp_path / 'e.db'}")
    init_db(engine)
    factory = make_sessionmaker(engine)
    install_events(factory, a.broker)
    console, widget = b.subscribe(CONSOLE), b.subscribe(TOPIC)
    with factory() as session:
        conv = Conversation(id="a" * 32, token_hash="x", status="bot")
        session.add(conv)
        session.add(Message(conversation=conv, role="customer", text="where is my order?"))
        session.commit()
    message = b.next(widget)
    assert message["type"] == "message" and message["text"] == "where is my order?"
    assert b.until(console, message) == [message]
    engine.dispose()


def test_a_worker_that_joins_later_gets_later_events(workers) -> None:
    a, b = workers(2)
    sub_b = b.subscribe(TOPIC)
    before = {"type": "typing", "n": 0}
    a.broker.publish(TOPIC, before)
    assert b.until(sub_b, before) == [before]  # relayed before C joins
    [c] = workers(1)
    sub_c = c.subscribe(TOPIC)
    event = {"type": "typing", "n": 1}
    a.broker.publish(TOPIC, event)
    assert c.until(sub_c, event) == [event]
    assert b.until(sub_b, event) == [event]
    reply = {"type": "typing", "n": 2}
    c.broker.publish(TOPIC, reply)
    assert b.until(sub_b, reply) == [reply]


def test_without_a_hub_publishing_still_works_and_logs(workers, hub, caplog) -> None:
    [a] = workers(1)
    sub_a = a.subscribe(TOPIC)
    caplog.set_level(logging.WARNING, logger="bot.event_hub")
    hub.close()
    assert not os.path.exists(os.path.dirname(hub.address))
    wait_for(lambda: not a.link.connected.is_set(), "the link to notice the hub is gone")
    caplog.clear()
    event = {"type": "typing", "role": "agent", "author": "Ann"}
    a.broker.publish(TOPIC, event)  # does not raise, and A's own subscribers still get it
    assert a.until(sub_a, event) == [event]
    wait_for(
        lambda: any("not connected to the event hub" in r.getMessage() for r in caplog.records),
        "the dropped event to be logged",
    )
    assert a.link._receiver.is_alive()  # still trying to reconnect


class StuckBroker(Broker):
    """A worker that stops reading: delivering blocks until ``go`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.go = threading.Event()
        self.got: list[dict] = []

    def deliver_local(self, topic: str, event: dict) -> None:
        self.go.wait(WAIT * 2)
        self.got.append(event)


def test_a_worker_that_cannot_keep_up_is_dropped_and_reconnects(workers, hub, monkeypatch):
    monkeypatch.setattr(event_hub, "QUEUE_SIZE", 4)
    [a] = workers(1)
    stuck = StuckBroker()
    link = connect_from_environ(stuck)
    try:
        assert link is not None and link.connected.wait(WAIT)
        wait_for(lambda: hub.workers() == 2, "the hub to register the stuck worker")
        big = {"type": "message", "text": "x" * 100_000}
        deadline = time.monotonic() + WAIT
        while hub.workers() == 2:  # until the socket and the hub's queue for it are full
            assert time.monotonic() < deadline, "the stuck worker was never dropped"
            a.broker.publish(TOPIC, big)
            time.sleep(0.001)
        assert a.link.connected.is_set()  # the others are not affected
        stuck.go.set()
        wait_for(lambda: hub.workers() == 2, "the stuck worker to reconnect")
        assert link.connected.wait(WAIT)
        stuck.got.clear()
        after = {"type": "typing", "n": "after"}
        a.broker.publish(TOPIC, after)
        wait_for(lambda: after in stuck.got, "an event after reconnecting")
    finally:
        link.close()
    assert not link._receiver.is_alive() and not link._sender.is_alive()
    assert stuck.link is None


def test_the_hub_is_private_and_refuses_a_wrong_key(workers, hub) -> None:
    directory = os.path.dirname(hub.address)
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    env = hub.environ()
    assert env == {ADDRESS_VAR: hub.address, KEY_VAR: env[KEY_VAR]} and len(env[KEY_VAR]) == 64
    with pytest.raises(AuthenticationError):
        Client(hub.address, family="AF_UNIX", authkey=b"wrong")
    a, b = workers(2)  # the hub still accepts and relays
    sub_b = b.subscribe(TOPIC)
    a.broker.publish(TOPIC, {"type": "typing"})
    assert b.until(sub_b, {"type": "typing"}) == [{"type": "typing"}]
    hub.close()
    assert not os.path.exists(directory)


def test_one_worker_has_no_link(monkeypatch) -> None:
    monkeypatch.delenv(ADDRESS_VAR, raising=False)
    monkeypatch.delenv(KEY_VAR, raising=False)
    broker = Broker()
    assert connect_from_environ(broker) is None and broker.link is None


def test_the_app_links_its_broker_while_it_runs(hub, tmp_path: Path, fake_embedder) -> None:
    app = create_app(make_settings(tmp_path), embedder=fake_embedder)
    with TestClient(app):
        link = app.state.broker.link
        assert isinstance(link, HubLink) and link.connected.wait(WAIT)
        wait_for(lambda: hub.workers() == 1, "the app to join the hub")
    assert app.state.broker.link is None
    wait_for(lambda: hub.workers() == 0, "the app to leave the hub")


def test_hub_close_is_idempotent() -> None:
    hub = Hub()
    hub.close()
    hub.close()
