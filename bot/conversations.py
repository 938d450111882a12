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

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from bot.db import core
from bot.gate import REPLIES, Decision
from bot.models import Conversation, Feedback, Handoff, Message, utcnow
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


# The chat's reads, built once: building a statement costs more than running it (SQLAlchemy
# derives a cache key from every new statement object). They run on the session's connection
# (see bot.db.core); ``id`` is the conversation's.
_ID = bindparam("id")
STATUS = select(
    Conversation.id, Conversation.token_hash, Conversation.customer_id, Conversation.status
).where(Conversation.id == _ID)
_BOT_TURNS = (  # two columns, one query: this runs before every bot reply
    select(Message.action, Feedback.rating)
    .outerjoin(Feedback, Feedback.message_id == Message.id)
    .where(Message.conversation_id == _ID, Message.role == "bot")
    .order_by(Message.id.desc())
    .limit(20)
)
_LAST_TURNS = (
    select(Message.role, Message.action, Message.citations, Message.text)
    .where(Message.conversation_id == _ID, Message.role.in_(("customer", "bot")))
    .order_by(Message.id.desc())
    .limit(2)
)
NEWEST_MESSAGE = (
    select(func.max(Message.id)).where(Message.conversation_id == _ID).scalar_subquery()
)
NEWEST_FEEDBACK = (
    select(func.max(Feedback.id))
    .join(Message, Feedback.message_id == Message.id)
    .where(Message.conversation_id == _ID)
    .scalar_subquery()
)
RATED_DOWN = (  # changes when a rating is turned from up to down or back (same feedback id)
    select(func.count(Feedback.id))
    .join(Message, Feedback.message_id == Message.id)
    .where(Message.conversation_id == _ID, Feedback.rating == "down")
    .scalar_subquery()
)
_NEWEST = select(NEWEST_MESSAGE, NEWEST_FEEDBACK, RATED_DOWN)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


OFFLINE = (
    "Nobody from our team is available right now. Leave your email address and we'll answer "
    "you there as soon as we're back; your question stays here too."
)


def create_conversation(
    session: Session, customer_id: str | None = None
) -> tuple[Conversation, str]:
    """A new conversation and the secret token its client must present (only its hash is kept)."""
    token = secrets.token_urlsafe(32)
    conv = Conversation(
        id=uuid.uuid4().hex, token_hash=hash_token(token), status="bot", customer_id=customer_id
    )
    session.add(conv)
    session.flush()
    return conv, token


def get_conversation(
    session: Session,
    conversation_id: str,
    token: str | None,
    customer_id: str | None = None,
    lock: bool = True,
) -> Conversation:
    """The conversation, if ``token`` is its token (raises ConversationNotFound / NotAllowed).

    The row is locked for the rest of the transaction (FOR UPDATE on PostgreSQL; SQLite's
    BEGIN IMMEDIATE already serialises writers), so two messages sent at once cannot both act
    on the same ownership state.
    """
    conv = session.get(Conversation, conversation_id, with_for_update=lock)
    if conv is None:
        raise ConversationNotFound(conversation_id)
    check_access(conv, token, customer_id)
    return conv


def conversation_status(
    session: Session, conversation_id: str, token: str | None, customer_id: str | None = None
) -> str:
    """Who owns the conversation, checked like :func:`get_conversation` but read as one row
    without loading it (for a reader that needs nothing else)."""
    row = core(session).execute(STATUS, {"id": conversation_id}).one_or_none()
    if row is None:
        raise ConversationNotFound(conversation_id)
    check_access(row, token, customer_id)
    return row.status


def check_access(conv, token: str | None, customer_id: str | None) -> None:
    """Raises NotAllowed unless ``token`` is the conversation's, or ``customer_id`` (verified)
    is its customer's."""
    if customer_id is not None and conv.customer_id == customer_id:
        return  # a verified customer opening one of their own conversations
    if not token or not hmac.compare_digest(conv.token_hash, hash_token(token)):
        raise NotAllowed(conv.id)


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


def unhelpful_streak(session: Session, conversation_id: str) -> int:
    """Bot turns in a row, most recent first, that did not help (clarify, or answer rated down)."""
    streak = 0
    turns = core(session).execute(_BOT_TURNS, {"id": conversation_id})
    for action, rating in turns:
        if action == "smalltalk":
            continue
        if action == "clarify" or (action == "answer" and rating == "down"):
            streak += 1
        else:
            break
    return streak


def latest_handoff(conv: Conversation) -> Handoff | None:
    return conv.handoffs[-1] if conv.handoffs else None


def escalate(session: Session, conv: Conversation, reason: str, offline: bool = False) -> Handoff:
    """Queue the conversation for a person and record the handoff (``offline``: nobody is there
    now, so it is a ticket the team answers later)."""
    transition(session, conv, "queued")
    handoff = Handoff(conversation=conv, status="queued", reason=reason, offline=offline)
    session.add(handoff)
    return handoff


def request_person(session: Session, conv: Conversation, staffed: bool) -> Handoff:
    """The customer pressed "Talk to a person"."""
    if conv.status in ("queued", "agent"):
        return latest_handoff(conv)
    if conv.status == "closed":
        transition(session, conv, "bot")
    note = REPLIES["human_request"] if staffed else OFFLINE
    session.add(Message(conversation=conv, role="bot", text=note, action="escalate"))
    handoff = escalate(session, conv, "customer_button", offline=not staffed)
    session.flush()
    return handoff


def _clarified_question(session: Session, conversation_id: str, article_id: str) -> str | None:
    """The customer's question that the latest bot turn answered with a clarify offer naming
    ``article_id`` (None when the offer is not the latest turn or did not name it)."""
    recent = core(session).execute(_LAST_TURNS, {"id": conversation_id}).all()
    if len(recent) < 2 or recent[0].role != "bot" or recent[0].action != "clarify":
        return None
    if article_id not in {c.get("article_id") for c in recent[0].citations or []}:
        return None
    return recent[1].text


def newest_ids(session: Session, conversation_id: str) -> tuple[int | None, int | None, int]:
    """The newest message and feedback ids of the conversation, and how many of its answers are
    rated down: a reply worked out before they changed may be stale (another message, or a
    rating, new or changed, that changes the unhelpful streak)."""
    newest = core(session).execute(_NEWEST, {"id": conversation_id}).one()
    return newest[0], newest[1], newest[2]


def reply_inputs(session: Session, conversation_id: str, article_id: str | None) -> tuple:
    """What the bot's reply depends on besides the text: the unhelpful streak, the question a
    clarify pick answers (or None), and :func:`newest_ids`."""
    question = _clarified_question(session, conversation_id, article_id) if article_id else None
    streak = unhelpful_streak(session, conversation_id)
    return streak, question, newest_ids(session, conversation_id)


def decide_reply(
    pipeline: Pipeline, text: str, streak: int, question: str | None, article_id: str | None
) -> Decision:
    """The bot's reply from :func:`reply_inputs` (no database needed: the model runs here)."""
    decision = pipeline.answer_from(question, article_id) if question and article_id else None
    return decision or pipeline.reply(text, streak)


def bot_decision(
    session: Session, conv: Conversation, text: str, pipeline: Pipeline, article_id: str | None
) -> Decision:
    """What the bot would reply to ``text`` in ``conv`` (only reads the conversation)."""
    streak, question, _ = reply_inputs(session, conv.id, article_id)
    return decide_reply(pipeline, text, streak, question, article_id)


def post_customer_message(
    session: Session,
    conv: Conversation,
    text: str,
    pipeline: Pipeline | None,
    article_id: str | None = None,
    staffed: bool = True,
    decision: Decision | None = None,
) -> tuple[Message, Message | None, Decision | None]:
    """Store the customer's message and, when the bot owns the conversation, the bot's reply.

    ``article_id``: the customer picked this article from the bot's clarify offer, so the bot
    answers the question that got the offer from it. ``staffed``: whether a person could take a
    handoff now; if not, a handoff becomes an offline ticket and the customer is asked for an
    email address. ``decision``: the reply worked out beforehand (the API does so in a read-only
    session, so the database's write lock is not held while the model runs); it is used only if
    the bot still owns the conversation, so a person who took over meanwhile wins.
    """
    if conv.status not in ("bot", "closed"):
        decision = None  # a person owns it: the bot stays silent
    elif decision is None:  # worked out before the message is stored: a pick reads the offer
        if pipeline is None:
            raise ValueError("the bot owns this conversation but no pipeline was given")
        decision = bot_decision(session, conv, text, pipeline, article_id)
    if conv.status == "closed":
        transition(session, conv, "bot")
    customer = Message(conversation=conv, role="customer", text=text)
    session.add(customer)
    conv.updated_at = utcnow()
    if decision is None:
        session.flush()
        return customer, None, None
    offline = decision.action == "escalate" and not staffed
    reply = Message(
        conversation=conv,
        role="bot",
        text=OFFLINE if offline else decision.text,
        action=decision.action,
        confidence=decision.confidence,
        citations=decision.citations(),
        decision=decision.scores,
    )
    session.add(reply)
    if decision.action == "escalate":
        escalate(session, conv, decision.reason, offline=offline)
    session.flush()  # one flush: rows are inserted in the order they were added
    return customer, reply, decision
