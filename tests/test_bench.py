"""The benchmark's parts: the generated help center, the synthetic million, the load generator
against a real server (which must not fail under 64 concurrent customers), memory readings."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import uvicorn

from bot.app import create_app
from eval import loadgen
from eval.bench_search import million, synthetic
from eval.bench_server import memory_mb
from eval.generated_kb import generate
from indexer.build import build_index
from indexer.chunking import IndexDoc, split_article
from indexer.embedder import FakeEmbedder
from indexer.store import load_current
from tests.conftest import KB_DIR, SMALL_KB, make_settings, seed


def test_the_generated_help_center_is_deterministic_and_sized():
    articles, questions = generate(KB_DIR, articles=200, seed=3)
    again, _ = generate(KB_DIR, articles=200, seed=3)
    other, _ = generate(KB_DIR, articles=200, seed=4)
    assert [a.body for a in articles] == [a.body for a in again]
    assert [a.body for a in articles] != [a.body for a in other]
    assert len({a.id for a in articles}) == 200 and len(questions) == 20
    docs = [IndexDoc(a.id, 1, a.title, a.body, "/x", a.category) for a in articles]
    per_article = [len(split_article(d)) for d in docs]
    assert 4 <= np.mean(per_article) <= 6  # 10,000 articles make about 50,000 passages
    ids = {a.id for a in articles}
    assert all(q.article_id in ids for q in questions)
    by_id = {a.id: a for a in articles}
    q = questions[1]
    assert q.question.split(" on my ")[1].rstrip("?") in by_id[q.article_id].title


def test_the_synthetic_million_is_made_from_the_real_index(tmp_path):
    articles, questions = generate(KB_DIR, articles=60)
    docs = [IndexDoc(a.id, 1, a.title, a.body, f"/{a.id}", a.category) for a in articles]
    build_index(docs, tmp_path, FakeEmbedder(dim=32))
    base = load_current(tmp_path)
    rows, vectors, titles, title_vectors, source = synthetic(base, 3000)
    assert len(rows) == len(vectors) == len(source) >= 3000
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert len(titles) == len(title_vectors) and titles[0]["article_id"] == rows[0]["article_id"]
    # each vector stays nearest its own source passage's among the real ones, mostly
    nearest = (vectors @ base.vectors.T).argmax(axis=1)
    assert (base.vectors[nearest] == base.vectors[source]).all(axis=1).mean() > 0.9
    texts = [q.question for q in questions]
    result = million(base, texts, FakeEmbedder(dim=32).embed(texts), 3000, runs=1)
    assert result["passages"] >= 3000 and 0.0 <= result["ivf"]["recall_at_10"] <= 1.0
    assert result["ivf"]["search_p99_ms"] > 0 and result["flat"]["questions"] <= len(texts)


def test_memory_of_a_process():
    mem = memory_mb(os.getpid())
    assert 10 < mem["rss"] <= mem["peak"]


@pytest.fixture
def server(tmp_path):
    """A real uvicorn on a free loopback port, the fake embedder, the small KB."""
    settings = make_settings(tmp_path)
    embedder = FakeEmbedder()
    seed(settings, SMALL_KB, embedder)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(settings, embedder=embedder)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health").status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    yield url
    srv.should_exit = True
    thread.join(10)


QUESTIONS = ["how long do refunds take", "reset my password", "return policy", "track my order"]


def load(*args, **kwargs) -> dict:
    """The load generator's run, on a thread with an event loop of its own (a test before may
    have left one running on this thread)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(loadgen.run(*args, **kwargs))).result()


def test_64_concurrent_customers_all_get_replies(server):
    """More customers at once than the server has worker threads: every message is answered
    (a session holding SQLite's write lock once waited for a thread that never came, and
    requests failed with 'database is locked' after 30 s)."""
    result = load(server, QUESTIONS, 64, 400, 25.0, warmup=0)
    assert result["errors"] == 0
    assert result["replies"] == 400 and result["seconds"] < 25
    assert sum(result["actions"].values()) == 400


def test_the_load_generator_stops_at_its_bounds(server):
    by_count = load(server, QUESTIONS, 4, 30, 30.0, warmup=0)
    assert by_count["replies"] == 30
    by_time = load(server, QUESTIONS, 4, 10**9, 1.0, warmup=0)
    assert 0 < by_time["replies"] < 10**9 and by_time["seconds"] < 5


def test_the_load_generator_cli_prints_json(server, tmp_path: Path):
    import json
    import subprocess
    import sys

    questions = tmp_path / "q.json"
    questions.write_text('["reset my password"]')
    args = [server, "--questions", str(questions), "--clients", "2", "--requests", "5"]
    done = subprocess.run(
        [sys.executable, "-m", "eval.loadgen", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    out = json.loads(done.stdout)
    assert out["replies"] == 5 and out["clients"] == 2 and out["latency_ms"]["p50"] > 0
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    bad = subprocess.run(
        [sys.executable, "-m", "eval.loadgen", server, "--questions", str(empty)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode != 0 and "empty" in bad.stderr


def test_dense_recall_of_the_live_index(tmp_path):
    from bot.pipeline import IndexHolder
    from eval.bench_kb import dense_recall
    from indexer.dense import DenseOptions

    articles, questions = generate(KB_DIR, articles=200)
    docs = [IndexDoc(a.id, 1, a.title, a.body, f"/{a.id}", a.category) for a in articles]
    embedder = FakeEmbedder(dim=32)
    texts = [q.question for q in questions]
    kinds = (
        (DenseOptions(), "flat"),
        (DenseOptions(pq_min_passages=1), "pq"),
        (DenseOptions(ann_min_passages=1), "ivf"),
    )
    for options, kind in kinds:
        root = tmp_path / kind
        build_index(docs, root, embedder, dense_options=options)
        holder = IndexHolder(root, embedders=embedder, dense_options=options)
        assert holder.refresh()
        figures = dense_recall(holder, texts, embedder)
        assert figures["kind"] == kind
        assert 0.0 <= figures["recall_at_10"] <= 1.0
        if kind == "flat":
            assert figures["recall_at_10"] >= 0.99  # float16 keeps the top ten
        elif kind == "pq":
            assert figures["rescore"] == options.pq_rescore and figures["subquantizers"] == 8
        else:
            assert figures["probe"] == options.ann_probe and figures["lists"] > 1
