"""Customer chat API: start a conversation, send messages, read the transcript, give feedback."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Path, Query, Request
from sqlalchemy import select
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from bot.agent_actions import current_csat, leave_email, rate
from bot.conversations import (
    InvalidTransition,
    create_conversation,
    decide_reply,
    latest_handoff,
    newest_ids,
    post_customer_message,
    reply_inputs,
    request_person,
)
from bot.db import session_scope
from bot.deps import (
    ConversationDep,
    ConversationId,
    CustomerDep,
    SessionDep,
    SettingsDep,
    StaffedDep,
    access_errors,
    find_conversation,
    find_status,
    get_pipeline,
    is_staffed,
)
from bot.events import conversation_topic
from bot.models import Feedback, Message
from bot.reply_write import store_bot_turn
from bot.schemas import (
    BotReply,
    ConversationCreated,
    CsatCreate,
    CsatPublic,
    EmailCreate,
    FeedbackCreate,
    FeedbackPublic,
    HandoffState,
    MessageCreate,
    Transcript,
    handoff_public,
    message_public,
)

router = APIRouter(prefix="/api/v1/conversations", tags=["chat"])


@router.post("", status_code=201, response_model=ConversationCreated)
def start_conversation(session: SessionDep, customer_id: CustomerDep) -> ConversationCreated:
    """Start a conversation. Keep the returned token: every later call must send it. With a
    signed X-Customer-Token the conversation is also the verified customer's."""
    conv, token = create_conversation(session, customer_id)
    return ConversationCreated(id=conv.id, token=token, status=conv.status)


@router.post("/{conversation_id}/messages", response_model=BotReply)
async def send_message(
    body: MessageCreate,
    conversation_id: ConversationId,
    settings: SettingsDep,
    customer_id: CustomerDep,
    request: Request,
    x_conversation_token: Annotated[str | None, Header()] = None,
) -> BotReply:
    """Send the customer's message; the bot answers, clarifies, escalates or (if a person owns
    the conversation) stays silent with action 'none'."""
    if len(body.text) > settings.max_message_chars:
        raise HTTPException(
            422,
            f"text is too long: {len(body.text)} characters, at most {settings.max_message_chars}",
        )
    # every step runs in one worker thread, so the database's write lock is never held while
    # waiting for the event loop to schedule the next step (the busiest route: measured 63
    # replies/s with one thread per dependency, see `make bench`)
    async with request.app.state.db_slots:
        return await run_in_threadpool(
            _send_message, request, conversation_id, x_conversation_token, customer_id, body
        )


def _send_message(
    request: Request, conversation_id: str, token: str | None, customer_id: str | None, body
) -> BotReply:
    state = request.app.state
    decision = inputs = pipeline = None
    # first a short read (no write lock): who owns the conversation and what a reply needs
    with session_scope(state.read_sessionmaker) as session:
        if find_status(session, conversation_id, token, customer_id) in ("bot", "closed"):
            pipeline = get_pipeline(request)
            inputs = reply_inputs(session, conversation_id, body.article_id)
    # the model runs with no session open, while other requests read and write
    if inputs is not None:
        streak, question, seen = inputs
        decision = decide_reply(pipeline, body.text, streak, question, body.article_id)
    # then one short write: the message and the reply, unless a person took over meanwhile
    with session_scope(state.sessionmaker) as session:
        if decision is not None:  # the common case first, in Core statements (bot.reply_write)
            with access_errors(token, customer_id):
                stored = store_bot_turn(
                    session, conversation_id, token, customer_id, body.text, decision, seen
                )
            if stored is not None:
                return stored
        conv = find_conversation(session, conversation_id, token, customer_id)
        if decision is not None and newest_ids(session, conv.id) != seen:
            decision = None  # a message or a rating came in meanwhile: work it out again, now
        # whether a person could take a handoff matters only to a handoff (most replies are not)
        needed = decision is None or decision.action == "escalate"
        staffed = is_staffed(session, state.settings) if needed else True
        customer, reply, _ = post_customer_message(
            session,
            conv,
            body.text,
            get_pipeline(request) if conv.status in ("bot", "closed") else None,
            article_id=body.article_id,
            staffed=staffed,
            decision=decision,
        )
        handoff = latest_handoff(conv)
        result = BotReply(
            message_id=reply.id if reply else None,
            customer_message_id=customer.id,
            text=reply.text if reply else None,
            action=reply.action if reply else "none",
            confidence=reply.confidence if reply else None,
            citations=reply.citations if reply else [],
            conversation_status=conv.status,
            handoff=handoff_public(handoff) if handoff else None,
        )
    return result


def _transcript(session, conv, after: int) -> Transcript:
    handoff = latest_handoff(conv)
    csat = current_csat(session, conv)
    return Transcript(
        id=conv.id,
        status=conv.status,
        created_at=conv.created_at,
        messages=[message_public(m) for m in conv.messages if m.id > after],
        handoff=handoff_public(handoff) if handoff else None,
        csat={"score": csat.score} if csat else None,
    )


@router.get("/{conversation_id}", response_model=Transcript)
def read_transcript(
    conv: ConversationDep,
    session: SessionDep,
    after: Annotated[
        int, Query(ge=0, le=2**63 - 1, description="Only messages after this id.")
    ] = 0,
) -> Transcript:
    """The conversation, oldest message first (``after``: only newer messages, for polling)."""
    return _transcript(session, conv, after)


@router.get("/{conversation_id}/events")
async def conversation_events(
    conv: ConversationDep,
    session: SessionDep,
    request: Request,
    after: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
) -> EventSourceResponse:
    """Server-sent events: ``message`` (a new message), ``status`` (the owner changed, with the
    handoff), ``typing`` (an agent is typing). Messages after ``after`` are sent first."""
    subscription = request.app.state.broker.subscribe(conversation_topic(conv.id))
    # subscribed before reading what is stored, so nothing falls between the two; read with the
    # request's own session (a second one would wait for this one's SQLite write lock)
    try:
        missed = await run_in_threadpool(_messages_after, session, conv.id, after) if after else []
    except BaseException:
        subscription.close()
        raise
    return EventSourceResponse(
        _stream(subscription, missed),
        ping=15,
        headers={"Cache-Control": "no-store"},
        background=BackgroundTask(subscription.close),  # also when the stream never started
    )


def _messages_after(session, conversation_id: str, after: int) -> list[dict]:
    rows = session.scalars(
        select(Message)
        .where(Message.conversation_id == conversation_id, Message.id > after)
        .order_by(Message.id)
    )
    return [{"type": "message", **message_public(m)} for m in rows]


async def _stream(subscription, first: list[dict]):
    try:
        for event in first:
            yield _sse(event)
        while True:
            yield _sse(await subscription.get())
    finally:
        subscription.close()


def _sse(event: dict) -> ServerSentEvent:
    data = {k: v for k, v in event.items() if k != "type"}
    return ServerSentEvent(json.dumps(data), event=event["type"])


@router.post("/{conversation_id}/handoff", response_model=HandoffState)
def talk_to_a_person(
    conv: ConversationDep, session: SessionDep, staffed: StaffedDep
) -> HandoffState:
    """The customer asks for a person (the widget's "Talk to a person" button)."""
    handoff = request_person(session, conv, staffed)
    return HandoffState(conversation_status=conv.status, handoff=handoff_public(handoff))


@router.post("/{conversation_id}/contact", response_model=HandoffState)
def leave_contact(body: EmailCreate, conv: ConversationDep, session: SessionDep) -> HandoffState:
    """The customer's email address, so the team can answer an offline ticket later."""
    try:
        handoff = leave_email(session, conv, body.email)
    except InvalidTransition as exc:
        raise HTTPException(409, str(exc)) from None
    return HandoffState(conversation_status=conv.status, handoff=handoff_public(handoff))


@router.post("/{conversation_id}/csat", response_model=CsatPublic)
def rate_conversation(body: CsatCreate, conv: ConversationDep, session: SessionDep) -> CsatPublic:
    """The customer's 1-5 satisfaction rating of a closed conversation."""
    try:
        csat = rate(session, conv, body.score, body.comment)
    except InvalidTransition as exc:
        raise HTTPException(409, str(exc)) from None
    return CsatPublic(score=csat.score)


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
