"""Customer chat API: start a conversation, send messages, read the transcript, give feedback."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request

from bot.conversations import create_conversation, post_customer_message
from bot.deps import ConversationDep, SessionDep, SettingsDep, get_pipeline
from bot.models import Feedback, Message
from bot.schemas import (
    BotReply,
    ConversationCreated,
    FeedbackCreate,
    FeedbackPublic,
    MessageCreate,
    MessagePublic,
    Transcript,
)

router = APIRouter(prefix="/api/v1/conversations", tags=["chat"])


@router.post("", status_code=201, response_model=ConversationCreated)
def start_conversation(session: SessionDep) -> ConversationCreated:
    """Start a conversation. Keep the returned token: every later call must send it."""
    conv, token = create_conversation(session)
    return ConversationCreated(id=conv.id, token=token, status=conv.status)


@router.post("/{conversation_id}/messages", response_model=BotReply)
def send_message(
    body: MessageCreate,
    conv: ConversationDep,
    session: SessionDep,
    settings: SettingsDep,
    request: Request,
) -> BotReply:
    """Send the customer's message; the bot answers, clarifies, escalates or (if a person owns
    the conversation) stays silent with action 'none'."""
    if len(body.text) > settings.max_message_chars:
        raise HTTPException(
            422,
            f"text is too long: {len(body.text)} characters, at most {settings.max_message_chars}",
        )
    # the model and index are needed only when the bot will reply: a customer can always write
    # to the person who owns the conversation
    pipeline = get_pipeline(request) if conv.status in ("bot", "closed") else None
    customer, reply, _ = post_customer_message(session, conv, body.text, pipeline)
    return BotReply(
        message_id=reply.id if reply else None,
        customer_message_id=customer.id,
        text=reply.text if reply else None,
        action=reply.action if reply else "none",
        confidence=reply.confidence if reply else None,
        citations=reply.citations if reply else [],
        conversation_status=conv.status,
    )


@router.get("/{conversation_id}", response_model=Transcript)
def read_transcript(conv: ConversationDep) -> Transcript:
    """The whole conversation, oldest message first."""
    return Transcript(
        id=conv.id,
        status=conv.status,
        created_at=conv.created_at,
        messages=[
            MessagePublic(
                id=m.id,
                role=m.role,
                text=m.text,
                action=m.action,
                confidence=m.confidence,
                citations=m.citations or [],
                feedback=m.feedback.rating if m.feedback else None,
                created_at=m.created_at,
            )
            for m in conv.messages
        ],
    )


@router.post("/{conversation_id}/messages/{message_id}/feedback", response_model=FeedbackPublic)
def give_feedback(
    message_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    body: FeedbackCreate,
    conv: ConversationDep,
    session: SessionDep,
) -> FeedbackPublic:
    """Thumbs up or down on one of the bot's messages (a second call replaces the first)."""
    msg = session.get(Message, message_id)
    if msg is None or msg.conversation_id != conv.id:
        raise HTTPException(404, "message not found in this conversation")
    if msg.role != "bot":
        raise HTTPException(422, "feedback can only be given on the bot's messages")
    if msg.feedback is None:
        msg.feedback = Feedback(rating=body.rating, comment=body.comment)
    else:
        msg.feedback.rating = body.rating
        msg.feedback.comment = body.comment
    session.flush()
    return FeedbackPublic(message_id=msg.id, rating=body.rating, comment=body.comment)
