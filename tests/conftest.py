"""Shared fixtures: the fake embedder, settings in tmp_path, an app with a small KB, the real
model and the sample KB index (once per session), and a real PostgreSQL server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from bot.app import create_app
from bot.article_store import import_into
from bot.db import init_db, make_engine, make_sessionmaker
from bot.settings import Settings
from indexer.articles import SourceArticle, load_path
from indexer.build import build_index
from indexer.embedder import FakeEmbedder

ROOT = Path(__file__).resolve().parent.parent
KB_DIR = ROOT / "kb_articles"

SMALL_KB = [
    SourceArticle(
        id="reset-password",
        title="Reset your password",
        body="Forgot your password? Use the reset link.\n\n## Steps\nGo to Sign in, choose "
        "Forgot password and follow the link we email you. The link expires after 1 hour.",
        category="account",
        tags=["password"],
    ),
    SourceArticle(
        id="shipping-costs",
        title="Shipping options and costs",
        body="We ship with several carriers.\n\n## Standard shipping\nStandard shipping takes 3-5 "
        "business days and is free over $50.\n\n## Express shipping\nExpress delivery arrives "
        "in 1-2 business days for $15.",
        category="orders-shipping",
    ),
    SourceArticle(
        id="return-policy",
        title="Return policy",
        body="You can return most items within 30 days of delivery for a full refund.\n\n"
        "## Items that cannot be returned\nGift cards and opened mattresses are final sale.",
        category="returns",
    ),
    SourceArticle(
        id="old-draft",
        title="Secret unpublished plans",
        body="Teleportation shipping is coming soon.",
        status="draft",
    ),
]


def make_settings(tmp_path: Path, **overrides) -> Settings:
    values = {
        "database_url": f"sqlite:///{tmp_path / 'bot.db'}",
        "index_dir": tmp_path / "index",
        "embedder": "fake",
        "index_check_seconds": 0.2,
        "secret_key_file": tmp_path / "secret_key",
        "answer_threshold": 0.5,
        "clarify_threshold": 0.3,
    }
    values.update(overrides)
    return Settings(**values)


def seed(settings: Settings, articles: list[SourceArticle], embedder) -> None:
    """Import ``articles`` into the settings' database and build the index."""
    _, docs = import_into(settings.database_url, articles)
    build_index(docs, settings.index_dir, embedder, max_words=settings.passage_max_words)


def wait_ready(client: TestClient, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get("/health").status_code == 200:
            return
        time.sleep(0.05)
    raise AssertionError(f"app not ready: {client.get('/health').json()}")


@pytest.fixture
def fake_embedder() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def client(settings: Settings, fake_embedder: FakeEmbedder):
    """A ready TestClient over the small KB, with the fake embedder."""
    seed(settings, SMALL_KB, fake_embedder)
    with TestClient(create_app(settings, embedder=fake_embedder)) as c:
        wait_ready(c)
        yield c


# --- the real model and the sample help center -------------------------------------------


@pytest.fixture(scope="session")
def minilm():
    from indexer.embedder import MiniLMEmbedder

    return MiniLMEmbedder(threads=os.cpu_count())


@pytest.fixture(scope="session")
def sample_embedder(tmp_path_factory):
    """The embedder the sample KB is served with by default: MiniLM as int8 ONNX, exported from
    the installed weights (`supportbot adapt` and the PyTorch backend are optional; the eval
    harness compares them)."""
    from indexer.embedder import MINILM_NAME, load_named
    from indexer.onnx_embedder import SUFFIX

    return load_named(MINILM_NAME + SUFFIX, tmp_path_factory.mktemp("models"), os.cpu_count())


@pytest.fixture(scope="session")
def sample_kb(tmp_path_factory, sample_embedder) -> Settings:
    """Settings of a database and index holding the sample KB, built with the real model."""
    tmp = tmp_path_factory.mktemp("sample-kb")
    settings = make_settings(
        tmp,
        embedder="minilm-int8",
        answer_threshold=Settings().answer_threshold,
        clarify_threshold=Settings().clarify_threshold,
    )
    articles, errors = load_path(KB_DIR)
    assert not errors, errors
    seed(settings, articles, sample_embedder)
    return settings


# --- PostgreSQL ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


@pytest.fixture(scope="session")
def postgres_url():
    """A throw-away PostgreSQL server on a loopback port (the Debian package `make test` installs)."""
    bindir = _pg_bin()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed; `make test` installs it (make system-deps)")
        pytest.skip("PostgreSQL server binaries not found (run `make system-deps`)")
    base = Path(tempfile.mkdtemp(prefix="supportbot-pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(base, "postgres")
        shutil.chown(sock, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    run = lambda *cmd: subprocess.run([*as_user, *cmd], check=True, capture_output=True)
    run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    run(
        str(bindir / "pg_ctl"),
        "-D",
        str(data),
        "-l",
        str(base / "log"),
        "-w",
        "start",
        "-o",
        f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off",
    )
    try:
        run(
            str(bindir / "createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            "postgres",
            "supportbot",
        )
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/supportbot"
    finally:
        subprocess.run(
            [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path: Path) -> str:
    """Each storage test runs against a SQLite file and a real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url = request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    from bot.models import Base

    Base.metadata.drop_all(engine)  # every test starts from an empty schema
    engine.dispose()
    return url


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    """A session factory over a fresh, migrated database of each kind (see db_url)."""
    engine = make_engine(db_url)
    init_db(engine)
    yield make_sessionmaker(engine)
    engine.dispose()
