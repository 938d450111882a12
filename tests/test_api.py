"""The customer chat API end to end, through the TestClient, with the deterministic fake embedder.

Thresholds are set here (answer at 0.72 on confidence, clarify at 0.2 on evidence) so that the fake
embedder's scores for the questions below give a known decision: ANSWER_Q answers from
reset-password (confidence 1.0), CLARIFY_Q lands in the middle band (confidence 0.67, evidence
0.34), OFFTOPIC_Q scores nothing and is handed to a person. If retrieval scoring changes,
re-measure these with the Retriever and move the thresholds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, suppress
from datetime import datetime
from pathlib import Path

import pytest
from conftest import SMALL_KB, make_settings, seed, wait_ready
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from bot.app import create_app
from bot.article_store import import_articles, published_docs
from bot.db import init_db, make_engine, make_sessionmaker, session_scope
from bot.models import Conversation, Feedback, Handoff, Message
from bot.settings import Settings
from indexer.articles import SourceArticle
from indexer.build import build_index
from indexer.embedder import FakeEmbedder

API = "/api/v1/conversations"
ANSWER_Q = "How do I reset my password?"
CLARIFY_Q = "how much does express shipping cost"
OFFTOPIC_Q = "xyzzy"
PUBLISHED = {a.id for a in SMALL_KB if a.status == "published"}
THRESHOLDS = {"answer_threshold": 0.72, "clarify_threshold": 0.2}

TRACK_ORDER = SourceArticle(
    id="track-order",
    title="Track your order",
    body="Every order gets a tracking number by email when it ships.\n\n## Where is my parcel\n"
    "Open the tracking link in that email to follow your parcel with the carrier.",
    category="orders-shipping",
)
TRACK_Q = "where is my parcel tracking number"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Overrides conftest's settings: thresholds that give known decisions with the fake model."""
    return make_settings(tmp_path, **THRESHOLDS)


@pytest.fixture
def app_factory(tmp_path: Path) -> Iterator:
    """Builds extra ready-or-not clients, each with its own database and index folder."""
    with ExitStack() as stack:
        count = 0

        def make(*, articles: list[SourceArticle] | None = SMALL_KB, ready: bool = True, **over):
            nonlocal count
            count += 1
            settings = make_settings(tmp_path / f"app{count}", **{**THRESHOLDS, **over})
            embedder = FakeEmbedder()
            if articles is not None:
                seed(settings, articles, embedder)
            client = stack.enter_context(TestClient(create_app(settings, embedder=embedder)))
            if ready:
                wait_ready(client)
            return client, settings

        yield make


# --- helpers -------------------------------------------------------------------------------


def start(client: TestClient) -> tuple[str, dict[str, str]]:
    r = client.post(API)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "bot"
    assert body["id"] and body["token"]
    return body["id"], {"X-Conversation-Token": body["token"]}


def say(client: TestClient, conv_id: str, headers: dict[str, str], text: str) -> dict:
    r = client.post(f"{API}/{conv_id}/messages", json={"text": text}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def transcript(client: TestClient, conv_id: str, headers: dict[str, str]) -> dict:
    r = client.get(f"{API}/{conv_id}", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def rate(client: TestClient, conv_id: str, headers: dict[str, str], message_id: int, rating: str):
    return client.post(
        f"{API}/{conv_id}/messages/{message_id}/feedback", json={"rating": rating}, headers=headers
    )


def counts(client: TestClient) -> dict[str, int]:
    """Rows per table, to check that a refused request stored nothing."""
    with client.app.state.sessionmaker() as s:
        return {
            m.__tablename__: s.scalar(select(func.count()).select_from(m))
            for m in (Conversation, Message, Feedback, Handoff)
        }


def db_message(client: TestClient, message_id: int) -> Message:
    with client.app.state.sessionmaker() as s:
        msg = s.get(Message, message_id)
        assert msg is not None
        return msg


def handoffs(client: TestClient, conv_id: str) -> list[Handoff]:
    with client.app.state.sessionmaker() as s:
        return list(s.scalars(select(Handoff).where(Handoff.conversation_id == conv_id)))


# --- the happy path ------------------------------------------------------------------------


def test_clear_question_is_answered_with_a_citation_and_stored(client, settings):
    conv, h = start(client)
    reply = say(client, conv, h, ANSWER_Q)

    assert reply["action"] == "answer"
    assert reply["conversation_status"] == "bot"
    assert reply["confidence"] >= settings.answer_threshold
    assert [c["article_id"] for c in reply["citations"]] == ["reset-password"]
    cite = reply["citations"][0]
    assert cite["title"] == "Reset your password"
    assert cite["url"].endswith("/reset-password")
    assert cite["snippet"] and cite["snippet"].split()[0] in reply["text"]
    assert "password" in reply["text"].lower()

    t = transcript(client, conv, h)
    assert t["id"] == conv and t["status"] == "bot"
    assert [(m["role"], m["id"]) for m in t["messages"]] == [
        ("customer", reply["customer_message_id"]),
        ("bot", reply["message_id"]),
    ]
    customer, bot = t["messages"]
    assert customer["text"] == ANSWER_Q and customer["action"] is None
    assert bot["action"] == "answer" and bot["text"] == reply["text"]
    assert bot["citations"] == reply["citations"]
    assert bot["confidence"] == reply["confidence"]

    decision = db_message(client, reply["message_id"]).decision
    assert decision["reason"] == "confident"
    assert decision["answer_threshold"] == settings.answer_threshold
    assert decision["clarify_threshold"] == settings.clarify_threshold
    assert decision["candidates"][0]["article_id"] == "reset-password"
    assert decision["index_version"] == client.get("/health").json()["index_version"]
    assert db_message(client, reply["customer_message_id"]).decision is None


def test_middle_band_offers_two_or_three_articles(client, settings):
    conv, h = start(client)
    reply = say(client, conv, h, CLARIFY_Q)
    assert reply["action"] == "clarify"
    assert settings.clarify_threshold <= reply["confidence"] < settings.answer_threshold
    ids = [c["article_id"] for c in reply["citations"]]
    assert 2 <= len(ids) <= 3 and len(set(ids)) == len(ids)
    assert ids[0] == "shipping-costs"
    assert reply["conversation_status"] == "bot"


def test_transcript_timestamps_carry_a_time_zone(client):
    conv, h = start(client)
    say(client, conv, h, ANSWER_Q)
    t = transcript(client, conv, h)
    stamps = [t["created_at"]] + [m["created_at"] for m in t["messages"]]
    for stamp in stamps:
        assert datetime.fromisoformat(stamp).utcoffset() is not None, stamp


@pytest.mark.parametrize("text", ["hi", "thanks!", "Hello there", "thank you so much"])
def test_smalltalk_gets_a_short_reply_without_citations(client, text):
    conv, h = start(client)
    reply = say(client, conv, h, text)
    assert reply["action"] == "smalltalk"
    assert reply["citations"] == []
    assert reply["text"]
    assert reply["conversation_status"] == "bot"
    assert db_message(client, reply["message_id"]).decision["reason"] in {"greeting", "thanks"}


def test_smalltalk_does_not_break_or_count_in_the_unhelpful_streak(client):
    conv, h = start(client)
    assert say(client, conv, h, CLARIFY_Q)["action"] == "clarify"
    assert say(client, conv, h, "thanks!")["action"] == "smalltalk"
    assert say(client, conv, h, CLARIFY_Q)["action"] == "clarify"
    assert say(client, conv, h, ANSWER_Q)["action"] == "escalate"


# --- handing over to a person --------------------------------------------------------------


@pytest.mark.parametrize("text", ["can I talk to a human?", "agent please"])
def test_asking_for_a_person_escalates_and_then_the_bot_stays_silent(client, text):
    conv, h = start(client)
    reply = say(client, conv, h, text)
    assert reply["action"] == "escalate"
    assert reply["conversation_status"] == "queued"
    assert reply["citations"] == []
    assert reply["text"]

    rows = handoffs(client, conv)
    assert [(r.status, r.reason) for r in rows] == [("queued", "human_request")]
    assert transcript(client, conv, h)["status"] == "queued"

    before = counts(client)
    silent = say(client, conv, h, ANSWER_Q)
    assert silent["action"] == "none"
    assert silent["message_id"] is None and silent["text"] is None
    assert silent["citations"] == [] and silent["confidence"] is None
    assert silent["conversation_status"] == "queued"
    after = counts(client)
    assert after["messages"] == before["messages"] + 1  # only the customer's message
    assert after["handoffs"] == before["handoffs"]  # no second handoff

    last = transcript(client, conv, h)["messages"][-1]
    assert last["role"] == "customer" and last["text"] == ANSWER_Q
    assert last["id"] == silent["customer_message_id"]


def test_offtopic_question_is_handed_over(client):
    conv, h = start(client)
    reply = say(client, conv, h, OFFTOPIC_Q)
    assert reply["action"] == "escalate"
    assert reply["conversation_status"] == "queued"
    assert [r.reason for r in handoffs(client, conv)] == ["low_confidence"]


def _assert_unhelpful_escalation(client, conv, h):
    reply = say(client, conv, h, ANSWER_Q)  # would be answered on its own
    assert reply["action"] == "escalate"
    assert reply["conversation_status"] == "queued"
    assert db_message(client, reply["message_id"]).decision["reason"] == "unhelpful_turns"
    assert [r.reason for r in handoffs(client, conv)] == ["unhelpful_turns"]


def test_two_clarifications_in_a_row_then_escalate(client):
    conv, h = start(client)
    assert say(client, conv, h, CLARIFY_Q)["action"] == "clarify"
    assert say(client, conv, h, CLARIFY_Q)["action"] == "clarify"
    _assert_unhelpful_escalation(client, conv, h)


def test_thumbs_down_answers_count_as_unhelpful(client):
    conv, h = start(client)
    first = say(client, conv, h, ANSWER_Q)
    assert first["action"] == "answer"
    r = rate(client, conv, h, first["message_id"], "down")
    assert r.status_code == 200, r.text
    assert r.json() == {"message_id": first["message_id"], "rating": "down", "comment": None}
    assert say(client, conv, h, CLARIFY_Q)["action"] == "clarify"
    _assert_unhelpful_escalation(client, conv, h)


def test_a_helpful_answer_breaks_the_streak(client):
    conv, h = start(client)
    assert say(client, conv, h, CLARIFY_Q)["action"] == "clarify"
    answer = say(client, conv, h, ANSWER_Q)
    assert answer["action"] == "answer"
    assert rate(client, conv, h, answer["message_id"], "up").status_code == 200
    assert say(client, conv, h, CLARIFY_Q)["action"] == "clarify"
    assert say(client, conv, h, ANSWER_Q)["action"] == "answer"
    assert handoffs(client, conv) == []


def test_feedback_is_shown_and_a_second_rating_replaces_the_first(client):
    conv, h = start(client)
    answer = say(client, conv, h, ANSWER_Q)
    assert rate(client, conv, h, answer["message_id"], "up").status_code == 200
    r = client.post(
        f"{API}/{conv}/messages/{answer['message_id']}/feedback",
        json={"rating": "down", "comment": "did not work"},
        headers=h,
    )
    assert r.status_code == 200
    assert counts(client)["feedback"] == 1
    bot = transcript(client, conv, h)["messages"][-1]
    assert bot["feedback"] == "down"


# --- drafts --------------------------------------------------------------------------------


def test_a_draft_article_is_never_cited(client, app_factory):
    draft = next(a for a in SMALL_KB if a.status == "draft")
    conv, h = start(client)
    for text in (draft.body, draft.title, f"{draft.title}: {draft.body}"):
        reply = say(client, conv, h, text)
        assert draft.id not in {c["article_id"] for c in reply["citations"]}
    assert client.get("/health").json()["articles"] == len(PUBLISHED)

    # a bot that clarifies on everything lists every article it knows: still no draft
    eager, _ = app_factory(answer_threshold=2.0, clarify_threshold=-1.0)
    conv, h = start(eager)
    reply = say(eager, conv, h, f"{draft.title}: {draft.body}")
    assert reply["action"] == "clarify"
    ids = {c["article_id"] for c in reply["citations"]}
    assert ids and ids <= PUBLISHED


# --- bad input -----------------------------------------------------------------------------

BAD_BODIES = {
    "empty text": {"json": {"text": ""}},
    "whitespace only": {"json": {"text": " \n\t  "}},
    "2001 characters": {"json": {"text": "a" * 2001}},
    "control characters only": {"json": {"text": "\x00\x01\x1f"}},
    "missing text": {"json": {}},
    "extra field": {"json": {"text": "hi", "admin": True}},
    "malformed JSON": {
        "content": b'{"text": "hi"',
        "headers": {"content-type": "application/json"},
    },
    "no body": {},
    "text is a number": {"json": {"text": 42}},
    "text is null": {"json": {"text": None}},
    "body is a list": {"json": ["hi"]},
    "body is a string": {"json": "hi"},
    "lone surrogate": {
        "content": b'{"text": "hi \\ud83d there"}',
        "headers": {"content-type": "application/json"},
    },
    "lone surrogate in an extra field": {
        "content": b'{"text": "hi", "\\udc00": "\\ud800"}',
        "headers": {"content-type": "application/json"},
    },
}


@pytest.mark.parametrize("case", BAD_BODIES, ids=list(BAD_BODIES))
def test_bad_message_is_refused_with_422_and_nothing_is_stored(client, case):
    conv, h = start(client)
    kwargs = dict(BAD_BODIES[case])
    headers = {**h, **kwargs.pop("headers", {})}
    before = counts(client)
    r = client.post(f"{API}/{conv}/messages", headers=headers, **kwargs)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["detail"]
    assert counts(client) == before
    assert transcript(client, conv, h)["messages"] == []


def test_longest_allowed_message_is_accepted(client, settings):
    conv, h = start(client)
    say(client, conv, h, "a" * settings.max_message_chars)
    # surrounding whitespace does not count against the limit
    conv, h = start(client)
    say(client, conv, h, "  " + "b" * settings.max_message_chars + "\n")


def test_nul_and_control_characters_do_not_cause_a_500(client):
    conv, h = start(client)
    reply = say(client, conv, h, "How do I reset\x00 my password?\x07")
    assert reply["action"] == "answer"
    stored = transcript(client, conv, h)["messages"][0]["text"]
    assert "\x00" not in stored and "\x07" not in stored
    assert "reset" in stored and "password" in stored


def test_feedback_comment_is_cleaned_of_control_characters(client):
    conv, h = start(client)
    answer = say(client, conv, h, ANSWER_Q)
    r = client.post(
        f"{API}/{conv}/messages/{answer['message_id']}/feedback",
        json={"rating": "down", "comment": "the link\x00 expired\x1b "},
        headers=h,
    )
    assert r.status_code == 200, r.text
    assert r.json()["comment"] == "the link expired"
    with client.app.state.sessionmaker() as s:
        assert s.scalar(select(Feedback.comment)) == "the link expired"


def test_unknown_conversation_is_404_and_stores_nothing(client):
    _, h = start(client)
    before = counts(client)
    unknown = "0" * 32
    assert (
        client.post(f"{API}/{unknown}/messages", json={"text": "hi"}, headers=h).status_code == 404
    )
    assert client.get(f"{API}/{unknown}", headers=h).status_code == 404
    r = client.post(f"{API}/{unknown}/messages/1/feedback", json={"rating": "up"}, headers=h)
    assert r.status_code == 404
    assert r.json()["detail"]
    assert counts(client) == before


def test_missing_token_is_401_and_stores_nothing(client):
    conv, h = start(client)
    answer = say(client, conv, h, ANSWER_Q)
    before = counts(client)
    calls = [
        ("post", f"{API}/{conv}/messages", {"text": "hi"}),
        ("get", f"{API}/{conv}", None),
        ("post", f"{API}/{conv}/messages/{answer['message_id']}/feedback", {"rating": "down"}),
    ]
    for method, url, body in calls:
        for headers in ({}, {"X-Conversation-Token": ""}):
            r = client.request(method, url, json=body, headers=headers)
            assert r.status_code == 401, (url, headers, r.text)
            assert r.json()["detail"]
    assert counts(client) == before


def test_another_conversations_token_is_403_and_stores_nothing(client):
    mine, mine_h = start(client)
    answer = say(client, mine, mine_h, ANSWER_Q)
    _, other_h = start(client)
    before = counts(client)
    r = client.post(f"{API}/{mine}/messages", json={"text": "hi"}, headers=other_h)
    assert r.status_code == 403 and r.json()["detail"]
    assert client.get(f"{API}/{mine}", headers=other_h).status_code == 403
    assert rate(client, mine, other_h, answer["message_id"], "down").status_code == 403
    garbage = {"X-Conversation-Token": "not-a-token"}
    assert client.get(f"{API}/{mine}", headers=garbage).status_code == 403
    assert counts(client) == before
    assert transcript(client, mine, mine_h)["messages"][-1]["feedback"] is None


def test_feedback_errors_store_nothing(client):
    conv, h = start(client)
    answer = say(client, conv, h, ANSWER_Q)
    other, other_h = start(client)
    other_answer = say(client, other, other_h, ANSWER_Q)
    before = counts(client)

    r = rate(client, conv, h, answer["customer_message_id"], "up")
    assert r.status_code == 422 and r.json()["detail"]
    r = rate(client, conv, h, 10**9, "up")
    assert r.status_code == 404 and r.json()["detail"]
    r = rate(client, conv, h, other_answer["message_id"], "up")  # not in this conversation
    assert r.status_code == 404
    url = f"{API}/{conv}/messages/{answer['message_id']}/feedback"
    for body in (
        {"rating": "meh"},
        {"rating": "UP"},
        {},
        {"rating": "up", "extra": 1},
        {"rating": "up", "comment": "x" * 2001},
        ["up"],
        '{"rating": "\\ud83d"}',
        '{"rating": "up", "comment": "bad \\udfff"}',
    ):
        kwargs = {"content": body.encode()} if isinstance(body, str) else {"json": body}
        r = client.post(url, headers={**h, "content-type": "application/json"}, **kwargs)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["detail"]
    r = client.post(
        f"{API}/{conv}/messages/not-a-number/feedback", json={"rating": "up"}, headers=h
    )
    assert r.status_code == 422
    assert counts(client) == before


# --- readiness and index switching -----------------------------------------------------------


def test_health_is_503_until_an_index_is_built_then_200(app_factory, fake_embedder):
    client, settings = app_factory(articles=None, ready=False)
    assert client.app.state.loaded.wait(30), "the loader thread never finished"
    r = client.get("/health")
    assert r.status_code == 503
    assert r.json()["status"] == "starting"
    assert "index" in r.json()["detail"]

    conv, h = start(client)  # conversations can start; messages wait for the index
    before = counts(client)
    r = client.post(f"{API}/{conv}/messages", json={"text": ANSWER_Q}, headers=h)
    assert r.status_code == 503 and r.json()["detail"]
    assert counts(client) == before

    seed(settings, SMALL_KB, fake_embedder)
    wait_ready(client, timeout=30)
    body = client.get("/health").json()
    assert body["status"] == "ok"
    assert body["articles"] == len(PUBLISHED)
    assert body["model"] == fake_embedder.name
    reply = say(client, conv, h, ANSWER_Q)
    assert reply["action"] == "answer"
    assert reply["citations"][0]["article_id"] == "reset-password"


class OtherModel(FakeEmbedder):
    name = "another-model"


def test_an_index_built_with_another_model_is_never_served(tmp_path, fake_embedder):
    settings = make_settings(tmp_path, **THRESHOLDS)
    seed(settings, SMALL_KB, fake_embedder)
    app = create_app(settings, embedder=OtherModel(dim=128))
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.app.state.loaded.wait(30)
        assert "another-model" in client.get("/health").json()["detail"]
        # what the watcher thread does every index_check_seconds (refusing by raising is fine)
        with suppress(Exception):
            client.app.state.pipeline.holder.refresh()
        assert client.get("/health").status_code == 503
        conv, h = start(client)
        r = client.post(f"{API}/{conv}/messages", json={"text": ANSWER_Q}, headers=h)
        assert r.status_code == 503


def _import(settings: Settings, articles: list[SourceArticle]) -> None:
    engine = make_engine(settings.database_url)
    init_db(engine)
    with session_scope(make_sessionmaker(engine)) as session:
        report = import_articles(session, articles)
    engine.dispose()
    assert not report.errors, report.errors


def _build(settings: Settings) -> str:
    engine = make_engine(settings.database_url)
    with session_scope(make_sessionmaker(engine)) as session:
        docs = published_docs(session)
    engine.dispose()
    return build_index(docs, settings.index_dir, FakeEmbedder()).version


def _ask_once(client: TestClient, text: str) -> dict:
    conv, h = start(client)
    return say(client, conv, h, text)


def test_new_index_version_is_picked_up_and_the_switch_fails_no_request(client, settings):
    old_version = client.get("/health").json()["index_version"]
    before = _ask_once(client, TRACK_Q)
    assert "track-order" not in {c["article_id"] for c in before["citations"]}
    # the article is stored first: only the index build runs during the burst of requests
    _import(settings, [TRACK_ORDER])

    stop = threading.Event()
    failures: list[str] = []
    done = [0]
    lock = threading.Lock()

    def hammer() -> None:
        conv, h = start(client)
        while not stop.is_set():
            r = client.post(f"{API}/{conv}/messages", json={"text": ANSWER_Q}, headers=h)
            ok = r.status_code == 200 and r.json()["action"] == "answer"
            ok = ok and r.json()["citations"][0]["article_id"] == "reset-password"
            with lock:
                done[0] += 1
                if not ok:
                    failures.append(f"{r.status_code} {r.text[:200]}")

    with ThreadPoolExecutor(max_workers=4) as pool:
        workers = [pool.submit(hammer) for _ in range(3)]
        # wait until the burst is under way before switching the index
        deadline = time.monotonic() + 30
        while done[0] < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        started_with = done[0]
        builder = pool.submit(_build, settings)
        try:
            new_version = builder.result(timeout=60)
            deadline = time.monotonic() + 30
            while True:
                reply = _ask_once(client, TRACK_Q)
                if reply["citations"] and reply["citations"][0]["article_id"] == "track-order":
                    break
                assert time.monotonic() < deadline, "the new index version was never picked up"
                time.sleep(0.05)
        finally:
            stop.set()
            for w in workers:
                w.result(timeout=60)

    assert failures == []
    assert done[0] > started_with, "no request ran during the switch"
    assert reply["action"] in {"answer", "clarify"}
    health = client.get("/health").json()
    assert health["index_version"] == new_version != old_version
    assert health["articles"] == len(PUBLISHED) + 1


# --- documentation -------------------------------------------------------------------------


def test_openapi_lists_the_chat_paths(client):
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    assert "post" in paths[API]
    assert "post" in paths[API + "/{conversation_id}/messages"]
    assert "get" in paths[API + "/{conversation_id}"]
    assert "post" in paths[API + "/{conversation_id}/messages/{message_id}/feedback"]
    assert "get" in paths["/health"]
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_a_reply_worked_out_before_a_newer_message_landed_is_worked_out_again(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bot thinks without holding the database; if another message of the conversation is
    stored meanwhile (a double submit, a second tab), the reply is worked out again from the
    conversation as it is now, so the unhelpful-turn count and clarify picks stay right."""
    from bot.db import session_scope
    from bot.models import Message
    from bot.routes import chat

    conv_id, headers = start(client)
    calls: list[str] = []
    real = chat.decide_reply

    def meanwhile(pipeline, text, *args):
        calls.append(text)
        if len(calls) == 1:  # another request stores a message while the bot thinks
            with session_scope(client.app.state.sessionmaker) as s:
                s.add(Message(conversation_id=conv_id, role="customer", text="are you there?"))
        return real(pipeline, text, *args)

    monkeypatch.setattr(chat, "decide_reply", meanwhile)
    pipeline = client.app.state.pipeline
    asked: list[str] = []
    real_reply = pipeline.reply
    monkeypatch.setattr(
        pipeline, "reply", lambda text, *a, **k: asked.append(text) or real_reply(text, *a, **k)
    )
    r = client.post(
        f"/api/v1/conversations/{conv_id}/messages", json={"text": "refund"}, headers=headers
    )
    assert r.status_code == 200, r.text
    assert calls == ["refund"]
    assert asked == ["refund", "refund"]  # worked out again, under the lock, after the change
    texts = [
        m["text"]
        for m in client.get(f"/api/v1/conversations/{conv_id}", headers=headers).json()["messages"]
    ]
    assert texts[:2] == ["are you there?", "refund"] and len(texts) == 3


def test_a_rating_changed_while_the_bot_thinks_is_taken_into_account(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Turning a thumbs-up into a thumbs-down keeps the rating's id, but it changes the
    unhelpful streak: the reply is worked out again with the new streak."""
    from bot.routes import chat

    conv_id, headers = start(client)
    answer = say(client, conv_id, headers, ANSWER_Q)
    assert rate(client, conv_id, headers, answer["message_id"], "up").status_code == 200
    real = chat.decide_reply
    calls: list[int] = []

    def meanwhile(pipeline, text, streak, *args):
        calls.append(streak)
        if len(calls) == 1:  # the customer changes their rating in another tab
            with session_scope(client.app.state.sessionmaker) as s:
                s.scalars(select(Feedback)).one().rating = "down"
        return real(pipeline, text, streak, *args)

    monkeypatch.setattr(chat, "decide_reply", meanwhile)
    asked: list[int] = []
    pipeline = client.app.state.pipeline
    real_reply = pipeline.reply
    monkeypatch.setattr(
        pipeline, "reply", lambda text, streak=0: asked.append(streak) or real_reply(text, streak)
    )
    say(client, conv_id, headers, ANSWER_Q)
    assert calls == [0]
    assert asked == [0, 1]  # worked out again, under the lock, with the down rating


def test_a_plain_reply_is_stored_by_the_core_path_and_a_handoff_by_the_orm_path(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bot.reply_write stores the common turn; the ORM path still does everything else."""
    from bot.routes import chat

    orm_calls: list[str] = []
    real = chat.post_customer_message
    monkeypatch.setattr(
        chat,
        "post_customer_message",
        lambda session, conv, text, *a, **k: (
            orm_calls.append(text) or real(session, conv, text, *a, **k)
        ),
    )
    conv, h = start(client)
    assert say(client, conv, h, ANSWER_Q)["action"] == "answer"
    assert say(client, conv, h, "thanks!")["action"] == "smalltalk"
    assert orm_calls == []
    handed = say(client, conv, h, "I want to talk to a person")
    assert handed["action"] == "escalate" and handed["conversation_status"] == "queued"
    assert say(client, conv, h, "hello?")["action"] == "none"
    assert orm_calls == ["I want to talk to a person", "hello?"]
    texts = [m["text"] for m in transcript(client, conv, h)["messages"]]
    assert texts[0] == ANSWER_Q and texts[2] == "thanks!" and texts[-1] == "hello?"


def test_an_in_memory_database_works():
    from bot.db import init_db, make_engine

    engine = make_engine("sqlite://")
    init_db(engine)
    engine.dispose()
