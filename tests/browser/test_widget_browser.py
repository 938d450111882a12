"""The widget, the handoff and the console in a real Chromium: host page on another origin, real
uvicorn, real model. Screenshots for the README are taken here."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Page, expect

from browser.conftest import AGENT_PASSWORD, SCREENSHOTS

expect.set_options(timeout=10_000)

from bot.db import make_engine, make_sessionmaker, session_scope
from bot.models import Article

pytestmark = pytest.mark.browser
KB_QUESTION = "How do I start a return?"
OFFTOPIC = "What is the boiling point of liquid nitrogen on Mars?"


def open_widget(page: Page, site):
    page.goto(site.host)
    launcher = page.locator("button.sb-launcher")
    expect(launcher).to_be_visible(timeout=15000)
    launcher.click()
    frame = page.frame_locator("iframe.sb-frame")
    expect(frame.locator("#sb-input")).to_be_visible(timeout=15000)
    return frame


def ask(frame, text: str) -> None:
    frame.locator("#sb-input").fill(text)
    frame.locator("#sb-send").click()


def sign_in_agent(context, site) -> Page:
    agent = context.new_page()
    agent.goto(f"{site.bot}/agent")
    agent.fill("#username", "sam")
    agent.fill("#password", AGENT_PASSWORD)
    agent.click("button[type=submit]")
    expect(agent.get_by_role("heading", name="Queue")).to_be_visible()
    return agent


def test_kb_question_gets_a_cited_answer_linking_to_the_help_center(context, site) -> None:
    page = context.new_page()
    frame = open_widget(page, site)
    expect(frame.locator("#sb-greeting")).to_be_visible()
    ask(frame, KB_QUESTION)
    citation = frame.locator('.sb-msg[data-role="bot"] .sb-citation a').first
    expect(citation).to_be_visible(timeout=20000)
    href = citation.get_attribute("href")
    assert "/help/articles/" in href
    # the cited article is a real help-center page
    article = context.new_page()
    article.goto(href if href.startswith("http") else site.bot + href)
    expect(article.locator("article h1")).to_have_text(citation.inner_text())
    # thumbs up on the answer is recorded
    up = frame.locator('.sb-msg[data-role="bot"] .sb-feedback button[data-rating="up"]').first
    up.click()
    expect(up).to_have_attribute("aria-pressed", "true")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "widget-desktop.png"))


def test_host_css_does_not_reach_the_launcher(context, site) -> None:
    page = context.new_page()
    page.goto(site.host)
    launcher = page.locator("button.sb-launcher")
    expect(launcher).to_be_visible(timeout=15000)
    size = launcher.evaluate("b => getComputedStyle(b).fontSize")
    colour = launcher.evaluate("b => getComputedStyle(b).backgroundColor")
    assert size != "40px" and colour != "rgb(255, 105, 180)"


def test_offtopic_question_is_handed_over_and_an_agent_replies_live(browser, site) -> None:
    agent_ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    customer_ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        agent = sign_in_agent(agent_ctx, site)  # someone is online: a live handoff
        page = customer_ctx.new_page()
        frame = open_widget(page, site)
        ask(frame, OFFTOPIC)
        handoff_note = frame.locator('.sb-msg[data-role="bot"]').last
        expect(handoff_note).to_contain_text("support team", timeout=20000)
        expect(frame.locator("#sb-handoff")).to_be_disabled()

        # the agent's queue updates by itself, then the agent claims and replies
        row = agent.locator("#queue tr", has_text=OFFTOPIC)
        expect(row).to_be_visible(timeout=15000)
        row.get_by_role("button", name="Claim").click()
        expect(agent.locator("#conv-status")).to_have_text("agent")
        expect(frame.locator('.sb-msg[data-role="system"]').last).to_contain_text(
            "Sam has joined", timeout=15000
        )
        agent.fill("#reply-text", "Hi, Sam here. Let me check that for you.")
        agent.click("#reply-send")
        expect(frame.locator('.sb-msg[data-role="agent"]').last).to_contain_text(
            "Sam here", timeout=15000
        )
        # the customer answers and the agent sees it live
        ask(frame, "Thanks Sam!")
        expect(agent.locator("#transcript li.msg-customer").last).to_contain_text(
            "Thanks Sam!", timeout=15000
        )
        agent.screenshot(path=str(SCREENSHOTS / "console.png"), full_page=True)

        # history survives a reload
        page.reload()
        page.locator("button.sb-launcher").click()
        frame = page.frame_locator("iframe.sb-frame")
        expect(frame.locator('.sb-msg[data-role="agent"]').last).to_contain_text(
            "Sam here", timeout=15000
        )
        expect(frame.locator('.sb-msg[data-role="customer"]').first).to_contain_text(OFFTOPIC)

        # closing asks the customer for a rating
        agent.get_by_role("button", name="Close").click()
        expect(frame.locator("#sb-csat")).to_be_visible(timeout=15000)
        frame.locator("#sb-csat button").nth(4).click()
        expect(frame.locator("#sb-csat-thanks")).to_be_visible()
    finally:
        agent_ctx.close()
        customer_ctx.close()


def test_with_nobody_online_the_widget_asks_for_an_email(browser, site) -> None:
    engine = make_engine(site.settings.database_url)
    with engine.begin() as conn:  # nobody has had the console open lately
        conn.exec_driver_sql("UPDATE users SET last_seen_at = NULL")
    engine.dispose()
    ctx = browser.new_context()
    try:
        page = ctx.new_page()
        frame = open_widget(page, site)
        frame.locator("#sb-handoff").click()
        form = frame.locator("#sb-email-form")
        expect(form).to_be_visible(timeout=15000)
        frame.locator("#sb-email").fill("ada@example.com")
        frame.locator("#sb-email-send").click()
        expect(frame.locator('.sb-msg[data-role="system"]').last).to_contain_text(
            "ada@example.com", timeout=15000
        )
    finally:
        ctx.close()


def test_xss_in_messages_and_articles_stays_inert(browser, site) -> None:
    payload = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'
    engine = make_engine(site.settings.database_url)
    with session_scope(make_sessionmaker(engine)) as session:
        session.merge(
            Article(
                id="xss-article",
                title='Wrap <img src=x onerror="window.__xss=3">',
                body=f"Text {payload}\n\n[link](javascript:window.__xss=4)",
                status="published",
                content_hash="x",
            )
        )
    engine.dispose()
    agent_ctx, customer_ctx = browser.new_context(), browser.new_context()
    try:
        agent = sign_in_agent(agent_ctx, site)
        page = customer_ctx.new_page()
        frame = open_widget(page, site)
        ask(frame, payload)  # off-topic as well: handed over at once
        expect(frame.locator('.sb-msg[data-role="customer"]').last).to_contain_text(
            "<script>", timeout=15000
        )
        expect(frame.locator("#sb-handoff")).to_be_disabled(timeout=15000)
        row = agent.locator("#queue tr").filter(has_text="onerror").first
        expect(row).to_be_visible(timeout=15000)
        row.get_by_role("link").click()
        agent.get_by_role("button", name="Claim").click()
        agent.fill("#reply-text", payload)
        agent.click("#reply-send")
        expect(frame.locator('.sb-msg[data-role="agent"]').last).to_contain_text(
            "onerror", timeout=15000
        )
        expect(agent.locator("#transcript li.msg-agent").last).to_contain_text("onerror")
        help_page = customer_ctx.new_page()
        help_page.goto(f"{site.bot}/help/articles/xss-article")
        expect(help_page.locator("article h1")).to_contain_text("onerror")
        # the markup arrived as text: no element was made from it anywhere
        widget_frame = next(f for f in page.frames if "/widget/frame" in f.url)
        assert widget_frame.locator("#sb-log img, #sb-log script").count() == 0
        assert agent.locator("#transcript img, #transcript script").count() == 0
        assert (
            help_page.locator("article img, article script, article a[href^=javascript]").count()
            == 0
        )
        for p in (page, agent, help_page):
            assert p.evaluate("window.__xss") is None
        assert widget_frame.evaluate("window.__xss") is None
    finally:
        agent_ctx.close()
        customer_ctx.close()


def test_a_site_not_allowed_cannot_frame_the_widget(context, site) -> None:
    page = context.new_page()
    page.goto(site.other)
    page.locator("button.sb-launcher").click()
    page.wait_for_timeout(1500)
    framed = [f for f in page.frames if f != page.main_frame]
    assert framed, "the loader made no iframe"
    # CSP frame-ancestors blocks the page: the frame never gets the chat
    assert all(not f.query_selector("#sb-input") for f in framed)


def test_mobile_layout_fills_the_screen(browser, site) -> None:
    ctx = browser.new_context(
        viewport={"width": 390, "height": 844},
        is_mobile=True,
        has_touch=True,
        device_scale_factor=2,
    )
    try:
        page = ctx.new_page()
        frame = open_widget(page, site)
        box = page.locator("iframe.sb-frame").bounding_box()
        assert box["width"] >= 380 and box["height"] >= 700
        ask(frame, "How long does standard shipping take?")
        expect(frame.locator('.sb-msg[data-role="bot"]').last).to_be_visible(timeout=20000)
        page.wait_for_timeout(300)
        page.screenshot(path=str(SCREENSHOTS / "widget-mobile.png"))
    finally:
        ctx.close()


def test_keyboard_only_use(context, site) -> None:
    page = context.new_page()
    page.goto(site.host)
    expect(page.locator("button.sb-launcher")).to_be_visible(timeout=15000)
    page.locator("button.sb-launcher").focus()
    page.keyboard.press("Enter")
    frame = page.frame_locator("iframe.sb-frame")
    expect(frame.locator("#sb-input")).to_be_focused(timeout=15000)  # opening moves focus in
    page.keyboard.type("hello")
    page.keyboard.press("Enter")
    expect(frame.locator('.sb-msg[data-role="bot"]').last).to_be_visible(timeout=15000)
    page.keyboard.press("Escape")
    expect(page.locator("button.sb-launcher")).to_be_focused()
    assert re.search("false", page.locator("button.sb-launcher").get_attribute("aria-expanded"))


@pytest.mark.parametrize("where", ["host", "widget", "console", "help"])
def test_no_serious_accessibility_violations(browser, site, where: str) -> None:
    from axe_playwright_python.sync_playwright import Axe

    ctx = browser.new_context()
    try:
        if where == "host":  # the launcher and panel in the host page's shadow root
            page = ctx.new_page()
            open_widget(page, site)
        elif where == "widget":
            page = ctx.new_page()
            page.goto(f"{site.bot}/widget/frame?title=Help")
            expect(page.locator("#sb-input")).to_be_visible()
            page.fill("#sb-input", KB_QUESTION)
            page.click("#sb-send")
            expect(page.locator('.sb-msg[data-role="bot"]').last).to_be_visible(timeout=20000)
        elif where == "console":
            created = httpx.post(f"{site.bot}/api/v1/conversations").json()
            auth = {"X-Conversation-Token": created["token"]}
            httpx.post(
                f"{site.bot}/api/v1/conversations/{created['id']}/messages",
                json={"text": KB_QUESTION},
                headers=auth,
            )
            httpx.post(f"{site.bot}/api/v1/conversations/{created['id']}/handoff", headers=auth)
            page = sign_in_agent(ctx, site)
            results = Axe().run(page)  # the queue
            assert not [
                v for v in results.response["violations"] if v["impact"] in ("serious", "critical")
            ]
            page.goto(f"{site.bot}/agent/conversations/{created['id']}")
            expect(page.locator("#reply-text")).to_be_visible()
        else:
            page = ctx.new_page()
            page.goto(f"{site.bot}/help/articles/start-a-return")
        results = Axe().run(page)
        serious = [
            (v["id"], v["impact"], v["help"])
            for v in results.response["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        assert not serious, serious
    finally:
        ctx.close()
