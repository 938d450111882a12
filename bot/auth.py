"""Console users: argon2 password hashes, sign-in, CSRF tokens, and who counts as online."""

from __future__ import annotations

import hmac
import os
import re
import secrets
from datetime import datetime, timedelta
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.models import User, utcnow

ROLES = ("agent", "admin")
_hasher = PasswordHasher()
# verifying against this when the user does not exist costs the same time as a real check
_DUMMY_HASH = _hasher.hash("not a password of anyone")
USERNAME = re.compile(r"^[A-Za-z0-9._@-]{2,100}$")
MIN_PASSWORD = 8


class UserError(ValueError):
    """A user that cannot be created as asked (bad name, short password, taken)."""


def create_user(
    session: Session, username: str, password: str, role: str = "agent", display_name: str = ""
) -> User:
    if not USERNAME.match(username):
        raise UserError("username: 2-100 letters, digits and . _ @ -")
    if len(password) < MIN_PASSWORD:
        raise UserError(f"password: at least {MIN_PASSWORD} characters")
    if role not in ROLES:
        raise UserError(f"role: one of {', '.join(ROLES)}")
    if session.scalar(select(User).where(func.lower(User.username) == username.lower())):
        raise UserError(f"username {username!r} is taken")
    user = User(
        username=username,
        display_name=display_name.strip() or username,
        password_hash=_hasher.hash(password),
        role=role,
    )
    session.add(user)
    session.flush()
    return user


def set_password(user: User, password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"password: at least {MIN_PASSWORD} characters")
    user.password_hash = _hasher.hash(password)


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The active user with these credentials, else None (same cost either way)."""
    user = session.scalar(select(User).where(func.lower(User.username) == username.lower()))
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None or not user.active:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return user


def csrf_token(session_data: dict) -> str:
    """The CSRF token of this browser session (made on first use)."""
    token = session_data.get("csrf")
    if not token:
        token = session_data["csrf"] = secrets.token_urlsafe(32)
    return token


def csrf_ok(session_data: dict, given: str | None) -> bool:
    expected = session_data.get("csrf")
    return bool(expected and given and hmac.compare_digest(expected, given))


def agents_online(session: Session, within_seconds: int, now: datetime | None = None) -> int:
    """How many signed-in people had the console open in the last ``within_seconds``."""
    since = (now or utcnow()) - timedelta(seconds=within_seconds)
    return session.scalar(
        select(func.count()).select_from(User).where(User.active, User.last_seen_at >= since)
    )


def session_secret(secret: str, path: Path) -> str:
    """``secret`` if set, else a random key kept in ``path`` (made once, readable by us only)."""
    if secret:
        return secret
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never readable by others
    with os.fdopen(fd, "w") as f:
        f.write(key)
    tmp.replace(path)
    return key


class LoginThrottle:
    """Slows password guessing: after ``limit`` failed sign-ins for one username or one address
    within ``window`` seconds, further attempts are refused until the window has passed."""

    def __init__(self, limit: int = 5, window: float = 900.0) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, list[float]] = {}

    def _recent(self, key: str, now: float) -> list[float]:
        times = [t for t in self._failures.get(key, []) if now - t < self.window]
        if times:
            self._failures[key] = times
        else:
            self._failures.pop(key, None)
        return times

    def blocked(self, keys: list[str], now: float) -> bool:
        return any(len(self._recent(k, now)) >= self.limit for k in keys)

    def failed(self, keys: list[str], now: float) -> None:
        for key in keys:
            self._failures.setdefault(key, []).append(now)

    def succeeded(self, keys: list[str]) -> None:
        for key in keys:
            self._failures.pop(key, None)
