"""The support lead's article pages: list with search and filters, the Markdown editor with a
sanitized live preview, status changes, revision history with diffs and rollback. Changes to
published content are re-indexed in the background; the bot moves to the new index by itself."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, BackgroundTasks, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from bot import article_admin as admin
from bot.auth import csrf_token
from bot.deps import SessionDep
from bot.models import ArticleRevision
from bot.routes.agent import AdminDep, CsrfDep
from bot.routes.pages import page, render_markdown
from indexer.articles import STATUSES, InvalidArticle

router = APIRouter(prefix="/admin", include_in_schema=False)
ArticleId = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")]
# the article list's filters, the same for the pages and the API
SearchText = Annotated[str, Query(max_length=200)]
CategoryFilter = Annotated[str, Query(max_length=128)]
StatusFilter = Annotated[str, Query(pattern="^(|draft|published|archived)$")]
TagFilter = Annotated[str, Query(max_length=100)]
FIELDS = ("title", "body", "category", "tags", "url", "status")


def request_reindex(request: Request, background: BackgroundTasks) -> None:
    """After the response (so after the commit), ask for a new index version."""
    reindexer = getattr(request.app.state, "reindexer", None)
    if reindexer is not None:
        background.add_task(reindexer.request)


def _missing(request: Request, agent) -> HTMLResponse:
    return page(request, "agent/not_found.html", {"agent": agent}, status_code=404)


def _touches_index(before: str | None, after: str | None) -> bool:
    return "published" in (before, after)


def _context(request: Request, agent, **values) -> dict:
    reindexer = getattr(request.app.state, "reindexer", None)
    return {
        "agent": agent,
        "csrf": csrf_token(request.session),
        "reindex": reindexer.status if reindexer else None,
        "statuses": STATUSES,
        **values,
    }


@router.get("/articles", response_class=HTMLResponse)
def articles(
    request: Request,
    session: SessionDep,
    agent: AdminDep,
    q: SearchText = "",
    category: CategoryFilter = "",
    status: StatusFilter = "",
    tag: TagFilter = "",
    page_no: Annotated[int, Query(alias="page", ge=1, le=100000)] = 1,
) -> HTMLResponse:
    listing = admin.list_articles(
        session, q.strip(), category, status, tag.strip(), (page_no - 1) * admin.PAGE_SIZE
    )
    filters = {"q": q, "category": category, "status": status, "tag": tag}
    return page(
        request,
        "admin/articles.html",
        _context(
            request,
            agent,
            listing=listing,
            filters=filters,
            page_no=page_no,
            pages=max(1, -(-listing.total // admin.PAGE_SIZE)),
            categories=admin.categories(session),
            tags=admin.tag_names(session),
        ),
    )


def _editor(request: Request, session, agent, article, form: dict, error=None, status_code=200):
    return page(
        request,
        "admin/article_edit.html",
        _context(
            request,
            agent,
            article=article,
            form=form,
            error=error,
            saved=request.query_params.get("saved"),
            categories=admin.categories(session),
        ),
        status_code=status_code,
    )


def _form_of(article) -> dict:
    src = admin.as_source(article)
    return {
        "id": src.id,
        "title": src.title,
        "body": src.body,
        "category": src.category or "",
        "tags": ", ".join(src.tags),
        "url": src.url or "",
        "status": src.status,
    }


@router.get("/articles/new", response_class=HTMLResponse)
def new_article(request: Request, session: SessionDep, agent: AdminDep) -> HTMLResponse:
    empty = {
        "id": "",
        "title": "",
        "body": "",
        "category": "",
        "tags": "",
        "url": "",
        "status": "draft",
    }
    return _editor(request, session, agent, None, empty)


@router.get("/articles/{article_id}", response_class=HTMLResponse)
def edit_article(
    request: Request, article_id: ArticleId, session: SessionDep, agent: AdminDep
) -> HTMLResponse:
    article = session.get(admin.Article, article_id)
    if article is None:
        return _missing(request, agent)
    return _editor(request, session, agent, article, _form_of(article))


async def _posted(request: Request) -> dict:
    form = await request.form()
    data = {}
    for name in ("id", *FIELDS):
        value = form.get(name)
        data[name] = value.replace("\r\n", "\n") if isinstance(value, str) else None
    return data


@router.post("/articles/new", response_class=HTMLResponse)
async def create_article(
    request: Request,
    session: SessionDep,
    agent: AdminDep,
    _csrf: CsrfDep,
    background: BackgroundTasks,
) -> Response:
    data = await _posted(request)
    if not (data.get("id") or "").strip():
        data["id"] = admin.slugify(data.get("title") or "")
    try:
        src, _, _ = admin.save_article(session, data, f"editor:{agent.username}", create=True)
    except admin.ArticleExists as exc:
        return _editor(request, session, agent, None, data, f"{exc}: choose another id", 409)
    except InvalidArticle as exc:
        return _editor(request, session, agent, None, data, str(exc), 422)
    if src.status == "published":
        request_reindex(request, background)
    return RedirectResponse(f"/admin/articles/{quote(src.id)}?saved=created", status_code=303)


@router.post("/articles/{article_id}", response_class=HTMLResponse)
async def update_article(
    request: Request,
    article_id: ArticleId,
    session: SessionDep,
    agent: AdminDep,
    _csrf: CsrfDep,
    background: BackgroundTasks,
) -> Response:
    article = session.get(admin.Article, article_id)
    if article is None:
        return _missing(request, agent)
    data = await _posted(request)
    data["id"] = article_id
    form = await request.form()
    base = form.get("base_revision")
    base_revision = int(base) if isinstance(base, str) and base.isdigit() else None
    try:
        src, outcome, before = admin.save_article(
            session, data, f"editor:{agent.username}", base_revision=base_revision
        )
    except admin.StaleEdit as exc:
        return _editor(request, session, agent, article, data, str(exc), 409)
    except InvalidArticle as exc:
        return _editor(request, session, agent, article, data, str(exc), 422)
    if outcome != "unchanged" and _touches_index(before, src.status):
        request_reindex(request, background)
    return RedirectResponse(f"/admin/articles/{quote(article_id)}?saved={outcome}", status_code=303)


@router.post("/articles/{article_id}/status")
def change_status(
    request: Request,
    article_id: ArticleId,
    session: SessionDep,
    agent: AdminDep,
    _csrf: CsrfDep,
    background: BackgroundTasks,
    status: Annotated[str, Form(pattern="^(draft|published|archived)$")],
) -> Response:
    article = session.get(admin.Article, article_id)
    if article is None:
        return JSONResponse({"detail": "article not found"}, status_code=404)
    before = article.status
    outcome = admin.set_status(session, article, status, f"editor:{agent.username}")
    if outcome != "unchanged" and _touches_index(before, status):
        request_reindex(request, background)
    return RedirectResponse(f"/admin/articles/{quote(article_id)}?saved={status}", status_code=303)


@router.get("/articles/{article_id}/revisions", response_class=HTMLResponse)
def revisions(
    request: Request, article_id: ArticleId, session: SessionDep, agent: AdminDep
) -> HTMLResponse:
    article = session.get(admin.Article, article_id)
    if article is None:
        return _missing(request, agent)
    return page(
        request,
        "admin/revisions.html",
        _context(request, agent, article=article, revisions=list(reversed(article.revisions))),
    )


@router.get("/articles/{article_id}/revisions/{number}", response_class=HTMLResponse)
def revision_diff(
    request: Request,
    article_id: ArticleId,
    number: Annotated[int, Path(ge=1, le=2**31 - 1)],
    session: SessionDep,
    agent: AdminDep,
) -> HTMLResponse:
    article = session.get(admin.Article, article_id)
    try:
        rev = admin.revision(session, article_id, number)
    except admin.ArticleNotFound:
        return _missing(request, agent)
    older: ArticleRevision | None = None
    if number > 1:
        try:
            older = admin.revision(session, article_id, number - 1)
        except admin.ArticleNotFound:
            older = None
    return page(
        request,
        "admin/revision.html",
        _context(
            request,
            agent,
            article=article,
            rev=rev,
            older=older,
            diff=admin.revision_diff(older, rev),
            body=render_markdown(rev.body),
        ),
    )


@router.post("/articles/{article_id}/revisions/{number}/rollback")
def rollback(
    request: Request,
    article_id: ArticleId,
    number: Annotated[int, Path(ge=1, le=2**31 - 1)],
    session: SessionDep,
    agent: AdminDep,
    _csrf: CsrfDep,
    background: BackgroundTasks,
) -> Response:
    article = session.get(admin.Article, article_id)
    if article is None:
        return JSONResponse({"detail": "article not found"}, status_code=404)
    try:
        outcome = admin.rollback(session, article, number, f"rollback:{agent.username}")
    except admin.ArticleNotFound:
        return JSONResponse({"detail": f"no revision {number}"}, status_code=404)
    if outcome != "unchanged" and article.status == "published":
        request_reindex(request, background)
    return RedirectResponse(
        f"/admin/articles/{quote(article_id)}?saved=rolled-back", status_code=303
    )


@router.post("/preview")
async def preview(request: Request, agent: AdminDep, _csrf: CsrfDep) -> JSONResponse:
    """The editor's live preview: the Markdown as the help center shows it, sanitized."""
    form = await request.form()
    body = form.get("body")
    text = body if isinstance(body, str) else ""
    return JSONResponse({"html": str(render_markdown(text[:200_000]))})
