"""What the server-rendered pages share: templates (autoescaped), static files, safe Markdown."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import nh3
from fastapi import Request
from fastapi.templating import Jinja2Templates
from markdown_it import MarkdownIt
from markupsafe import Markup

BOT_DIR = Path(__file__).resolve().parents[1]
STATIC_DIR = BOT_DIR / "static"
templates = Jinja2Templates(directory=BOT_DIR / "templates")
_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")
_ALLOWED_URL_SCHEMES = {"http", "https", "mailto"}


def render_markdown(text: str) -> Markup:
    """Article Markdown as HTML that is safe to show: raw HTML off, then sanitized by nh3."""
    html = _markdown.render(text)
    return Markup(nh3.clean(html, url_schemes=_ALLOWED_URL_SCHEMES, link_rel="noopener nofollow"))


def ago(value: datetime | None, now: datetime | None = None) -> str:
    """'3 min', '2 h 5 min', '4 d': how long ago ``value`` was."""
    if value is None:
        return ""
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    seconds = max(0, int(((now or datetime.now(UTC)) - value).total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours = minutes // 60
    if hours < 48:
        return f"{hours} h {minutes % 60} min"
    return f"{hours // 24} d"


def page(request: Request, name: str, context: dict, status_code: int = 200):
    response = templates.TemplateResponse(request, name, context, status_code=status_code)
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


templates.env.filters["ago"] = ago
