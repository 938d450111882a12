"""Build a new index version from published articles, embedding only passages that changed."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from tqdm import tqdm

from indexer.chunking import IndexDoc, passage_hash, split_article
from indexer.embedder import Embedder
from indexer.manifest import Manifest, fingerprint
from indexer.store import SearchIndex, load_current

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


def build_index(
    docs: list[IndexDoc],
    root: Path,
    embedder: Embedder,
    max_words: int = 120,
    bm25_k1: float = 0.9,
    bm25_b: float = 0.4,
    progress: bool = False,
) -> BuildResult:
    """Split, embed what is new, write a version and switch CURRENT to it.

    Vectors of passages whose content hash is in the current version are reused. When nothing
    changed at all, no new version is written.
    """
    started = datetime.now(UTC)
    chunking = {"max_words": max_words, "bm25_k1": bm25_k1, "bm25_b": bm25_b}
    passages = [p for doc in docs for p in split_article(doc, max_words, embedder.name)]
    rows = [p.to_dict() for p in passages]
    digest = fingerprint(rows, embedder.name, chunking)

    previous = _load_previous(root)
    if previous is not None and previous.manifest.fingerprint == digest:
        return BuildResult(
            previous.manifest.version,
            previous.path,
            len(rows),
            len(docs),
            0,
            len(rows) + len(docs),
            False,
            (datetime.now(UTC) - started).total_seconds(),
        )

    index, embedded = assemble(docs, passages, rows, digest, chunking, embedder, previous, progress)
    path = index.save(root)
    return BuildResult(
        index.manifest.version,
        path,
        len(rows),
        len(docs),
        embedded,
        len(rows) + len(docs) - embedded,
        True,
        (datetime.now(UTC) - started).total_seconds(),
    )


def assemble(
    docs: list[IndexDoc],
    passages: list,
    rows: list[dict],
    digest: str,
    chunking: dict,
    embedder: Embedder,
    previous: SearchIndex | None,
    progress: bool = False,
) -> tuple[SearchIndex, int]:
    """An in-memory index of ``passages``, embedding only texts ``previous`` does not hold;
    returns it and how many texts were embedded."""
    bm25_k1, bm25_b = chunking["bm25_k1"], chunking["bm25_b"]
    titles = [
        {"article_id": d.article_id, "title": d.title, "hash": passage_hash(d.title, embedder.name)}
        for d in docs
    ]
    known: dict[str, np.ndarray] = {}
    if previous is not None and previous.manifest.model == embedder.name:
        known = {p["hash"]: previous.vectors[i] for i, p in enumerate(previous.passages)}
        if previous.title_vectors is not None:
            known.update(
                (t["hash"], previous.title_vectors[i]) for i, t in enumerate(previous.titles)
            )
    text_of = {p.hash: p.search_text for p in passages} | {t["hash"]: t["title"] for t in titles}
    todo = sorted(h for h in text_of if h not in known)
    if todo:
        log.info("embedding %d new passage(s), reusing %d", len(todo), len(passages) - len(todo))
        batch = 256
        bar = tqdm(total=len(todo), desc="embedding", unit="passage", disable=not progress)
        for start in range(0, len(todo), batch):
            chunk = todo[start : start + batch]
            vectors = embedder.embed([text_of[h] for h in chunk])
            known.update(zip(chunk, vectors, strict=True))
            bar.update(len(chunk))
        bar.close()
    matrix = (
        np.stack([known[p.hash] for p in passages]).astype(np.float32)
        if passages
        else np.zeros((0, embedder.dim), dtype=np.float32)
    )
    title_matrix = (
        np.stack([known[t["hash"]] for t in titles]).astype(np.float32)
        if titles
        else np.zeros((0, embedder.dim), dtype=np.float32)
    )
    now = datetime.now(UTC)
    manifest = Manifest(
        version=f"{now:%Y%m%dT%H%M%S%f}-{digest[:8]}",
        created_at=now.isoformat(),
        model=embedder.name,
        dim=embedder.dim,
        passages=len(rows),
        articles=len(docs),
        passage_hashes=[p.hash for p in passages],
        fingerprint=digest,
        chunking=chunking,
    )
    index = SearchIndex.build(
        manifest,
        rows,
        matrix,
        [p.search_text for p in passages],
        bm25_k1,
        bm25_b,
        titles,
        title_matrix,
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
    passages = [p for doc in docs for p in split_article(doc, max_words, embedder.name)]
    rows = [p.to_dict() for p in passages]
    digest = fingerprint(rows, embedder.name, chunking)
    return assemble(docs, passages, rows, digest, chunking, embedder, previous)[0]


def _load_previous(root: Path) -> SearchIndex | None:
    try:
        return load_current(root)
    except (OSError, ValueError, RuntimeError, TypeError, KeyError) as exc:
        log.warning("ignoring unreadable current index under %s: %s", root, exc)
        return None
