"""Build a new index version from published articles, embedding only passages that changed."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from tqdm import tqdm

from indexer.chunking import IndexDoc, passage_hash, split_article
from indexer.dense import DenseOptions
from indexer.embedder import Embedder
from indexer.lexical import LexicalIndex
from indexer.manifest import Manifest, fingerprint
from indexer.store import SearchIndex, current_version, load_current

log = logging.getLogger(__name__)


@dataclass
class BuildResult:
    """What a build did: the version now live, and how much had to be embedded."""

    version: str
    path: Path | None
    passages: int
    articles: int
    embedded: int
    reused: int
    changed: bool
    seconds: float


def doc_key(doc: IndexDoc, max_words: int, model: str) -> str:
    """Hash of everything that decides an article's passages: an equal key means equal passages."""
    payload = [doc.article_id, doc.revision, doc.title, doc.body, doc.url, doc.category]
    return hashlib.sha256(json.dumps([payload, max_words, model]).encode()).hexdigest()


def build_index(
    docs: list[IndexDoc],
    root: Path,
    embedder: Embedder,
    max_words: int = 120,
    bm25_k1: float = 0.9,
    bm25_b: float = 0.4,
    progress: bool = False,
    dense_options: DenseOptions | None = None,
    live: SearchIndex | None = None,
) -> BuildResult:
    """Split, embed what is new, write a version and switch CURRENT to it.

    Articles whose content is unchanged since the current version keep its passages, vectors
    and term counts; only changed articles are split, tokenized and embedded. When nothing
    changed at all, no new version is written. ``live``, the version a server holds in memory,
    saves reading the current version from disk when it is that version.
    """
    started = time.perf_counter()
    chunking = {"max_words": max_words, "bm25_k1": bm25_k1, "bm25_b": bm25_b}
    options = dense_options or DenseOptions()
    # the dense index's kind is part of what a build makes: changing its settings rebuilds
    chunking["dense"] = [options.ann_min_passages, options.ann_lists, options.pq_min_passages]
    keys = [doc_key(d, max_words, embedder.name) for d in docs]
    if len({d.article_id for d in docs}) != len(docs):
        raise ValueError("two articles share an id: each article must be indexed once")
    digest = fingerprint(keys, embedder.name, chunking)

    if live is not None and live.manifest.version == current_version(root):
        previous = live
    else:
        previous = _load_previous(root, dense_options)
    if previous is not None and previous.manifest.fingerprint == digest:
        n = len(previous.passages)
        return BuildResult(
            previous.manifest.version,
            previous.path,
            n,
            len(docs),
            0,
            n + len(docs),
            False,
            time.perf_counter() - started,
        )

    index, embedded = assemble(
        docs, keys, digest, chunking, embedder, previous, progress, dense_options
    )
    path = index.save(root)
    n = len(index.passages)
    return BuildResult(
        index.manifest.version,
        path,
        n,
        len(docs),
        embedded,
        n + len(docs) - embedded,
        True,
        time.perf_counter() - started,
    )


def _plan(
    docs: list[IndexDoc], keys: list[str], max_words: int, model: str, previous: SearchIndex | None
) -> tuple[list[dict], list[int | None], list[str | None]]:
    """Passage rows in order, the previous version's row each one reuses (None: new), and the
    search text of every new one."""
    old_key: dict[str, str] = {}
    old_rows: dict[str, list[int]] = {}
    if previous is not None and previous.manifest.model == model:
        old_key = {t["article_id"]: t.get("source", "") for t in previous.titles}
        for i, p in enumerate(previous.passages):
            old_rows.setdefault(p["article_id"], []).append(i)
    rows: list[dict] = []
    reuse: list[int | None] = []
    texts: list[str | None] = []
    for doc, key in zip(docs, keys, strict=True):
        if old_key.get(doc.article_id) == key and doc.article_id in old_rows:
            for r in old_rows[doc.article_id]:
                rows.append(previous.passages[r])
                reuse.append(r)
                texts.append(None)
            continue
        for p in split_article(doc, max_words, model):
            rows.append(p.to_dict())
            reuse.append(None)
            texts.append(p.search_text)
    return rows, reuse, texts


def assemble(
    docs: list[IndexDoc],
    keys: list[str],
    digest: str,
    chunking: dict,
    embedder: Embedder,
    previous: SearchIndex | None,
    progress: bool = False,
    dense_options: DenseOptions | None = None,
) -> tuple[SearchIndex, int]:
    """An in-memory index of ``docs``, splitting, tokenizing and embedding only what
    ``previous`` does not hold; returns it and how many texts were embedded."""
    rows, reuse, texts = _plan(docs, keys, chunking["max_words"], embedder.name, previous)
    titles = [
        {
            "article_id": d.article_id,
            "title": d.title,
            "hash": passage_hash(d.title, embedder.name),
            "source": key,
        }
        for d, key in zip(docs, keys, strict=True)
    ]
    same_model = previous is not None and previous.manifest.model == embedder.name
    known: dict[str, int] = {}  # hash -> row of the previous passages or titles (negative)
    if same_model:
        known = {p["hash"]: i for i, p in enumerate(previous.passages)}
        if previous.title_vectors is not None:
            known.update((t["hash"], -1 - i) for i, t in enumerate(previous.titles))
    text_of = {r["hash"]: t for r, t in zip(rows, texts, strict=True) if t is not None}
    text_of.update((t["hash"], t["title"]) for t in titles)
    todo = sorted(h for h in text_of if h not in known)
    fresh: dict[str, np.ndarray] = {}
    if todo:
        log.info("embedding %d new text(s), reusing %d", len(todo), len(rows) - len(todo))
        batch = 256
        bar = tqdm(total=len(todo), desc="embedding", unit="passage", disable=not progress)
        for start in range(0, len(todo), batch):
            chunk = todo[start : start + batch]
            fresh.update(zip(chunk, embedder.embed([text_of[h] for h in chunk]), strict=True))
            bar.update(len(chunk))
        bar.close()

    def vector(h: str) -> np.ndarray:
        if h in fresh:
            return fresh[h]
        row = known[h]
        return previous.vectors[row] if row >= 0 else previous.title_vectors[-1 - row]

    matrix = np.zeros((len(rows), embedder.dim), dtype=np.float32)
    at = [i for i, r in enumerate(reuse) if r is not None]
    if at:
        matrix[at] = previous.vectors[[reuse[i] for i in at]]
    for i, r in enumerate(reuse):
        if r is None:
            matrix[i] = vector(rows[i]["hash"])
    title_matrix = np.zeros((len(titles), embedder.dim), dtype=np.float32)
    for i, t in enumerate(titles):
        title_matrix[i] = vector(t["hash"])
    lexical = LexicalIndex.build(
        texts,
        chunking["bm25_k1"],
        chunking["bm25_b"],
        previous.lexical if same_model else None,
        reuse if same_model and previous.lexical is not None else None,
    )
    now = datetime.now(UTC)
    manifest = Manifest(
        version=f"{now:%Y%m%dT%H%M%S%f}-{digest[:8]}",
        created_at=now.isoformat(),
        model=embedder.name,
        dim=embedder.dim,
        passages=len(rows),
        articles=len(docs),
        passage_hashes=[r["hash"] for r in rows],
        fingerprint=digest,
        chunking=chunking,
    )
    index = SearchIndex.build(
        manifest,
        rows,
        matrix,
        lexical,
        titles,
        title_matrix,
        dense_options,
        previous if same_model else None,
    )
    return index, len(todo)


def in_memory_index(
    docs: list[IndexDoc],
    embedder: Embedder,
    previous: SearchIndex | None,
    max_words: int = 120,
    bm25_k1: float = 0.9,
    bm25_b: float = 0.4,
) -> SearchIndex:
    """An index of ``docs`` that is never written, embedding only what ``previous`` lacks
    (e.g. the live index plus one draft, for trying a question against it)."""
    chunking = {"max_words": max_words, "bm25_k1": bm25_k1, "bm25_b": bm25_b}
    keys = [doc_key(d, max_words, embedder.name) for d in docs]
    digest = fingerprint(keys, embedder.name, chunking)
    return assemble(docs, keys, digest, chunking, embedder, previous)[0]


def _load_previous(root: Path, dense_options: DenseOptions | None = None) -> SearchIndex | None:
    try:
        return load_current(root, dense_options)
    except (OSError, ValueError, RuntimeError, TypeError, KeyError) as exc:
        log.warning("ignoring unreadable current index under %s: %s", root, exc)
        return None
