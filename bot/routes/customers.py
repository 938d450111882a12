"""A verified customer's own conversations (signed customer identity)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from sqlalchemy import select

from bot.deps import CustomerDep, SessionDep
from bot.models import Conversation, Message
from bot.schemas import ConversationSummary

router = APIRouter(prefix="/api/v1/customers", tags=["chat"])


@router.get("/me/conversations", response_model=list[ConversationSummary])
def my_conversations(session: SessionDep, customer_id: CustomerDep) -> list[ConversationSummary]:
    """The signed-in customer's conversations, newest first (send X-Customer-Token)."""
    if customer_id is None:
        raise HTTPException(401, "missing X-Customer-Token header")
    convs = session.scalars(
        select(Conversation)
        .where(Conversation.customer_id == customer_id)
        .order_by(Conversation.updated_at.desc())
        .limit(50)
    ).all()
    out = []
    for conv in convs:
        first = session.scalar(
            select(Message.text)
            .where(Message.conversation_id == conv.id, Message.role == "customer")
            .order_by(Message.id)
            .limit(1)
        )
        preview = " ".join((first or "").split())
        out.append(
            ConversationSummary(
                id=conv.id,
                status=conv.status,
                created_at=conv.created_at,
                updated_at=conv.updated_at,
                preview=preview[:120],
            )
        )
    return out
