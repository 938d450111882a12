"""The lexical (BM25) side of an index: term counts per passage in a sparse matrix.

Scores are BM25 as bm25s computes them by default (Lucene's idf, Robertson's term frequency
part), so rankings match bm25s exactly; bm25s still does the tokenizing (stop words, Snowball
stemming). What bm25s cannot do is change an index in place: its build walks every passage in
Python (about 1 s per 50,000). Here the counts of unchanged passages are carried over from the
previous version as rows of a matrix and the weights are recomputed with array arithmetic, so
re-indexing after editing one article of a large help center tokenizes only that article.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path
from typing import BinaryIO

import bm25s
import numpy as np
import Stemmer
from scipy import sparse

_stemmer = Stemmer.Stemmer("english")


def tokenize(texts: list[str]) -> list[list[str]]:
    """Lowercased, stop-worded, stemmed tokens: the lexical index's view of text."""
    if not texts:
        return []
    return bm25s.tokenize(
        texts, stopwords="en", stemmer=_stemmer, return_ids=False, show_progress=False
    )


class LexicalIndex:
    """BM25 over passages: ``counts`` (passages x vocabulary, term counts) and the vocabulary.

    The weights (a column-major matrix, so a query reads one slice per term) are derived from the
    counts when the index is made or loaded; only the counts are saved.
    """

    def __init__(self, counts: sparse.csr_matrix, vocab: list[str], k1: float, b: float) -> None:
        self._counts: sparse.csr_matrix | None = counts
        self._file: BinaryIO | None = None  # a loaded index's counts file, kept open
        self._file_lock = threading.Lock()
        self._folder: Path | None = None
        self.size = counts.shape[0]
        self.vocab = vocab
        self.token_id = {t: i for i, t in enumerate(vocab)}
        self.k1, self.b = k1, b
        self.weights = self._weights(counts)

    @property
    def counts(self) -> sparse.csr_matrix:
        """The term counts: kept in memory by a fresh build; read again from the file for a
        loaded index (only a re-index needs them, and a server keeps the weights alone). The
        file stays open, so the counts can be read even after the version's folder is pruned."""
        if self._counts is not None:
            return self._counts
        with self._file_lock:
            self._file.seek(0)
            return _read_counts(self._file, self._folder, len(self.vocab))

    def _weights(self, counts: sparse.csr_matrix) -> sparse.csc_matrix:
        n = counts.shape[0]
        if n == 0 or counts.nnz == 0:
            return sparse.csc_matrix(counts.shape, dtype=np.float32)
        lengths = np.asarray(counts.sum(axis=1)).ravel().astype(np.float64)
        avg = lengths.mean() or 1.0
        df = np.bincount(counts.indices, minlength=counts.shape[1]).astype(np.float64)
        idf = np.log(1.0 + (n - df + 0.5) / (df + 0.5))
        tf = counts.data.astype(np.float64)
        row_len = np.repeat(lengths, np.diff(counts.indptr))
        data = tf / (self.k1 * ((1.0 - self.b) + self.b * row_len / avg) + tf) * idf[counts.indices]
        weights = sparse.csr_matrix(
            (data.astype(np.float32), counts.indices, counts.indptr), counts.shape
        )
        return weights.tocsc()

    @classmethod
    def build(
        cls,
        texts: list[str | None],
        k1: float = 0.9,
        b: float = 0.4,
        previous: LexicalIndex | None = None,
        previous_rows: list[int | None] | None = None,
    ) -> LexicalIndex:
        """An index of one row per passage. Where ``previous_rows[i]`` names a row of
        ``previous`` (an unchanged passage), that row's counts are reused and ``texts[i]`` may be
        None; other passages are tokenized."""
        vocab = list(previous.vocab) if previous is not None else []
        token_id = dict(previous.token_id) if previous is not None else {}
        reuse = previous_rows or [None] * len(texts)
        fresh = [i for i, r in enumerate(reuse) if r is None]
        if any(texts[i] is None for i in fresh):
            raise ValueError("a passage has neither text nor a previous row to reuse")
        if any(r is not None for r in reuse) and previous is None:
            raise ValueError("rows to reuse were named but no previous index was given")
        rows, cols, vals = [], [], []
        for i, tokens in zip(fresh, tokenize([texts[i] or "" for i in fresh]), strict=True):
            for token, count in Counter(tokens).items():
                if token not in token_id:
                    token_id[token] = len(vocab)
                    vocab.append(token)
                rows.append(i)
                cols.append(token_id[token])
                vals.append(count)
        shape = (len(texts), len(vocab))
        new = sparse.csr_matrix(
            (np.asarray(vals, dtype=np.int32), (np.asarray(rows), np.asarray(cols))),
            shape=shape,
            dtype=np.int32,
        )
        kept = [(i, r) for i, r in enumerate(reuse) if r is not None]
        if kept and previous is not None:
            at, source = (np.asarray(x) for x in zip(*kept, strict=True))
            old = previous.counts[source]  # the reused rows, in the new order
            old = sparse.csr_matrix(
                (old.data, old.indices, old.indptr), shape=(len(kept), shape[1])
            )
            placed = sparse.csr_matrix(
                (np.ones(len(kept), dtype=np.int32), (at, np.arange(len(kept)))),
                shape=(len(texts), len(kept)),
            )
            new = new + placed @ old
        new.sort_indices()
        return cls(new.tocsr(), vocab, k1, b)

    def scores(self, tokens: list[str]) -> np.ndarray:
        """BM25 score of every passage for a tokenized query (a term repeated counts again)."""
        times = Counter(self.token_id[t] for t in tokens if t in self.token_id)
        if not times:
            return np.zeros(self.size, dtype=np.float32)
        # the query's columns times how often each term occurs: one pass in C over their
        # postings (about twice as fast as adding one column at a time in numpy)
        columns = self.weights[:, list(times)]
        return columns @ np.fromiter(times.values(), dtype=np.float32, count=len(times))

    def top(self, tokens: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """The rows of the (at most) ``k`` best passages with a positive score, best first,
        and every passage's score."""
        scores = self.scores(tokens)
        n = len(scores)
        stride = min(64, n // (4 * k)) if k > 0 else 0
        if stride >= 2:
            # the k-th best of every stride-th score is a bar at least k passages clear, so
            # selecting among those is exact; at a million passages this is about a tenth of
            # the cost of partitioning them all
            sample = scores[::stride]
            bar = np.partition(sample, len(sample) - k)[len(sample) - k]
            rows = np.flatnonzero(scores >= bar) if bar > 0 else np.flatnonzero(scores)
        else:
            rows = np.flatnonzero(scores)
        if len(rows) > k > 0:
            rows = rows[np.argpartition(-scores[rows], k - 1)[:k]]
        elif k <= 0:
            rows = rows[:0]
        return rows[np.argsort(-scores[rows], kind="stable")], scores

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        sparse.save_npz(folder / "counts.npz", self.counts, compressed=False)
        (folder / "lexical.json").write_text(
            json.dumps({"k1": self.k1, "b": self.b, "vocab": self.vocab})
        )

    @classmethod
    def load(cls, folder: Path) -> LexicalIndex:
        """The index saved in ``folder``, holding its weights only (the counts stay on disk)."""
        meta = json.loads((folder / "lexical.json").read_text())
        file = (folder / "counts.npz").open("rb")  # closed with the index
        try:
            counts = _read_counts(file, folder, len(meta["vocab"]))
        except BaseException:
            file.close()
            raise
        index = cls(counts, meta["vocab"], float(meta["k1"]), float(meta["b"]))
        index._counts, index._folder, index._file = None, folder, file
        return index


def _read_counts(file: BinaryIO, folder: Path | None, vocabulary: int) -> sparse.csr_matrix:
    counts = sparse.load_npz(file).tocsr()
    if counts.shape[1] != vocabulary:
        raise ValueError(f"lexical index at {folder} is inconsistent: vocabulary size differs")
    return counts
