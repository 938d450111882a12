"""What agents do with handed-off conversations (claim, reply, hand back, close), and what the
customer adds to a handoff (an email address for an offline ticket, a CSAT rating)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.conversations import InvalidTransition, escalate, latest_handoff, transition
from bot.models import Conversation, CsatResponse, Handoff, Message, User, utcnow


def claim(session: Session, conv: Conversation, agent: User, take_over: bool = False) -> Handoff:
    """Take a queued conversation. One another agent holds is refused unless ``take_over``
    (an explicit choice, so two agents clicking Claim at once cannot both get it)."""
    handoff = latest_handoff(conv)
    if conv.status == "agent" and handoff is not None:
        if handoff.agent == agent.username:
            return handoff
        if not take_over:
            raise InvalidTransition(f"{handoff.agent} is already handling this conversation")
        conv.status = "queued"  # agent -> agent by way of the queue, with one notice
        note = f"{agent.display_name} has taken over the conversation."
    elif conv.status == "queued" and handoff is not None:
        note = f"{agent.display_name} has joined the conversation."
    else:
        raise InvalidTransition(f"only queued conversations can be claimed (it is {conv.status})")
    transition(session, conv, "agent", note)
    handoff.status = "claimed"
    handoff.agent = agent.username
    handoff.claimed_at = utcnow()
    return handoff


def reply(session: Session, conv: Conversation, agent: User, text: str) -> Message:
    """The agent's message to the customer. Replying to a queued conversation claims it; one that
    another agent holds must be taken over first."""
    if conv.status == "closed":
        raise InvalidTransition("the conversation is closed; the customer can reopen it")
    if conv.status == "bot":  # the agent steps into a conversation the bot holds
        escalate(session, conv, "agent_joined")
    claim(session, conv, agent)
    message = Message(conversation=conv, role="agent", text=text, author=agent.display_name)
    session.add(message)
    conv.updated_at = utcnow()
    session.flush()
    return message


def hand_back(session: Session, conv: Conversation) -> None:
    """Give a conversation a person holds (or is waiting for) back to the bot."""
    if conv.status not in ("queued", "agent"):
        raise InvalidTransition(
            f"only a handed-over conversation can go back (it is {conv.status})"
        )
    transition(session, conv, "bot")
    _close_handoff(conv)


def close(session: Session, conv: Conversation) -> None:
    transition(session, conv, "closed")
    _close_handoff(conv)


def release(session: Session, conv: Conversation) -> None:
    """Put a claimed conversation back in the queue for another agent."""
    transition(session, conv, "queued")
    handoff = latest_handoff(conv)
    if handoff is not None:
        handoff.status, handoff.agent, handoff.claimed_at = "queued", None, None


def _close_handoff(conv: Conversation) -> None:
    handoff = latest_handoff(conv)
    if handoff is not None and handoff.status != "closed":
        handoff.status = "closed"
        handoff.closed_at = utcnow()


def leave_email(session: Session, conv: Conversation, email: str) -> Handoff:
    """The customer's address for an offline ticket."""
    handoff = latest_handoff(conv)
    if handoff is None or handoff.status == "closed":
        raise InvalidTransition("there is no open handoff to attach an email address to")
    handoff.contact_email = email
    session.add(
        Message(
            conversation=conv,
            role="system",
            text=f"Thanks! We'll reply to {email} and here in this chat.",
        )
    )
    session.flush()
    return handoff


def rate(session: Session, conv: Conversation, score: int, comment: str | None) -> CsatResponse:
    """The customer's 1-5 rating of the closed conversation (a second rating replaces the first)."""
    if conv.status != "closed":
        raise InvalidTransition("a conversation can be rated once it is closed")
    handoff = latest_handoff(conv)
    existing = current_csat(session, conv)
    if existing is not None:
        existing.score, existing.comment = score, comment
        return existing
    csat = CsatResponse(
        conversation_id=conv.id,
        handoff_id=handoff.id if handoff else None,
        score=score,
        comment=comment,
    )
    session.add(csat)
    session.flush()
    return csat


def current_csat(session: Session, conv: Conversation) -> CsatResponse | None:
    """The rating given since the conversation was last closed, if any (closing stamps
    ``updated_at``, and nothing else touches a closed conversation)."""
    if conv.status != "closed":
        return None
    latest = session.scalar(
        select(CsatResponse)
        .where(CsatResponse.conversation_id == conv.id)
        .order_by(CsatResponse.id.desc())
        .limit(1)
    )
    if latest is None or _naive(latest.created_at) < _naive(conv.updated_at):
        return None
    return latest


def _naive(value: datetime) -> datetime:
    return value.replace(tzinfo=None)
