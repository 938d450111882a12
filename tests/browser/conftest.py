"""Browser tests: a real uvicorn serving the sample help center with the real model on a free
loopback port, a host page on another origin that embeds the widget with the one-tag snippet,
and Debian's Chromium driven by Playwright (never `playwright install`)."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import uvicorn
from conftest import make_settings

from bot.app import create_app
from bot.auth import create_user
from bot.db import make_engine, make_sessionmaker, session_scope

CHROMIUM = Path("/usr/bin/chromium")
AGENT_PASSWORD = "agent password 1"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "web_widget" / "screenshots"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Site:
    bot: str  # the bot's origin
    host: str  # the customer-facing site that embeds the widget
    other: str  # a site that is not allowed to embed it
    settings: object


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def _serve_folder(folder: Path, port: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", port), partial(_Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


HOST_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Larkspur shop</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>/* host styles that must not leak into the widget */
button {{ background: hotpink !important; font-size: 40px !important; }}
* {{ font-family: serif; }}</style></head>
<body><main><h1>Larkspur shop</h1><p>Our bestsellers.</p></main>
<script src="{bot}/widget/loader.js" data-title="Larkspur help" data-color="#7b2d26" async></script>
</body></html>
"""


@pytest.fixture(scope="session")
def site(tmp_path_factory, sample_kb, sample_embedder) -> Iterator[Site]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    tmp = tmp_path_factory.mktemp("browser")
    bot_port, host_port, other_port = _free_port(), _free_port(), _free_port()
    host = f"http://127.0.0.1:{host_port}"
    # the sample KB's database and index, copied so conversations stay out of other tests
    shutil.copytree(sample_kb.index_dir, tmp / "index")
    shutil.copy(Path(sample_kb.database_url.removeprefix("sqlite:///")), tmp / "bot.db")
    settings = make_settings(
        tmp,
        embedder="minilm-int8",
        answer_threshold=sample_kb.answer_threshold,
        clarify_threshold=sample_kb.clarify_threshold,
        allowed_origins=[host],
    )
    engine = make_engine(settings.database_url)
    with session_scope(make_sessionmaker(engine)) as session:
        create_user(session, "sam", AGENT_PASSWORD, "agent", "Sam")
        create_user(session, "lee", AGENT_PASSWORD, "admin", "Lee")
    engine.dispose()
    app = create_app(settings, embedder=sample_embedder)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=bot_port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    bot = f"http://127.0.0.1:{bot_port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{bot}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("the bot did not become ready")
        time.sleep(0.2)
    pages = tmp / "host"
    pages.mkdir()
    (pages / "index.html").write_text(HOST_PAGE.format(bot=bot))
    servers = [_serve_folder(pages, host_port), _serve_folder(pages, other_port)]
    yield Site(bot=bot, host=host, other=f"http://127.0.0.1:{other_port}", settings=settings)
    for s in servers:
        s.shutdown()
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="session")
def browser(site):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-dev-shm-usage",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def context(browser):
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    yield ctx
    ctx.close()
