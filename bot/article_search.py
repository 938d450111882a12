"""Finding published articles for people (help-center search, the console's link picker): the
bot's own retrieval, or while no index is loaded a plain title-and-text match."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from bot.models import Article
from bot.pipeline import Pipeline
from bot.settings import Settings


@dataclass
class Found:
    article_id: str
    title: str
    url: str
    snippet: str


def like_pattern(q: str) -> str:
    """``q`` as a case-folded LIKE pattern that matches it literally (escape character ``\\``)."""
    escaped = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def contains_text(q: str, *columns) -> ColumnElement[bool]:
    """Any of ``columns`` holds ``q``, case-folded and literally (wildcards escaped)."""
    like = like_pattern(q)
    return or_(*(func.lower(column).like(like, escape="\\") for column in columns))


def snippet(text: str, limit: int = 220) -> str:
    text = " ".join(text.replace("#", " ").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def article_url(settings: Settings, article: Article) -> str:
    return article.url or f"{settings.public_url.rstrip('/')}/help/articles/{article.id}"


def find_published(
    session: Session, pipeline: Pipeline | None, settings: Settings, q: str, limit: int
) -> list[Found]:
    """The best published articles for ``q`` (empty: the first ones by title). Retrieval keeps
    the top hit and the others at least half as on-topic as the clarify threshold asks."""
    hits = pipeline.search(q, limit=limit) if q and pipeline is not None and pipeline.ready else []
    if hits:
        return [
            Found(h.article_id, h.title, h.url, snippet(h.passage["text"]))
            for h in hits
            if h is hits[0] or h.evidence >= settings.clarify_threshold / 2
        ]
    query = select(Article).where(Article.status == "published")
    if q:
        query = query.where(contains_text(q, Article.title, Article.body))
    rows = session.scalars(query.order_by(Article.title).limit(limit))
    return [Found(a.id, a.title, article_url(settings, a), snippet(a.body)) for a in rows]
