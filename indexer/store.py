"""One index version on disk: FAISS (dense), bm25s (lexical), the passage table and the manifest.

Versions live in ``<root>/versions/<version>/``; ``<root>/CURRENT`` names the live one. A version is
written to a temporary folder, renamed into place, and only then is CURRENT replaced (atomically),
so a reader never sees a half-written index.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import bm25s
import faiss
import numpy as np
import Stemmer

from indexer.manifest import Manifest

log = logging.getLogger(__name__)
logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets DEBUG on import
# one FAISS thread per search: requests run concurrently on 2 cores; OpenMP threads would fight
faiss.omp_set_num_threads(1)

CURRENT = "CURRENT"
KEEP_VERSIONS = 3
_stemmer = Stemmer.Stemmer("english")


def tokenize(texts: list[str]) -> list[list[str]]:
    """Lowercased, stop-worded, stemmed tokens: the lexical index's view of text."""
    return bm25s.tokenize(
        texts, stopwords="en", stemmer=_stemmer, return_ids=False, show_progress=False
    )


@dataclass
class SearchIndex:
    """A loaded index version: passages, their vectors, a FAISS index and a BM25 index."""

    manifest: Manifest
    passages: list[dict]
    vectors: np.ndarray
    dense: faiss.Index
    bm25: bm25s.BM25 | None
    path: Path | None = None
    titles: list[dict] = field(default_factory=list)  # one per article: {article_id, title, hash}
    title_vectors: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.title_row = {t["article_id"]: i for i, t in enumerate(self.titles)}

    @classmethod
    def build(
        cls,
        manifest: Manifest,
        passages: list[dict],
        vectors: np.ndarray,
        search_texts: list[str],
        k1: float = 0.9,
        b: float = 0.4,
        titles: list[dict] | None = None,
        title_vectors: np.ndarray | None = None,
    ) -> SearchIndex:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        dense = faiss.IndexFlatIP(manifest.dim)
        if len(vectors):
            dense.add(vectors)
        bm25 = None
        if passages:
            bm25 = bm25s.BM25(k1=k1, b=b)
            bm25.index(tokenize(search_texts), show_progress=False)
        return cls(manifest, passages, vectors, dense, bm25, None, titles or [], title_vectors)

    def save(self, root: Path) -> Path:
        """Write this index as a new version under ``root`` and make it current; returns its path."""
        versions = root / "versions"
        versions.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=versions))
        try:
            faiss.write_index(self.dense, str(tmp / "dense.faiss"))
            np.save(tmp / "vectors.npy", self.vectors)
            (tmp / "passages.json").write_text(json.dumps(self.passages))
            (tmp / "titles.json").write_text(json.dumps(self.titles))
            if self.title_vectors is not None:
                np.save(tmp / "title_vectors.npy", self.title_vectors)
            if self.bm25 is not None:
                self.bm25.save(str(tmp / "bm25"))
            self.manifest.write(tmp / "manifest.json")
            _fsync_tree(tmp)  # on disk before anything points at it
            final = versions / self.manifest.version
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        pointer = root / f".{CURRENT}.tmp"
        with pointer.open("w") as fh:
            fh.write(self.manifest.version)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(pointer, root / CURRENT)
        self.path = final
        _prune(versions, keep=self.manifest.version)
        return final

    @classmethod
    def load(cls, path: Path) -> SearchIndex:
        manifest = Manifest.read(path / "manifest.json")
        passages = json.loads((path / "passages.json").read_text())
        vectors = np.load(path / "vectors.npy")
        dense = faiss.read_index(str(path / "dense.faiss"))
        bm25 = bm25s.BM25.load(str(path / "bm25")) if (path / "bm25").exists() else None
        if len(passages) != dense.ntotal or len(passages) != len(vectors):
            raise ValueError(f"index at {path} is inconsistent: passage and vector counts differ")
        titles, title_vectors = [], None
        if (path / "title_vectors.npy").exists():
            titles = json.loads((path / "titles.json").read_text())
            title_vectors = np.load(path / "title_vectors.npy")
        return cls(manifest, passages, vectors, dense, bm25, path, titles, title_vectors)


def current_version(root: Path) -> str | None:
    """Name of the live version under ``root``, or None when no index was built yet."""
    try:
        return (root / CURRENT).read_text().strip() or None
    except FileNotFoundError:
        return None


def load_current(root: Path) -> SearchIndex | None:
    version = current_version(root)
    return SearchIndex.load(root / "versions" / version) if version else None


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with path.open("rb") as fh:
                os.fsync(fh.fileno())


def _prune(versions: Path, keep: str) -> None:
    """Delete all but the newest few versions (a server still on an old one has it in memory),
    and temporary folders left by builds that crashed more than an hour ago."""
    for stale in versions.glob(".tmp-*"):
        if stale.is_dir() and time.time() - stale.stat().st_mtime > 3600:
            shutil.rmtree(stale, ignore_errors=True)
    done = sorted(
        (p for p in versions.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.name,
    )
    for old in done[:-KEEP_VERSIONS]:
        if old.name != keep:
            shutil.rmtree(old, ignore_errors=True)


@contextmanager
def build_lock(root: Path) -> Iterator[None]:
    """Held while one builder (the CLI or the server's re-indexer) reads the articles and
    writes a version, so a build that read older articles cannot land after a newer one."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".build.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
