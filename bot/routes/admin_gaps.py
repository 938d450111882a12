"""Content gaps for support leads: the questions the bot could not answer, clustered by meaning,
with a draft article started from a cluster and a way to mark a cluster handled."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.article_store import upsert_article
from bot.auth import csrf_token
from bot.deps import SessionDep
from bot.gaps import (
    MAX_QUESTIONS,
    EmbeddingCache,
    GapCluster,
    GapQuestion,
    build_clusters,
    draft_text,
    load_gap_questions,
    unique_article_id,
)
from bot.models import HandledQuestion, User, utcnow
from bot.routes.agent import AdminDep, CsrfDep
from bot.routes.pages import page
from indexer.articles import SourceArticle, slugify

log = logging.getLogger(__name__)
router = APIRouter(prefix="/admin", include_in_schema=False)
PERIODS = (7, 30, 90)
MessageIds = Annotated[str, Form(max_length=MAX_QUESTIONS * 12)]


class BadIds(ValueError):
    """The form's message ids are not a list of content-gap questions."""


def _cache(request: Request) -> EmbeddingCache:
    state = request.app.state
    cache = getattr(state, "gap_vectors", None)
    if cache is None:
        cache = state.gap_vectors = EmbeddingCache()
    return cache


def _clusters(
    request: Request, session: Session, days: int
) -> tuple[list[GapCluster], list[GapQuestion], str | None]:
    """The period's clusters, their questions, and why they could not be clustered (or None)."""
    until = utcnow()
    since = until - timedelta(days=days)
    questions = load_gap_questions(session, since, until)
    session.commit()  # SQLite: release the write lock before the slow part (embedding)
    if not questions:
        return [], [], None
    pipeline = getattr(request.app.state, "pipeline", None)
    live = pipeline.holder.live if pipeline is not None else None
    if live is None:
        reason = (
            "The search index is not loaded yet, so the questions cannot be grouped by meaning. "
            "Build it with `supportbot index`, or wait for the server to finish starting."
        )
        return [], questions, reason
    _, embedder = live
    vectors = _cache(request).embed(embedder, [q.text for q in questions])
    return build_clusters(questions, vectors, since, until), questions, None


@router.get("/gaps", response_class=HTMLResponse)
def gaps_page(
    request: Request,
    session: SessionDep,
    admin: AdminDep,
    days: Annotated[int, Query(ge=1, le=366)] = 30,
    handled: Annotated[int | None, Query(ge=0, le=MAX_QUESTIONS)] = None,
) -> Response:
    """The content gaps of the last ``days`` days, largest cluster first."""
    if days not in PERIODS:
        return JSONResponse({"detail": f"days must be one of {list(PERIODS)}"}, status_code=422)
    clusters, questions, unavailable = _clusters(request, session, days)
    return page(
        request,
        "admin/gaps.html",
        {
            "agent": admin,
            "csrf": csrf_token(request.session),
            "days": days,
            "periods": PERIODS,
            "clusters": clusters,
            "questions": questions,
            "truncated": len(questions) >= MAX_QUESTIONS,
            "max_questions": MAX_QUESTIONS,
            "unavailable": unavailable,
            "handled": handled,
        },
    )


def _parse_ids(raw: str) -> list[int]:
    """'3,1,2' -> [3, 1, 2] (order kept, duplicates dropped); BadIds for anything else."""
    ids: list[int] = []
    for part in raw.replace(" ", "").split(","):
        if not part:
            continue
        if not part.isascii() or not part.isdigit() or len(part) > 12:
            raise BadIds(f"{part[:20]!r} is not a message id")
        ids.append(int(part))
    ids = list(dict.fromkeys(ids))
    if not ids:
        raise BadIds("no message ids were given")
    if len(ids) > MAX_QUESTIONS:
        raise BadIds(f"at most {MAX_QUESTIONS} questions at a time")
    return ids


def _gap_questions(session: Session, raw: str, include_handled: bool) -> list[GapQuestion]:
    """The gap questions the form names, in the form's order; BadIds if any is not one."""
    ids = _parse_ids(raw)
    found = {
        q.message_id: q
        for q in load_gap_questions(
            session, ids=ids, include_handled=include_handled, limit=len(ids) * 2 + 10
        )
    }
    missing = [i for i in ids if i not in found]
    if missing and not include_handled:
        raise BadIds(f"message {missing[0]} is not an open content-gap question")
    if missing:
        raise BadIds(f"message {missing[0]} is not a content-gap question")
    return [found[i] for i in ids]


def _bad(exc: BadIds) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=422)


@router.post("/gaps/draft")
def start_draft(
    session: SessionDep, admin: AdminDep, _csrf: CsrfDep, message_ids: MessageIds
) -> Response:
    """Create a draft article prefilled with the cluster's questions and open it in the editor."""
    try:
        questions = _gap_questions(session, message_ids, include_handled=False)
    except BadIds as exc:
        return _bad(exc)
    title, body = draft_text([q.text for q in questions])
    article_id = unique_article_id(session, slugify(title))
    upsert_article(
        session,
        SourceArticle(id=article_id, title=title, body=body, status="draft", source="content gaps"),
    )
    log.info(
        "%s started draft %s from %d gap questions", admin.username, article_id, len(questions)
    )
    return RedirectResponse(f"/admin/articles/{article_id}", status_code=303)


@router.post("/gaps/handled")
def mark_handled(
    session: SessionDep,
    admin: AdminDep,
    _csrf: CsrfDep,
    message_ids: MessageIds,
    days: Annotated[int, Form()] = 30,
    note: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """Take the cluster's questions off the list (asking it again later makes a new gap)."""
    try:
        questions = _gap_questions(session, message_ids, include_handled=True)
    except BadIds as exc:
        return _bad(exc)
    added = _handle(session, admin, [q.message_id for q in questions], note)
    back = days if days in PERIODS else 30
    return RedirectResponse(f"/admin/gaps?days={back}&handled={added}", status_code=303)


def _handle(session: Session, admin: User, ids: list[int], note: str) -> int:
    """Insert the HandledQuestion rows not there yet; how many were added. A lead marking the
    same questions at the same moment is not an error: their rows are skipped."""
    note_text = " ".join(note.replace("\x00", "").split()) or None
    for _ in range(3):
        done = set(
            session.scalars(
                select(HandledQuestion.message_id).where(HandledQuestion.message_id.in_(ids))
            )
        )
        fresh = [i for i in ids if i not in done]
        try:
            with session.begin_nested():
                session.add_all(
                    HandledQuestion(message_id=i, handled_by=admin.username, note=note_text)
                    for i in fresh
                )
        except IntegrityError:
            continue
        return len(fresh)
    return 0
