"""Content gaps: the customer questions the bot could not answer well, clustered by meaning.

A *gap question* is a customer message whose bot reply (the next bot message of the
conversation) clarified, escalated because retrieval found nothing good enough, or answered and
was rated thumbs-down. Requests for a person (the gate's ``human_request``, the widget's
"Talk to a person" button) are not content gaps, nor is an escalation because no index was
loaded. Questions a support lead marked handled (:class:`~bot.models.HandledQuestion`) leave the
list.

The questions are embedded with the live embedder and grouped by average-linkage agglomerative
clustering on cosine similarity (deterministic: the same questions give the same clusters).
Everything but :func:`load_gap_questions` is pure, taking rows and vectors, so it is tested with a
fake embedder and with the real model alike.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, OrderedDict, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session, aliased

from bot.models import Article, Feedback, HandledQuestion, Message
from indexer.embedder import Embedder

log = logging.getLogger(__name__)

# Average cosine similarity (all-MiniLM-L6-v2) at or above which questions share a cluster.
# Measured on hand-written customer paraphrases (8 needs x 3-7 wordings + 10 unrelated questions):
# adjusted Rand index 0.95 at 0.5 with average linkage, 0.94 at 0.45, 0.83 at 0.55 and 0.73 at
# 0.6 (too strict: "Pay with BTC?" and "do you accept crypto payments" fall apart); complete
# linkage peaked at 0.91.
SIMILARITY_THRESHOLD = 0.5
MAX_QUESTIONS = 2000  # the most recent gap questions of the period that are clustered
EXAMPLES = 5
REASONS = ("escalated", "clarified", "thumbs_down")
# escalations that say the help center lacked the answer (not "I want a person", not an outage)
CONTENT_ESCALATIONS = frozenset({"low_confidence", "no_match", "unhelpful_turns"})


@dataclass
class GapQuestion:
    """One customer question the bot did not answer well, with why and what it offered."""

    message_id: int
    conversation_id: str
    text: str
    created_at: datetime
    reasons: set[str] = field(default_factory=set)
    articles: list[tuple[str, str]] = field(default_factory=list)  # (id, title) offered/cited


@dataclass
class GapCluster:
    """Questions that mean the same thing, most central first, with counts over the period."""

    questions: list[GapQuestion]
    earlier: int  # questions in the first half of the period
    later: int  # ... and in the second half
    reasons: dict[str, int]
    articles: list[tuple[str, str, int]]  # (id, title, how many of the questions got it)

    @property
    def count(self) -> int:
        return len(self.questions)

    @property
    def title(self) -> str:
        return self.questions[0].text

    @property
    def examples(self) -> list[GapQuestion]:
        """Up to five differently worded questions, most central first."""
        seen: set[str] = set()
        out = []
        for q in self.questions:
            key = q.text.casefold().strip(" ?!.")
            if key not in seen:
                seen.add(key)
                out.append(q)
                if len(out) == EXAMPLES:
                    break
        return out

    @property
    def message_ids(self) -> list[int]:
        return [q.message_id for q in self.questions]

    @property
    def last_asked(self) -> datetime:
        return max(q.created_at for q in self.questions)

    @property
    def trend(self) -> str:
        """'rising', 'falling' or 'steady': the second half of the period against the first."""
        if self.later > self.earlier:
            return "rising"
        if self.later < self.earlier:
            return "falling"
        return "steady"


def _utc(value: datetime) -> datetime:
    """SQLite hands times back without a zone; they are UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def gap_reasons(action: str | None, decision: object, rating: str | None) -> set[str]:
    """Why a bot reply makes its question a content gap (empty: it does not)."""
    reasons: set[str] = set()
    why = decision.get("reason") if isinstance(decision, dict) else None
    if action == "clarify":
        reasons.add("clarified")
    elif action == "escalate" and why in CONTENT_ESCALATIONS:
        reasons.add("escalated")
    if rating == "down" and action in ("answer", "clarify"):
        reasons.add("thumbs_down")
    return reasons


def _offered(citations: object) -> list[tuple[str, str]]:
    out = []
    for c in citations if isinstance(citations, list) else []:
        if isinstance(c, dict) and isinstance(c.get("article_id"), str):
            out.append((c["article_id"], str(c.get("title") or c["article_id"])))
    return out


def _question_before(session: Session, conversation_id: str, before_id: int) -> Message | None:
    """The customer message the latest clarify offer before ``before_id`` was the reply to."""
    offer_id = session.scalar(
        select(func.max(Message.id)).where(
            Message.conversation_id == conversation_id,
            Message.role == "bot",
            Message.action == "clarify",
            Message.id < before_id,
        )
    )
    if offer_id is None:
        return None
    return session.scalar(
        select(Message)
        .where(
            Message.conversation_id == conversation_id,
            Message.role.in_(("customer", "bot")),
            Message.id < offer_id,
        )
        .order_by(Message.id.desc())
        .limit(1)
    )


def load_gap_questions(
    session: Session,
    since: datetime | None = None,
    until: datetime | None = None,
    ids: list[int] | None = None,
    include_handled: bool = False,
    limit: int = MAX_QUESTIONS,
) -> list[GapQuestion]:
    """The gap questions asked in [since, until) (or among ``ids``), most recent first."""
    bot, prev, asked = aliased(Message), aliased(Message), aliased(Message)
    replied_to = (
        select(func.max(prev.id))
        .where(
            prev.conversation_id == bot.conversation_id,
            prev.role.in_(("customer", "bot")),
            prev.id < bot.id,
        )
        .correlate(bot)
        .scalar_subquery()
    )
    query = (
        select(bot, asked, Feedback.rating)
        .select_from(bot)
        .join(asked, asked.id == replied_to)
        .outerjoin(Feedback, Feedback.message_id == bot.id)
        .where(
            bot.role == "bot",
            asked.role == "customer",
            or_(
                bot.action.in_(("clarify", "escalate")),
                and_(bot.action == "answer", Feedback.rating == "down"),
            ),
        )
        .order_by(asked.id.desc())
        .limit(limit)
    )
    if since is not None:  # the reply comes after the question: its bound narrows the scan
        query = query.where(bot.created_at >= since, asked.created_at >= since)
    if until is not None:
        query = query.where(asked.created_at < until)
    if ids is not None:
        query = query.where(asked.id.in_(ids))
    wanted = set(ids or ())
    found: dict[int, GapQuestion] = {}
    for reply, question, rating in session.execute(query).all():
        reasons = gap_reasons(reply.action, reply.decision, rating)
        if not reasons:
            continue
        if isinstance(reply.decision, dict) and reply.decision.get("reason") == "picked":
            # the customer picked an article from a clarify offer: the question is the one
            # that got the offer, not the picked article's title
            original = _question_before(session, reply.conversation_id, question.id)
            if original is None or original.role != "customer":
                continue
            if ids is not None and original.id not in wanted:
                continue
            question = original
        item = found.get(question.id)
        if item is None:
            item = found[question.id] = GapQuestion(
                question.id,
                question.conversation_id,
                " ".join(question.text.split()),
                _utc(question.created_at),
            )
        item.reasons |= reasons
        item.articles += [a for a in _offered(reply.citations) if a not in item.articles]
    if found and not include_handled:
        handled = session.scalars(
            select(HandledQuestion.message_id).where(HandledQuestion.message_id.in_(list(found)))
        )
        for message_id in handled:
            del found[message_id]
    questions = sorted(found.values(), key=lambda q: -q.message_id)
    if since is not None:
        questions = [q for q in questions if q.created_at >= _utc(since)]
    return questions


def cluster_vectors(
    vectors: np.ndarray, threshold: float = SIMILARITY_THRESHOLD
) -> list[list[int]]:
    """Group rows of unit vectors by meaning: average-linkage clustering on cosine similarity,
    cut where the average similarity falls below ``threshold``. Each group lists row numbers,
    most central first; groups are largest first, ties broken by their lowest row number."""
    n = len(vectors)
    if n == 0:
        return []
    if n == 1:
        return [[0]]
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import pdist

    vectors = np.asarray(vectors, dtype=np.float64)
    distances = np.nan_to_num(pdist(vectors, "cosine"), nan=1.0)
    labels = fcluster(linkage(distances, method="average"), t=1.0 - threshold, criterion="distance")
    members: dict[int, list[int]] = defaultdict(list)
    for row, label in enumerate(labels):
        members[int(label)].append(row)
    groups = []
    for rows in members.values():
        sub = vectors[rows]
        centrality = np.round(sub @ sub.mean(axis=0), 6)
        order = sorted(range(len(rows)), key=lambda i: (-centrality[i], rows[i]))
        groups.append([rows[i] for i in order])
    groups.sort(key=lambda g: (-len(g), min(g)))
    return groups


def build_clusters(
    questions: list[GapQuestion],
    vectors: np.ndarray,
    since: datetime,
    until: datetime,
    threshold: float = SIMILARITY_THRESHOLD,
) -> list[GapCluster]:
    """Clusters of ``questions`` (one vector per question), largest first, with their trend
    (first against second half of [since, until)), reasons mix and the articles they got."""
    middle = _utc(since) + (_utc(until) - _utc(since)) / 2
    clusters = []
    for rows in cluster_vectors(vectors, threshold):
        members = [questions[r] for r in rows]
        reasons = Counter(reason for q in members for reason in q.reasons)
        titles: dict[str, str] = {}
        got: Counter[str] = Counter()
        for q in members:
            for article_id, title in q.articles:
                titles.setdefault(article_id, title)
                got[article_id] += 1
        later = sum(1 for q in members if q.created_at >= middle)
        clusters.append(
            GapCluster(
                questions=members,
                earlier=len(members) - later,
                later=later,
                reasons={r: reasons[r] for r in REASONS if reasons[r]},
                articles=[(a, titles[a], n) for a, n in sorted(got.items(), key=_by_count)],
            )
        )
    return clusters


def _by_count(item: tuple[str, int]) -> tuple[int, str]:
    return -item[1], item[0]


class EmbeddingCache:
    """Question vectors by (model, text), so the page embeds only questions it has not seen."""

    def __init__(self, max_items: int = 20000) -> None:
        self.max_items = max_items
        self._items: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def embed(self, embedder: Embedder, texts: list[str]) -> np.ndarray:
        keys = [(embedder.name, t) for t in texts]
        with self._lock:
            missing = list(dict.fromkeys(k[1] for k in keys if k not in self._items))
        if missing:
            fresh = embedder.embed(missing)
            with self._lock:
                for text, vector in zip(missing, fresh, strict=True):
                    self._items[(embedder.name, text)] = vector
                while len(self._items) > self.max_items:
                    self._items.popitem(last=False)
        with self._lock:
            rows = []
            for key in keys:
                vector = self._items.get(key)
                if vector is None:  # pushed out by a concurrent caller: embed it again
                    vector = embedder.embed([key[1]])[0]
                else:
                    self._items.move_to_end(key)
                rows.append(vector)
        if not rows:
            return np.zeros((0, embedder.dim), dtype=np.float32)
        return np.stack(rows).astype(np.float32)


def draft_text(questions: list[str]) -> tuple[str, str]:
    """Title and Markdown body of a draft article for a cluster (questions most central first)."""
    cleaned: dict[str, str] = {}  # one line per wording, in the given order
    for q in questions:
        text = " ".join(q.split())
        if text:
            cleaned.setdefault(text.casefold().strip(" ?!."), text)
    wordings = list(cleaned.values())
    title = wordings[0][:200] if wordings else "New article"
    title = title[:1].upper() + title[1:]
    asked = "\n".join(f"- {q[:500]}" for q in wordings[:10])
    body = (
        "Draft started from the content gaps: customers asked the questions below and the bot "
        "could not answer them. Write the answer here, then delete this note and the list.\n\n"
        f"## What customers asked\n\n{asked}\n"
    )
    return title, body


def unique_article_id(session: Session, base: str) -> str:
    """``base``, or ``base-2``, ``base-3``... whichever no article has yet."""
    taken = set(
        session.scalars(
            select(Article.id).where(or_(Article.id == base, Article.id.like(f"{base}-%")))
        )
    )
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}-{n}"
    return candidate
