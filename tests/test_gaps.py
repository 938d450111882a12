"""Content gaps: which questions count, clustering (fake vectors and the real model), the page,
"Start a draft" and "Mark handled" (SQLite and PostgreSQL for the storage parts)."""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from conftest import SMALL_KB, make_settings, seed, wait_ready
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.app import create_app
from bot.auth import create_user
from bot.db import make_engine, make_sessionmaker, session_scope
from bot.gaps import (
    GapQuestion,
    build_clusters,
    cluster_vectors,
    draft_text,
    gap_reasons,
    load_gap_questions,
)
from bot.models import Article, Conversation, Feedback, HandledQuestion, Message
from bot.settings import Settings

PASSWORD = "lead password 1"
NOW = datetime.now(UTC)
OFFERED = [{"article_id": "shipping-costs", "title": "Shipping options and costs", "url": "/x"}]


# --- what counts as a gap ---------------------------------------------------------------------


def test_gap_reasons() -> None:
    assert gap_reasons("clarify", {"reason": "middle_band"}, None) == {"clarified"}
    assert gap_reasons("escalate", {"reason": "low_confidence"}, None) == {"escalated"}
    assert gap_reasons("escalate", {"reason": "no_match"}, None) == {"escalated"}
    assert gap_reasons("answer", {"reason": "confident"}, "down") == {"thumbs_down"}
    assert gap_reasons("clarify", {}, "down") == {"clarified", "thumbs_down"}
    # a request for a person, the widget's button (no decision), an outage: not content gaps
    assert gap_reasons("escalate", {"reason": "human_request"}, None) == set()
    assert gap_reasons("escalate", None, None) == set()
    assert gap_reasons("escalate", {"reason": "no_index"}, None) == set()
    assert gap_reasons("answer", {"reason": "confident"}, "up") == set()
    assert gap_reasons("smalltalk", {"reason": "thanks"}, "down") == set()


def _conversation(session, turns: list[tuple], at: datetime) -> list[Message]:
    """Store a conversation: turns are (role, text, action, decision, citations, rating)."""
    conv = Conversation(id=uuid.uuid4().hex, token_hash="x", status="bot", created_at=at)
    session.add(conv)
    stored = []
    for n, (role, text, action, decision, citations, rating) in enumerate(turns):
        msg = Message(
            conversation=conv,
            role=role,
            text=text,
            action=action,
            decision=decision,
            citations=citations or [],
            created_at=at + timedelta(seconds=n),
        )
        if rating:
            msg.feedback = Feedback(rating=rating)
        session.add(msg)
        stored.append(msg)
    session.flush()
    return stored


def _ask(session, question: str, action: str, reason: str, at: datetime, rating=None, cites=None):
    """One customer question and the bot's reply; returns the question."""
    return _conversation(
        session,
        [
            ("customer", question, None, None, None, None),
            ("bot", "reply", action, {"reason": reason}, cites, rating),
        ],
        at,
    )[0]


def test_load_gap_questions_picks_the_right_questions(sessions) -> None:
    day = timedelta(days=1)
    with session_scope(sessions) as s:
        escalated = _ask(s, "do you gift wrap", "escalate", "low_confidence", NOW - day)
        clarified = _ask(s, "express price?", "clarify", "middle_band", NOW - day, cites=OFFERED)
        rated_down = _ask(s, "ship to mars", "answer", "confident", NOW - day, "down", OFFERED)
        _ask(s, "talk to a human", "escalate", "human_request", NOW - day)
        _ask(s, "what is the return window", "answer", "confident", NOW - day, "up")
        _ask(s, "hello", "smalltalk", "greeting", NOW - day)
        _ask(s, "anything", "escalate", "no_index", NOW - day)
        old = _ask(s, "an old question", "escalate", "no_match", NOW - 40 * day)
        handled = _ask(s, "already handled", "escalate", "no_match", NOW - day)
        s.add(HandledQuestion(message_id=handled.id, handled_by="lead"))
        # "Talk to a person" after an answered question: the button's reply has no decision
        _conversation(
            s,
            [
                ("customer", "return window?", None, None, None, None),
                ("bot", "30 days", "answer", {"reason": "confident"}, OFFERED, None),
                ("bot", "passing you on", "escalate", None, None, None),
            ],
            NOW - day,
        )
        # a clarify offer, the customer's pick, and a thumbs-down on the picked answer
        picked = _conversation(
            s,
            [
                ("customer", "how fast is shipping", None, None, None, None),
                ("bot", "which one?", "clarify", {"reason": "middle_band"}, OFFERED, None),
                ("customer", "Shipping options and costs", None, None, None, None),
                ("bot", "3-5 days", "answer", {"reason": "picked"}, OFFERED, "down"),
            ],
            NOW - day,
        )[0]
        ids = {
            "escalated": escalated.id,
            "clarified": clarified.id,
            "down": rated_down.id,
            "picked": picked.id,
            "old": old.id,
            "handled": handled.id,
        }
    with session_scope(sessions) as s:
        found = load_gap_questions(s, NOW - timedelta(days=30), NOW + timedelta(minutes=1))
        by_id = {q.message_id: q for q in found}
        assert set(by_id) == {ids["escalated"], ids["clarified"], ids["down"], ids["picked"]}
        assert by_id[ids["escalated"]].reasons == {"escalated"}
        assert by_id[ids["clarified"]].reasons == {"clarified"}
        assert by_id[ids["clarified"]].articles == [
            ("shipping-costs", "Shipping options and costs")
        ]
        assert by_id[ids["down"]].reasons == {"thumbs_down"}
        assert by_id[ids["picked"]].reasons == {"clarified", "thumbs_down"}
        assert by_id[ids["picked"]].text == "how fast is shipping"
        assert [q.message_id for q in found] == sorted(by_id, reverse=True)  # newest first
        # by id (the actions' validation): handled ones only when asked for
        asked = [ids["handled"], ids["old"], ids["escalated"]]
        assert {q.message_id for q in load_gap_questions(s, ids=asked)} == {
            ids["old"],
            ids["escalated"],
        }
        with_handled = load_gap_questions(s, ids=asked, include_handled=True)
        assert {q.message_id for q in with_handled} == set(asked)


# --- clustering -------------------------------------------------------------------------------


def _unit(rows: list[list[float]]) -> np.ndarray:
    m = np.asarray(rows, dtype=np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def test_cluster_vectors_is_deterministic_largest_first_and_central_first() -> None:
    vectors = _unit(
        [
            [1, 0, 0],  # 0: group x
            [0, 1, 0],  # 1: group y
            [0.9, 0.1, 0],  # 2: x
            [0, 0, 1],  # 3: alone
            [0.95, 0.05, 0.0],  # 4: x, between 0 and 2: the most central
            [0.1, 0.9, 0],  # 5: y
        ]
    )
    groups = cluster_vectors(vectors, threshold=0.8)
    assert [set(g) for g in groups] == [{0, 2, 4}, {1, 5}, {3}]
    assert groups[0][0] == 4  # the most central first
    assert cluster_vectors(vectors, threshold=0.8) == groups
    assert cluster_vectors(np.zeros((0, 3))) == []
    assert cluster_vectors(vectors[:1]) == [[0]]
    assert len(cluster_vectors(vectors, threshold=-1.0)) == 1  # everything together


def test_build_clusters_counts_trend_reasons_and_articles() -> None:
    since, until = NOW - timedelta(days=30), NOW
    early, late = NOW - timedelta(days=20), NOW - timedelta(days=2)
    shipping = ("shipping-costs", "Shipping options and costs")
    questions = [
        GapQuestion(1, "c1", "gift wrap?", late, {"escalated"}),
        GapQuestion(2, "c2", "do you gift wrap", late, {"clarified"}, [shipping]),
        GapQuestion(3, "c3", "gift wrapping", early, {"clarified", "thumbs_down"}, [shipping]),
        GapQuestion(4, "c4", "bitcoin", early, {"escalated"}),
        GapQuestion(5, "c5", "Gift wrap", late, {"escalated"}),  # the same wording again
    ]
    vectors = _unit([[1, 0.1], [1, 0], [1, 0.05], [0, 1], [1, 0.1]])
    first, second = build_clusters(questions, vectors, since, until)
    assert first.count == 4 and second.count == 1
    assert (first.earlier, first.later, first.trend) == (1, 3, "rising")
    assert (second.earlier, second.later, second.trend) == (1, 0, "falling")
    assert first.reasons == {"escalated": 2, "clarified": 2, "thumbs_down": 1}
    assert first.articles == [("shipping-costs", "Shipping options and costs", 2)]
    assert sorted(first.message_ids) == [1, 2, 3, 5] and first.last_asked == late
    examples = [q.text.lower().strip("?") for q in first.examples]
    assert len(examples) == 3 and len(set(examples)) == 3  # one example per wording


GIFT = [
    "Can you gift wrap my order?",
    "do you offer gift wrapping",
    "Is gift wrap available for presents?",
    "can I get my order wrapped as a gift",
    "how do I add gift wrapping at checkout",
    "can u wrap it its a present for my mom",
]
ADDRESS = [
    "How do I change my delivery address?",
    "I need to update the shipping address on my order",
    "can i change where my package is delivered",
    "I put the wrong address on my order, how to fix it",
    "moved house, can my parcel go to the new address instead",
]
CRYPTO = [
    "Do you accept bitcoin?",
    "can I pay with cryptocurrency",
    "is crypto payment possible",
    "do you accept crypto payments",
]
SINGLES = ["Do you have a store in Berlin?", "my cat chewed the packaging, is it toxic"]


def test_real_model_groups_paraphrases(minilm) -> None:
    """The seeded set: three needs worded 6, 5 and 4 ways, and two unrelated questions."""
    texts = [*GIFT, *ADDRESS, *CRYPTO, *SINGLES]
    for seed_value in (0, 1, 2):  # the same groups whatever the order the questions came in
        order = list(range(len(texts)))
        random.Random(seed_value).shuffle(order)
        shuffled = [texts[i] for i in order]
        questions = [
            GapQuestion(i, f"c{i}", t, NOW - timedelta(days=1), {"escalated"})
            for i, t in enumerate(shuffled)
        ]
        clusters = build_clusters(questions, minilm.embed(shuffled), NOW - timedelta(days=30), NOW)
        groups = [{q.text for q in c.questions} for c in clusters]
        assert groups[:3] == [set(GIFT), set(ADDRESS), set(CRYPTO)]
        assert [c.count for c in clusters] == [6, 5, 4, 1, 1]
        assert {c.title for c in clusters[3:]} == set(SINGLES)
        assert "gift" in clusters[0].title.lower()  # the most central wording leads


def test_draft_text_lists_the_questions() -> None:
    title, body = draft_text(["do you  gift wrap?", "gift wrapping", " ", "Do you gift wrap"])
    assert title == "Do you gift wrap?"
    assert "## What customers asked" in body
    assert "- do you gift wrap?\n- gift wrapping\n" in body and "Do you gift wrap\n" not in body


# --- the page and its actions -----------------------------------------------------------------


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return make_settings(tmp_path, database_url=db_url)


@pytest.fixture
def lead(settings: Settings, fake_embedder):
    """A ready app with gap questions stored, signed in as an admin."""
    seed(settings, SMALL_KB, fake_embedder)
    engine = make_engine(settings.database_url)
    with session_scope(make_sessionmaker(engine)) as s:
        create_user(s, "lead", PASSWORD, "admin", "Lee")
        create_user(s, "agent1", PASSWORD, "agent", "Ann")
        for n, text in enumerate(
            [
                "can you gift wrap my order",
                "can you gift wrap my order please",
                "gift wrap my order",
            ]
        ):
            _ask(s, text, "escalate", "low_confidence", NOW - timedelta(days=n + 1))
        _ask(
            s,
            "do you accept bitcoin",
            "clarify",
            "middle_band",
            NOW - timedelta(days=2),
            None,
            OFFERED,
        )
        _ask(s, "talk to a human", "escalate", "human_request", NOW - timedelta(days=1))
        _ask(s, "a question from long ago", "escalate", "no_match", NOW - timedelta(days=60))
    engine.dispose()
    with TestClient(create_app(settings, embedder=fake_embedder)) as client:
        wait_ready(client)
        sign_in(client, "lead")
        yield client


def sign_in(client: TestClient, username: str) -> None:
    page = client.get("/agent/login")
    r = client.post(
        "/agent/login",
        data={"username": username, "password": PASSWORD, "csrf_token": _csrf(page.text)},
        follow_redirects=False,
    )
    assert r.status_code == 303


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def _forms(html: str, action: str) -> list[str]:
    """The message_ids of each form posting to ``action``, in page order."""
    pattern = rf'action="{action}".*?name="message_ids" value="([^"]*)"'
    return re.findall(pattern, html, re.DOTALL)


@contextmanager
def _session(client: TestClient) -> Iterator[Session]:
    """A session on the app's database (committed at the end)."""
    engine = make_engine(client.app.state.settings.database_url)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            yield session
    finally:
        engine.dispose()


def test_page_shows_clusters_largest_first(lead: TestClient) -> None:
    page = lead.get("/admin/gaps")
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    html = page.text
    assert "talk to a human" not in html and "a question from long ago" not in html
    assert "4 questions in 2 groups" in html
    assert html.index("gift wrap my order") < html.index("do you accept bitcoin")
    assert "(3 questions)" in html and "(1 question)" in html
    assert "Shipping options and costs" in html  # what the bot offered for the bitcoin one
    assert "handed to a person 3" in html and "clarified 1" in html
    drafts = _forms(html, "/admin/gaps/draft")
    assert [len(ids.split(",")) for ids in drafts] == [3, 1]
    assert "a question from long ago" in lead.get("/admin/gaps?days=90").text
    bad = lead.get("/admin/gaps?days=13")
    assert bad.status_code == 422 and "days" in bad.json()["detail"]


def test_page_without_an_index_lists_the_questions_with_a_message(lead: TestClient) -> None:
    pipeline = lead.app.state.pipeline
    lead.app.state.pipeline = None
    try:
        html = lead.get("/admin/gaps").text
    finally:
        lead.app.state.pipeline = pipeline
    assert "index is not loaded" in html
    assert "can you gift wrap my order please" in html and "/admin/gaps/draft" not in html


def test_only_admins_see_the_gaps(lead: TestClient) -> None:
    agent = TestClient(lead.app)
    signed_out = agent.get("/admin/gaps", follow_redirects=False)
    assert signed_out.status_code == 303 and "/agent/login" in signed_out.headers["location"]
    sign_in(agent, "agent1")
    assert agent.get("/admin/gaps").status_code == 403
    csrf = _csrf(agent.get("/agent").text)
    r = agent.post("/admin/gaps/handled", data={"csrf_token": csrf, "message_ids": "1"})
    assert r.status_code == 403


def test_start_a_draft_from_a_cluster(lead: TestClient) -> None:
    html = lead.get("/admin/gaps").text
    ids = _forms(html, "/admin/gaps/draft")[0]
    r = lead.post(
        "/admin/gaps/draft",
        data={"csrf_token": _csrf(html), "message_ids": ids},
        follow_redirects=False,
    )
    assert r.status_code == 303
    article_id = r.headers["location"].removeprefix("/admin/articles/")
    again = lead.post(
        "/admin/gaps/draft",
        data={"csrf_token": _csrf(html), "message_ids": ids},
        follow_redirects=False,
    )
    assert again.headers["location"] == f"/admin/articles/{article_id}-2"  # a new id each time
    assert lead.get(r.headers["location"]).status_code == 200  # the article editor opens it
    with _session(lead) as s:
        article = s.get(Article, article_id)
        assert article.status == "draft" and article.revision == 1
        assert "gift wrap my order" in article.title.lower()
        for text in ("can you gift wrap my order please", "gift wrap my order"):
            assert f"- {text}\n" in article.body


def test_mark_a_cluster_handled(lead: TestClient) -> None:
    html = lead.get("/admin/gaps").text
    ids = _forms(html, "/admin/gaps/handled")[0]
    r = lead.post(
        "/admin/gaps/handled",
        data={"csrf_token": _csrf(html), "message_ids": ids, "days": "30"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/admin/gaps?days=30&handled=3"
    with _session(lead) as s:
        rows = s.scalars(select(HandledQuestion)).all()
        assert sorted(h.message_id for h in rows) == sorted(int(i) for i in ids.split(","))
        assert {h.handled_by for h in rows} == {"lead"}
    after = lead.get(r.headers["location"]).text
    assert "Marked 3 questions handled" in after
    assert "gift wrap my order" not in after and "1 question in 1 group" in after
    twice = lead.post("/admin/gaps/handled", data={"csrf_token": _csrf(html), "message_ids": ids})
    assert twice.status_code == 200 and "Marked 0 questions handled" in twice.text
    # a handled question cannot start a draft any more
    stale = lead.post("/admin/gaps/draft", data={"csrf_token": _csrf(html), "message_ids": ids})
    assert stale.status_code == 422


TOO_MANY = ",".join(str(i) for i in range(1, 2100))


@pytest.mark.parametrize("message_ids", ["", "abc", "1,,x", "-1", "9" * 20, TOO_MANY, "1" * 30000])
def test_bad_message_ids_are_a_4xx_json(lead: TestClient, message_ids: str) -> None:
    csrf = _csrf(lead.get("/admin/gaps").text)
    for action in ("/admin/gaps/handled", "/admin/gaps/draft"):
        r = lead.post(action, data={"csrf_token": csrf, "message_ids": message_ids})
        assert 400 <= r.status_code < 500 and "detail" in r.json()


def test_ids_that_are_not_gap_questions_are_refused(lead: TestClient) -> None:
    html = lead.get("/admin/gaps").text
    with _session(lead) as s:
        bot_reply = s.scalar(select(Message.id).where(Message.role == "bot").limit(1))
        human = s.scalar(select(Message.id).where(Message.text == "talk to a human"))
    for wrong in (
        str(bot_reply),
        str(human),
        "999999",
        f"{_forms(html, '/admin/gaps/handled')[0]},{human}",
    ):
        r = lead.post("/admin/gaps/handled", data={"csrf_token": _csrf(html), "message_ids": wrong})
        assert r.status_code == 422 and "not" in r.json()["detail"]
    with _session(lead) as s:
        assert s.scalars(select(HandledQuestion)).all() == []


def test_actions_need_the_csrf_token(lead: TestClient) -> None:
    ids = _forms(lead.get("/admin/gaps").text, "/admin/gaps/handled")[0]
    r = lead.post("/admin/gaps/handled", data={"csrf_token": "forged", "message_ids": ids})
    assert r.status_code == 403
    r = lead.post("/admin/gaps/draft", data={"message_ids": ids})
    assert r.status_code == 403
