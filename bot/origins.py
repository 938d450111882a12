"""Which sites may call the chat API from a browser: an ASGI guard in front of the app."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

GUARDED = ("/api/v1/conversations", "/api/v1/customers", "/api/v1/widget")


class OriginGuard:
    """Refuses NUL characters in addresses (400), and (403) browser calls to the chat API from origins that are not allowed.

    The widget's own page is served by the bot, so its calls are same-origin and always pass;
    a script on another site calling the API directly must be on an allowed origin. Requests
    without an Origin header (servers, curl) are not browser cross-site calls and pass.
    """

    def __init__(self, app: ASGIApp, allowed: list[str], public_url: str = "") -> None:
        self.app = app
        self.allow_all = "*" in allowed
        self.allowed = {o.lower() for o in allowed}
        if public_url:  # behind a proxy the Host header may not be the public name
            scheme, _, rest = public_url.partition("://")
            self.allowed.add(f"{scheme}://{rest.split('/')[0]}".lower())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
            "\x00" in scope["path"] or b"%00" in scope.get("query_string", b"")
        ):
            # no id, slug or search has a NUL; PostgreSQL would refuse it with an error
            await _refuse(send, 400, "a NUL character is not allowed in the address")
            return
        if scope["type"] == "http" and not self.allow_all and scope["path"].startswith(GUARDED):
            headers = dict(scope["headers"])
            origin = headers.get(b"origin", b"").decode("latin-1").lower()
            # same origin: the Origin's host is the one the request was sent to (compared without
            # the scheme, which a TLS-terminating proxy changes on the way in)
            same = origin.partition("://")[2] == headers.get(b"host", b"").decode("latin-1").lower()
            if origin and not same and origin not in self.allowed:
                await _refuse(send, 403, f"origin {origin} may not use this chat")
                return
        await self.app(scope, receive, send)


async def _refuse(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
