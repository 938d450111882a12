"""Signed customer identity: the host site's server vouches for its customer's id.

A token is ``<payload>.<signature>``: the payload is base64url JSON ``{"sub": id, "exp": unix
time}`` (optionally ``"name"``), the signature base64url HMAC-SHA256 of the payload text with the
shared secret. Tokens must expire, and not too far ahead, so a leaked one is not good forever.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time


class IdentityError(ValueError):
    """A customer token that is malformed, forged or expired."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_customer(
    secret: str, customer_id: str, ttl_seconds: int = 3600, now: float | None = None
) -> str:
    """A token for ``customer_id`` valid for ``ttl_seconds`` (what your server does)."""
    payload = {"sub": customer_id, "exp": int((now or time.time()) + ttl_seconds)}
    text = _b64(json.dumps(payload, separators=(",", ":")).encode())
    signature = hmac.new(secret.encode(), text.encode(), hashlib.sha256).digest()
    return f"{text}.{_b64(signature)}"


def verify_customer(secret: str, token: str, max_ttl: int, now: float | None = None) -> str:
    """The customer id the token vouches for; raises :class:`IdentityError` otherwise."""
    if not secret:
        raise IdentityError("signed customer identity is not enabled on this bot")
    try:
        text, signature = token.split(".")
        given = _unb64(signature)
    except (ValueError, TypeError):
        raise IdentityError("malformed customer token") from None
    expected = hmac.new(secret.encode(), text.encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(given, expected):
        raise IdentityError("customer token signature does not match")
    try:
        payload = json.loads(_unb64(text))
        customer_id, expires = payload["sub"], payload["exp"]
    except (ValueError, TypeError, KeyError):
        raise IdentityError("malformed customer token payload") from None
    if not isinstance(customer_id, str) or not customer_id or len(customer_id) > 200:
        raise IdentityError("customer token 'sub' must be a non-empty string")
    if not isinstance(expires, int | float):
        raise IdentityError("customer token 'exp' must be a unix time")
    now = now or time.time()
    if expires < now:
        raise IdentityError("customer token has expired")
    if expires > now + max_ttl:
        raise IdentityError("customer token expires too far ahead")
    return customer_id
