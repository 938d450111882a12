"""REST API tokens: made for a user, shown once, kept as a hash, revocable."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.models import ApiToken, User, utcnow

PREFIX = "sbt_"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, user: User, name: str) -> tuple[ApiToken, str]:
    """A new token for ``user``; the secret is returned here and never again."""
    secret = PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(name=name.strip()[:100] or "token", token_hash=_digest(secret), user=user)
    session.add(token)
    session.flush()
    return token, secret


def user_for(session: Session, secret: str) -> User | None:
    """The active user a valid, unrevoked token acts as."""
    if not secret.startswith(PREFIX):
        return None
    token = session.scalar(select(ApiToken).where(ApiToken.token_hash == _digest(secret)))
    if token is None or token.revoked or not token.user.active:
        return None
    token.last_used_at = utcnow()
    return token.user
