"""The metrics dashboard: numbers from a hand-made history checked against values worked out by
hand (SQLite and PostgreSQL), the period parser, and the page and CSV export through the app."""

from __future__ import annotations

import base64
import csv
import io
import re
from datetime import UTC, date, datetime, timedelta
from html import unescape
from pathlib import Path

import pytest
from conftest import SMALL_KB, make_settings, seed, wait_ready
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session

from bot.app import create_app
from bot.auth import create_user
from bot.db import init_db, make_engine, make_sessionmaker, session_scope
from bot.metrics import (
    DEFINITIONS,
    MAX_DAYS,
    Metrics,
    Period,
    PeriodError,
    compute_metrics,
    parse_period,
    percentile,
)
from bot.models import Article, Conversation, CsatResponse, Feedback, Handoff, Message
from bot.routes.admin_metrics import CSV_COLUMNS, csv_text
from bot.settings import Settings

PASSWORD = "correct horse battery"
PERIOD = Period(date(2024, 3, 1), date(2024, 3, 3))
QUERY = "from=2024-03-01&to=2024-03-03"


def at(day: int, hh: int, mm: int = 0, ss: float = 0) -> datetime:
    """A UTC instant in March 2024 (day 0 is 29 February, day 4 is 4 March)."""
    return datetime(2024, 2, 29, tzinfo=UTC) + timedelta(days=day, hours=hh, minutes=mm, seconds=ss)


def cite(*ids: str) -> list[dict]:
    return [
        {"article_id": i, "title": f"{i} (as cited)", "url": f"/help/articles/{i}", "snippet": ""}
        for i in ids
    ]


class History:
    """Writes conversations and their events straight into the database."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.count = 0

    def conversation(self, created: datetime, status: str = "bot", updated=None) -> Conversation:
        self.count += 1
        conv = Conversation(
            id=f"{self.count:032x}",
            token_hash="0" * 64,
            status=status,
            created_at=created,
            updated_at=updated or created,
        )
        self.session.add(conv)
        self.session.flush()
        return conv

    def say(
        self,
        conv: Conversation,
        role: str,
        when: datetime,
        action: str | None = None,
        citations: list[dict] | None = None,
        rating: str | None = None,
    ) -> Message:
        msg = Message(
            conversation_id=conv.id,
            role=role,
            text=f"{role} at {when:%H:%M:%S}",
            action=action,
            citations=citations or [],
            created_at=when,
        )
        if rating:
            msg.feedback = Feedback(rating=rating, created_at=when)
        self.session.add(msg)
        self.session.flush()  # ids follow the order of writing
        return msg

    def handoff(self, conv: Conversation, created, claimed=None, closed=None, offline=False):
        status = "closed" if closed else "claimed" if claimed else "queued"
        self.session.add(
            Handoff(
                conversation_id=conv.id,
                status=status,
                reason="test",
                offline=offline,
                created_at=created,
                claimed_at=claimed,
                closed_at=closed,
            )
        )
        self.session.flush()

    def csat(self, conv: Conversation, score: int, when: datetime) -> None:
        self.session.add(CsatResponse(conversation_id=conv.id, score=score, created_at=when))
        self.session.flush()


def add_articles(session: Session) -> None:
    for article_id, title in [
        ("reset-password", "Reset your password"),
        ("shipping-costs", "Shipping options and costs"),
    ]:
        session.add(Article(id=article_id, title=title, body="...", content_hash="x"))
    session.flush()


def write_history(session: Session) -> None:
    """Eight conversations from 1 to 3 March 2024, and some events just outside."""
    h = History(session)
    # 1 March. c1: answered, thumbs up -> deflected; bot replies in 2 s
    c1 = h.conversation(at(1, 10))
    h.say(c1, "customer", at(1, 10))
    h.say(c1, "bot", at(1, 10, 0, 2), "answer", cite("reset-password", "shipping-costs"), "up")
    # c2: answered but thumbs down -> other; 4 s
    c2 = h.conversation(at(1, 11))
    h.say(c2, "customer", at(1, 11))
    h.say(c2, "bot", at(1, 11, 0, 4), "answer", cite("reset-password"), "down")
    # c3: escalated in 1 s; claimed after 1 min, agent replies after 2 min, closed after 10 min
    c3 = h.conversation(at(1, 12), status="closed", updated=at(1, 12, 11, 1))
    h.say(c3, "customer", at(1, 12))
    h.say(c3, "bot", at(1, 12, 0, 1), "escalate")
    h.handoff(c3, at(1, 12, 0, 1), claimed=at(1, 12, 1, 1), closed=at(1, 12, 11, 1))
    h.say(c3, "agent", at(1, 12, 2, 1))
    h.say(c3, "agent", at(1, 12, 5))
    h.csat(c3, 4, at(1, 12, 12))
    # 2 March. c4: only small talk -> other; 3 s.  c5: the customer never wrote -> other
    c4 = h.conversation(at(2, 9))
    h.say(c4, "customer", at(2, 9))
    h.say(c4, "bot", at(2, 9, 0, 3), "smalltalk")
    h.conversation(at(2, 10))
    # c6: clarify in 5 s (its citations do not count), an answer, then an offline ticket
    c6 = h.conversation(at(2, 13), status="queued")
    h.say(c6, "customer", at(2, 13))
    h.say(c6, "bot", at(2, 13, 0, 5), "clarify", cite("shipping-costs", "gone-article"))
    h.say(c6, "customer", at(2, 13, 1))
    h.say(c6, "bot", at(2, 13, 1, 2), "answer", cite("gone-article"), "up")
    h.say(c6, "bot", at(2, 13, 2), "escalate")
    h.handoff(c6, at(2, 13, 2), offline=True)
    # 3 March. c7: answered in 6 s; an agent steps in (the reply is stamped 0.5 s before the
    # handoff it made), handles it for 10 min; closed 40 min after the start
    c7 = h.conversation(at(3, 8), status="closed", updated=at(3, 8, 40))
    h.say(c7, "customer", at(3, 8))
    h.say(c7, "bot", at(3, 8, 0, 6), "answer", cite("shipping-costs"))
    h.say(c7, "agent", at(3, 8, 29, 59.5))
    h.handoff(c7, at(3, 8, 30), claimed=at(3, 8, 30), closed=at(3, 8, 40))
    h.csat(c7, 2, at(3, 8, 41))
    # c8: escalated in 1 s, handed back unanswered; asks again, second handoff answered in 60 s
    c8 = h.conversation(at(3, 9), status="closed", updated=at(3, 9, 20, 1))
    h.say(c8, "customer", at(3, 9))
    h.say(c8, "bot", at(3, 9, 0, 1), "escalate")
    h.handoff(c8, at(3, 9, 0, 1), closed=at(3, 9, 5))
    h.say(c8, "customer", at(3, 9, 10))
    h.say(c8, "bot", at(3, 9, 10, 1), "escalate")
    h.handoff(c8, at(3, 9, 10, 1), claimed=at(3, 9, 10, 31), closed=at(3, 9, 20, 1))
    h.say(c8, "agent", at(3, 9, 11, 1))
    h.csat(c8, 5, at(3, 9, 21))
    # outside the period: the second before it and the second after it
    c9 = h.conversation(at(0, 23, 59, 59))
    h.say(c9, "customer", at(0, 23, 59, 59))
    h.say(c9, "bot", at(1, 0, 0, 1), "answer", cite("reset-password"), "down")
    h.csat(c9, 1, at(0, 23))
    c10 = h.conversation(at(4, 0))
    h.say(c10, "customer", at(4, 0))
    h.csat(c3, 1, at(4, 0))


@pytest.fixture
def engine(db_url: str):
    engine = make_engine(db_url)
    init_db(engine)
    yield engine
    engine.dispose()


def _compute(engine: Engine, period: Period = PERIOD) -> tuple[Metrics, int]:
    """The metrics, and how many SELECTs computing them took."""
    selects = []

    def count(_conn, _cursor, statement: str, *_args) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            selects.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            return compute_metrics(session, period), len(selects)
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_metrics_match_the_hand_computed_values(engine: Engine) -> None:
    with session_scope(make_sessionmaker(engine)) as session:
        add_articles(session)
        write_history(session)
    metrics, selects = _compute(engine)
    assert selects <= 5  # the same whatever the number of conversations

    t = metrics.total
    assert (t.conversations, t.engaged, t.deflected, t.handed_off, t.other) == (8, 7, 1, 4, 3)
    assert t.deflection_rate == pytest.approx(1 / 7)
    assert t.handoff_rate == pytest.approx(4 / 7)
    assert t.offline_tickets == 1
    assert (t.csat_count, t.csat_average) == (3, pytest.approx(11 / 3))
    assert (t.feedback_up, t.feedback_down, t.feedback_ratio) == (2, 1, pytest.approx(2 / 3))
    # bot: 2, 4, 1, 3, 5, 6, 1 s
    assert (t.bot_first_response.median, t.bot_first_response.p90) == (3, pytest.approx(5.4))
    # people: 120 s (c3), 0 s (c7: clamped), 60 s (c8's second handoff); not c6 (offline)
    assert sorted(t.human_first_response.values) == [0, 60, 120]
    assert (t.human_first_response.median, t.human_first_response.p90) == (60, 108)
    assert sorted(t.handling.values) == [570, 600, 600]
    assert (t.handling.median, t.handling.p90) == (600, 600)
    assert sorted(t.resolution.values) == [661, 1201, 2400]
    assert (t.resolution.median, t.resolution.p90) == (1201, pytest.approx(2160.2))

    one, two, three = metrics.days
    assert [s.day for s in metrics.days] == PERIOD.dates()
    assert (one.conversations, one.engaged, one.deflected, one.handed_off, one.other) == (
        3,
        3,
        1,
        1,
        1,
    )
    assert (two.conversations, two.engaged, two.deflected, two.handed_off, two.other) == (
        3,
        2,
        0,
        1,
        2,
    )
    assert (three.conversations, three.engaged, three.deflected, three.handed_off) == (2, 2, 0, 2)
    assert one.deflection_rate == pytest.approx(1 / 3) and two.deflection_rate == 0
    assert (one.csat_count, one.csat_average, two.csat_average) == (1, 4, None)
    assert (three.csat_count, three.csat_average) == (2, 3.5)
    assert (one.feedback_up, one.feedback_down, two.feedback_up) == (1, 1, 1)
    assert three.feedback_ratio is None
    assert one.bot_first_response.median == 2
    assert three.resolution.median == 1800.5
    assert two.offline_tickets == 1 and not two.human_first_response.values

    top = [(a.article_id, a.title, a.count, a.exists) for a in metrics.top_articles]
    assert top == [
        ("reset-password", "Reset your password", 2, True),  # the title as it is now
        ("gone-article", "gone-article (as cited)", 1, False),  # deleted: the cited title
        ("shipping-costs", "Shipping options and costs", 1, True),
    ]


def test_an_empty_period_has_no_data_and_top_articles_stop_at_ten(engine: Engine) -> None:
    metrics, _ = _compute(engine)
    t = metrics.total
    assert len(metrics.days) == 3 and t.conversations == 0 and metrics.top_articles == []
    assert t.deflection_rate is None and t.csat_average is None
    assert t.bot_first_response.median is None and t.feedback_ratio is None

    with session_scope(make_sessionmaker(engine)) as session:
        h = History(session)
        conv = h.conversation(at(2, 9))
        for n in range(12):
            for _ in range(n + 1):
                h.say(conv, "bot", at(2, 9, n), "answer", cite(f"article-{n:02d}"))
    top = _compute(engine)[0].top_articles
    assert [a.article_id for a in top] == [f"article-{n:02d}" for n in range(11, 1, -1)]
    assert top[0].count == 12


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([], 50) is None
    assert percentile([7], 90) == 7
    assert percentile([4, 1, 3, 2], 50) == 2.5
    assert percentile([10, 20, 30, 40, 50, 60, 70, 80, 90, 100], 90) == pytest.approx(91)


def test_period_defaults_and_validation() -> None:
    today = date(2024, 5, 31)
    assert parse_period(None, None, today) == Period(date(2024, 5, 2), today)
    assert parse_period("", "", today).length == 30
    assert parse_period(None, "2024-01-31", today) == Period(date(2024, 1, 2), date(2024, 1, 31))
    assert parse_period("2024-05-31", "2024-05-31", today).length == 1
    assert parse_period("2023-06-01", "2024-05-31", today).length == MAX_DAYS
    assert Period.last(7, today) == Period(date(2024, 5, 25), today)
    assert Period(date(2024, 3, 1), date(2024, 3, 1)).bounds() == (at(1, 0), at(2, 0))
    for start, end, message in [
        ("yesterday", None, "YYYY-MM-DD"),
        ("2024-02-30", None, "not a real date"),
        ("2024-05-02", "2024-05-01", "after"),
        ("2023-05-31", "2024-05-31", "at most 366"),
        ("0001-01-01", None, "between"),
        ("2024-01-01", "9999-12-31", "between"),
        ("2024-1-1", None, "YYYY-MM-DD"),
    ]:
        with pytest.raises(PeriodError, match=message):
            parse_period(start, end, today)


# --- the page and the CSV through the app ----------------------------------------------------


@pytest.fixture
def app_client(tmp_path: Path, fake_embedder):
    settings: Settings = make_settings(tmp_path)
    seed(settings, SMALL_KB, fake_embedder)
    engine = make_engine(settings.database_url)
    init_db(engine)
    with session_scope(make_sessionmaker(engine)) as session:
        create_user(session, "lead", PASSWORD, "admin", "Lee Lead")
        create_user(session, "alex", PASSWORD, "agent", "Alex")
        write_history(session)
    engine.dispose()
    with TestClient(create_app(settings, embedder=fake_embedder)) as client:
        wait_ready(client)
        yield client


def sign_in(client: TestClient, username: str) -> None:
    form = client.get("/agent/login").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    r = client.post(
        "/agent/login",
        data={"username": username, "password": PASSWORD, "csrf_token": csrf},
        follow_redirects=False,
    )
    assert r.status_code == 303


def test_the_dashboard_shows_the_numbers_charts_and_definitions(app_client: TestClient) -> None:
    r = app_client.get("/admin/metrics", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/agent/login")
    sign_in(app_client, "lead")
    r = app_client.get(f"/admin/metrics?{QUERY}")
    assert r.status_code == 200
    html = r.text
    text = " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())
    for expected in [
        "Conversations 8 7 with a customer message",
        "Deflection rate 14.3% 1 of 7 conversations",
        "Handoff rate 57.1% 4 of 7 conversations; 1 offline ticket",
        "CSAT average 3.67 / 5 3 responses",
        "Feedback ratio 66.7% 2 up, 1 down",
        "First response, bot (median) 3.0 s 90th percentile 5.4 s; 7 replies",
        "First response, person (median) 1 min 0 s 90th percentile 1 min 48 s; 3 handoffs",
        "Handling time (median) 10 min 0 s",
        "Resolution time (median) 20 min 1 s 90th percentile 36 min 0 s; 3 conversations",
    ]:
        assert expected in text
    for definition in DEFINITIONS.values():
        assert definition in text
    assert 'href="/admin/articles/reset-password">Reset your password</a>' in html
    assert "gone-article (as cited) (deleted)" in text
    assert 'value="2024-03-01"' in html and 'value="2024-03-03"' in html
    assert 'href="/admin/metrics.csv?from=2024-03-01&amp;to=2024-03-03"' in html
    images = re.findall(r'<img src="data:image/png;base64,([^"]+)" alt="([^"]+)"', html)
    assert len(images) == 2
    for data, alt in images:
        assert base64.b64decode(data).startswith(b"\x89PNG\r\n\x1a\n")
        assert "2024-03-01 to 2024-03-03" in alt
    assert "8 in all, 1 deflected, 4 handed off and 3 other" in images[0][1]
    # the page's CSP forbids inline scripts and styles
    assert "img-src 'self' data:" in r.headers["content-security-policy"]
    assert not re.search(r"<script(?![^>]*\bsrc=)", html) and "style=" not in html
    assert r.headers["cache-control"] == "no-store"


def test_the_default_period_is_the_last_30_days(app_client: TestClient) -> None:
    sign_in(app_client, "lead")
    html = app_client.get("/admin/metrics").text
    today = datetime.now(UTC).date()
    assert f'value="{today - timedelta(days=29)}"' in html and f'value="{today}"' in html
    assert "no data" in html and html.count("data:image/png;base64,") == 2
    assert f'href="/admin/metrics?from={today - timedelta(days=6)}&amp;to={today}"' in html


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("from=2024-03-05&to=2024-03-01", "is after"),
        ("from=2024-02-30", "not a real date"),
        ("from=march&to=2024-03-01", "YYYY-MM-DD"),
        ("from=2020-01-01&to=2024-03-01", "choose at most 366"),
    ],
)
def test_bad_dates_get_a_clear_message(app_client: TestClient, query: str, message: str) -> None:
    sign_in(app_client, "lead")
    r = app_client.get(f"/admin/metrics?{query}")
    assert r.status_code == 422
    assert 'role="alert"' in r.text and message in r.text and "<img" not in r.text
    r = app_client.get(f"/admin/metrics.csv?{query}")
    assert r.status_code == 422 and message in r.json()["detail"]


def test_csv_has_the_header_and_one_row_per_day(app_client: TestClient) -> None:
    sign_in(app_client, "lead")
    r = app_client.get(f"/admin/metrics.csv?{QUERY}")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    disposition = r.headers["content-disposition"]
    assert disposition == 'attachment; filename="supportbot-metrics-2024-03-01-to-2024-03-03.csv"'
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert [row["date"] for row in rows] == ["2024-03-01", "2024-03-02", "2024-03-03"]
    first, second, third = rows
    assert (first["conversations"], first["deflected"], first["deflection_rate"]) == (
        "3",
        "1",
        "0.3333",
    )
    assert (first["csat_average"], first["bot_first_response_median_s"]) == ("4.00", "2.0")
    assert (second["with_customer_message"], second["offline_tickets"]) == ("2", "1")
    assert second["csat_average"] == "" and second["human_first_response_median_s"] == ""
    assert (third["handed_off"], third["handoff_rate"], third["resolution_median_s"]) == (
        "2",
        "1.0000",
        "1800.5",
    )
    assert (third["human_first_response_median_s"], third["handling_median_s"]) == (
        "30.0",
        "585.0",
    )


def test_csv_text_matches_the_computed_days(engine: Engine) -> None:
    with session_scope(make_sessionmaker(engine)) as session:
        write_history(session)
    metrics, _ = _compute(engine, Period(date(2024, 2, 29), date(2024, 3, 4)))
    lines = csv_text(metrics).splitlines()
    assert lines[0] == ",".join(CSV_COLUMNS) and len(lines) == 6
    assert lines[1].startswith("2024-02-29,1,1,0,0.0000,0,0.0000,0,1,1.00,0,1,0.0000")


def test_agents_who_are_not_admins_get_403(app_client: TestClient) -> None:
    sign_in(app_client, "alex")
    for url in ("/admin/metrics", f"/admin/metrics.csv?{QUERY}"):
        r = app_client.get(url)
        assert r.status_code == 403 and "admin" in r.json()["detail"]
