"""Live updates: an in-process publish/subscribe broker, fed by the database session on commit.

Every message stored, every change of a conversation's owner and every handoff change is turned
into an event when the session flushes and published only once the transaction has committed, so
a subscriber never sees something that was rolled back. Topics: ``conversation:<id>`` (the
customer's widget) and ``console`` (every agent console). Each server process has one broker for
its own subscribers; with several workers (``supportbot serve``) a link to the serve process's
event hub (:mod:`bot.event_hub`) carries every published event to the other workers' brokers.
Several machines would put PostgreSQL LISTEN/NOTIFY or Redis behind the same link.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session, sessionmaker

from bot.models import Conversation, Handoff, Message
from bot.schemas import handoff_public, message_public

if TYPE_CHECKING:
    from bot.event_hub import HubLink

log = logging.getLogger(__name__)
CONSOLE = "console"


def conversation_topic(conversation_id: str) -> str:
    return f"conversation:{conversation_id}"


class Subscription:
    """Events of some topics, queued for one listener until it reads them."""

    def __init__(self, broker: Broker, topics: tuple[str, ...]) -> None:
        self.broker = broker
        self.topics = topics
        self.queue: asyncio.Queue[dict] = asyncio.Queue(maxsize=1000)

    async def get(self) -> dict:
        return await self.queue.get()

    def close(self) -> None:
        self.broker._remove(self)


class Broker:
    """Fans events out to the subscriptions of their topic; ``publish`` is safe from any thread.
    ``link``, when set, also takes every published event to the other worker processes."""

    def __init__(self) -> None:
        self._subs: dict[str, set[Subscription]] = defaultdict(set)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.link: HubLink | None = None

    def subscribe(self, *topics: str) -> Subscription:
        """Start listening (call from the event loop); ``close()`` the subscription when done."""
        self._loop = asyncio.get_running_loop()
        sub = Subscription(self, topics)
        with self._lock:
            for topic in topics:
                self._subs[topic].add(sub)
        return sub

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            for topic in sub.topics:
                self._subs[topic].discard(sub)
                if not self._subs[topic]:
                    del self._subs[topic]

    def listeners(self, topic: str) -> int:
        with self._lock:
            return len(self._subs.get(topic, ()))

    def publish(self, topic: str, event: dict) -> None:
        """Deliver ``event`` (a JSON-ready dict) to this process's subscribers of ``topic`` and,
        through the link, to the other workers'."""
        self.deliver_local(topic, event)
        link = self.link
        if link is not None:
            link.send(topic, event)

    def deliver_local(self, topic: str, event: dict) -> None:
        """Deliver to this process's subscribers only (events the link brings from elsewhere)."""
        with self._lock:
            subs = list(self._subs.get(topic, ()))
        if not subs or self._loop is None or self._loop.is_closed():
            return
        for sub in subs:
            self._loop.call_soon_threadsafe(_offer, sub, event)


def _offer(sub: Subscription, event: dict) -> None:
    try:
        sub.queue.put_nowait(event)
    except asyncio.QueueFull:  # a listener that stopped reading loses events, nobody else does
        log.warning("dropping a live event for a subscriber that is not reading")


def _status_changed(conv: Conversation) -> bool:
    return inspect(conv).attrs.status.history.has_changes()


def _collect(session: Session, _flush_context: Any) -> None:
    pending: list[tuple[str, dict]] = session.info.setdefault("pending_events", [])
    handoffs: dict[str, dict] = session.info.setdefault("handoff_state", {})
    for obj in [*session.new, *session.dirty]:
        if isinstance(obj, Handoff):
            handoffs[obj.conversation_id] = handoff_public(obj)
            pending.append((CONSOLE, {"type": "queue", "conversation_id": obj.conversation_id}))
    for obj in session.new:
        if isinstance(obj, Message):
            queue_message(session, message_public(obj, feedback=None))
    for obj in session.dirty:
        if isinstance(obj, Conversation) and _status_changed(obj):
            pending.append((conversation_topic(obj.id), {"type": "status", "status": obj.status}))
            pending.append(
                (CONSOLE, {"type": "queue", "conversation_id": obj.id, "status": obj.status})
            )


def queue_message(session: Session, data: dict) -> None:
    """Publish a new message (as ``message_public`` shows it) once the session commits; the
    flush queues the ORM's, and Core writers call this for theirs."""
    event = {"type": "message", **data}
    session.info.setdefault("pending_events", []).append(
        (conversation_topic(data["conversation_id"]), event)
    )


def _send(session: Session, broker: Broker) -> None:
    pending = session.info.pop("pending_events", [])
    handoffs = session.info.pop("handoff_state", {})
    for topic, item in pending:
        if item["type"] == "status":
            conversation_id = topic.split(":", 1)[1]
            if conversation_id in handoffs:
                item = {**item, "handoff": handoffs[conversation_id]}
        if item["type"] == "message":
            # the console sees every message too, with the conversation it belongs to
            broker.publish(CONSOLE, item)
        broker.publish(topic, item)


def install(factory: sessionmaker[Session], broker: Broker) -> None:
    """Publish the sessions' changes to ``broker`` after each commit."""
    event.listen(factory, "after_flush", _collect)
    event.listen(factory, "after_commit", lambda session: _send(session, broker))
    event.listen(
        factory,
        "after_soft_rollback",
        lambda session, _tx: session.info.pop("pending_events", None),
    )
