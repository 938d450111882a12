"""Request and response models of the chat API."""

from __future__ import annotations

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
    role: str
    text: str
    action: str | None
    confidence: float | None
    citations: list[Citation]
    feedback: str | None
    created_at: UtcDatetime


class Transcript(BaseModel):
    id: str
    status: str
    created_at: UtcDatetime
    messages: list[MessagePublic]
