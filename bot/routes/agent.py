"""The agent console: sign in, the queue of handed-off conversations, a conversation with what
the bot saw, and the actions on it (claim, reply, insert an article link, hand back, close).
Live with server-sent events; the pages also work (more slowly) by polling."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy import select
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from bot import agent_actions
from bot.article_search import find_published
from bot.auth import LoginThrottle, authenticate, csrf_ok, csrf_token
from bot.conversations import InvalidTransition, latest_handoff
from bot.db import session_scope
from bot.deps import SessionDep, SettingsDep
from bot.events import CONSOLE, conversation_topic
from bot.models import Article, Conversation, Handoff, Message, User, utcnow
from bot.routes.pages import page
from bot.schemas import message_public

router = APIRouter(prefix="/agent", tags=["agent console"], include_in_schema=False)
ConversationId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]
FORM_MAX_FILES = 1000  # an upload of more is refused by its route with a clear message
FORM_MAX_PART = 2 * 1024 * 1024  # a text field (an article body is at most 500,000 characters)
SEEN_EVERY = 30.0  # seconds between "still online" stamps while the console's stream is open


class SignInRequired(Exception):
    """Raised by the console's dependencies; the app turns it into a redirect or a 401."""

    def __init__(self, wants_json: bool, next_url: str) -> None:
        self.wants_json = wants_json
        self.next_url = next_url


class CsrfFailed(Exception):
    pass


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "") or request.url.path.startswith(
        "/agent/api"
    )


def current_agent(request: Request, session: SessionDep) -> User:
    user_id = request.session.get("user_id")
    user = session.get(User, user_id) if isinstance(user_id, int) else None
    if user is None or not user.active:
        request.session.pop("user_id", None)
        raise SignInRequired(_wants_json(request), request.url.path)
    user.last_seen_at = utcnow()
    return user


async def check_csrf(request: Request) -> None:
    given = request.headers.get("x-csrf-token")
    if given is None and "form" in request.headers.get("content-type", ""):
        # parsed once and cached by Starlette: the limits here are the ones every form gets
        form = await request.form(max_files=FORM_MAX_FILES, max_part_size=FORM_MAX_PART)
        given = form.get("csrf_token")
    if not csrf_ok(request.session, given if isinstance(given, str) else None):
        raise CsrfFailed()


class AdminRequired(Exception):
    """A signed-in agent asked for a support lead's page or API."""


def current_admin(agent: Annotated[User, Depends(current_agent)]) -> User:
    if agent.role != "admin":
        raise AdminRequired()
    return agent


AgentDep = Annotated[User, Depends(current_agent)]
AdminDep = Annotated[User, Depends(current_admin)]
CsrfDep = Annotated[None, Depends(check_csrf)]


def _load(session, conversation_id: str) -> Conversation:
    conv = session.get(Conversation, conversation_id, with_for_update=True)
    if conv is None:
        raise LookupError("conversation not found")
    return conv


# --- sign in ---------------------------------------------------------------------------------


def _safe_next(value: str | None) -> str:
    ok = (
        value and value.startswith(("/agent", "/admin")) and "//" not in value and "\\" not in value
    )
    return value if ok else "/agent"


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/agent") -> HTMLResponse:
    return page(
        request,
        "agent/login.html",
        {"csrf": csrf_token(request.session), "next": _safe_next(next), "error": None},
    )


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    session: SessionDep,
    _csrf: CsrfDep,
    username: Annotated[str, Form(max_length=100)],
    password: Annotated[str, Form(max_length=1000)],
    next: Annotated[str, Form(max_length=500)] = "/agent",
) -> Response:
    username, password = username.replace("\x00", ""), password.replace("\x00", "")
    throttle: LoginThrottle = request.app.state.login_throttle
    keys = [
        f"user:{username.strip().lower()}",
        f"ip:{request.client.host if request.client else ''}",
    ]
    now = time.monotonic()
    context = {"csrf": csrf_token(request.session), "next": _safe_next(next)}
    if throttle.blocked(keys, now):
        context["error"] = "Too many failed sign-ins. Wait 15 minutes and try again."
        return page(request, "agent/login.html", context, status_code=429)
    user = authenticate(session, username.strip(), password)
    if user is None:
        throttle.failed(keys, now)
        context["error"] = "Wrong username or password."
        return page(request, "agent/login.html", context, status_code=400)
    throttle.succeeded(keys[:1])
    request.session.clear()  # a new session: nothing from before sign-in carries over
    request.session["user_id"] = user.id
    csrf_token(request.session)
    user.last_seen_at = utcnow()
    return RedirectResponse(_safe_next(next), status_code=303)


@router.post("/logout")
def logout(request: Request, session: SessionDep, _csrf: CsrfDep) -> Response:
    user_id = request.session.get("user_id")
    user = session.get(User, user_id) if isinstance(user_id, int) else None
    if user is not None:
        user.last_seen_at = None  # no longer counted as online
    request.session.clear()
    return RedirectResponse("/agent/login", status_code=303)


# --- the queue -------------------------------------------------------------------------------


def queue_rows(session) -> dict[str, list[dict]]:
    """Open handoffs grouped for the queue page: waiting, offline tickets, being handled."""
    handoffs = session.scalars(
        select(Handoff).where(Handoff.status != "closed").order_by(Handoff.created_at)
    ).all()
    groups: dict[str, list[dict]] = {"waiting": [], "offline": [], "claimed": []}
    for h in handoffs:
        first = session.scalar(
            select(Message.text)
            .where(Message.conversation_id == h.conversation_id, Message.role == "customer")
            .order_by(Message.id.desc())
            .limit(1)
        )
        row = {"handoff": h, "preview": " ".join((first or "").split())[:140]}
        if h.status == "claimed":
            groups["claimed"].append(row)
        elif h.offline:
            groups["offline"].append(row)
        else:
            groups["waiting"].append(row)
    return groups


@router.get("", response_class=HTMLResponse)
def queue(request: Request, session: SessionDep, agent: AgentDep) -> HTMLResponse:
    return page(
        request,
        "agent/queue.html",
        {"agent": agent, "csrf": csrf_token(request.session), "groups": queue_rows(session)},
    )


# --- one conversation ------------------------------------------------------------------------


@router.get("/conversations/{conversation_id}", response_class=HTMLResponse)
def conversation(
    request: Request, conversation_id: ConversationId, session: SessionDep, agent: AgentDep
) -> HTMLResponse:
    conv = session.get(Conversation, conversation_id)
    if conv is None:
        return page(request, "agent/not_found.html", {"agent": agent}, status_code=404)
    titles = dict(session.execute(select(Article.id, Article.title)).all())
    return page(
        request,
        "agent/conversation.html",
        {
            "agent": agent,
            "csrf": csrf_token(request.session),
            "conv": conv,
            "handoff": latest_handoff(conv),
            "messages": conv.messages,
            "titles": titles,
            "last_id": conv.messages[-1].id if conv.messages else 0,
        },
    )


@router.post("/conversations/{conversation_id}/reply")
def send_reply(
    request: Request,
    conversation_id: ConversationId,
    session: SessionDep,
    settings: SettingsDep,
    agent: AgentDep,
    _csrf: CsrfDep,
    text: Annotated[str, Form()],
) -> Response:
    text = text.replace("\x00", "").strip()
    if not text:
        return _problem(request, 422, "the reply is empty")
    if len(text) > settings.max_message_chars * 2:
        return _problem(request, 422, "the reply is too long")
    try:
        conv = _load(session, conversation_id)
        message = agent_actions.reply(session, conv, agent, text)
    except LookupError:
        return _problem(request, 404, "conversation not found")
    except InvalidTransition as exc:
        return _problem(request, 409, str(exc))
    if _wants_json(request):
        return JSONResponse(
            {"message": message_public(message, feedback=None), "status": conv.status}
        )
    return RedirectResponse(f"/agent/conversations/{conversation_id}", status_code=303)


@router.post("/conversations/{conversation_id}/typing", status_code=204)
def typing(
    request: Request, conversation_id: ConversationId, agent: AgentDep, _csrf: CsrfDep
) -> Response:
    """Tell the customer's widget the agent is typing (not stored)."""
    request.app.state.broker.publish(
        conversation_topic(conversation_id),
        {"type": "typing", "role": "agent", "author": agent.display_name},
    )
    return Response(status_code=204)


@router.post("/conversations/{conversation_id}/{action}")
def act(
    request: Request,
    conversation_id: ConversationId,
    action: Annotated[str, Path(pattern="^(claim|takeover|release|handback|close)$")],
    session: SessionDep,
    agent: AgentDep,
    _csrf: CsrfDep,
) -> Response:
    """Claim (refused if someone has it), take over, release to the queue, hand back, close."""
    try:
        conv = _load(session, conversation_id)
        if action in ("claim", "takeover"):
            agent_actions.claim(session, conv, agent, take_over=action == "takeover")
        elif action == "release":
            agent_actions.release(session, conv)
        elif action == "handback":
            agent_actions.hand_back(session, conv)
        else:
            agent_actions.close(session, conv)
        session.flush()
    except LookupError:
        return _problem(request, 404, "conversation not found")
    except InvalidTransition as exc:
        return _problem(request, 409, str(exc))
    if _wants_json(request):
        return JSONResponse({"status": conv.status})
    return RedirectResponse(f"/agent/conversations/{conversation_id}", status_code=303)


# --- JSON for the console's script -----------------------------------------------------------


@router.get("/api/conversations/{conversation_id}/messages")
def messages_after(
    conversation_id: ConversationId,
    session: SessionDep,
    agent: AgentDep,
    after: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
) -> JSONResponse:
    conv = session.get(Conversation, conversation_id)
    if conv is None:
        return JSONResponse({"detail": "conversation not found"}, status_code=404)
    rows = session.scalars(
        select(Message)
        .where(Message.conversation_id == conversation_id, Message.id > after)
        .order_by(Message.id)
    )
    return JSONResponse({"status": conv.status, "messages": [message_public(m) for m in rows]})


@router.get("/api/articles")
def find_articles(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    agent: AgentDep,
    q: Annotated[str, Query(max_length=500)] = "",
) -> JSONResponse:
    """Articles to insert as a link in a reply: the bot's retrieval, else a title match."""
    pipeline = getattr(request.app.state, "pipeline", None)
    found = [
        {"id": f.article_id, "title": f.title, "url": f.url}
        for f in find_published(session, pipeline, settings, " ".join(q.split()), 8)
    ]
    base = str(request.base_url).rstrip("/")
    for item in found:  # links the customer can open from anywhere
        if item["url"].startswith("/"):
            item["url"] = base + item["url"]
    return JSONResponse(found)


@router.get("/events")
async def console_events(request: Request, agent: AgentDep) -> EventSourceResponse:
    """Every conversation event, for the queue and open conversations. While it is open the
    agent counts as online (refreshed every 30 s); it ends when the account is disabled."""
    subscription = request.app.state.broker.subscribe(CONSOLE)
    agent_id = agent.id
    sessions = request.app.state.sessionmaker

    def still_here() -> bool:
        with session_scope(sessions) as session:
            user = session.get(User, agent_id)
            if user is None or not user.active:
                return False
            user.last_seen_at = utcnow()
            return True

    async def stream():
        try:
            refreshed = time.monotonic()
            while True:
                wait = max(0.0, SEEN_EVERY - (time.monotonic() - refreshed))
                try:
                    event = await asyncio.wait_for(subscription.get(), wait)
                except TimeoutError:
                    event = None
                if time.monotonic() - refreshed >= SEEN_EVERY:
                    if not await run_in_threadpool(still_here):
                        return
                    refreshed = time.monotonic()
                if event is not None:
                    data = {k: v for k, v in event.items() if k != "type"}
                    yield ServerSentEvent(json.dumps(data), event=event["type"])
        finally:
            subscription.close()

    return EventSourceResponse(
        stream(),
        ping=15,
        headers={"Cache-Control": "no-store"},
        background=BackgroundTask(subscription.close),  # also when the stream never started
    )


def _problem(request: Request, status: int, detail: str) -> Response:
    """A JSON error for the script, else back to the page the form was on, with the error."""
    if _wants_json(request):
        return JSONResponse({"detail": detail}, status_code=status)
    path = request.url.path.rsplit("/", 1)[0]  # /agent/conversations/<id>
    return RedirectResponse(f"{path}?error={quote(detail)}", status_code=303)
