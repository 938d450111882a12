"""What support leads do to articles: list and filter, save (a new revision when anything
changed), change status, compare revisions, roll back, export as Markdown with front matter."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import frontmatter
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.article_search import contains_text
from bot.article_store import upsert_article
from bot.models import Article, ArticleRevision, Category, Tag
from indexer.articles import STATUSES, InvalidArticle, SourceArticle, make_article, slugify

PAGE_SIZE = 50
__all__ = ["Article", "slugify"]  # re-exported for the routes


class ArticleNotFound(LookupError):
    pass


class ArticleExists(ValueError):
    """Creating an article whose id is taken (an edit must say which article it changes)."""


class StaleEdit(ValueError):
    """The article changed since the editor opened it: saving would drop someone's change."""


@dataclass
class Listing:
    articles: list[Article]
    total: int


def list_articles(
    session: Session,
    q: str = "",
    category: str = "",
    status: str = "",
    tag: str = "",
    offset: int = 0,
    limit: int = PAGE_SIZE,
) -> Listing:
    """Articles matching the filters, most recently changed first."""
    query = select(Article)
    if q:
        query = query.where(contains_text(q, Article.title, Article.id, Article.body))
    if category:
        query = query.join(Category, Article.category_id == Category.id).where(
            Category.slug == category
        )
    if status:
        query = query.where(Article.status == status)
    if tag:
        query = query.where(Article.tags.any(Tag.name == tag.lower()))
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    rows = session.scalars(
        query.order_by(Article.updated_at.desc(), Article.id).offset(offset).limit(limit)
    ).all()
    return Listing(list(rows), total or 0)


def as_source(article: Article) -> SourceArticle:
    return SourceArticle(
        id=article.id,
        title=article.title,
        body=article.body,
        category=article.category.slug if article.category else None,
        tags=sorted(t.name for t in article.tags),
        status=article.status,
        updated=article.updated_label,
        url=article.url,
        source=article.source or "",
    )


def get_article(session: Session, article_id: str) -> Article:
    article = session.get(Article, article_id)
    if article is None:
        raise ArticleNotFound(article_id)
    return article


def save_article(
    session: Session,
    data: dict,
    source: str,
    create: bool = False,
    base_revision: int | None = None,
) -> tuple[SourceArticle, str, str | None]:
    """Validate ``data`` (id, title, body, category, tags, status, url) and store it.

    Returns the article, what happened (created | updated | unchanged) and its status before
    (None when new). Raises InvalidArticle naming the field, ArticleExists when ``create`` and
    the id (as validated) is taken, StaleEdit when ``base_revision`` is no longer current. The
    article's row is locked, so two saves at once queue instead of clashing.
    """
    src = make_article(data, source)
    before = session.get(Article, src.id, with_for_update={"of": Article})
    if before is not None and create:
        raise ArticleExists(f"an article with id {src.id!r} already exists")
    if before is not None and base_revision is not None and before.revision != base_revision:
        raise StaleEdit(
            f"{src.id!r} changed since you opened it (now revision {before.revision}): "
            "copy your text, reload, and apply it again"
        )
    previous_status = before.status if before is not None else None
    outcome = upsert_article(session, src)
    return src, outcome, previous_status


def set_status(session: Session, article: Article, status: str, source: str) -> str:
    """Draft, publish or archive; a new revision records the change."""
    if status not in STATUSES:
        raise InvalidArticle(f"field 'status' must be one of {', '.join(STATUSES)}")
    src = as_source(article)
    src.status = status
    src.source = source
    return upsert_article(session, src)


def revision(session: Session, article_id: str, number: int) -> ArticleRevision:
    rev = session.scalar(
        select(ArticleRevision).where(
            ArticleRevision.article_id == article_id, ArticleRevision.number == number
        )
    )
    if rev is None:
        raise ArticleNotFound(f"{article_id} revision {number}")
    return rev


def rollback(session: Session, article: Article, number: int, source: str) -> str:
    """Make revision ``number``'s content current again, as a new revision (history is kept).
    The article keeps its current status: rolling back text does not publish or unpublish."""
    rev = revision(session, article.id, number)
    src = SourceArticle(
        id=article.id,
        title=rev.title,
        body=rev.body,
        category=rev.category,
        tags=list(rev.tags or []),
        status=article.status,
        updated=article.updated_label,
        url=rev.url,
        source=source,
    )
    return upsert_article(session, src)


def _fields(rev: ArticleRevision) -> list[str]:
    return [
        f"title: {rev.title}",
        f"status: {rev.status}",
        f"category: {rev.category or ''}",
        f"tags: {', '.join(rev.tags or [])}",
        f"url: {rev.url or ''}",
        "",
        *rev.body.splitlines(),
    ]


def revision_diff(old: ArticleRevision | None, new: ArticleRevision) -> list[tuple[str, str]]:
    """Line diff of two revisions as (kind, text): kind is ' ', '+', '-' or '@' (a hunk)."""
    before = _fields(old) if old is not None else []
    lines = difflib.unified_diff(before, _fields(new), lineterm="", n=3)
    out = []
    for line in list(lines)[2:]:  # skip the ---/+++ file headers
        kind = line[:1] if line[:1] in "+- @" else " "
        out.append((kind, line[1:] if kind != "@" else line))
    return out


def to_markdown(article: Article) -> str:
    """The article as Markdown with YAML front matter, the format `supportbot import` reads."""
    meta = {"id": article.id, "title": article.title, "status": article.status}
    if article.category:
        meta["category"] = article.category.slug
    if article.tags:
        meta["tags"] = sorted(t.name for t in article.tags)
    if article.url:
        meta["url"] = article.url
    if article.updated_label:
        meta["updated"] = article.updated_label
    return frontmatter.dumps(frontmatter.Post(article.body, **meta), sort_keys=False) + "\n"


def categories(session: Session) -> list[Category]:
    return list(session.scalars(select(Category).order_by(Category.name)))


def tag_names(session: Session) -> list[str]:
    return list(session.scalars(select(Tag.name).order_by(Tag.name)))
