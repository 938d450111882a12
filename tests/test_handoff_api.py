"""The handoff through the API and the console's forms: sign-in, CSRF, claim, reply, hand back,
close, CSAT, offline tickets, business hours, and clarify picks (fake embedder)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import SMALL_KB, make_settings, seed, wait_ready
from fastapi.testclient import TestClient
from sqlalchemy import select

from bot.app import create_app
from bot.auth import create_user
from bot.conversations import OFFLINE
from bot.db import make_engine, make_sessionmaker, session_scope
from bot.gate import REPLIES
from bot.models import CsatResponse, Handoff, User
from bot.settings import Settings

API = "/api/v1/conversations"
OFFTOPIC_Q = "xyzzy"
CLARIFY_Q = "how much does express shipping cost"
PASSWORD = "correct horse battery"


def _add_user(settings: Settings, username: str = "alex", name: str = "Alex") -> None:
    engine = make_engine(settings.database_url)
    with session_scope(make_sessionmaker(engine)) as session:
        create_user(session, username, PASSWORD, "agent", name)
    engine.dispose()


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    """Every test here runs on SQLite and on a real PostgreSQL server."""
    return make_settings(
        tmp_path, database_url=db_url, answer_threshold=0.72, clarify_threshold=0.2
    )


@pytest.fixture
def app_client(settings: Settings, fake_embedder):
    seed(settings, SMALL_KB, fake_embedder)
    _add_user(settings)
    with TestClient(create_app(settings, embedder=fake_embedder)) as c:
        wait_ready(c)
        yield c


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF field on the page"
    return match.group(1)


def sign_in(client: TestClient, username: str = "alex", password: str = PASSWORD):
    page = client.get("/agent/login")
    return client.post(
        "/agent/login",
        data={"username": username, "password": password, "csrf_token": _csrf(page.text)},
        follow_redirects=False,
    )


def start(client: TestClient, **headers) -> tuple[str, dict]:
    created = client.post(API, headers=headers).json()
    return created["id"], {"X-Conversation-Token": created["token"]}


def test_console_needs_sign_in_and_refuses_a_wrong_password(app_client: TestClient) -> None:
    assert (
        app_client.get("/agent", follow_redirects=False)
        .headers["location"]
        .startswith("/agent/login")
    )
    assert app_client.get("/agent/api/articles").status_code == 401
    bad = sign_in(app_client, password="wrong password")
    assert bad.status_code == 400
    assert "Wrong username or password" in bad.text
    good = sign_in(app_client)
    assert good.status_code == 303 and good.headers["location"] == "/agent"
    assert "Queue" in app_client.get("/agent").text


def test_login_and_actions_refuse_a_missing_csrf_token(app_client: TestClient) -> None:
    app_client.get("/agent/login")
    r = app_client.post("/agent/login", data={"username": "alex", "password": PASSWORD})
    assert r.status_code == 403 and "detail" in r.json()
    sign_in(app_client)
    conv_id, _ = start(app_client)
    r = app_client.post(f"/agent/conversations/{conv_id}/close", data={"csrf_token": "forged"})
    assert r.status_code == 403


def test_next_after_sign_in_stays_on_the_console(app_client: TestClient) -> None:
    page = app_client.get("/agent/login")
    r = app_client.post(
        "/agent/login",
        data={
            "username": "alex",
            "password": PASSWORD,
            "csrf_token": _csrf(page.text),
            "next": "//evil.example/agent",
        },
        follow_redirects=False,
    )
    assert r.headers["location"] == "/agent"


def test_full_handoff_claim_reply_hand_back_close_and_csat(app_client: TestClient) -> None:
    sign_in(app_client)  # an agent is online: the handoff is live, not an offline ticket
    conv_id, auth = start(app_client)
    reply = app_client.post(f"{API}/{conv_id}/messages", json={"text": OFFTOPIC_Q}, headers=auth)
    body = reply.json()
    assert body["action"] == "escalate" and body["conversation_status"] == "queued"
    assert body["text"] == REPLIES["low_confidence"]
    assert body["handoff"] == {"status": "queued", "offline": False, "contact_email_given": False}

    queue = app_client.get("/agent").text
    assert conv_id in queue and OFFTOPIC_Q in queue
    page = app_client.get(f"/agent/conversations/{conv_id}")
    assert "escalate" in page.text and "low confidence" in page.text
    csrf = _csrf(page.text)
    json_headers = {"X-CSRF-Token": csrf, "Accept": "application/json"}

    assert app_client.post(
        f"/agent/conversations/{conv_id}/claim", headers=json_headers
    ).json() == {"status": "agent"}
    sent = app_client.post(
        f"/agent/conversations/{conv_id}/reply",
        data={"text": "Hi, I'm Alex. <b>hello</b>"},
        headers=json_headers,
    ).json()
    assert "message" in sent, sent
    assert sent["message"]["role"] == "agent" and sent["message"]["author"] == "Alex"

    # the bot stays silent while the agent owns the conversation
    quiet = app_client.post(f"{API}/{conv_id}/messages", json={"text": "thanks"}, headers=auth)
    assert quiet.json()["action"] == "none"

    transcript = app_client.get(f"{API}/{conv_id}", headers=auth).json()
    roles = [(m["role"], m["text"]) for m in transcript["messages"]]
    assert ("system", "Alex has joined the conversation.") in roles
    assert ("agent", "Hi, I'm Alex. <b>hello</b>") in roles
    assert transcript["handoff"]["status"] == "claimed"

    # CSAT only once closed
    assert (
        app_client.post(f"{API}/{conv_id}/csat", json={"score": 5}, headers=auth).status_code == 409
    )
    app_client.post(f"/agent/conversations/{conv_id}/handback", headers=json_headers)
    assert app_client.get(f"{API}/{conv_id}", headers=auth).json()["status"] == "bot"
    app_client.post(f"/agent/conversations/{conv_id}/close", headers=json_headers)
    closed = app_client.get(f"{API}/{conv_id}", headers=auth).json()
    assert closed["status"] == "closed" and closed["csat"] is None
    assert (
        app_client.post(f"{API}/{conv_id}/csat", json={"score": 6}, headers=auth).status_code == 422
    )
    assert app_client.post(f"{API}/{conv_id}/csat", json={"score": 4}, headers=auth).json() == {
        "score": 4
    }
    assert (
        app_client.post(f"{API}/{conv_id}/csat", json={"score": 5}, headers=auth).status_code == 200
    )
    assert app_client.get(f"{API}/{conv_id}", headers=auth).json()["csat"] == {"score": 5}
    engine = make_engine(app_client.app.state.settings.database_url)
    with session_scope(make_sessionmaker(engine)) as session:
        assert [r.score for r in session.scalars(select(CsatResponse))] == [5]


def test_polling_after_returns_only_newer_messages(app_client: TestClient) -> None:
    conv_id, auth = start(app_client)
    app_client.post(f"{API}/{conv_id}/messages", json={"text": "hello"}, headers=auth)
    everything = app_client.get(f"{API}/{conv_id}", headers=auth).json()["messages"]
    last = everything[-1]["id"]
    assert app_client.get(f"{API}/{conv_id}?after={last}", headers=auth).json()["messages"] == []
    newer = app_client.get(f"{API}/{conv_id}?after={everything[0]['id']}", headers=auth).json()
    assert [m["id"] for m in newer["messages"]] == [m["id"] for m in everything[1:]]


def test_no_agent_online_makes_an_offline_ticket_that_takes_an_email(
    app_client: TestClient,
) -> None:
    conv_id, auth = start(app_client)
    body = app_client.post(
        f"{API}/{conv_id}/messages", json={"text": OFFTOPIC_Q}, headers=auth
    ).json()
    assert body["text"] == OFFLINE
    assert body["handoff"]["offline"] is True
    bad = app_client.post(f"{API}/{conv_id}/contact", json={"email": "not-an-email"}, headers=auth)
    assert bad.status_code == 422
    ok = app_client.post(
        f"{API}/{conv_id}/contact", json={"email": "ada@example.com"}, headers=auth
    )
    assert ok.json()["handoff"]["contact_email_given"] is True
    transcript = app_client.get(f"{API}/{conv_id}", headers=auth).json()
    assert "ada@example.com" in transcript["messages"][-1]["text"]
    sign_in(app_client)
    queue = app_client.get("/agent").text
    assert "Offline tickets" in queue and "ada@example.com" in queue


def test_outside_business_hours_a_handoff_is_offline_even_with_agents_online(
    tmp_path: Path, fake_embedder
) -> None:
    today = datetime.now(UTC).strftime("%a").lower()
    # open only on another day of the week
    other = {"mon": "wed", "tue": "thu", "wed": "fri", "thu": "sat", "fri": "sun"}.get(today, "tue")
    settings = make_settings(tmp_path, business_hours=f"{other} 00:00-24:00")
    seed(settings, SMALL_KB, fake_embedder)
    _add_user(settings)
    with TestClient(create_app(settings, embedder=fake_embedder)) as client:
        wait_ready(client)
        sign_in(client)
        conv_id, auth = start(client)
        r = client.post(f"{API}/{conv_id}/handoff", headers=auth).json()
        assert r["conversation_status"] == "queued" and r["handoff"]["offline"] is True


def test_talk_to_a_person_button_queues_once(app_client: TestClient) -> None:
    sign_in(app_client)
    conv_id, auth = start(app_client)
    first = app_client.post(f"{API}/{conv_id}/handoff", headers=auth).json()
    second = app_client.post(f"{API}/{conv_id}/handoff", headers=auth).json()
    assert first["conversation_status"] == second["conversation_status"] == "queued"
    engine = make_engine(app_client.app.state.settings.database_url)
    with session_scope(make_sessionmaker(engine)) as session:
        assert len(session.scalars(select(Handoff)).all()) == 1


def test_clarify_pick_answers_from_the_chosen_article(app_client: TestClient) -> None:
    conv_id, auth = start(app_client)
    offer = app_client.post(
        f"{API}/{conv_id}/messages", json={"text": CLARIFY_Q}, headers=auth
    ).json()
    assert offer["action"] == "clarify"
    option = offer["citations"][-1]
    picked = app_client.post(
        f"{API}/{conv_id}/messages",
        json={"text": option["title"], "article_id": option["article_id"]},
        headers=auth,
    ).json()
    assert picked["action"] == "answer"
    assert picked["citations"][0]["article_id"] == option["article_id"]


def test_agent_sees_the_last_seen_time_and_counts_as_online(app_client: TestClient) -> None:
    sign_in(app_client)
    app_client.get("/agent")
    engine = make_engine(app_client.app.state.settings.database_url)
    with session_scope(make_sessionmaker(engine)) as session:
        user = session.scalar(select(User).where(User.username == "alex"))
        seen = (
            user.last_seen_at.replace(tzinfo=UTC)
            if user.last_seen_at.tzinfo is None
            else user.last_seen_at
        )
        assert datetime.now(UTC) - seen < timedelta(minutes=1)


def test_article_search_for_reply_links(app_client: TestClient) -> None:
    sign_in(app_client)
    found = app_client.get("/agent/api/articles", params={"q": "password reset"}).json()
    assert found and found[0]["id"] == "reset-password"
    assert found[0]["url"].startswith("http://testserver/help/articles/")


def test_repeated_wrong_passwords_are_throttled(app_client: TestClient) -> None:
    for _ in range(5):
        assert sign_in(app_client, password="guess guess").status_code == 400
    blocked = sign_in(app_client)  # even the right password waits now
    assert blocked.status_code == 429 and "Too many failed sign-ins" in blocked.text


def _agent_client(app_client: TestClient, username: str, name: str) -> TestClient:
    """A second browser: its own cookies, the same app."""
    _add_user(app_client.app.state.settings, username, name)
    other = TestClient(app_client.app)
    sign_in(other, username)
    return other


def test_a_claimed_conversation_is_not_claimed_again_without_taking_over(
    app_client: TestClient,
) -> None:
    sign_in(app_client)
    bea = _agent_client(app_client, "bea", "Bea")
    conv_id, auth = start(app_client)
    app_client.post(f"{API}/{conv_id}/handoff", headers=auth)
    alex_csrf = _csrf(app_client.get(f"/agent/conversations/{conv_id}").text)
    bea_csrf = _csrf(bea.get(f"/agent/conversations/{conv_id}").text)
    alex = {"X-CSRF-Token": alex_csrf, "Accept": "application/json"}
    bea_h = {"X-CSRF-Token": bea_csrf, "Accept": "application/json"}
    assert app_client.post(f"/agent/conversations/{conv_id}/claim", headers=alex).status_code == 200
    second = bea.post(f"/agent/conversations/{conv_id}/claim", headers=bea_h)
    assert second.status_code == 409 and "alex is already handling" in second.json()["detail"]
    reply = bea.post(f"/agent/conversations/{conv_id}/reply", data={"text": "hi"}, headers=bea_h)
    assert reply.status_code == 409
    taken = bea.post(f"/agent/conversations/{conv_id}/takeover", headers=bea_h)
    assert taken.status_code == 200
    assert (
        bea.post(
            f"/agent/conversations/{conv_id}/reply", data={"text": "Bea here"}, headers=bea_h
        ).json()["message"]["author"]
        == "Bea"
    )
    texts = [m["text"] for m in app_client.get(f"{API}/{conv_id}", headers=auth).json()["messages"]]
    assert "Bea has taken over the conversation." in texts
    bea.post(f"/agent/conversations/{conv_id}/close", headers=bea_h)
    again = bea.post(f"/agent/conversations/{conv_id}/handback", headers=bea_h)
    assert again.status_code == 409  # a closed conversation is not reopened by the console


def test_signing_out_stops_counting_the_agent_as_online(app_client: TestClient) -> None:
    sign_in(app_client)
    csrf = _csrf(app_client.get("/agent").text)
    app_client.post("/agent/logout", data={"csrf_token": csrf})
    conv_id, auth = start(app_client)
    handoff = app_client.post(f"{API}/{conv_id}/handoff", headers=auth).json()["handoff"]
    assert handoff["offline"] is True


@pytest.mark.parametrize(
    "path",
    [
        "/help/articles/a%00b",
        "/help/categories/a%00",
        "/help/search?q=a%00b",
        "/agent/api/articles?q=%00",
    ],
)
def test_nul_characters_in_addresses_are_a_400(app_client: TestClient, path: str) -> None:
    r = app_client.get(path)
    assert r.status_code == 400 and "NUL" in r.json()["detail"]


def test_nul_in_the_sign_in_form_is_just_a_wrong_password(app_client: TestClient) -> None:
    assert sign_in(app_client, username="al\x00ex").status_code in (303, 400)


def test_event_streams_need_the_right_token_or_a_session(app_client: TestClient) -> None:
    conv_id, _ = start(app_client)
    assert app_client.get(f"{API}/{conv_id}/events").status_code == 401
    wrong = {"X-Conversation-Token": "not the token"}
    assert app_client.get(f"{API}/{conv_id}/events", headers=wrong).status_code == 403
    signed_out = app_client.get("/agent/events", follow_redirects=False)
    assert signed_out.status_code == 303 and "/agent/login" in signed_out.headers["location"]


def test_console_stream_keeps_the_agent_online_and_ends_when_disabled(
    app_client: TestClient, monkeypatch
) -> None:
    import threading
    import time

    from bot.routes import agent as agent_routes

    monkeypatch.setattr(agent_routes, "SEEN_EVERY", 0.1)
    sign_in(app_client)
    engine = make_engine(app_client.app.state.settings.database_url)
    factory = make_sessionmaker(engine)
    old = datetime(2020, 1, 1, tzinfo=UTC)
    with session_scope(factory) as session:
        session.scalar(select(User).where(User.username == "alex")).last_seen_at = old

    def disable_later() -> None:
        time.sleep(0.6)
        with session_scope(factory) as session:
            session.scalar(select(User).where(User.username == "alex")).active = False

    threading.Thread(target=disable_later).start()
    with app_client.stream("GET", "/agent/events") as stream:
        assert stream.status_code == 200
        for _ in stream.iter_lines():  # ends by itself once the account is disabled
            pass
    with session_scope(factory) as session:
        seen = session.scalar(select(User).where(User.username == "alex")).last_seen_at
        assert seen.replace(tzinfo=UTC) > old.replace(tzinfo=UTC) + timedelta(days=365)
    engine.dispose()
