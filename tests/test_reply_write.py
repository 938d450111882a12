"""The Core path for a bot turn (bot.reply_write): it stores what the ORM path stores, publishes
the same live events, and declines (writing nothing) whenever the ORM path has more to do.
Every test runs against a SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from bot.conversations import (
    ConversationNotFound,
    NotAllowed,
    create_conversation,
    escalate,
    get_conversation,
    newest_ids,
    post_customer_message,
    transition,
)
from bot.db import session_scope
from bot.events import CONSOLE, Broker, install
from bot.gate import Decision
from bot.models import Conversation, Feedback, Handoff, Message
from bot.reply_write import store_bot_turn
from bot.retrieval import ArticleHit
from bot.schemas import handoff_public

HIT = ArticleHit(
    article_id="reset-password",
    title="Reset your password",
    url="/help/reset-password",
    passage={"text": "Open   Settings,\nthen choose Reset password."},
    score=1.0,
    dense=0.9,
    lexical=3.0,
)
ANSWER = Decision(
    "answer", "confident", "Open Settings.", 0.87, hits=[HIT], scores={"dense": 0.9, "k": [1, 2]}
)


class Recorder(Broker):
    def __init__(self) -> None:
        super().__init__()
        self.published: list[tuple[str, dict]] = []

    def publish(self, topic: str, event: dict) -> None:
        self.published.append((topic, event))


@pytest.fixture
def broker(sessions) -> Recorder:
    recorder = Recorder()
    install(sessions, recorder)
    return recorder


def new_conversation(sessions, status: str = "bot", customer_id: str | None = None):
    with session_scope(sessions) as s:
        conv, token = create_conversation(s, customer_id)
        if status != "bot":
            conv.status = status
    return conv.id, token


def seen_now(sessions, conversation_id: str):
    with session_scope(sessions) as s:
        return newest_ids(s, conversation_id)


def rows(sessions, conversation_id: str) -> list[Message]:
    with session_scope(sessions) as s:
        query = select(Message).where(Message.conversation_id == conversation_id)
        return list(s.scalars(query.order_by(Message.id)))


def nulls(sessions, conversation_id: str) -> list[tuple[bool, ...]]:
    """Which nullable columns hold SQL NULL (a JSON column could hold the JSON text 'null',
    which reads back as None too)."""
    columns = (Message.author, Message.action, Message.confidence, Message.decision)
    with session_scope(sessions) as s:
        query = select(*(c.is_(None) for c in columns))
        query = query.where(Message.conversation_id == conversation_id).order_by(Message.id)
        return [tuple(row) for row in s.execute(query)]


def updated_at(sessions, conversation_id: str):
    with session_scope(sessions) as s:
        return s.get(Conversation, conversation_id).updated_at


def shape(message: Message) -> tuple:
    """What a stored message holds apart from its own id, conversation and time."""
    return (
        message.role,
        message.text,
        message.author,
        message.action,
        message.confidence,
        message.citations,
        message.decision,
        message.created_at.tzinfo is None,
    )


def plain(event: dict) -> dict:
    return {k: v for k, v in event.items() if k not in ("id", "conversation_id", "created_at")}


def test_it_stores_and_publishes_what_the_orm_path_would(sessions, broker):
    orm_id, _ = new_conversation(sessions)
    core_id, core_token = new_conversation(sessions)
    before = updated_at(sessions, core_id)
    broker.published.clear()
    with session_scope(sessions) as s:
        post_customer_message(s, s.get(Conversation, orm_id), "reset?", None, decision=ANSWER)
    orm_events = list(broker.published)
    broker.published.clear()
    seen = seen_now(sessions, core_id)
    with session_scope(sessions) as s:
        reply = store_bot_turn(s, core_id, core_token, None, "reset?", ANSWER, seen)
    core_events = list(broker.published)

    orm_rows, core_rows = rows(sessions, orm_id), rows(sessions, core_id)
    assert [shape(m) for m in core_rows] == [shape(m) for m in orm_rows]
    assert nulls(sessions, core_id) == nulls(sessions, orm_id)
    assert nulls(sessions, core_id)[0] == (True, True, True, True)  # the customer's message
    assert [m.role for m in core_rows] == ["customer", "bot"]
    assert core_rows[1].citations[0]["snippet"] == "Open Settings, then choose Reset password."
    assert core_rows[0].created_at == core_rows[1].created_at
    assert updated_at(sessions, core_id) > before

    assert reply.customer_message_id == core_rows[0].id
    assert reply.message_id == core_rows[1].id
    assert (reply.text, reply.action, reply.confidence) == ("Open Settings.", "answer", 0.87)
    assert [c.model_dump() for c in reply.citations] == core_rows[1].citations
    assert (reply.conversation_status, reply.handoff) == ("bot", None)

    def summary(events, conversation_id):
        return [
            (topic.replace(conversation_id, "ID"), plain(e), e["conversation_id"], e["id"])
            for topic, e in events
        ]

    assert [s[:2] for s in summary(core_events, core_id)] == [
        s[:2] for s in summary(orm_events, orm_id)
    ]
    assert {s[2] for s in summary(core_events, core_id)} == {core_id}
    message_ids = [m.id for m in core_rows]
    assert [e["id"] for t, e in core_events if t == CONSOLE] == message_ids

    def offsets(events):  # the widget parses these: the same time zone notation both ways
        return [datetime.fromisoformat(e["created_at"]).utcoffset() for _, e in events]

    assert offsets(core_events) == offsets(orm_events) == [timedelta(0)] * 4


def test_events_wait_for_the_commit(sessions, broker):
    conv_id, token = new_conversation(sessions)
    broker.published.clear()
    seen = seen_now(sessions, conv_id)
    with pytest.raises(RuntimeError), session_scope(sessions) as s:
        assert store_bot_turn(s, conv_id, token, None, "reset?", ANSWER, seen) is not None
        raise RuntimeError("the request failed after the write")
    assert broker.published == []
    assert rows(sessions, conv_id) == []


@pytest.mark.parametrize("owner", ["queued", "agent", "closed"])
def test_it_declines_unless_the_bot_owns_the_conversation(sessions, owner):
    conv_id, token = new_conversation(sessions, owner)
    seen = seen_now(sessions, conv_id)
    with session_scope(sessions) as s:
        assert store_bot_turn(s, conv_id, token, None, "hello?", ANSWER, seen) is None
    assert rows(sessions, conv_id) == []


def test_it_declines_a_handoff(sessions):
    conv_id, token = new_conversation(sessions)
    handing_over = Decision("escalate", "low_confidence", "Passing you to a person.", 0.1)
    with session_scope(sessions) as s:
        seen = newest_ids(s, conv_id)
        assert store_bot_turn(s, conv_id, token, None, "xyzzy", handing_over, seen) is None
    assert rows(sessions, conv_id) == []


def test_it_declines_when_a_message_or_a_rating_came_in_since(sessions):
    conv_id, token = new_conversation(sessions)
    seen = seen_now(sessions, conv_id)
    with session_scope(sessions) as s:
        assert store_bot_turn(s, conv_id, token, None, "first", ANSWER, seen) is not None
    with session_scope(sessions) as s:  # a reply worked out before that turn is stale
        assert store_bot_turn(s, conv_id, token, None, "second", ANSWER, seen) is None
    seen = seen_now(sessions, conv_id)
    with session_scope(sessions) as s:  # a rating changes the unhelpful streak
        s.add(Feedback(message_id=seen[0], rating="down"))
    with session_scope(sessions) as s:
        assert store_bot_turn(s, conv_id, token, None, "third", ANSWER, seen) is None
    seen = seen_now(sessions, conv_id)
    with session_scope(sessions) as s:  # the rating is changed in place: its id stays the same
        s.scalars(select(Feedback)).one().rating = "up"
    with session_scope(sessions) as s:
        assert store_bot_turn(s, conv_id, token, None, "fourth", ANSWER, seen) is None
    assert [m.text for m in rows(sessions, conv_id)] == ["first", "Open Settings."]


def test_it_checks_who_may_write(sessions):
    conv_id, token = new_conversation(sessions, customer_id="cust-1")
    seen = seen_now(sessions, conv_id)
    with pytest.raises(ConversationNotFound), session_scope(sessions) as s:
        store_bot_turn(s, "0" * 32, token, None, "hi", ANSWER, seen)
    with pytest.raises(NotAllowed), session_scope(sessions) as s:
        store_bot_turn(s, conv_id, "not-the-token", None, "hi", ANSWER, seen)
    with pytest.raises(NotAllowed), session_scope(sessions) as s:
        store_bot_turn(s, conv_id, None, "cust-2", "hi", ANSWER, seen)
    assert rows(sessions, conv_id) == []
    with session_scope(sessions) as s:  # the verified customer needs no token
        assert store_bot_turn(s, conv_id, None, "cust-1", "hi", ANSWER, seen) is not None


def test_the_reply_names_the_latest_handoff(sessions):
    conv_id, token = new_conversation(sessions)
    with session_scope(sessions) as s:
        conv = get_conversation(s, conv_id, token)
        escalate(s, conv, "first", offline=False)
        transition(s, conv, "bot")
        escalate(s, conv, "second", offline=True)
        conv.handoffs[-1].contact_email = "a@example.com"
        transition(s, conv, "bot")
    seen = seen_now(sessions, conv_id)
    with session_scope(sessions) as s:
        reply = store_bot_turn(s, conv_id, token, None, "back again", ANSWER, seen)
        latest = s.scalars(select(Handoff).order_by(Handoff.id.desc()).limit(1)).one()
        assert latest.reason == "second"
        assert reply.handoff.model_dump() == handoff_public(latest)
    assert reply.handoff.offline and reply.handoff.contact_email_given


def test_a_turn_waits_for_a_writer_and_then_sees_what_it_wrote(sessions):
    """The conversation is locked before the newest ids are read: a second turn worked out
    against the same transcript waits for the first and then declines (on PostgreSQL, a read
    in the locking statement would still see the transcript from before the wait)."""
    conv_id, token = new_conversation(sessions)
    seen = seen_now(sessions, conv_id)
    first = sessions()
    assert store_bot_turn(first, conv_id, token, None, "first", ANSWER, seen) is not None
    outcome: list = []

    def second() -> None:
        with session_scope(sessions) as s:
            outcome.append(store_bot_turn(s, conv_id, token, None, "second", ANSWER, seen))

    thread = threading.Thread(target=second)
    thread.start()
    time.sleep(0.5)
    assert outcome == []  # still waiting for the first writer
    first.commit()
    first.close()
    thread.join(timeout=30)
    assert outcome == [None]
    with session_scope(sessions) as s:
        count = s.scalar(select(func.count()).where(Message.conversation_id == conv_id))
    assert count == 2
