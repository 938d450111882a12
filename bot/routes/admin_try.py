""" "Try a question": what the bot would do with a question (decision, scores, passages), against
the published index or with a draft article included as if it were published."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from bot.article_admin import as_source
from bot.article_store import published_docs
from bot.auth import csrf_token
from bot.deps import SessionDep, SettingsDep
from bot.models import Article
from bot.routes.agent import AdminDep
from bot.routes.pages import page
from indexer.build import in_memory_index
from indexer.chunking import IndexDoc

router = APIRouter(prefix="/admin", include_in_schema=False)


def _draft_doc(article: Article, public_url: str) -> IndexDoc:
    src = as_source(article)
    return IndexDoc(
        article_id=src.id,
        revision=article.revision,
        title=src.title,
        body=src.body,
        url=src.url or f"{public_url.rstrip('/')}/help/articles/{src.id}",
        category=src.category,
    )


@router.get("/try", response_class=HTMLResponse)
async def try_question(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    agent: AdminDep,
    q: Annotated[str, Query(max_length=2000)] = "",
    draft: Annotated[str, Query(max_length=128)] = "",
) -> HTMLResponse:
    drafts = session.scalars(
        select(Article).where(Article.status != "published").order_by(Article.title)
    ).all()
    context = {
        "agent": agent,
        "csrf": csrf_token(request.session),
        "q": q,
        "draft": draft,
        "drafts": drafts,
        "decision": None,
        "error": None,
        "titles": {},
    }
    q = " ".join(q.split())
    pipeline = getattr(request.app.state, "pipeline", None)
    if q:
        if pipeline is None or pipeline.holder.live is None:
            context["error"] = "The bot has no index loaded yet: try again in a moment."
            return page(request, "admin/try.html", context, status_code=503)
        live = pipeline.holder.live
        if draft:
            article = session.get(Article, draft)
            if article is None:
                context["error"] = f"There is no article {draft!r}."
                return page(request, "admin/try.html", context, status_code=404)
            docs = [
                d for d in published_docs(session, settings.public_url) if d.article_id != draft
            ]
            docs.append(_draft_doc(article, settings.public_url))
            index = await run_in_threadpool(
                in_memory_index,
                docs,
                live[1],
                live[0],
                settings.passage_max_words,
                settings.bm25_k1,
                settings.bm25_b,
            )
            live = (index, live[1])
        decision = await run_in_threadpool(pipeline.reply, q, 0, live)
        context["decision"] = decision
    return page(request, "admin/try.html", context)
