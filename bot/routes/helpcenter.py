"""The public help center: categories, articles and search (with the bot's own retrieval).
Every citation the bot gives links here."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import func, select

from bot.article_search import find_published
from bot.deps import SessionDep, SettingsDep
from bot.models import Article, Category
from bot.routes.pages import page, render_markdown

router = APIRouter(prefix="/help", tags=["help center"], include_in_schema=False)
PUBLISHED = Article.status == "published"


def _categories(session) -> list[tuple[Category, int]]:
    rows = session.execute(
        select(Category, func.count(Article.id))
        .join(Article, Article.category_id == Category.id)
        .where(PUBLISHED)
        .group_by(Category.id)
        .order_by(Category.name)
    )
    return [(c, n) for c, n in rows]


@router.get("", response_class=HTMLResponse)
def home(request: Request, session: SessionDep, settings: SettingsDep) -> HTMLResponse:
    uncategorised = session.scalars(
        select(Article).where(PUBLISHED, Article.category_id.is_(None)).order_by(Article.title)
    ).all()
    return page(
        request,
        "help/home.html",
        {"categories": _categories(session), "uncategorised": uncategorised, "q": ""},
    )


@router.get("/categories/{slug}", response_class=HTMLResponse)
def category(request: Request, slug: str, session: SessionDep) -> HTMLResponse:
    cat = session.scalar(select(Category).where(Category.slug == slug))
    articles = (
        session.scalars(
            select(Article).where(PUBLISHED, Article.category_id == cat.id).order_by(Article.title)
        ).all()
        if cat
        else []
    )
    if not articles:
        return _not_found(request, "There is no such category in the help center.")
    return page(request, "help/category.html", {"category": cat, "articles": articles, "q": ""})


@router.get("/articles/{article_id}", response_class=HTMLResponse)
def article(request: Request, article_id: str, session: SessionDep) -> HTMLResponse:
    art = session.get(Article, article_id)
    if art is None or art.status != "published":
        return _not_found(request, "This article does not exist or is no longer published.")
    related = []
    if art.category_id is not None:
        related = session.scalars(
            select(Article)
            .where(PUBLISHED, Article.category_id == art.category_id, Article.id != art.id)
            .order_by(Article.title)
            .limit(5)
        ).all()
    return page(
        request,
        "help/article.html",
        {"article": art, "body": render_markdown(art.body), "related": related, "q": ""},
    )


@router.get("/search", response_class=HTMLResponse)
def search(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    q: Annotated[str, Query(max_length=500)] = "",
) -> HTMLResponse:
    """Search with the bot's retrieval; by title and text while the index is still loading."""
    q = " ".join(q.split())
    pipeline = getattr(request.app.state, "pipeline", None)
    results = find_published(session, pipeline, settings, q, 10) if q else []
    return page(request, "help/search.html", {"q": q, "results": results})


def _not_found(request: Request, message: str) -> HTMLResponse:
    return page(request, "help/not_found.html", {"message": message, "q": ""}, status_code=404)
