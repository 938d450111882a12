"""Uploading articles (Markdown, zip, HTML, CSV FAQ, Zendesk JSON; malformed files), the export
zip, and "Try a question" with a draft included (fake embedder)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from conftest import SMALL_KB, make_settings, seed, wait_ready
from fastapi.testclient import TestClient
from test_admin_articles import PASSWORD, csrf_of, sign_in, wait_reindexed

from bot.app import create_app
from bot.auth import create_user
from bot.db import make_engine, make_sessionmaker, session_scope
from bot.models import Article
from indexer.articles import load_path

GOOD_MD = b"---\ntitle: Gift cards\nstatus: published\ncategory: payments\n---\nGift cards never expire.\n"
ZENDESK = {
    "articles": [
        {
            "id": 360001,
            "title": "Change your delivery address",
            "body": "<p>Open <b>Orders</b>, choose the order and edit the address.</p>",
            "section_id": 42,
            "label_names": ["delivery"],
            "draft": False,
            "html_url": "https://shop.zendesk.com/hc/articles/360001",
        },
        {"id": 360002, "title": "", "body": "<p>No title</p>"},
        {"id": 360003, "title": "Unfinished", "body": "<p>Soon.</p>", "draft": True},
    ]
}


@pytest.fixture
def lead(tmp_path: Path, fake_embedder):
    settings = make_settings(tmp_path, answer_threshold=0.5, clarify_threshold=0.3)
    seed(settings, SMALL_KB, fake_embedder)
    engine = make_engine(settings.database_url)
    with session_scope(make_sessionmaker(engine)) as session:
        create_user(session, "lead", PASSWORD, "admin", "Lee")
    engine.dispose()
    with TestClient(create_app(settings, embedder=fake_embedder)) as client:
        wait_ready(client)
        sign_in(client, "lead")
        yield client


def upload(client: TestClient, files: list[tuple[str, bytes]]):
    return client.post(
        "/admin/import",
        data={"csrf_token": csrf_of(client)},
        files=[("files", (name, data)) for name, data in files],
    )


def stored(client: TestClient, article_id: str) -> Article | None:
    engine = make_engine(client.app.state.settings.database_url)
    with session_scope(make_sessionmaker(engine)) as session:
        article = session.get(Article, article_id)
        result = (article.title, article.status, article.url) if article else None
    engine.dispose()
    return result


def test_upload_markdown_html_faq_and_zendesk_reports_the_bad_items(lead: TestClient) -> None:
    faq = b"question,answer\nDo you ship to Canada?,Yes: 5-8 business days.\nBroken row,\n"
    html = b"<html><head><title>Store hours</title></head><body><p>9 to 5.</p></body></html>"
    r = upload(
        lead,
        [
            ("gift-cards.md", GOOD_MD),
            ("hours.html", html),
            ("faq.csv", faq),
            ("zendesk.json", json.dumps(ZENDESK).encode()),
            ("broken.md", b"---\ntitle: [unclosed\n---\nbody"),
            ("notes.txt", b"not an article"),
        ],
    )
    assert r.status_code == 200, r.text
    assert "skipped" in r.text.lower() and "broken.md" in r.text and "article 2" in r.text
    assert "/tmp" not in r.text  # names as uploaded, not the server's temporary folder
    assert stored(lead, "gift-cards") == ("Gift cards", "published", None)
    assert stored(lead, "hours")[0] == "Store hours"
    assert stored(lead, "zendesk-360001") == (
        "Change your delivery address",
        "published",
        "https://shop.zendesk.com/hc/articles/360001",
    )
    assert stored(lead, "zendesk-360003")[1] == "draft"
    wait_reindexed(lead)


def test_zip_upload_and_a_zip_that_escapes_its_folder(lead: TestClient) -> None:
    good = io.BytesIO()
    with zipfile.ZipFile(good, "w") as zf:
        zf.writestr("kb/gift-cards.md", GOOD_MD)
        zf.writestr("kb/sub/returns.md", b"---\ntitle: Returns 2\n---\nSend it back.\n")
    r = upload(lead, [("kb.zip", good.getvalue())])
    assert r.status_code == 200 and stored(lead, "gift-cards") and stored(lead, "returns")
    evil = io.BytesIO()
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../../escape.md", GOOD_MD)
    r = upload(lead, [("evil.zip", evil.getvalue())])
    assert r.status_code == 200 and "outside the archive" in r.text
    assert not Path("/escape.md").exists() and not Path("/tmp/escape.md").exists()
    r = upload(lead, [("fake.zip", b"not a zip")])
    assert "not a readable zip" in r.text


def test_upload_with_nothing_readable_is_a_clear_4xx(lead: TestClient) -> None:
    assert upload(lead, [("notes.txt", b"hello")]).status_code == 422
    r = lead.post("/admin/import", data={"csrf_token": csrf_of(lead)})
    assert r.status_code == 422 and "Choose one or more files" in r.text


def test_export_zip_reimports_unchanged(lead: TestClient, tmp_path: Path) -> None:
    r = lead.get("/admin/export.zip")
    assert r.headers["content-type"] == "application/zip"
    archive = tmp_path / "articles.zip"
    archive.write_bytes(r.content)
    articles, errors = load_path(archive)
    assert not errors and {a.id for a in articles} == {a.id for a in SMALL_KB}
    draft = next(a for a in articles if a.id == "old-draft")
    assert draft.status == "draft"


def test_try_a_question_against_published_and_with_a_draft(lead: TestClient) -> None:
    q = "teleportation shipping"
    published = lead.get("/admin/try", params={"q": q}).text
    in_ranking = '<a href="/admin/articles/old-draft">Secret unpublished plans</a>'
    assert "The bot would" in published and in_ranking not in published
    with_draft = lead.get("/admin/try", params={"q": q, "draft": "old-draft"}).text
    assert in_ranking in with_draft
    # nothing was published by trying
    assert stored(lead, "old-draft")[1] == "draft"
    assert lead.get("/admin/try", params={"q": q, "draft": "nope"}).status_code == 404


def test_odd_upload_names_and_nested_zips_are_reported_not_500s(lead: TestClient) -> None:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("deep.md", GOOD_MD)
    outer = io.BytesIO()
    with zipfile.ZipFile(outer, "w") as zf:
        zf.writestr("inner.zip", inner.getvalue())
        zf.writestr("x.md", GOOD_MD)
        zf.writestr("x.md/y.md", GOOD_MD)
    r = upload(
        lead,
        [
            ("..", GOOD_MD),
            ("a/..", GOOD_MD),
            ("n" * 300 + ".md", GOOD_MD),
            ("outer.zip", outer.getvalue()),
        ],
    )
    assert r.status_code == 200, r.text
    assert "zip inside a zip" in r.text or "cannot unpack" in r.text
    assert "supportbot-upload" not in r.text and "/tmp" not in r.text


def test_bodies_over_the_limit_are_refused_while_streaming(lead: TestClient) -> None:
    from bot import limits

    huge = b"x" * (limits.DEFAULT_LIMIT + 10)
    r = lead.post(
        "/api/v1/conversations", content=huge, headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 413 and "larger than" in r.json()["detail"]

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(9):
            yield b"y" * (1024 * 1024)

    conv = lead.post("/api/v1/conversations").json()
    r = lead.post(  # an endpoint that reads its body
        f"/api/v1/conversations/{conv['id']}/messages",
        content=chunks(),
        headers={"X-Conversation-Token": conv["token"], "Content-Type": "application/json"},
    )
    assert r.status_code == 413


def test_an_article_body_has_a_size_limit(lead: TestClient) -> None:
    big = b"---\ntitle: Big\n---\n" + b"word " * 120_000
    r = upload(lead, [("big.md", big)])
    assert "longer than 500000 characters" in r.text and stored(lead, "big") is None
