"""Search at a million passages for `make bench`: IVF against flat, recall@10 and latency.

Embedding a million passages would take the model an hour here, so the million is made from
the generated knowledge base's real index (about 50,000 embedded passages): each synthetic
article copies one real article's passages (text, term counts) and moves every vector a little
toward another random passage (x + 0.3 y, plus noise, re-normalized). The queries are real
question embeddings. Search here is everything the retriever does after embedding the
question: dense search, BM25 over all passages, fusion and grouping per article.
"""

from __future__ import annotations

import statistics
import time

import faiss
import numpy as np
from scipy import sparse

from bot.retrieval import RetrievalOptions, Retriever
from indexer.dense import DenseOptions, make_dense, recall_at_k
from indexer.lexical import LexicalIndex
from indexer.manifest import Manifest
from indexer.store import SearchIndex


class KnownVectors:
    """An 'embedder' that returns the question vectors computed beforehand (search only)."""

    name = "known"

    def __init__(self, texts: list[str], vectors: np.ndarray) -> None:
        self.dim = vectors.shape[1]
        self.by_text = dict(zip(texts, vectors, strict=True))

    def embed(self, texts: list[str], progress: bool = False) -> np.ndarray:
        return np.stack([self.by_text[t] for t in texts])


def synthetic(base: SearchIndex, passages: int, seed: int = 0) -> tuple:
    """Passage rows, vectors, article titles and their vectors, and each passage's source row,
    for about ``passages`` passages made from ``base`` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    by_article: dict[str, list[int]] = {}
    for i, p in enumerate(base.passages):
        by_article.setdefault(p["article_id"], []).append(i)
    groups = list(by_article.values())
    rows: list[dict] = []
    source: list[int] = []
    titles: list[dict] = []
    title_src: list[int] = []
    k = 0
    while len(source) < passages:
        group = groups[k % len(groups)]
        article = f"syn-{k:07d}"
        first = base.passages[group[0]]
        titles.append({"article_id": article, "title": first["title"], "hash": ""})
        title_src.append(base.title_row[first["article_id"]])
        for i in group:
            rows.append({**base.passages[i], "article_id": article, "url": f"/s/{article}"})
            source.append(i)
        k += 1
    src = np.asarray(source)
    other = rng.integers(0, len(base.vectors), len(src))
    vectors = base.vectors[src] + 0.3 * base.vectors[other]
    vectors += rng.normal(0, 0.01, vectors.shape).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    title_vectors = base.title_vectors[np.asarray(title_src)]
    return rows, np.ascontiguousarray(vectors, dtype=np.float32), titles, title_vectors, src


def million(
    base: SearchIndex,
    questions: list[str],
    question_vectors: np.ndarray,
    passages: int = 1_000_000,
    options: DenseOptions | None = None,
    flat_questions: int = 100,
    runs: int = 3,
) -> dict:
    """Build the synthetic index with IVF and with flat dense search and time searches on both
    (medians over ``runs`` passes over the questions)."""
    options = options or DenseOptions(ann_min_passages=1, build_threads=2)
    started = time.perf_counter()
    rows, vectors, titles, title_vectors, src = synthetic(base, passages)
    counts = sparse.csr_matrix(base.lexical.counts[src])
    lexical = LexicalIndex(counts, base.lexical.vocab, base.lexical.k1, base.lexical.b)
    made = time.perf_counter() - started

    started = time.perf_counter()
    ivf = make_dense(vectors, options)
    ivf_build = time.perf_counter() - started
    every = len(vectors) + 1  # both size switches above the count: every vector scanned
    flat = make_dense(vectors, DenseOptions(ann_min_passages=every, pq_min_passages=every))

    queries = np.ascontiguousarray(question_vectors, dtype=np.float32)
    _, exact = faiss.knn(queries, vectors, 10, metric=faiss.METRIC_INNER_PRODUCT)  # float32
    _, approx = ivf.search(queries, 10)
    recall = recall_at_k(exact, approx, 10)

    manifest = Manifest(version="bench", created_at="", model="known", dim=vectors.shape[1])
    embedder = KnownVectors(questions, queries)
    result = {
        "passages": len(rows),
        "articles": len(titles),
        "made_s": round(made, 1),
        "ivf": {
            "lists": ivf.nlist,
            "probe": ivf.nprobe,
            "build_s": round(ivf_build, 1),
            "recall_at_10": round(recall, 4),
        },
    }
    for name, dense, qs in (("ivf", ivf, questions), ("flat", flat, questions[:flat_questions])):
        index = SearchIndex(manifest, rows, vectors, dense, lexical, None, titles, title_vectors)
        retriever = Retriever(index, embedder, RetrievalOptions())
        for q, v in zip(qs[:10], queries[:10], strict=True):  # warm up
            dense.search(v[None, :], 50)
            retriever.search(q)
        passes = []
        for _ in range(runs):
            dense_ms, search_ms = [], []
            for q, v in zip(qs, queries, strict=False):
                t0 = time.perf_counter()
                dense.search(v[None, :], 50)
                t1 = time.perf_counter()
                retriever.search(q)
                t2 = time.perf_counter()
                dense_ms.append((t1 - t0) * 1000)
                search_ms.append((t2 - t1) * 1000)
            passes.append(
                {
                    "dense_p50_ms": statistics.median(dense_ms),
                    "dense_p99_ms": float(np.percentile(dense_ms, 99)),
                    "search_p50_ms": statistics.median(search_ms),
                    "search_p99_ms": float(np.percentile(search_ms, 99)),
                }
            )
        figures = {k: round(statistics.median(p[k] for p in passes), 2) for k in passes[0]}
        result.setdefault(name, {}).update({"questions": len(qs), "runs": runs, **figures})
    return result
