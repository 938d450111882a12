"""FastAPI dependencies: database session, the pipeline, the caller's conversation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Path, Request
from sqlalchemy.orm import Session

from bot.auth import agents_online
from bot.conversations import ConversationNotFound, NotAllowed, get_conversation
from bot.hours import is_open, parse_hours, zone
from bot.identity import IdentityError, verify_customer
from bot.models import Conversation, utcnow
from bot.pipeline import Pipeline
from bot.settings import Settings


def get_session(request: Request) -> Iterator[Session]:
    session = request.app.state.sessionmaker()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


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


def current_conversation(
    conversation_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")],
    session: SessionDep,
    customer_id: CustomerDep,
    x_conversation_token: Annotated[str | None, Header()] = None,
) -> Conversation:
    if not x_conversation_token and customer_id is None:
        raise HTTPException(401, "missing X-Conversation-Token header")
    try:
        return get_conversation(session, conversation_id, x_conversation_token, customer_id)
    except ConversationNotFound:
        raise HTTPException(404, "conversation not found") from None
    except NotAllowed:
        raise HTTPException(403, "this token does not belong to the conversation") from None


ConversationDep = Annotated[Conversation, Depends(current_conversation)]


def staffed(session: SessionDep, settings: SettingsDep) -> bool:
    """Whether a person can take a handoff now: within business hours and someone online."""
    schedule = parse_hours(settings.business_hours)
    if not is_open(schedule, zone(settings.timezone), utcnow()):
        return False
    return agents_online(session, settings.agent_online_seconds) > 0


StaffedDep = Annotated[bool, Depends(staffed)]
