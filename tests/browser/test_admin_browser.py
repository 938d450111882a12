"""The support lead in a real browser: write an article, preview it, publish it, and the bot
answers from it in the widget (real model, background re-index)."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from browser.conftest import AGENT_PASSWORD, SCREENSHOTS
from browser.test_widget_browser import ask, open_widget

pytestmark = pytest.mark.browser
BODY = """Larkspur can engrave a short message on any brass lamp.

## How to order engraving
Add engraving on the product page before checkout. Engraving costs $12 and adds two business
days to delivery. Engraved lamps cannot be returned."""


def test_edit_publish_and_the_bot_answers_from_the_new_article(browser, site) -> None:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        lead = ctx.new_page()
        lead.goto(f"{site.bot}/agent/login?next=/admin/articles/new")
        lead.fill("#username", "lee")
        lead.fill("#password", AGENT_PASSWORD)
        lead.click("button[type=submit]")
        expect(lead.get_by_role("heading", name="New article")).to_be_visible()
        lead.fill("#f-title", "Lamp engraving")
        lead.fill("#f-category", "products")
        lead.fill("#f-tags", "lamps, engraving")
        lead.fill("#f-body", BODY)
        # the live preview renders the Markdown (sanitized on the server)
        expect(lead.locator("#preview h2")).to_have_text("How to order engraving")
        lead.screenshot(path=str(SCREENSHOTS / "admin-editor.png"))
        lead.get_by_role("button", name="Save").click()
        expect(lead.locator(".notice")).to_contain_text("created")
        lead.get_by_role("button", name="Publish").click()
        expect(lead.locator(".notice")).to_contain_text("published")

        # the re-index runs in the background: "Try a question" shows when the live index has it
        question = "How much does lamp engraving cost?"
        deadline = time.monotonic() + 60
        while True:
            lead.goto(f"{site.bot}/admin/try?q={question}")
            if lead.locator('a[href="/admin/articles/lamp-engraving"]').count():
                break
            assert time.monotonic() < deadline, lead.locator("p[role=status]").all_inner_texts()
            lead.wait_for_timeout(500)

        page = ctx.new_page()
        frame = open_widget(page, site)
        ask(frame, question)
        cited = frame.locator('.sb-msg[data-role="bot"]').last.locator(".sb-citation a").first
        expect(cited).to_have_text("Lamp engraving", timeout=20000)
        expect(frame.locator('.sb-msg[data-role="bot"]').last).to_contain_text("$12")
    finally:
        ctx.close()
