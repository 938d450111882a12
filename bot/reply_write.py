"""The common case of a customer message, stored with Core statements.

Most messages arrive in a conversation the bot owns and get a reply that does not hand over.
:func:`store_bot_turn` stores such a turn with four statements: a locked read of who owns the
conversation and who may write to it, a read of its newest message, rating and handoff, one
INSERT of both messages and one UPDATE. Through the ORM (load the conversation, two ``Message``
objects, a flush, the handoffs relationship) the same turn cost three times the CPU, all of it
while holding the database's write lock.

Anything else returns None before writing, and the caller takes the ORM path
(:func:`bot.conversations.post_customer_message`) in the same transaction: a closed conversation
that reopens, a person who took it over, a message or rating that came in after the reply was
worked out. The caller sends handoffs there too.
"""

from __future__ import annotations

from types import SimpleNamespace

from sqlalchemy import bindparam, insert, null, select, update
from sqlalchemy.orm import Session, aliased

from bot.conversations import (
    NEWEST_FEEDBACK,
    NEWEST_MESSAGE,
    RATED_DOWN,
    STATUS,
    ConversationNotFound,
    check_access,
)
from bot.events import queue_message
from bot.gate import Decision
from bot.models import Conversation, Handoff, Message, utcnow
from bot.schemas import BotReply, handoff_public, message_public

_ID = bindparam("id")
_latest = aliased(Handoff)
_LATEST_ID = (
    select(Handoff.id)
    .where(Handoff.conversation_id == _ID)
    .order_by(Handoff.id.desc())
    .limit(1)
    .scalar_subquery()
)
# locked first, then read: on PostgreSQL a statement that waited for the lock still reads the
# rest of the database as it was when the statement began, so what changed meanwhile (newest ids,
# handoff) is read by the next statement
_LOCK = STATUS.with_for_update()  # SQLite's BEGIN IMMEDIATE already serialises writers
_SINCE = (
    select(
        NEWEST_MESSAGE.label("message"),
        NEWEST_FEEDBACK.label("feedback"),
        RATED_DOWN.label("rated_down"),
        _latest.status,
        _latest.offline,
        _latest.contact_email,
    )
    .select_from(Conversation)
    .outerjoin(_latest, _latest.id == _LATEST_ID)
    .where(Conversation.id == _ID)
)
_COLUMNS = ("conversation_id", "role", "text", "action", "confidence", "citations", "decision")
# both rows at once (one INSERT on PostgreSQL, one per row on SQLite); ids in the rows' order
_INSERT = insert(Message).returning(Message.id, sort_by_parameter_order=True)
_TOUCH = (  # "id" is reserved in an UPDATE for the SET clause's columns
    update(Conversation)
    .where(Conversation.id == bindparam("conversation"))
    .values(updated_at=bindparam("now"))
)


def store_bot_turn(
    session: Session,
    conversation_id: str,
    token: str | None,
    customer_id: str | None,
    text: str,
    decision: Decision,
    seen: tuple[int | None, int | None, int],
) -> BotReply | None:
    """Store the customer's ``text`` and the bot's ``decision`` (worked out when
    :func:`~bot.conversations.newest_ids` gave ``seen``) and return the reply, or return
    None, having written nothing, unless the bot still owns the conversation, nothing new came
    in, and the decision does not hand over.

    Raises ConversationNotFound or NotAllowed like
    :func:`bot.conversations.get_conversation`. Live events are queued for the commit as the
    ORM flush would queue them.
    """
    if decision.action == "escalate":
        return None
    conn = session.connection()
    owner = conn.execute(_LOCK, {"id": conversation_id}).one_or_none()
    if owner is None:
        raise ConversationNotFound(conversation_id)
    check_access(owner, token, customer_id)
    if owner.status != "bot":
        return None
    since = conn.execute(_SINCE, {"id": conversation_id}).one()
    if (since.message, since.feedback, since.rated_down) != seen:
        return None
    now = utcnow()
    customer = dict.fromkeys(_COLUMNS) | {
        "conversation_id": conversation_id,
        "role": "customer",
        "text": text,
        "citations": [],
        "decision": null(),  # SQL NULL as the ORM leaves it; None would store the JSON 'null'
    }
    reply = {
        "conversation_id": conversation_id,
        "role": "bot",
        "text": decision.text,
        "action": decision.action,
        "confidence": decision.confidence,
        "citations": decision.citations(),
        "decision": decision.scores,
    }
    rows = [customer, reply]
    for row in rows:
        row["created_at"] = now
    ids = conn.execute(_INSERT, rows).scalars().all()
    conn.execute(_TOUCH, {"conversation": conversation_id, "now": now})
    for row, new_id in zip(rows, ids, strict=True):
        row["id"] = new_id
        queue_message(session, message_public(SimpleNamespace(author=None, **row), feedback=None))
    handoff = handoff_public(since) if since.status is not None else None
    return BotReply(
        message_id=reply["id"],
        customer_message_id=customer["id"],
        text=reply["text"],
        action=decision.action,
        confidence=decision.confidence,
        citations=reply["citations"],
        conversation_status="bot",
        handoff=handoff,
    )
