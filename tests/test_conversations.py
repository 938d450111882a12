"""Conversation ownership (bot -> queued -> agent -> closed, reopen), tokens and the message flow."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from bot.conversations import (
    ConversationNotFound,
    InvalidTransition,
    NotAllowed,
    bot_decision,
    conversation_status,
    create_conversation,
    escalate,
    get_conversation,
    newest_ids,
    post_customer_message,
    transition,
    unhelpful_streak,
)
from bot.db import init_db, make_engine, make_sessionmaker, read_sessionmaker
from bot.gate import Decision
from bot.models import Conversation, Feedback, Handoff, Message

STATUSES = ["bot", "queued", "agent", "closed"]
# the ownership graph of DESIGN.md, written out here so the test does not trust the code's table
ALLOWED = {
    ("bot", "queued"),
    ("bot", "closed"),
    ("queued", "agent"),
    ("queued", "bot"),
    ("queued", "closed"),
    ("agent", "bot"),
    ("agent", "queued"),
    ("agent", "closed"),
    ("closed", "bot"),
}
REFUSED = [
    pair for pair in itertools.product(STATUSES, [*STATUSES, "deleted", ""]) if pair not in ALLOWED
]


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    engine = make_engine(f"sqlite:///{tmp_path / 'conv.db'}")
    init_db(engine)
    with make_sessionmaker(engine)() as s:
        yield s
    engine.dispose()


class StubPipeline:
    """Stands in for the real pipeline: records what it was asked and returns a fixed decision."""

    def __init__(self, decision: Decision | None = None) -> None:
        self.decision = decision or Decision("answer", "confident", "Use the reset link.", 0.9)
        self.calls: list[tuple[str, int]] = []

    def reply(self, text: str, unhelpful_streak: int = 0) -> Decision:
        self.calls.append((text, unhelpful_streak))
        return self.decision


def conversation_in(session: Session, status: str) -> Conversation:
    conv, _ = create_conversation(session)
    conv.status = status
    session.flush()
    return conv


def messages(session: Session, conv: Conversation) -> list[Message]:
    session.flush()
    return list(
        session.scalars(
            select(Message).where(Message.conversation_id == conv.id).order_by(Message.id)
        )
    )


# --- tokens ----------------------------------------------------------------------------------


def test_only_the_tokens_hash_is_stored(session):
    conv, token = create_conversation(session)
    session.commit()
    assert conv.status == "bot"
    assert len(token) >= 32
    assert conv.token_hash == hashlib.sha256(token.encode()).hexdigest()
    row = session.execute(text("SELECT * FROM conversations")).one()
    assert all(token not in str(value) for value in row)


def test_tokens_are_unique(session):
    pairs = [create_conversation(session) for _ in range(20)]
    assert len({token for _, token in pairs}) == 20
    assert len({conv.id for conv, _ in pairs}) == 20


def test_get_conversation_checks_the_token(session):
    conv, token = create_conversation(session)
    other, other_token = create_conversation(session)
    session.commit()
    assert get_conversation(session, conv.id, token) is conv
    assert get_conversation(session, other.id, other_token) is other
    for bad in (other_token, token[:-1], token + "x", "", None, conv.token_hash):
        with pytest.raises(NotAllowed):
            get_conversation(session, conv.id, bad)
    with pytest.raises(ConversationNotFound):
        get_conversation(session, "f" * 32, token)


# --- the state machine ---------------------------------------------------------------------


@pytest.mark.parametrize(("old", "new"), sorted(ALLOWED))
def test_allowed_transitions(session, old, new):
    conv = conversation_in(session, old)
    before = conv.updated_at
    transition(session, conv, new)
    session.flush()
    assert conv.status == new
    assert conv.updated_at >= before


@pytest.mark.parametrize(("old", "new"), REFUSED)
def test_refused_transitions_change_nothing(session, old, new):
    conv = conversation_in(session, old)
    with pytest.raises(InvalidTransition):
        transition(session, conv, new)
    assert conv.status == old
    assert messages(session, conv) == []


@pytest.mark.parametrize(("old", "new"), sorted(ALLOWED - {("bot", "queued")}))
def test_every_change_of_owner_leaves_a_message_for_the_customer(session, old, new):
    conv = conversation_in(session, old)
    transition(session, conv, new)
    [msg] = messages(session, conv)
    assert msg.role == "system" and msg.text.strip()


def test_handing_over_from_the_bot_leaves_the_bots_message(session):
    conv = conversation_in(session, "bot")
    post_customer_message(session, conv, "xyzzy", StubPipeline(Decision("escalate", "x", "Bye!")))
    assert conv.status == "queued"
    assert [(m.role, m.action) for m in messages(session, conv)] == [
        ("customer", None),
        ("bot", "escalate"),
    ]


def test_reopen_from_closed_leaves_a_system_message(session):
    conv = conversation_in(session, "closed")
    transition(session, conv, "bot")
    [msg] = messages(session, conv)
    assert msg.role == "system" and "reopen" in msg.text.lower()


def test_a_note_replaces_the_default_message(session):
    conv = conversation_in(session, "queued")
    transition(session, conv, "agent", note="Ada joined the conversation.")
    assert [m.text for m in messages(session, conv)] == ["Ada joined the conversation."]


def test_the_full_round_trip(session):
    conv = conversation_in(session, "bot")
    for status in ["queued", "agent", "closed", "bot", "queued", "bot"]:
        transition(session, conv, status)
        assert conv.status == status
    session.commit()
    assert session.get(Conversation, conv.id).status == "bot"


# --- escalation ------------------------------------------------------------------------------


def test_escalate_queues_and_records_a_handoff(session):
    conv = conversation_in(session, "bot")
    handoff = escalate(session, conv, "human_request")
    session.commit()
    assert conv.status == "queued"
    rows = session.scalars(select(Handoff).where(Handoff.conversation_id == conv.id)).all()
    assert rows == [handoff]
    assert (handoff.status, handoff.reason) == ("queued", "human_request")


def test_escalating_twice_is_refused_and_records_nothing(session):
    conv = conversation_in(session, "bot")
    escalate(session, conv, "human_request")
    session.flush()
    with pytest.raises(InvalidTransition):
        escalate(session, conv, "human_request")
    session.flush()
    assert len(session.scalars(select(Handoff)).all()) == 1


# --- the customer-message flow -----------------------------------------------------------------


@pytest.mark.parametrize("owner", ["queued", "agent"])
def test_the_bot_does_not_reply_while_a_person_owns_the_conversation(session, owner):
    conv = conversation_in(session, owner)
    pipeline = StubPipeline()
    customer, reply, decision = post_customer_message(session, conv, "still there?", pipeline)
    assert reply is None and decision is None
    assert pipeline.calls == []
    assert conv.status == owner
    assert [(m.role, m.text) for m in messages(session, conv)] == [("customer", "still there?")]
    assert customer.id is not None


def test_the_bot_replies_while_it_owns_the_conversation(session):
    conv = conversation_in(session, "bot")
    decision = Decision("answer", "confident", "Use the reset link.", 0.91, scores={"k": 1})
    pipeline = StubPipeline(decision)
    customer, reply, got = post_customer_message(session, conv, "reset password?", pipeline)
    assert got is decision
    assert pipeline.calls == [("reset password?", 0)]
    assert (reply.role, reply.text, reply.action, reply.confidence) == (
        "bot",
        "Use the reset link.",
        "answer",
        0.91,
    )
    assert reply.decision == {"k": 1}
    assert [m.id for m in messages(session, conv)] == [customer.id, reply.id]
    assert conv.status == "bot"


def test_an_escalating_reply_queues_the_conversation(session):
    conv = conversation_in(session, "bot")
    decision = Decision("escalate", "low_confidence", "Passing you to a person.", 0.1)
    _, reply, _ = post_customer_message(session, conv, "xyzzy", StubPipeline(decision))
    session.commit()
    assert conv.status == "queued"
    assert reply.action == "escalate"
    assert [h.reason for h in conv.handoffs] == ["low_confidence"]


def test_a_message_to_a_closed_conversation_reopens_it(session):
    conv = conversation_in(session, "closed")
    pipeline = StubPipeline()
    customer, reply, _ = post_customer_message(session, conv, "one more thing", pipeline)
    assert conv.status == "bot"
    assert len(pipeline.calls) == 1
    roles = [(m.role, m.id) for m in messages(session, conv)]
    assert [r for r, _ in roles] == ["system", "customer", "bot"]
    assert roles[1][1] == customer.id and roles[2][1] == reply.id


# --- unhelpful streak ------------------------------------------------------------------------


def add_bot(session: Session, conv: Conversation, action: str, rating: str | None = None) -> None:
    msg = Message(conversation=conv, role="bot", text=action, action=action)
    if rating:
        msg.feedback = Feedback(rating=rating)
    session.add(msg)
    session.flush()


@pytest.mark.parametrize(
    ("turns", "streak"),
    [
        ([], 0),
        ([("clarify", None)], 1),
        ([("clarify", None), ("clarify", None)], 2),
        ([("answer", "down"), ("clarify", None)], 2),
        ([("clarify", None), ("answer", None)], 0),
        ([("clarify", None), ("answer", "up")], 0),
        ([("clarify", None), ("answer", "up"), ("clarify", None)], 1),
        ([("clarify", None), ("smalltalk", None), ("answer", "down")], 2),
        ([("clarify", None), ("escalate", None)], 0),
    ],
)
def test_unhelpful_streak(session, turns, streak):
    conv = conversation_in(session, "bot")
    for action, rating in turns:
        add_bot(session, conv, action, rating)
    session.add(Message(conversation=conv, role="customer", text="hm"))
    session.flush()
    assert unhelpful_streak(session, conv.id) == streak


def test_the_streak_is_per_conversation(session):
    mine = conversation_in(session, "bot")
    other = conversation_in(session, "bot")
    add_bot(session, other, "clarify")
    add_bot(session, other, "clarify")
    assert unhelpful_streak(session, mine.id) == 0
    assert unhelpful_streak(session, other.id) == 2


def test_the_chat_reads_see_changes_the_session_has_not_flushed(session):
    """The streak, newest-ids and status reads run as Core statements on the session's
    connection; they still see what the session added but did not flush yet."""
    conv, token = create_conversation(session)
    session.add(Message(conversation=conv, role="bot", text="?", action="clarify"))
    assert unhelpful_streak(session, conv.id) == 1
    assert newest_ids(session, conv.id)[0] is not None
    conv.status = "agent"
    assert conversation_status(session, conv.id, token) == "agent"
    with pytest.raises(NotAllowed):
        conversation_status(session, conv.id, "not-the-token")
    with pytest.raises(ConversationNotFound):
        conversation_status(session, "0" * 32, token)


def test_the_bot_thinks_in_a_read_only_session_while_others_write(session, monkeypatch):
    """The API works out the reply in a read_sessionmaker session, which holds no write lock,
    so other requests write meanwhile; the reply is then stored in one short write."""
    import bot.db

    monkeypatch.setattr(bot.db, "LOCK_TIMEOUT", 2.0)  # a regression fails fast, not in 30 s
    conv = conversation_in(session, "bot")
    session.commit()
    engine = session.get_bind()
    writer = make_sessionmaker(engine)

    class Watching(StubPipeline):
        def reply(self, text: str, unhelpful_streak: int = 0) -> Decision:
            with writer() as s:  # another request writes while the bot thinks
                s.add(Message(conversation_id=conv.id, role="system", text="meanwhile"))
                s.commit()
            return super().reply(text, unhelpful_streak)

    with read_sessionmaker(engine)() as reader:
        decision = bot_decision(
            reader, reader.get(Conversation, conv.id), "reset?", Watching(), None
        )
        reader.commit()
    _, reply, _ = post_customer_message(session, conv, "reset?", None, decision=decision)
    session.commit()
    assert reply.text == "Use the reset link."
    assert [m.text for m in messages(session, conv)] == ["meanwhile", "reset?", reply.text]


def test_a_read_only_session_cannot_hold_up_writers_even_when_open_long(session, monkeypatch):
    import bot.db

    monkeypatch.setattr(bot.db, "LOCK_TIMEOUT", 2.0)
    engine = session.get_bind()
    with read_sessionmaker(engine)() as reader:
        reader.scalars(select(Conversation)).all()  # a read transaction stays open
        conv = conversation_in(session, "bot")  # and a write still goes through at once
        session.commit()
    assert conv.id


def test_a_person_who_takes_over_while_the_bot_thinks_wins(session):
    conv = conversation_in(session, "bot")
    session.commit()
    decision = Decision("answer", "confident", "Use the reset link.", 0.9)  # worked out first
    with make_sessionmaker(session.get_bind())() as other:  # then a person takes over
        c = other.get(Conversation, conv.id)
        transition(other, c, "queued")
        transition(other, c, "agent")
        other.commit()
    session.refresh(conv)
    _, reply, got = post_customer_message(session, conv, "reset password?", None, decision=decision)
    session.commit()
    assert reply is None and got is None
    assert conv.status == "agent"
    texts = [m.text for m in messages(session, conv)]
    assert "reset password?" in texts and "Use the reset link." not in texts
