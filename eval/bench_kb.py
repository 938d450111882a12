"""In-process figures of `make bench` for one knowledge base and one backend: full build,
answer latency through the pipeline, and the re-index after editing one article."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import faiss
import numpy as np

from bot.article_admin import save_article
from bot.article_store import import_in_batches, published_docs
from bot.db import init_db, make_engine, make_sessionmaker, session_scope
from bot.pipeline import IndexHolder, Pipeline
from bot.reindex import Reindexer
from bot.settings import Settings
from indexer.articles import SourceArticle
from indexer.build import build_index
from indexer.chunking import IndexDoc
from indexer.dense import RescoredPQ, is_approximate, recall_at_k
from indexer.embedder import MINILM_NAME, Embedder, MiniLMEmbedder, load_named
from indexer.onnx_embedder import SUFFIX as INT8_SUFFIX

BACKENDS = ("pytorch-fp32", "onnx-int8")
MODEL = {"pytorch-fp32": MINILM_NAME, "onnx-int8": MINILM_NAME + INT8_SUFFIX}


def import_kb(database_url: str, articles: list[SourceArticle]) -> list[IndexDoc]:
    """Store ``articles`` in a new database; returns the published ones as the indexer sees them."""
    engine = make_engine(database_url)
    init_db(engine)
    factory = make_sessionmaker(engine)
    import_in_batches(factory, articles, [])
    with session_scope(factory) as session:
        docs = published_docs(session)
    engine.dispose()
    return docs


class Backend:
    """One backend's model, loaded once: all cores for building, one thread per question."""

    def __init__(self, backend: str, models: Path) -> None:
        self.backend = backend
        self.cores = os.cpu_count() or 1
        if backend == "pytorch-fp32":
            self.builder: Embedder = MiniLMEmbedder(threads=self.cores)
            self.asker: Embedder = self.builder
        else:
            self.builder = load_named(MODEL[backend], models, self.cores)
            self.asker = load_named(MODEL[backend], models, 1)
        self.builder.embed(["warm up"])

    def _threads(self, n: int) -> None:
        if self.backend == "pytorch-fp32":
            import torch

            torch.set_num_threads(n)

    def build(self, docs: list[IndexDoc], root: Path, settings: Settings) -> dict:
        """A full build from nothing, on every core."""
        self._threads(self.cores)
        started = time.perf_counter()
        result = build_index(
            docs,
            root,
            self.builder,
            settings.passage_max_words,
            settings.bm25_k1,
            settings.bm25_b,
            dense_options=settings.dense_options(build_threads=self.cores),
        )
        seconds = time.perf_counter() - started
        self._threads(1)
        return {
            "articles": len(docs),
            "passages": result.passages,
            "seconds": round(seconds, 2),
            "passages_per_s": round(result.passages / seconds, 1),
        }

    def holder(self, root: Path, settings: Settings) -> IndexHolder:
        self._threads(1)
        holder = IndexHolder(root, embedders=self.asker, dense_options=settings.dense_options())
        if not holder.refresh():
            raise RuntimeError(holder.error or f"no index under {root}")
        return holder


def answer_latency(
    holder: IndexHolder, settings: Settings, questions: list[str], runs: int = 3
) -> dict:
    """Milliseconds per question through Pipeline.reply (one thread), medians over ``runs``."""
    pipeline = Pipeline.from_settings(settings, holder)
    for q in questions[:20]:
        pipeline.reply(q)
    per_run = []
    actions: dict[str, int] = {}
    for _ in range(runs):
        times = []
        for q in questions:
            started = time.perf_counter()
            decision = pipeline.reply(q)
            times.append((time.perf_counter() - started) * 1000)
            actions[decision.action] = actions.get(decision.action, 0) + 1
        per_run.append(
            {
                "p50": statistics.median(times),
                "p99": float(np.percentile(times, 99)),
                "mean": statistics.fmean(times),
            }
        )
    return {
        "questions": len(questions),
        "runs": runs,
        **{k: round(statistics.median(r[k] for r in per_run), 2) for k in ("p50", "p99", "mean")},
        "actions": actions,
    }


def dense_recall(holder: IndexHolder, questions: list[str], asker: Embedder) -> dict:
    """What the live dense index is (flat float16, product-quantized and rescored, or IVF) and
    its recall@10 against exact float32 search over the same vectors, for these questions."""
    dense = holder.index.dense
    vectors = np.ascontiguousarray(asker.embed(questions), dtype=np.float32)
    _, want = faiss.knn(vectors, holder.index.vectors, 10, metric=faiss.METRIC_INNER_PRODUCT)
    _, got = dense.search(vectors, 10)
    out: dict = {"kind": "flat", "recall_at_10": round(recall_at_k(want, got), 4)}
    if isinstance(dense, RescoredPQ):
        out.update(kind="pq", subquantizers=dense.codes.pq.M, rescore=dense.rescore)
    elif is_approximate(dense):
        out.update(kind="ivf", lists=dense.nlist, probe=dense.nprobe)
    return out


def top1_rate(holder: IndexHolder, settings: Settings, pairs: list[tuple[str, str]]) -> float:
    """Share of (question, article id) pairs whose top-ranked article is that article."""
    pipeline = Pipeline.from_settings(settings, holder)
    hits = sum(
        bool(r) and r[0].article_id == article for q, article in pairs if (r := pipeline.search(q))
    )
    return round(hits / max(1, len(pairs)), 3)


def incremental_reindex(
    settings: Settings, holder: IndexHolder, article: SourceArticle, runs: int = 3
) -> dict:
    """Edit one article ``runs`` times the way the admin editor does and time each re-index
    until the new version is live (reading the articles, splitting, embedding, writing, loading).
    """
    engine = make_engine(settings.database_url)
    factory = make_sessionmaker(engine)
    reindexer = Reindexer(factory, holder, settings, debounce=0.0)
    seconds, walls = [], []
    try:
        for i in range(runs):
            data = {
                "id": article.id,
                "title": article.title,
                "body": f"{article.body}\n\nEdited for the benchmark, round {i + 1}.",
                "category": article.category,
                "status": "published",
            }
            with session_scope(factory) as session:
                save_article(session, data, "bench")
            started = time.perf_counter()
            if not reindexer.wait(reindexer.request(), timeout=300):
                raise RuntimeError("the re-index did not finish in 300 s")
            walls.append(time.perf_counter() - started)
            if reindexer.status.last_error:
                raise RuntimeError(f"the re-index failed: {reindexer.status.last_error}")
            seconds.append(reindexer.status.last_seconds)
    finally:
        reindexer.stop()
        engine.dispose()
    return {
        "runs": runs,
        "seconds": round(statistics.median(seconds), 2),
        "runs_seconds": seconds,
        "until_live_s": round(statistics.median(walls), 2),
    }
