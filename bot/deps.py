"""FastAPI dependencies: database session, the pipeline, the caller's conversation."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Path, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from bot.auth import agents_online
from bot.conversations import (
    ConversationNotFound,
    NotAllowed,
    conversation_status,
    get_conversation,
)
from bot.hours import is_open, parse_hours, zone
from bot.identity import IdentityError, verify_customer
from bot.models import Conversation, utcnow
from bot.pipeline import Pipeline
from bot.settings import Settings


async def get_session(request: Request) -> AsyncIterator[Session]:
    """A session for the request, committed when the route returns, rolled back on error.

    A request waits (without a thread) for one of ``db_concurrency`` slots first. Its sync
    dependencies and route each run in a worker thread of their own, while the session may hold
    SQLite's write lock; if every worker thread were taken by requests waiting for that lock,
    the holder could never get a thread to finish (all of them timed out with "database is
    locked" at 64 concurrent customers). With fewer sessions than threads, it always can.
    """
    async with request.app.state.db_slots:
        session = request.app.state.sessionmaker()
        try:
            yield session
            await run_in_threadpool(session.commit)
        except BaseException:
            await run_in_threadpool(session.rollback)
            raise
        finally:
            await run_in_threadpool(session.close)


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_pipeline(request: Request) -> Pipeline:
    pipeline: Pipeline | None = getattr(request.app.state, "pipeline", None)
    if pipeline is None or not pipeline.ready:
        raise HTTPException(503, "the bot is starting: the model or the index is not loaded yet")
    return pipeline


# scope="function": commit before the response is sent, so a failed commit is an error
# response, never a success reporting ids that were not stored
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings)]
PipelineDep = Annotated[Pipeline, Depends(get_pipeline)]


def verified_customer(
    settings: SettingsDep, x_customer_token: Annotated[str | None, Header()] = None
) -> str | None:
    """The customer id a signed X-Customer-Token vouches for (None when none was sent)."""
    if not x_customer_token:
        return None
    try:
        return verify_customer(
            settings.identity_secret, x_customer_token, settings.identity_max_ttl_seconds
        )
    except IdentityError as exc:
        raise HTTPException(401, str(exc)) from None


CustomerDep = Annotated[str | None, Depends(verified_customer)]


def find_conversation(
    session: Session,
    conversation_id: str,
    token: str | None,
    customer_id: str | None,
    lock: bool = True,
) -> Conversation:
    """The caller's conversation, locked unless ``lock`` is False (401 without a token, 404
    unknown, 403 wrong token)."""
    with access_errors(token, customer_id):
        return get_conversation(session, conversation_id, token, customer_id, lock)


def find_status(
    session: Session, conversation_id: str, token: str | None, customer_id: str | None
) -> str:
    """Who owns the caller's conversation (the errors of :func:`find_conversation`), read
    without loading it."""
    with access_errors(token, customer_id):
        return conversation_status(session, conversation_id, token, customer_id)


@contextmanager
def access_errors(token: str | None, customer_id: str | None) -> Iterator[None]:
    """401 without a token, 404 for an unknown conversation, 403 for the wrong token."""
    if not token and customer_id is None:
        raise HTTPException(401, "missing X-Conversation-Token header")
    try:
        yield
    except ConversationNotFound:
        raise HTTPException(404, "conversation not found") from None
    except NotAllowed:
        raise HTTPException(403, "this token does not belong to the conversation") from None


ConversationId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]


def current_conversation(
    conversation_id: ConversationId,
    session: SessionDep,
    customer_id: CustomerDep,
    x_conversation_token: Annotated[str | None, Header()] = None,
) -> Conversation:
    return find_conversation(session, conversation_id, x_conversation_token, customer_id)


ConversationDep = Annotated[Conversation, Depends(current_conversation)]


def is_staffed(session: Session, settings: Settings) -> bool:
    """Whether a person can take a handoff now: within business hours and someone online."""
    schedule = parse_hours(settings.business_hours)
    if not is_open(schedule, zone(settings.timezone), utcnow()):
        return False
    return agents_online(session, settings.agent_online_seconds) > 0


def staffed(session: SessionDep, settings: SettingsDep) -> bool:
    return is_staffed(session, settings)


StaffedDep = Annotated[bool, Depends(staffed)]
