"""One index version on disk: FAISS (dense), BM25 (lexical), the passage table and the manifest.

Versions live in ``<root>/versions/<version>/``; ``<root>/CURRENT`` names the live one. A version is
written to a temporary folder, renamed into place, and only then is CURRENT replaced (atomically),
so a reader never sees a half-written index.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import logging
import mmap
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

from indexer.dense import (
    DenseOptions,
    RescoredPQ,
    flat_index,
    from_saved,
    is_approximate,
    make_dense,
    saved_part,
)
from indexer.lexical import LexicalIndex, tokenize
from indexer.manifest import FORMAT, Manifest

log = logging.getLogger(__name__)
logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets DEBUG on import

CURRENT = "CURRENT"
KEEP_VERSIONS = 3
__all__ = ["SearchIndex", "build_lock", "current_version", "load_current", "tokenize"]


@dataclass
class SearchIndex:
    """A loaded index version: passages, their vectors, a FAISS index and a BM25 index."""

    manifest: Manifest
    passages: list[dict]
    vectors: np.ndarray
    dense: faiss.Index | RescoredPQ
    lexical: LexicalIndex | None
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
        lexical: LexicalIndex | None,
        titles: list[dict] | None = None,
        title_vectors: np.ndarray | None = None,
        dense_options: DenseOptions | None = None,
        previous: SearchIndex | None = None,
    ) -> SearchIndex:
        """Assemble a version; the dense index is flat, or approximate above the size the
        options name (an approximate one reuses ``previous``'s trained centroids when it can)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        dense = make_dense(
            vectors, dense_options or DenseOptions(), previous.dense if previous else None
        )
        manifest.backend = f"faiss-{dense.__class__.__name__}+bm25"
        return cls(manifest, passages, vectors, dense, lexical, None, titles or [], title_vectors)

    def save(self, root: Path) -> Path:
        """Write this index as a new version under ``root`` and make it current; returns its path."""
        versions = root / "versions"
        versions.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=versions))
        try:
            if is_approximate(self.dense):  # a flat index is the vectors
                faiss.write_index(saved_part(self.dense), str(tmp / "dense.faiss"))
            np.save(tmp / "vectors.npy", self.vectors)
            (tmp / "passages.json").write_text(json.dumps(self.passages))
            (tmp / "titles.json").write_text(json.dumps(self.titles))
            if self.title_vectors is not None:
                np.save(tmp / "title_vectors.npy", self.title_vectors)
            if self.lexical is not None:
                self.lexical.save(tmp / "lexical")
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
    def load(cls, path: Path, dense_options: DenseOptions | None = None) -> SearchIndex:
        manifest = Manifest.read(path / "manifest.json")
        if manifest.format != FORMAT:
            raise ValueError(
                f"index at {path} has format {manifest.format}, this version reads {FORMAT}: "
                "run `supportbot index`"
            )
        passages = _share_repeats(json.loads((path / "passages.json").read_text()))
        # the float32 vectors stay in the file, mapped: a question reads only its candidates'
        # rows (to rescore them), and several server processes share the file's pages
        vectors = np.load(path / "vectors.npy", mmap_mode="r")
        if (path / "dense.faiss").exists():
            saved = faiss.read_index(str(path / "dense.faiss"))
            dense = from_saved(saved, vectors, dense_options or DenseOptions())
        else:
            dense = flat_index(vectors.reshape(-1, manifest.dim))
            _forget_pages(vectors)  # read once to build the float16 copy that is searched
        if passages and not (path / "lexical").exists():
            raise ValueError(f"index at {path} is incomplete: its BM25 index is missing")
        lexical = LexicalIndex.load(path / "lexical") if (path / "lexical").exists() else None
        sizes = {len(passages), dense.ntotal, len(vectors)}
        if lexical is not None:
            sizes.add(lexical.size)
        if len(sizes) != 1:
            raise ValueError(f"index at {path} is inconsistent: passage and vector counts differ")
        titles, title_vectors = [], None
        if (path / "title_vectors.npy").exists():
            titles = json.loads((path / "titles.json").read_text())
            title_vectors = np.load(path / "title_vectors.npy", mmap_mode="r")
        return cls(manifest, passages, vectors, dense, lexical, path, titles, title_vectors)


# passage fields that repeat from one passage to the next (the passages of one article)
_REPEATED = ("article_id", "title", "url", "category", "heading_path")


def _share_repeats(passages: list[dict]) -> list[dict]:
    """Make a field equal to the previous passage's the same object: JSON parsing makes a new
    string for every occurrence. 11 MB less per server process at 50,000 passages, in 17 ms."""
    previous: dict = {}
    for passage in passages:
        for key in _REPEATED:
            value = passage.get(key)
            if value is not None and value == previous.get(key):
                passage[key] = previous[key]
        previous = passage
    return passages


def _forget_pages(array: np.ndarray) -> None:
    """Drop a mapped file's pages from this process (they stay in the page cache) after a
    read of the whole file, so its resident memory counts only what it reads again."""
    mapped = getattr(array, "_mmap", None)
    if mapped is not None and hasattr(mmap, "MADV_DONTNEED"):
        mapped.madvise(mmap.MADV_DONTNEED)


def trim_heap() -> None:
    """Give the C heap's free pages back to the system (glibc's ``malloc_trim``; nothing on other
    C libraries). Loading a version allocates and frees temporary memory (parsed JSON, the BM25
    counts it derives weights from) that glibc would otherwise keep resident: at 50,000
    passages 64 MB right after a load, 32 MB less per server process after an hour's load
    (measured)."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _malloc_trim():
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
    if trim is not None:
        trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_MALLOC_TRIM = _malloc_trim()


def current_version(root: Path) -> str | None:
    """Name of the live version under ``root``, or None when no index was built yet."""
    try:
        return (root / CURRENT).read_text().strip() or None
    except FileNotFoundError:
        return None


def load_current(root: Path, dense_options: DenseOptions | None = None) -> SearchIndex | None:
    version = current_version(root)
    return SearchIndex.load(root / "versions" / version, dense_options) if version else None


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with path.open("rb") as fh:
                os.fsync(fh.fileno())


def _prune(versions: Path, keep: str) -> None:
    """Delete all but the newest few versions (a server still on an old one keeps what it needs
    of it: memory, mapped vectors and an open counts file),
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
