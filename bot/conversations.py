"""Conversation ownership as an explicit state machine, and the customer-message flow.

    bot --escalate--> queued --claim--> agent --close--> closed
     ^                  |                 |                |
     +---- hand back ---+-----------------+---- reopen ----+

The bot never replies while a person owns the conversation (queued or agent), and every change of
owner leaves a message the customer sees.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.gate import Decision
from bot.models import Conversation, Handoff, Message, utcnow
from bot.pipeline import Pipeline

TRANSITIONS: dict[str, set[str]] = {
    "bot": {"queued", "closed"},
    "queued": {"agent", "bot", "closed"},
    "agent": {"bot", "closed", "queued"},
    "closed": {"bot"},
}
_BACK_TO_BOT = "You're chatting with our assistant again."
_CLOSED = "This conversation was closed. Write again at any time to reopen it."
# What the customer sees when the owner changes (a caller's ``note`` replaces it). Going from
# bot to queued needs none: the bot's own reply that hands over says so.
STATUS_MESSAGES = {
    ("closed", "bot"): "This conversation was reopened.",
    ("queued", "agent"): "A member of our support team has joined the conversation.",
    ("agent", "queued"): "You're back in the queue: the next available person will reply here.",
    ("queued", "bot"): _BACK_TO_BOT,
    ("agent", "bot"): _BACK_TO_BOT,
    ("bot", "closed"): _CLOSED,
    ("queued", "closed"): _CLOSED,
    ("agent", "closed"): _CLOSED,
}


class InvalidTransition(ValueError):
    """A change of owner the state machine does not allow."""


class ConversationNotFound(LookupError):
    pass


class NotAllowed(PermissionError):
    pass


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_conversation(session: Session) -> tuple[Conversation, str]:
    """A new conversation and the secret token its client must present (only its hash is kept)."""
    token = secrets.token_urlsafe(32)
    conv = Conversation(id=uuid.uuid4().hex, token_hash=hash_token(token), status="bot")
    session.add(conv)
    session.flush()
    return conv, token


def get_conversation(session: Session, conversation_id: str, token: str | None) -> Conversation:
    """The conversation, if ``token`` is its token (raises ConversationNotFound / NotAllowed).

    The row is locked for the rest of the transaction (FOR UPDATE on PostgreSQL; SQLite's
    BEGIN IMMEDIATE already serialises writers), so two messages sent at once cannot both act
    on the same ownership state.
    """
    conv = session.get(Conversation, conversation_id, with_for_update=True)
    if conv is None:
        raise ConversationNotFound(conversation_id)
    if not token or not hmac.compare_digest(conv.token_hash, hash_token(token)):
        raise NotAllowed(conversation_id)
    return conv


def transition(
    session: Session, conv: Conversation, new_status: str, note: str | None = None
) -> None:
    """Move ownership, refusing moves the state machine does not allow; leaves a system message."""
    if new_status not in TRANSITIONS.get(conv.status, set()):
        raise InvalidTransition(f"cannot go from {conv.status} to {new_status}")
    text = note or STATUS_MESSAGES.get((conv.status, new_status))
    conv.status = new_status
    conv.updated_at = utcnow()
    if text:
        session.add(Message(conversation=conv, role="system", text=text))


def unhelpful_streak(session: Session, conv: Conversation) -> int:
    """Bot turns in a row, most recent first, that did not help (clarify, or answer rated down)."""
    streak = 0
    bot_messages = session.scalars(
        select(Message)
        .where(Message.conversation_id == conv.id, Message.role == "bot")
        .order_by(Message.id.desc())
        .limit(20)
    )
    for msg in bot_messages:
        if msg.action == "smalltalk":
            continue
        rated_down = msg.feedback is not None and msg.feedback.rating == "down"
        if msg.action == "clarify" or (msg.action == "answer" and rated_down):
            streak += 1
        else:
            break
    return streak


def escalate(session: Session, conv: Conversation, reason: str) -> Handoff:
    """Queue the conversation for a person and record the handoff."""
    transition(session, conv, "queued")
    handoff = Handoff(conversation=conv, status="queued", reason=reason)
    session.add(handoff)
    return handoff


def post_customer_message(
    session: Session, conv: Conversation, text: str, pipeline: Pipeline | None
) -> tuple[Message, Message | None, Decision | None]:
    """Store the customer's message and, when the bot owns the conversation, the bot's reply."""
    if conv.status == "closed":
        transition(session, conv, "bot")
    customer = Message(conversation=conv, role="customer", text=text)
    session.add(customer)
    conv.updated_at = utcnow()
    session.flush()
    if conv.status != "bot":
        return customer, None, None
    if pipeline is None:
        raise ValueError("the bot owns this conversation but no pipeline was given")
    decision = pipeline.reply(text, unhelpful_streak(session, conv))
    reply = Message(
        conversation=conv,
        role="bot",
        text=decision.text,
        action=decision.action,
        confidence=decision.confidence,
        citations=decision.citations(),
        decision=decision.scores,
    )
    session.add(reply)
    if decision.action == "escalate":
        escalate(session, conv, decision.reason)
    session.flush()
    return customer, reply, decision
