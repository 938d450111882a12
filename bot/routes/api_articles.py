"""REST API for articles (admin API tokens): list, read, create, replace, delete, publish,
archive, and revision history. Changes to published content are re-indexed in the background."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, BackgroundTasks, Depends, HTTPException, Query, Request
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from bot import article_admin as admin
from bot.api_tokens import user_for
from bot.deps import SessionDep
from bot.models import Article, User
from bot.routes.admin_articles import (
    ArticleId,
    CategoryFilter,
    SearchText,
    StatusFilter,
    TagFilter,
    request_reindex,
)
from bot.schemas import UtcDatetime
from indexer.articles import InvalidArticle

router = APIRouter(prefix="/api/v1/articles", tags=["articles (admin)"])


_bearer = HTTPBearer(
    auto_error=False, description="An admin API token from `supportbot token create`."
)


def api_admin(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    """The admin an ``Authorization: Bearer <token>`` header acts as."""
    if credentials is None or not credentials.credentials.strip():
        raise HTTPException(
            401,
            "send an admin API token: Authorization: Bearer sbt_...",
            headers={"WWW-Authenticate": "Bearer"},
        )
    user = user_for(session, credentials.credentials.strip())
    if user is None:
        raise HTTPException(
            401, "unknown or revoked API token", headers={"WWW-Authenticate": "Bearer"}
        )
    if user.role != "admin":
        raise HTTPException(403, "this token's user is not an admin")
    return user


ApiAdmin = Annotated[User, Depends(api_admin)]


class ArticleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(max_length=500)
    body: str = Field(max_length=500_000)
    category: str | None = Field(None, max_length=128, description="Category slug (made if new).")
    tags: list[str] = Field(default_factory=list, max_length=50)
    status: Literal["draft", "published", "archived"] = "draft"
    url: str | None = Field(None, max_length=1000, description="Own link; default the help center.")


class ArticleCreate(ArticleIn):
    id: str | None = Field(None, max_length=128, description="Default: made from the title.")


class ArticlePublic(BaseModel):
    id: str
    title: str
    body: str
    category: str | None
    tags: list[str]
    status: str
    url: str | None
    revision: int
    updated_at: UtcDatetime


class ArticleList(BaseModel):
    total: int
    items: list[ArticlePublic]


class RevisionPublic(BaseModel):
    number: int
    title: str
    status: str
    source: str | None
    created_at: UtcDatetime


def _public(article: Article) -> ArticlePublic:
    src = admin.as_source(article)
    return ArticlePublic(
        id=src.id,
        title=src.title,
        body=src.body,
        category=src.category,
        tags=src.tags,
        status=src.status,
        url=src.url,
        revision=article.revision,
        updated_at=article.updated_at,
    )


def _get(session, article_id: str) -> Article:
    article = session.get(Article, article_id)
    if article is None:
        raise HTTPException(404, f"no article {article_id!r}")
    return article


def _save(session, data: dict, user: User, create: bool = False) -> tuple[Article, str, str | None]:
    try:
        src, outcome, before = admin.save_article(
            session, data, f"api:{user.username}", create=create
        )
    except admin.ArticleExists as exc:
        raise HTTPException(409, f"{exc}: PUT /api/v1/articles/{{id}} changes it") from None
    except InvalidArticle as exc:
        raise HTTPException(422, str(exc)) from None
    session.flush()
    return session.get(Article, src.id), outcome, before


@router.get("", response_model=ArticleList)
def list_articles(
    session: SessionDep,
    _user: ApiAdmin,
    q: SearchText = "",
    category: CategoryFilter = "",
    status: StatusFilter = "",
    tag: TagFilter = "",
    offset: Annotated[int, Query(ge=0, le=10**7)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> ArticleList:
    """Articles matching the filters, most recently changed first."""
    listing = admin.list_articles(session, q.strip(), category, status, tag, offset, limit)
    return ArticleList(total=listing.total, items=[_public(a) for a in listing.articles])


@router.post("", status_code=201, response_model=ArticlePublic)
def create_article(
    body: ArticleCreate,
    session: SessionDep,
    user: ApiAdmin,
    request: Request,
    background: BackgroundTasks,
) -> ArticlePublic:
    data = body.model_dump()
    data["id"] = (data["id"] or "").strip() or admin.slugify(body.title)
    article, _, _ = _save(session, data, user, create=True)
    if article.status == "published":
        request_reindex(request, background)
    return _public(article)


@router.get("/{article_id}", response_model=ArticlePublic)
def read_article(article_id: ArticleId, session: SessionDep, _user: ApiAdmin) -> ArticlePublic:
    return _public(_get(session, article_id))


@router.put("/{article_id}", response_model=ArticlePublic)
def replace_article(
    article_id: ArticleId,
    body: ArticleIn,
    session: SessionDep,
    user: ApiAdmin,
    request: Request,
    background: BackgroundTasks,
) -> ArticlePublic:
    """Create or replace the article; a change becomes a new revision."""
    article, outcome, before = _save(session, {**body.model_dump(), "id": article_id}, user)
    if outcome != "unchanged" and "published" in (before, article.status):
        request_reindex(request, background)
    return _public(article)


@router.delete("/{article_id}", status_code=204)
def delete_article(article_id: ArticleId, session: SessionDep, _user: ApiAdmin) -> Response:
    """Delete an archived article and its history (archive it first: a published article is
    never deleted by one call)."""
    article = _get(session, article_id)
    if article.status != "archived":
        raise HTTPException(
            409, f"{article_id!r} is {article.status}: POST .../archive first, then delete"
        )
    session.delete(article)
    return Response(status_code=204)


def _status_route(status: str):
    def change(
        article_id: ArticleId,
        session: SessionDep,
        user: ApiAdmin,
        request: Request,
        background: BackgroundTasks,
    ) -> ArticlePublic:
        article = _get(session, article_id)
        before = article.status
        outcome = admin.set_status(session, article, status, f"api:{user.username}")
        if outcome != "unchanged" and "published" in (before, status):
            request_reindex(request, background)
        return _public(article)

    return change


for _action, _status in (("publish", "published"), ("archive", "archived"), ("unpublish", "draft")):
    router.add_api_route(
        f"/{{article_id}}/{_action}",
        _status_route(_status),
        methods=["POST"],
        response_model=ArticlePublic,
        summary=f"Set the status to {_status}",
        name=f"{_action}_article",
    )


@router.get("/{article_id}/revisions", response_model=list[RevisionPublic])
def list_revisions(
    article_id: ArticleId, session: SessionDep, _user: ApiAdmin
) -> list[RevisionPublic]:
    article = _get(session, article_id)
    return [
        RevisionPublic(
            number=r.number,
            title=r.title,
            status=r.status,
            source=r.source,
            created_at=r.created_at,
        )
        for r in reversed(article.revisions)
    ]
