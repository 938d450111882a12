"""Request body limits, enforced while the body streams in (a missing or lying Content-Length
cannot get a larger body onto the disk)."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

UPLOAD_PATHS = ("/admin/import",)
UPLOAD_LIMIT = 110 * 1024 * 1024  # the import page's 100 MB plus the form's own overhead
DEFAULT_LIMIT = 8 * 1024 * 1024


class _TooLarge(BaseException):  # not an Exception: body parsers catch and re-word those
    """Raised from ``receive`` when the body passes the limit."""


class BodyLimit:
    """Answers 413 to a request whose body is larger than its path allows."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = UPLOAD_LIMIT if scope["path"].startswith(UPLOAD_PATHS) else DEFAULT_LIMIT
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _refuse(send, limit)
            return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge()
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except _TooLarge:
            if not started:
                await _refuse(send, limit)


async def _refuse(send: Send, limit: int) -> None:
    body = json.dumps({"detail": f"the request is larger than {limit // 2**20} MB"}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
