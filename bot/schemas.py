"""Request and response models of the chat API."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

_CONTROL = dict.fromkeys(c for c in range(32) if chr(c) not in "\n\t")


def _as_utc(value: datetime) -> datetime:
    """Times are stored in UTC, but SQLite hands them back without a zone: say it's UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]


def _clean_text(value: str) -> str:
    """Drop control characters (NUL breaks PostgreSQL) and refuse text that is not valid Unicode."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, e.g. JSON "\ud83d" alone
        raise ValueError("text is not valid Unicode") from None
    return value.translate(_CONTROL).strip()


class MessageCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(description="What the customer typed (1-2,000 characters).")
    article_id: str | None = Field(
        None,
        max_length=128,
        description="The article the customer picked from a clarify offer: the bot answers the "
        "question it asked about with the best passage of this article.",
    )

    @field_validator("text")
    @classmethod
    def _clean(cls, value: str) -> str:
        value = _clean_text(value)
        if not value:
            raise ValueError("text must not be empty")
        return value


class Citation(BaseModel):
    article_id: str
    title: str
    url: str
    snippet: str


class ConversationCreated(BaseModel):
    id: str
    token: str = Field(description="Secret to send as the X-Conversation-Token header from now on.")
    status: str


class BotReply(BaseModel):
    """The bot's reply to a customer message (action 'none' while a person owns the chat)."""

    message_id: int | None = Field(description="Id of the bot's message (for feedback).")
    customer_message_id: int
    text: str | None
    action: Literal["answer", "clarify", "escalate", "smalltalk", "none"]
    confidence: float | None
    citations: list[Citation]
    conversation_status: str
    handoff: HandoffPublic | None = None


class FeedbackCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rating: Literal["up", "down"]
    comment: str | None = Field(None, max_length=2000)

    @field_validator("comment")
    @classmethod
    def _clean(cls, value: str | None) -> str | None:
        return (_clean_text(value) or None) if value is not None else None


class FeedbackPublic(BaseModel):
    message_id: int
    rating: str
    comment: str | None


class MessagePublic(BaseModel):
    id: int
    conversation_id: str
    role: Literal["customer", "bot", "agent", "system"]
    text: str
    action: str | None
    confidence: float | None
    citations: list[Citation]
    feedback: str | None
    author: str | None = Field(None, description="The agent's display name (agent messages).")
    created_at: UtcDatetime


class HandoffPublic(BaseModel):
    status: Literal["queued", "claimed", "closed"]
    offline: bool = Field(description="No one was available: the team replies later.")
    contact_email_given: bool


class CsatPublic(BaseModel):
    score: int


class Transcript(BaseModel):
    id: str
    status: str
    created_at: UtcDatetime
    messages: list[MessagePublic]
    handoff: HandoffPublic | None = Field(None, description="The latest handoff, if any.")
    csat: CsatPublic | None = Field(None, description="The rating given since the last close.")


def message_public(m, feedback: str | None | bool = True) -> dict:
    """A stored message as the API shows it (JSON-ready). ``feedback=None`` skips loading it."""
    if feedback is True:
        feedback = m.feedback.rating if m.feedback else None
    return MessagePublic(
        id=m.id,
        conversation_id=m.conversation_id,
        role=m.role,
        text=m.text,
        action=m.action,
        confidence=m.confidence,
        citations=m.citations or [],
        feedback=feedback,
        author=m.author,
        created_at=m.created_at,
    ).model_dump(mode="json")


def handoff_public(h) -> dict:
    return HandoffPublic(
        status=h.status, offline=bool(h.offline), contact_email_given=bool(h.contact_email)
    ).model_dump(mode="json")


class EmailCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(max_length=320, description="Where the team can answer later.")

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        value = _clean_text(value)
        if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value):
            raise ValueError("not an email address")
        return value


class CsatCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    score: int = Field(ge=1, le=5, description="1 (very unhappy) to 5 (very happy).")
    comment: str | None = Field(None, max_length=2000)

    @field_validator("comment")
    @classmethod
    def _clean(cls, value: str | None) -> str | None:
        return (_clean_text(value) or None) if value is not None else None


class HandoffState(BaseModel):
    conversation_status: str
    handoff: HandoffPublic | None


class ConversationSummary(BaseModel):
    id: str
    status: str
    created_at: UtcDatetime
    updated_at: UtcDatetime
    preview: str


class Suggestion(BaseModel):
    article_id: str
    title: str
    url: str


class WidgetConfig(BaseModel):
    title: str
    greeting: str
    color: str
    suggestions: list[Suggestion]
