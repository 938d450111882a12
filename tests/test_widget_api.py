"""Widget-side server pieces: allowed origins and CSP, signed customer identity, the help
center, live events published after commit, schema migrations, business hours."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import SMALL_KB, make_settings, seed, wait_ready
from fastapi.testclient import TestClient
from sqlalchemy import inspect

from bot.app import create_app
from bot.db import init_db, make_engine, make_sessionmaker
from bot.events import CONSOLE, conversation_topic
from bot.events import install as install_events
from bot.hours import is_open, parse_hours, zone
from bot.identity import IdentityError, sign_customer, verify_customer
from bot.models import Conversation, Message
from bot.settings import Settings
from indexer.articles import SourceArticle

API = "/api/v1/conversations"
SECRET = "s3cret-shared-with-the-shop"
XSS_ARTICLE = SourceArticle(
    id="xss-test",
    title="Gift wrap <script>alert(1)</script>",
    body="Choose gift wrap at checkout. <script>window.pwned=1</script>\n\n"
    "[click me](javascript:alert(1)) <img src=x onerror=alert(1)>\n\n## Price\nGift wrap is $4.",
    category="orders-shipping",
)


@pytest.fixture
def shop_client(tmp_path: Path, fake_embedder):
    settings = make_settings(
        tmp_path, allowed_origins=["https://shop.example"], identity_secret=SECRET
    )
    seed(settings, [*SMALL_KB, XSS_ARTICLE], fake_embedder)
    with TestClient(create_app(settings, embedder=fake_embedder)) as c:
        wait_ready(c)
        yield c


def test_api_refuses_other_origins_and_allows_the_listed_one(shop_client: TestClient) -> None:
    evil = shop_client.post(API, headers={"Origin": "https://evil.example"})
    assert evil.status_code == 403 and "evil.example" in evil.json()["detail"]
    ok = shop_client.post(API, headers={"Origin": "https://shop.example"})
    assert ok.status_code == 201
    assert ok.headers["access-control-allow-origin"] == "https://shop.example"
    same = shop_client.post(API, headers={"Origin": "http://testserver"})  # the widget's iframe
    assert same.status_code == 201
    assert shop_client.post(API).status_code == 201  # not a browser: no Origin header


def test_public_url_origin_passes_behind_a_proxy(tmp_path: Path, fake_embedder) -> None:
    settings = make_settings(
        tmp_path,
        allowed_origins=["https://Shop.Example"],
        public_url="https://support.example.com/",
    )
    seed(settings, SMALL_KB, fake_embedder)
    with TestClient(create_app(settings, embedder=fake_embedder)) as client:
        # a proxy forwards Host: 127.0.0.1:8000 while the browser is on the public name
        proxied = {"Origin": "https://support.example.com", "Host": "127.0.0.1:8000"}
        assert client.post(API, headers=proxied).status_code == 201
        assert client.post(API, headers={"Origin": "https://shop.example"}).status_code == 201
        assert client.post(API, headers={"Origin": "https://evil.example"}).status_code == 403


def test_frame_page_allows_only_listed_sites_to_embed_it(shop_client: TestClient) -> None:
    page = shop_client.get("/widget/frame", params={"title": "Shop help", "color": "#ff0000"})
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'self' https://shop.example" in csp
    assert "script-src 'self'" in csp
    assert "Shop help" in page.text
    hostile = shop_client.get(
        "/widget/frame", params={"title": "<script>x</script>", "color": "red;"}
    )
    assert "<script>x</script>" not in hostile.text
    assert "&lt;script&gt;" in hostile.text


def test_widget_config_offers_published_articles(shop_client: TestClient) -> None:
    config = shop_client.get("/api/v1/widget/config").json()
    assert config["greeting"] and len(config["suggestions"]) == 3
    assert all(s["url"].startswith("/help/articles/") for s in config["suggestions"])
    assert "old-draft" not in {s["article_id"] for s in config["suggestions"]}


def test_signed_identity_links_conversations_to_the_customer(shop_client: TestClient) -> None:
    token = sign_customer(SECRET, "cust-42", 600)
    created = shop_client.post(API, headers={"X-Customer-Token": token}).json()
    auth = {"X-Conversation-Token": created["token"]}
    shop_client.post(
        f"{API}/{created['id']}/messages", json={"text": "reset password"}, headers=auth
    )
    mine = shop_client.get(
        "/api/v1/customers/me/conversations", headers={"X-Customer-Token": token}
    )
    assert [c["id"] for c in mine.json()] == [created["id"]]
    assert mine.json()[0]["preview"] == "reset password"
    # the verified customer opens it without the conversation token
    again = shop_client.get(f"{API}/{created['id']}", headers={"X-Customer-Token": token})
    assert again.status_code == 200 and again.json()["messages"]
    # another customer may not
    other = {"X-Customer-Token": sign_customer(SECRET, "cust-7", 600)}
    assert shop_client.get(f"{API}/{created['id']}", headers=other).status_code == 403
    forged = sign_customer("wrong secret", "cust-42", 600)
    r = shop_client.get("/api/v1/customers/me/conversations", headers={"X-Customer-Token": forged})
    assert r.status_code == 401 and "signature" in r.json()["detail"]


def test_identity_tokens_expire_and_cannot_live_forever() -> None:
    now = time.time()
    assert verify_customer(SECRET, sign_customer(SECRET, "c1", 60, now), 3600, now) == "c1"
    with pytest.raises(IdentityError, match="expired"):
        verify_customer(SECRET, sign_customer(SECRET, "c1", 60, now - 120), 3600, now)
    with pytest.raises(IdentityError, match="too far"):
        verify_customer(SECRET, sign_customer(SECRET, "c1", 10 * 3600, now), 3600, now)
    with pytest.raises(IdentityError, match="malformed"):
        verify_customer(SECRET, "garbage", 3600, now)
    with pytest.raises(IdentityError, match="not enabled"):
        verify_customer("", sign_customer(SECRET, "c1", 60, now), 3600, now)


def test_help_center_pages_and_inert_article_html(shop_client: TestClient) -> None:
    home = shop_client.get("/help")
    assert home.status_code == 200 and "/help/categories/orders-shipping" in home.text
    cat = shop_client.get("/help/categories/orders-shipping")
    assert "Shipping options and costs" in cat.text
    page = shop_client.get("/help/articles/xss-test")
    assert page.status_code == 200
    assert "<script" not in page.text.lower() and 'href="javascript' not in page.text.lower()
    assert "<img" not in page.text
    assert "Gift wrap &lt;script&gt;alert(1)&lt;/script&gt;" in page.text  # the title, as text
    assert "Gift wrap is $4." in page.text
    assert shop_client.get("/help/articles/old-draft").status_code == 404
    assert shop_client.get("/help/articles/nope").status_code == 404
    assert shop_client.get("/help/categories/nope").status_code == 404
    found = shop_client.get("/help/search", params={"q": "reset my password"})
    assert 'href="/help/articles/reset-password"' in found.text
    assert shop_client.get("/help/search", params={"q": "x" * 600}).status_code == 422


class RecordingBroker:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []

    def publish(self, topic: str, event: dict) -> None:
        self.events.append((topic, event))


def test_events_are_published_after_commit_and_never_after_rollback(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'e.db'}")
    init_db(engine)
    factory = make_sessionmaker(engine)
    broker = RecordingBroker()
    install_events(factory, broker)
    with factory() as session:
        conv = Conversation(id="a" * 32, token_hash="x", status="bot")
        session.add(conv)
        session.add(Message(conversation=conv, role="customer", text="hi"))
        session.flush()
        assert broker.events == []  # nothing before the commit
        session.commit()
    topics = [t for t, _ in broker.events]
    assert conversation_topic("a" * 32) in topics and CONSOLE in topics
    message = next(e for t, e in broker.events if t == conversation_topic("a" * 32))
    assert message["type"] == "message" and message["text"] == "hi" and message["id"] > 0
    broker.events.clear()
    with factory() as session:
        conv = session.get(Conversation, "a" * 32)
        session.add(Message(conversation=conv, role="customer", text="lost"))
        conv.status = "queued"
        session.flush()
        session.rollback()
    assert broker.events == []
    with factory() as session:
        conv = session.get(Conversation, "a" * 32)
        conv.status = "closed"
        session.commit()
    assert (conversation_topic("a" * 32), {"type": "status", "status": "closed"}) in broker.events


def test_an_older_database_gets_the_new_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # the tables as the first release made them
        db.executescript(
            "CREATE TABLE conversations (id VARCHAR(32) PRIMARY KEY, token_hash VARCHAR(64), "
            "status VARCHAR(16), created_at DATETIME, updated_at DATETIME);"
            "CREATE TABLE messages (id INTEGER PRIMARY KEY, conversation_id VARCHAR(32), "
            "role VARCHAR(16), text TEXT, action VARCHAR(16), confidence FLOAT, citations JSON, "
            "decision JSON, created_at DATETIME);"
            "CREATE TABLE handoffs (id INTEGER PRIMARY KEY, conversation_id VARCHAR(32), "
            "status VARCHAR(16), reason VARCHAR(200), agent VARCHAR(100), created_at DATETIME, "
            "claimed_at DATETIME, closed_at DATETIME);"
            "INSERT INTO conversations VALUES ('c1', 'h', 'queued', '2026-01-01', '2026-01-01');"
            "INSERT INTO handoffs VALUES (1, 'c1', 'queued', 'x', NULL, '2026-01-01', NULL, NULL);"
        )
    engine = make_engine(f"sqlite:///{path}")
    init_db(engine)
    init_db(engine)  # a second start changes nothing
    columns = {
        t: {c["name"] for c in inspect(engine).get_columns(t)}
        for t in ("conversations", "messages", "handoffs")
    }
    assert "customer_id" in columns["conversations"] and "author" in columns["messages"]
    assert {"offline", "contact_email"} <= columns["handoffs"]
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT offline FROM handoffs").scalar() in (0, False)
    engine.dispose()


def test_business_hours_schedule() -> None:
    schedule = parse_hours("mon-fri 09:00-17:30; sat 10:00-14:00; sun-mon 22:00-24:00")
    berlin = zone("Europe/Berlin")
    # 2026-11-24 is a Tuesday; Berlin is UTC+1 in November
    assert is_open(schedule, berlin, datetime(2026, 11, 24, 8, 30, tzinfo=UTC))  # 09:30 local
    assert not is_open(schedule, berlin, datetime(2026, 11, 24, 16, 45, tzinfo=UTC))  # 17:45
    assert is_open(schedule, berlin, datetime(2026, 11, 28, 12, 0, tzinfo=UTC))  # Sat 13:00
    assert not is_open(schedule, berlin, datetime(2026, 11, 29, 12, 0, tzinfo=UTC))  # Sun 13:00
    assert is_open(schedule, berlin, datetime(2026, 11, 29, 22, 0, tzinfo=UTC))  # Sun 23:00
    assert is_open({}, berlin, datetime(2026, 11, 29, 3, 0, tzinfo=UTC))  # empty: always open
    for bad in ("mon-fri 9-5", "funday 09:00-10:00", "mon 10:00-09:00", "mon 25:00-26:00"):
        with pytest.raises(ValueError):
            parse_hours(bad)
    with pytest.raises(ValueError):
        Settings(timezone="Mars/Olympus")
