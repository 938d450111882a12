"""Which sites may call the chat API from a browser: an ASGI guard in front of the app."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

GUARDED = ("/api/v1/conversations", "/api/v1/customers", "/api/v1/widget")


class OriginGuard:
    """Refuses (403) browser calls to the chat API from origins that are not allowed.

    The widget's own page is served by the bot, so its calls are same-origin and always pass;
    a script on another site calling the API directly must be on an allowed origin. Requests
    without an Origin header (servers, curl) are not browser cross-site calls and pass.
    """

    def __init__(self, app: ASGIApp, allowed: list[str]) -> None:
        self.app = app
        self.allow_all = "*" in allowed
        self.allowed = set(allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.allow_all and scope["path"].startswith(GUARDED):
            headers = dict(scope["headers"])
            origin = headers.get(b"origin", b"").decode("latin-1")
            # same origin: the Origin's host is the one the request was sent to (compared without
            # the scheme, which a TLS-terminating proxy changes on the way in)
            same = origin.partition("://")[2] == headers.get(b"host", b"").decode("latin-1")
            if origin and not same and origin not in self.allowed:
                body = json.dumps({"detail": f"origin {origin} may not use this chat"}).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 403,
                        "headers": [(b"content-type", b"application/json")],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
