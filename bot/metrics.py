"""Support metrics over a period of UTC days: conversations and their outcome (deflected, handed
off, other), CSAT, thumbs up/down, first response / handling / resolution times and the articles
the bot cites most. Computed with five queries whatever the period's size: the period's
conversations, their messages (with feedback), their handoffs, the CSAT ratings and the titles
of the top articles; everything else is counted in Python, so it runs the same on SQLite and
PostgreSQL.

Every number belongs to the day its conversation started (UTC), except CSAT, which belongs to
the day the rating was given. :data:`DEFINITIONS` says the same in words, for the dashboard.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.models import Article, Conversation, CsatResponse, Feedback, Handoff, Message

MAX_DAYS = 366
DEFAULT_DAYS = 30
PRESETS = (7, 30, 90)
TOP_ARTICLES = 10
# rows written in one transaction (a handoff and the agent's first reply) can carry timestamps a
# hair apart in either order: an agent message this close before its handoff still answers it
CLOCK_SLACK = timedelta(seconds=2)
_EARLIEST, _LATEST = date(1970, 1, 1), date(9998, 12, 31)
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

DEFINITIONS: dict[str, str] = {
    "conversations": "Conversations started in the period (by their start time, UTC); the rates "
    "below are over those with at least one customer message.",
    "deflection": "Share of conversations with a customer message that the bot handled alone: "
    "at least one bot answer, never handed to a person, and no thumbs-down on any bot message.",
    "handoff_rate": "Share of conversations with a customer message that were handed to a "
    "person at least once (by the bot, the customer's button or an agent stepping in).",
    "csat": "Average of the 1-5 satisfaction ratings given in the period (by the time of the "
    "rating), and how many were given.",
    "feedback": "Thumbs-up / (thumbs-up + thumbs-down) on the bot's messages in the period's "
    "conversations.",
    "bot_first_response": "From a conversation's first customer message to the bot's first "
    "message after it.",
    "human_first_response": "From a live handoff (offline tickets left out) to the first agent "
    "message after it, over the handoffs an agent replied to.",
    "handling": "From an agent claiming a handoff to the handoff's close (closed, or handed back "
    "to the bot); a take-over restarts the clock.",
    "resolution": "From the start of a conversation to its latest close, over the conversations "
    "that are closed now.",
    "articles": "The article each bot answer cites first, counted once per answer: the ten most "
    "cited.",
    "outcomes": "Deflected and handed off as defined above; other: conversations with a "
    "customer message that were neither, and those where the customer wrote nothing.",
    "percentiles": "Times are medians and 90th percentiles (linear interpolation between ranks).",
}


class PeriodError(ValueError):
    """A period the dashboard cannot show; the message says why, in words for the user."""


@dataclass(frozen=True)
class Period:
    """The UTC days from ``start`` to ``end``, both included."""

    start: date
    end: date

    @classmethod
    def last(cls, days: int, today: date) -> Period:
        """The ``days`` days ending with ``today``."""
        return cls(today - timedelta(days=days - 1), today)

    @property
    def length(self) -> int:
        return (self.end - self.start).days + 1

    def dates(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range(self.length)]

    def bounds(self) -> tuple[datetime, datetime]:
        """The first instant of the period and the first instant after it (UTC)."""
        first = datetime.combine(self.start, time(), tzinfo=UTC)
        return first, first + timedelta(days=self.length)


def _parse_date(name: str, value: str) -> date:
    shown = value if len(value) <= 40 else value[:40] + "…"
    if not _ISO_DATE.match(value):
        raise PeriodError(f"“{name}” must be a date written YYYY-MM-DD (got “{shown}”).")
    try:
        parsed = date.fromisoformat(value)
    except ValueError:
        raise PeriodError(f"“{name}” is not a real date (got “{shown}”).") from None
    if not _EARLIEST <= parsed <= _LATEST:
        raise PeriodError(f"“{name}” must be between {_EARLIEST} and {_LATEST}.")
    return parsed


def parse_period(start: str | None, end: str | None, today: date) -> Period:
    """The period a form asked for: ``end`` defaults to today, ``start`` to 30 days ending with
    ``end``. Raises :class:`PeriodError` for a malformed date, start after end, or more than
    :data:`MAX_DAYS` days."""
    start, end = (start or "").strip(), (end or "").strip()
    last = _parse_date("to", end) if end else today
    if not start:
        return Period(max(_EARLIEST, last - timedelta(days=DEFAULT_DAYS - 1)), last)
    first = _parse_date("from", start)
    if first > last:
        raise PeriodError(f"“from” ({first}) is after “to” ({last}).")
    period = Period(first, last)
    if period.length > MAX_DAYS:
        raise PeriodError(f"The period has {period.length} days; choose at most {MAX_DAYS}.")
    return period


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100), interpolating linearly between ranks; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class Durations:
    """Durations in seconds, summarized by median and 90th percentile."""

    values: list[float] = field(default_factory=list)

    def add(self, begin: datetime, finish: datetime) -> None:
        self.values.append(max(0.0, (finish - begin).total_seconds()))

    @property
    def count(self) -> int:
        return len(self.values)

    @property
    def median(self) -> float | None:
        return percentile(self.values, 50)

    @property
    def p90(self) -> float | None:
        return percentile(self.values, 90)


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass
class DayStats:
    """The counts and durations of one day, or of the whole period (``day`` None)."""

    day: date | None
    conversations: int = 0
    engaged: int = 0  # with at least one customer message: the rates' denominator
    deflected: int = 0
    handed_off: int = 0
    offline_tickets: int = 0
    csat_count: int = 0
    csat_total: int = 0
    feedback_up: int = 0
    feedback_down: int = 0
    bot_first_response: Durations = field(default_factory=Durations)
    human_first_response: Durations = field(default_factory=Durations)
    handling: Durations = field(default_factory=Durations)
    resolution: Durations = field(default_factory=Durations)

    @property
    def other(self) -> int:
        return self.conversations - self.deflected - self.handed_off

    @property
    def deflection_rate(self) -> float | None:
        return _ratio(self.deflected, self.engaged)

    @property
    def handoff_rate(self) -> float | None:
        return _ratio(self.handed_off, self.engaged)

    @property
    def csat_average(self) -> float | None:
        return _ratio(self.csat_total, self.csat_count)

    @property
    def feedback_ratio(self) -> float | None:
        return _ratio(self.feedback_up, self.feedback_up + self.feedback_down)


def combine(days: list[DayStats]) -> DayStats:
    """The period's totals: counts added up, durations pooled (medians are not averaged)."""
    total = DayStats(day=None)
    for stats in days:
        for f in fields(DayStats):
            if f.type == "int":
                setattr(total, f.name, getattr(total, f.name) + getattr(stats, f.name))
            elif f.type == "Durations":
                getattr(total, f.name).values.extend(getattr(stats, f.name).values)
    return total


@dataclass(frozen=True)
class CitedArticle:
    article_id: str
    title: str
    count: int
    exists: bool  # the article is still in the database


@dataclass
class Metrics:
    """Everything the dashboard shows for a period."""

    period: Period
    days: list[DayStats]
    total: DayStats
    top_articles: list[CitedArticle]


@dataclass
class _Scan:
    """What one conversation's messages say, gathered in one pass."""

    day: date
    status: str
    created_at: datetime
    updated_at: datetime
    engaged: bool = False
    answered: bool = False
    thumbs_down: bool = False
    handed_off: bool = False
    first_customer: datetime | None = None
    first_bot_reply: datetime | None = None
    agent_times: list[datetime] = field(default_factory=list)


def _utc(value: datetime) -> datetime:
    """SQLite gives back naive datetimes (stored as UTC); PostgreSQL aware ones."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def compute_metrics(session: Session, period: Period) -> Metrics:
    """The dashboard's numbers for ``period`` (five queries)."""
    begin, end = period.bounds()
    in_period = (Conversation.created_at >= begin, Conversation.created_at < end)
    days = {d: DayStats(day=d) for d in period.dates()}
    scans: dict[str, _Scan] = {}
    for conv_id, status, created, updated in session.execute(
        select(
            Conversation.id, Conversation.status, Conversation.created_at, Conversation.updated_at
        ).where(*in_period)
    ):
        created = _utc(created)
        scans[conv_id] = _Scan(created.date(), status, created, _utc(updated or created))
    cited = _read_messages(session, in_period, scans, days)
    _read_handoffs(session, in_period, scans, days)
    for scan in scans.values():
        _count_conversation(scan, days[scan.day])
    for score, created in session.execute(
        select(CsatResponse.score, CsatResponse.created_at).where(
            CsatResponse.created_at >= begin, CsatResponse.created_at < end
        )
    ):
        stats = days.get(_utc(created).date())
        if stats is not None:
            stats.csat_count += 1
            stats.csat_total += int(score)
    daily = list(days.values())
    return Metrics(period, daily, combine(daily), _top_articles(session, cited))


def _read_messages(
    session: Session, in_period: tuple, scans: dict[str, _Scan], days: dict[date, DayStats]
) -> dict[str, tuple[int, str]]:
    """One pass over the period's messages (with their feedback), in the order written: fills
    the scans and the feedback counts; returns article id -> (first citations, cited title)."""
    cited: dict[str, tuple[int, str]] = {}
    messages = (
        select(
            Message.conversation_id,
            Message.role,
            Message.action,
            Message.citations,
            Message.created_at,
            Feedback.rating,
        )
        .join(Conversation, Conversation.id == Message.conversation_id)
        .outerjoin(Feedback, Feedback.message_id == Message.id)
        .where(*in_period)
        .order_by(Message.id)
        .execution_options(yield_per=2000)
    )
    for conv_id, role, action, citations, created, rating in session.execute(messages):
        scan = scans.get(conv_id)
        if scan is None:  # a conversation that started after the first query
            continue
        created = _utc(created)
        if role == "customer":
            scan.engaged = True
            scan.first_customer = scan.first_customer or created
        elif role == "agent":
            scan.agent_times.append(created)
        elif role == "bot":
            if scan.first_customer is not None and scan.first_bot_reply is None:
                scan.first_bot_reply = created
            if action == "answer":
                scan.answered = True
                first = citations[0] if isinstance(citations, list) and citations else None
                if isinstance(first, dict) and first.get("article_id"):
                    article_id = str(first["article_id"])
                    count = cited.get(article_id, (0, ""))[0]
                    cited[article_id] = (count + 1, str(first.get("title") or article_id))
            if rating in ("up", "down"):
                stats = days[scan.day]
                stats.feedback_up += rating == "up"
                stats.feedback_down += rating == "down"
                scan.thumbs_down = scan.thumbs_down or rating == "down"
    return cited


def _read_handoffs(
    session: Session, in_period: tuple, scans: dict[str, _Scan], days: dict[date, DayStats]
) -> None:
    """Marks the handed-off conversations; counts offline tickets, human first response times
    (live handoffs) and handling times (claimed and closed handoffs)."""
    handoffs = (
        select(
            Handoff.conversation_id,
            Handoff.created_at,
            Handoff.claimed_at,
            Handoff.closed_at,
            Handoff.offline,
        )
        .join(Conversation, Conversation.id == Handoff.conversation_id)
        .where(*in_period)
        .order_by(Handoff.id)
    )
    for conv_id, created, claimed, closed, offline in session.execute(handoffs):
        scan = scans.get(conv_id)
        if scan is None:
            continue
        scan.handed_off = True
        stats = days[scan.day]
        created = _utc(created)
        closed = _utc(closed) if closed else None
        if offline:
            stats.offline_tickets += 1
        else:
            reply = _first_reply(scan.agent_times, created, closed)
            if reply is not None:
                stats.human_first_response.add(created, reply)
        if claimed and closed:
            stats.handling.add(_utc(claimed), closed)


def _count_conversation(scan: _Scan, stats: DayStats) -> None:
    """The conversation's outcome, bot first response and resolution time."""
    stats.conversations += 1
    if scan.engaged:
        stats.engaged += 1
        if scan.handed_off:
            stats.handed_off += 1
        elif scan.answered and not scan.thumbs_down:
            stats.deflected += 1
    if scan.first_customer and scan.first_bot_reply:
        stats.bot_first_response.add(scan.first_customer, scan.first_bot_reply)
    if scan.status == "closed":  # closing stamps updated_at; nothing else touches it then
        stats.resolution.add(scan.created_at, scan.updated_at)


def _first_reply(
    agent_times: list[datetime], created: datetime, closed: datetime | None
) -> datetime | None:
    """The first agent message at or after the handoff (and not after its close)."""
    times = sorted(agent_times)
    index = bisect_left(times, created - CLOCK_SLACK)
    if index == len(times):
        return None
    reply = times[index]
    if closed is not None and reply > closed + CLOCK_SLACK:
        return None
    return reply


def _top_articles(session: Session, cited: dict[str, tuple[int, str]]) -> list[CitedArticle]:
    """The most cited articles, ties by id, titled as they are now (as cited if deleted)."""
    top = sorted(cited.items(), key=lambda item: (-item[1][0], item[0]))[:TOP_ARTICLES]
    if not top:
        return []
    ids = [article_id for article_id, _ in top]
    found = session.execute(select(Article.id, Article.title).where(Article.id.in_(ids)))
    titles: dict[str, str] = dict(found.all())
    return [
        CitedArticle(article_id, titles.get(article_id, title), n, article_id in titles)
        for article_id, (n, title) in top
    ]
