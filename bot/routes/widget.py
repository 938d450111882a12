"""The embeddable widget: the one-tag loader, the chat page the loader puts in an iframe, its
static files, and the widget's configuration (greeting and suggested articles)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy import select

from bot.article_search import article_url
from bot.deps import SessionDep, SettingsDep
from bot.models import Article, Message
from bot.schemas import Suggestion, WidgetConfig
from bot.settings import Settings

WIDGET_DIR = Path(__file__).resolve().parents[2] / "web_widget"
STATIC_DIR = WIDGET_DIR / "static"
VERSION = "1"
templates = Jinja2Templates(directory=WIDGET_DIR / "templates")
router = APIRouter(tags=["widget"])
_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")


def frame_ancestors(settings: Settings) -> str:
    if "*" in settings.allowed_origins:
        return "*"
    return " ".join(["'self'", *settings.allowed_origins])


@router.get("/widget/loader.js", include_in_schema=False)
def loader() -> FileResponse:
    return FileResponse(
        STATIC_DIR / "loader.js",
        media_type="text/javascript",
        headers={"Cache-Control": "public, max-age=300", "Access-Control-Allow-Origin": "*"},
    )


@router.get("/widget/frame", response_class=HTMLResponse, include_in_schema=False)
def frame(
    request: Request,
    settings: SettingsDep,
    title: Annotated[str | None, Query(max_length=80)] = None,
    color: Annotated[str | None, Query(max_length=7)] = None,
) -> HTMLResponse:
    """The chat page inside the iframe; only the allowed sites may frame it."""
    response = templates.TemplateResponse(
        request,
        "frame.html",
        {
            "title": (title or "").strip() or settings.widget_title,
            "color": color if color and _HEX.match(color) else settings.widget_color,
            "greeting": settings.widget_greeting,
            "static": "/widget/static",
            "api": "/api/v1",
            "version": VERSION,
        },
    )
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src 'self'; base-uri 'none'; form-action 'self'; "
        f"frame-ancestors {frame_ancestors(settings)}"
    )
    response.headers["Referrer-Policy"] = "strict-origin-when-cross-origin"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@router.get("/api/v1/widget/config", response_model=WidgetConfig, tags=["chat"])
def widget_config(session: SessionDep, settings: SettingsDep) -> WidgetConfig:
    """The greeting and the articles suggested under it."""
    return WidgetConfig(
        title=settings.widget_title,
        greeting=settings.widget_greeting,
        color=settings.widget_color,
        suggestions=suggested_articles(session, settings),
    )


def suggested_articles(session, settings: Settings, count: int = 3) -> list[Suggestion]:
    """The configured articles, else the ones the bot cited most lately, else the first ones."""
    ids = list(settings.widget_suggested_articles)
    if not ids:
        cited = Counter()
        answers = session.scalars(
            select(Message.citations)
            .where(Message.role == "bot", Message.action == "answer")
            .order_by(Message.id.desc())
            .limit(1000)
        )
        for citations in answers:
            for c in (citations or [])[:1]:
                cited[c.get("article_id")] += 1
        ids = [i for i, _ in cited.most_common(count * 2) if i]
    published = select(Article).where(Article.status == "published")
    found = {a.id: a for a in session.scalars(published.where(Article.id.in_(ids)))} if ids else {}
    chosen = [found[i] for i in ids if i in found][:count]
    if len(chosen) < count:
        seen = {a.id for a in chosen}
        more = session.scalars(published.order_by(Article.title).limit(count + len(seen)))
        chosen += [a for a in more if a.id not in seen][: count - len(chosen)]
    return [
        Suggestion(article_id=a.id, title=a.title, url=article_url(settings, a)) for a in chosen
    ]
