"""The support lead's articles: pages, REST API with tokens, background re-index with no failed
request, revisions with diff and rollback, export and re-import (fake embedder)."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest
from conftest import SMALL_KB, make_settings, seed, wait_ready
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from bot.api_tokens import create_token
from bot.app import create_app
from bot.auth import create_user
from bot.cli import app as cli_app
from bot.db import make_engine, make_sessionmaker, session_scope
from bot.models import ApiToken, User
from bot.settings import Settings

PASSWORD = "lead password 1"
GIFT = {
    "title": "Gift wrapping",
    "body": "We wrap any order in recycled paper.\n\n## Price\nGift wrapping costs $4 per order.",
    "category": "orders-shipping",
    "tags": ["gifts"],
    "status": "published",
}


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return make_settings(tmp_path, database_url=db_url, answer_threshold=0.5, clarify_threshold=0.3)


@pytest.fixture
def lead(settings: Settings, fake_embedder):
    """A ready client signed in as an admin, and an API token of that admin."""
    seed(settings, SMALL_KB, fake_embedder)
    engine = make_engine(settings.database_url)
    with session_scope(make_sessionmaker(engine)) as session:
        admin = create_user(session, "lead", PASSWORD, "admin", "Lee")
        create_user(session, "agent1", PASSWORD, "agent", "Ann")
        _, secret = create_token(session, admin, "tests")
    engine.dispose()
    with TestClient(create_app(settings, embedder=fake_embedder)) as client:
        wait_ready(client)
        sign_in(client, "lead")
        client.headers["X-Test-Token"] = secret  # kept here for the API tests
        yield client


def sign_in(client: TestClient, username: str) -> None:
    page = client.get("/agent/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    r = client.post(
        "/agent/login",
        data={"username": username, "password": PASSWORD, "csrf_token": csrf},
        follow_redirects=False,
    )
    assert r.status_code == 303


def csrf_of(client: TestClient, path: str = "/admin/articles") -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', client.get(path).text).group(1)


def api(client: TestClient) -> dict:
    return {"Authorization": f"Bearer {client.headers['X-Test-Token']}"}


def ask(client: TestClient, text: str) -> dict:
    conv = client.post("/api/v1/conversations").json()
    return client.post(
        f"/api/v1/conversations/{conv['id']}/messages",
        json={"text": text},
        headers={"X-Conversation-Token": conv["token"]},
    ).json()


def wait_reindexed(client: TestClient, timeout: float = 30) -> None:
    reindexer = client.app.state.reindexer
    assert reindexer.wait(reindexer.status.requested, timeout), "re-index did not finish"
    assert reindexer.status.last_error is None, reindexer.status.last_error


def test_pages_need_an_admin(lead: TestClient, settings: Settings, fake_embedder) -> None:
    assert "Reset your password" in lead.get("/admin/articles").text
    with TestClient(lead.app) as other:
        sign_in(other, "agent1")
        r = other.get("/admin/articles")
        assert r.status_code == 403 and "admin" in r.json()["detail"]
        assert other.get("/admin/articles/new").status_code == 403


def test_list_filters_by_status_category_tag_and_text(lead: TestClient) -> None:
    drafts = lead.get("/admin/articles", params={"status": "draft"}).text
    assert "Secret unpublished plans" in drafts and "Reset your password" not in drafts
    by_cat = lead.get("/admin/articles", params={"category": "returns"}).text
    assert "Return policy" in by_cat and "Shipping options" not in by_cat
    by_tag = lead.get("/admin/articles", params={"tag": "password"}).text
    assert "Reset your password" in by_tag and "Return policy" not in by_tag
    by_text = lead.get("/admin/articles", params={"q": "express"}).text
    assert "Shipping options" in by_text and "Return policy" not in by_text


def test_create_edit_publish_and_the_bot_answers_from_it(lead: TestClient) -> None:
    csrf = csrf_of(lead)
    before = ask(lead, "how much is gift wrapping")
    assert not any(c["article_id"] == "gift-wrapping" for c in before["citations"])
    form = {**GIFT, "tags": "gifts", "status": "draft", "csrf_token": csrf}
    created = lead.post("/admin/articles/new", data=form, follow_redirects=False)
    assert created.status_code == 303 and created.headers["location"].startswith(
        "/admin/articles/gift-wrapping"
    )
    publish = lead.post(
        "/admin/articles/gift-wrapping/status",
        data={"status": "published", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert publish.status_code == 303
    wait_reindexed(lead)
    after = ask(lead, "how much is gift wrapping")
    assert after["action"] == "answer"
    assert after["citations"][0]["article_id"] == "gift-wrapping"
    # an edit of the published article is a new revision and re-indexed too
    form = {**GIFT, "tags": "gifts", "csrf_token": csrf}
    form["body"] = GIFT["body"].replace("$4", "$5")
    lead.post("/admin/articles/gift-wrapping", data=form)
    wait_reindexed(lead)
    assert "$5" in ask(lead, "how much is gift wrapping")["text"]
    page = lead.get("/admin/articles/gift-wrapping/revisions").text
    assert ">3<" in page  # created (draft), published, edited


def test_bad_input_keeps_what_was_typed_and_names_the_field(lead: TestClient) -> None:
    csrf = csrf_of(lead)
    r = lead.post(
        "/admin/articles/new",
        data={"title": "Typed title", "body": "", "status": "draft", "csrf_token": csrf},
    )
    assert r.status_code == 422 and "field &#39;body&#39; is missing or empty" in r.text
    assert 'value="Typed title"' in r.text
    taken = lead.post(
        "/admin/articles/new",
        data={"id": "return-policy", "title": "x", "body": "y", "csrf_token": csrf},
    )
    assert taken.status_code == 409
    bad_url = lead.post(
        "/admin/articles/return-policy",
        data={
            "title": "Return policy",
            "body": "b",
            "url": "javascript:alert(1)",
            "csrf_token": csrf,
        },
    )
    assert bad_url.status_code == 422 and "url" in bad_url.text
    no_csrf = lead.post("/admin/articles/return-policy", data={"title": "t", "body": "b"})
    assert no_csrf.status_code == 403


def test_revision_diff_and_rollback(lead: TestClient) -> None:
    csrf = csrf_of(lead)
    form = {
        "title": "Return policy",
        "body": "You can return most items within 60 days.",
        "category": "returns",
        "status": "published",
        "csrf_token": csrf,
    }
    lead.post("/admin/articles/return-policy", data=form)
    diff = lead.get("/admin/articles/return-policy/revisions/2").text
    assert "diff-del" in diff and "within 30 days" in diff
    assert "diff-add" in diff and "within 60 days" in diff
    r = lead.post(
        "/admin/articles/return-policy/revisions/1/rollback",
        data={"csrf_token": csrf},
        follow_redirects=False,
    )
    assert r.status_code == 303
    editor = lead.get("/admin/articles/return-policy").text
    assert "within 30 days" in editor and "Revision 3" in editor
    missing = lead.post(
        "/admin/articles/return-policy/revisions/99/rollback", data={"csrf_token": csrf}
    )
    assert missing.status_code == 404


def test_preview_is_sanitized(lead: TestClient) -> None:
    csrf = csrf_of(lead)
    html = lead.post(
        "/admin/preview",
        data={"body": "# Hi\n<script>alert(1)</script> [x](javascript:alert(1))"},
        headers={"X-CSRF-Token": csrf},
    ).json()["html"]
    assert "<h1>Hi</h1>" in html and "<script" not in html and 'href="javascript' not in html


def test_rest_api_crud_and_publish(lead: TestClient) -> None:
    h = api(lead)
    assert lead.get("/api/v1/articles").status_code == 401
    assert (
        lead.get("/api/v1/articles", headers={"Authorization": "Bearer sbt_nope"}).status_code
        == 401
    )
    listed = lead.get("/api/v1/articles", params={"status": "published"}, headers=h).json()
    assert listed["total"] == 3
    made = lead.post("/api/v1/articles", json={**GIFT, "status": "draft"}, headers=h)
    assert made.status_code == 201 and made.json()["id"] == "gift-wrapping"
    assert (
        lead.post("/api/v1/articles", json={**GIFT, "id": "gift-wrapping"}, headers=h).status_code
        == 409
    )
    assert lead.post("/api/v1/articles", json={**GIFT, "title": ""}, headers=h).status_code == 422
    assert lead.post("/api/v1/articles", json={**GIFT, "surprise": 1}, headers=h).status_code == 422
    published = lead.post("/api/v1/articles/gift-wrapping/publish", headers=h).json()
    assert published["status"] == "published" and published["revision"] == 2
    wait_reindexed(lead)
    assert ask(lead, "how much is gift wrapping")["citations"][0]["article_id"] == "gift-wrapping"
    replaced = lead.put(
        "/api/v1/articles/gift-wrapping", json={**GIFT, "body": "Now free."}, headers=h
    ).json()
    assert replaced["body"] == "Now free." and replaced["revision"] == 3
    revs = lead.get("/api/v1/articles/gift-wrapping/revisions", headers=h).json()
    assert [r["number"] for r in revs] == [3, 2, 1] and revs[0]["source"] == "api:lead"
    refused = lead.delete("/api/v1/articles/gift-wrapping", headers=h)
    assert refused.status_code == 409 and "archive" in refused.json()["detail"]
    assert lead.post("/api/v1/articles/gift-wrapping/archive", headers=h).status_code == 200
    assert lead.delete("/api/v1/articles/gift-wrapping", headers=h).status_code == 204
    assert lead.get("/api/v1/articles/gift-wrapping", headers=h).status_code == 404
    wait_reindexed(lead)
    assert not any(
        c["article_id"] == "gift-wrapping"
        for c in ask(lead, "how much is gift wrapping")["citations"]
    )


def test_api_token_of_a_non_admin_or_revoked_is_refused(
    lead: TestClient, settings: Settings
) -> None:
    from sqlalchemy import select

    engine = make_engine(settings.database_url)
    with session_scope(make_sessionmaker(engine)) as session:
        agent = session.scalar(select(User).where(User.username == "agent1"))
        _, agent_secret = create_token(session, agent, "agent's")
    r = lead.get("/api/v1/articles", headers={"Authorization": f"Bearer {agent_secret}"})
    assert r.status_code == 403
    h = api(lead)
    assert lead.get("/api/v1/articles", headers=h).status_code == 200
    with session_scope(make_sessionmaker(engine)) as session:
        session.scalar(select(User).where(User.username == "lead")).active = False
    assert lead.get("/api/v1/articles", headers=h).status_code == 401  # a disabled account
    with session_scope(make_sessionmaker(engine)) as session:
        session.scalar(select(User).where(User.username == "lead")).active = True
        for token in session.scalars(select(ApiToken)):
            token.revoked = True
    assert lead.get("/api/v1/articles", headers=h).status_code == 401  # a revoked token
    engine.dispose()


def test_questions_keep_working_while_publishing_reindexes(lead: TestClient, monkeypatch) -> None:
    """A publish swaps the index under live traffic: no request fails, and the answers move.
    Building is slowed down (as with a real model) so questions arrive during every build."""
    embedder = lead.app.state.pipeline.holder.live[1]
    fast = embedder.embed

    builds: list[int] = []

    def slow_when_building(texts):
        if threading.current_thread().name == "reindexer":
            builds.append(len(texts))
            time.sleep(0.4)
        return fast(texts)

    monkeypatch.setattr(embedder, "embed", slow_when_building)
    h = api(lead)
    stop = threading.Event()
    failures: list[str] = []
    answered: list[str] = []

    def keep_asking() -> None:
        while not stop.is_set():
            conv = lead.post("/api/v1/conversations").json()
            r = lead.post(
                f"/api/v1/conversations/{conv['id']}/messages",
                json={"text": "how much is gift wrapping"},
                headers={"X-Conversation-Token": conv["token"]},
            )
            if r.status_code != 200:
                failures.append(f"{r.status_code} {r.text}")
            elif r.json()["citations"]:
                answered.append(r.json()["citations"][0]["article_id"])

    threads = [threading.Thread(target=keep_asking) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)
        for n in range(3):  # three publishes in a row, each a new index version
            body = {**GIFT, "body": GIFT["body"] + f"\n\nEdition {n}."}
            assert (
                lead.put("/api/v1/articles/gift-wrapping", json=body, headers=h).status_code == 200
            )
            wait_reindexed(lead)
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not failures, failures[:3]
    assert len(builds) >= 3  # every publish embedded its new passage in the background
    assert len(answered) > 10 and answered[-1] == "gift-wrapping"


def test_export_then_import_round_trips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Settings, fake_embedder
) -> None:
    seed(settings, SMALL_KB, fake_embedder)
    monkeypatch.setenv("SUPPORTBOT_DATABASE_URL", settings.database_url)
    runner = CliRunner()
    out = tmp_path / "export"
    r = runner.invoke(cli_app, ["export", str(out)])
    assert r.exit_code == 0 and "exported 4 articles" in r.output
    text = (out / "reset-password.md").read_text()
    assert text.startswith("---\nid: reset-password\n") and "tags:\n- password" in text
    again = runner.invoke(cli_app, ["import", str(out)])
    assert again.exit_code == 0 and "0 created, 0 updated, 4 unchanged" in again.output
    only = runner.invoke(cli_app, ["export", str(tmp_path / "drafts"), "--status", "draft"])
    assert "exported 1 articles" in only.output
    bad = runner.invoke(cli_app, ["export", str(tmp_path / "x"), "--status", "gone"])
    assert bad.exit_code == 1 and "--status" in bad.output


def test_article_api_is_in_the_openapi_docs_with_bearer_auth(lead: TestClient) -> None:
    spec = lead.get("/openapi.json").json()
    assert "/api/v1/articles/{article_id}/publish" in spec["paths"]
    assert any(s.get("scheme") == "bearer" for s in spec["components"]["securitySchemes"].values())


def test_creating_never_overwrites_an_existing_article(lead: TestClient) -> None:
    """An id that is taken (as given, with spaces, or made from the title) is a 409."""
    csrf = csrf_of(lead)
    h = api(lead)
    for given in ("return-policy", " return-policy ", ""):
        r = lead.post(
            "/admin/articles/new",
            data={"id": given, "title": "Return policy", "body": "stub", "csrf_token": csrf},
        )
        assert r.status_code == 409 and "already exists" in r.text
        api_r = lead.post(
            "/api/v1/articles",
            json={"id": given or None, "title": "Return policy", "body": "x"},
            headers=h,
        )
        assert api_r.status_code == 409
    body = lead.get("/api/v1/articles/return-policy", headers=h).json()
    assert body["revision"] == 1 and "30 days" in body["body"]


def test_a_stale_editor_cannot_overwrite_a_newer_revision(lead: TestClient) -> None:
    csrf = csrf_of(lead)
    form = {
        "title": "Return policy",
        "body": "first edit",
        "status": "published",
        "csrf_token": csrf,
    }
    assert (
        lead.post(
            "/admin/articles/return-policy",
            data={**form, "base_revision": "1"},
            follow_redirects=False,
        ).status_code
        == 303
    )
    stale = lead.post(
        "/admin/articles/return-policy", data={**form, "body": "second", "base_revision": "1"}
    )
    assert stale.status_code == 409 and "changed since you opened it" in stale.text
    assert "second" in stale.text  # what was typed is still in the form
    assert (
        lead.get("/api/v1/articles/return-policy", headers=api(lead)).json()["body"] == "first edit"
    )


def test_search_treats_percent_and_underscore_as_text(lead: TestClient) -> None:
    assert "0 articles" in lead.get("/admin/articles", params={"q": "%_"}).text
