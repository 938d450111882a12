"""The dense side of an index: three kinds, by the number of passages.

- Below ``pq_min_passages`` (20,000): a flat scan of every vector, stored as float16, with the
  same top ten as float32. The retriever rescores its candidates with the float32 vectors, so
  scores stay exact.
- From there to ``ann_min_passages`` (200,000): :class:`RescoredPQ`. Each vector is kept as a
  4-bit product-quantized code of 48 bytes (faiss ``IndexPQFastScan``, scanned with SIMD
  shuffles from tables that stay in cache), and the best ``pq_rescore`` x k of them are scored
  again exactly against the float32 vectors, which stay in their mapped file. At 50,000
  passages this is 0.2 ms a question against 1.5 ms for the float16 scan, with recall@10 0.999,
  and 2.4 MB in memory instead of 38 MB. Under load it matters more: concurrent float16 scans
  shared the memory bus and evicted everything else from the cache.
- From ``ann_min_passages`` on: an inverted-file index (IVF, k-means lists over the vectors)
  that scans only the ``ann_probe`` lists nearest the query.

``make bench`` reports recall@10 against exact search. A rebuild keeps the previous version's
trained codebooks or lists, so only the vectors are encoded again, not re-clustered.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import faiss
import numpy as np

log = logging.getLogger(__name__)
# one FAISS thread per search: requests run concurrently on the cores; OpenMP threads would fight
faiss.omp_set_num_threads(1)


@dataclass
class DenseOptions:
    """When to switch to product quantization and to IVF, and how to build and search them."""

    ann_min_passages: int = 200_000
    pq_min_passages: int = 20_000
    pq_rescore: int = 8  # candidates rescored exactly per result wanted
    ann_lists: int = 0  # 0: about 2 x sqrt(passages)
    ann_probe: int = 48
    build_threads: int = 1
    train_points_per_list: int = 64
    train_iterations: int = 10

    def lists_for(self, n: int) -> int:
        return self.ann_lists or max(16, int(2 * math.sqrt(n)))


@contextmanager
def _omp_threads(n: int) -> Iterator[None]:
    faiss.omp_set_num_threads(max(1, n))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(1)


def flat_index(vectors: np.ndarray) -> faiss.Index:
    """Every vector scanned, stored as float16 (inner product; exact up to float16 rounding)."""
    index = faiss.IndexScalarQuantizer(
        vectors.shape[1], faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
    )
    if len(vectors):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


class RescoredPQ:
    """Product-quantized codes searched first, then the best candidates rescored exactly.

    ``codes`` is a 4-bit ``IndexPQFastScan`` over the same rows as ``vectors`` (float32, unit
    rows; usually the version's mapped file). It answers ``search`` like a FAISS index.
    """

    def __init__(self, codes: faiss.IndexPQFastScan, vectors: np.ndarray, rescore: int) -> None:
        self.codes = codes
        self.vectors = vectors
        self.rescore = max(1, rescore)

    @property
    def ntotal(self) -> int:
        return self.codes.ntotal

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        if k <= 0 or self.ntotal == 0:
            return scores, ids
        _, found = self.codes.search(queries, min(self.ntotal, k * self.rescore))
        for row, (query, rows) in enumerate(zip(queries, found, strict=True)):
            rows = np.sort(rows[rows >= 0])  # in file order: the mapped rows are read in order
            exact = self.vectors[rows] @ query
            best = np.argsort(-exact, kind="stable")[:k]
            scores[row, : len(best)] = exact[best]
            ids[row, : len(best)] = rows[best]
        return scores, ids


def subquantizers(dim: int) -> int:
    """Codebooks per vector: the most that leave each at least 4 dimensions (96 for 384)."""
    return max((m for m in range(1, dim // 4 + 1) if dim % m == 0), default=1)


def is_approximate(index: faiss.Index | RescoredPQ) -> bool:
    """Whether ``index`` is PQ or IVF (saved with the version) rather than flat (rebuilt on
    load from the vectors)."""
    return isinstance(index, (faiss.IndexIVF, RescoredPQ))


def saved_part(index: faiss.Index | RescoredPQ) -> faiss.Index:
    """What of ``index`` is written to ``dense.faiss`` (the vectors are saved on their own)."""
    return index.codes if isinstance(index, RescoredPQ) else index


def from_saved(
    saved: faiss.Index, vectors: np.ndarray, options: DenseOptions
) -> faiss.Index | RescoredPQ:
    """The searchable index from what :func:`saved_part` wrote, with the search settings."""
    if isinstance(saved, faiss.IndexPQFastScan):
        return RescoredPQ(saved, vectors, options.pq_rescore)
    set_search_options(saved, options)
    return saved


def make_dense(
    vectors: np.ndarray, options: DenseOptions, previous: faiss.Index | RescoredPQ | None = None
) -> faiss.Index | RescoredPQ:
    """An inner-product index over ``vectors`` (unit rows, float32, C order)."""
    n, dim = vectors.shape
    if n < max(1, options.ann_min_passages):
        if n >= max(1, options.pq_min_passages):
            return _rescored_pq(vectors, options, previous)
        return flat_index(vectors)
    lists = min(options.lists_for(n), n)
    with _omp_threads(options.build_threads):
        reusable = (
            isinstance(previous, faiss.IndexIVFFlat)
            and previous.nlist == lists
            and previous.d == dim
            and previous.is_trained
        )
        if reusable:  # the trained lists, without copying the previous version's vectors
            quantizer = faiss.clone_index(previous.quantizer)
            index = faiss.IndexIVFFlat(quantizer, dim, lists, faiss.METRIC_INNER_PRODUCT)
            index.is_trained = True
        else:
            index = faiss.IndexIVFFlat(
                faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT
            )
            index.cp.niter = options.train_iterations
            index.cp.max_points_per_centroid = options.train_points_per_list
            sample = min(n, lists * options.train_points_per_list)
            rng = np.random.default_rng(0)
            rows = np.sort(rng.choice(n, size=sample, replace=False)) if sample < n else slice(None)
            log.info("training %d IVF lists on %d of %d vectors", lists, sample, n)
            index.train(np.ascontiguousarray(vectors[rows]))
        index.add(vectors)
    set_search_options(index, options)
    return index


def _rescored_pq(
    vectors: np.ndarray, options: DenseOptions, previous: faiss.Index | RescoredPQ | None
) -> RescoredPQ:
    dim = vectors.shape[1]
    m = subquantizers(dim)
    old = previous.codes if isinstance(previous, RescoredPQ) else None
    with _omp_threads(options.build_threads):
        if old is not None and old.d == dim and old.pq.M == m and old.is_trained:
            codes = faiss.clone_index(old)  # the trained codebooks; its codes go
            codes.reset()
        else:
            codes = faiss.IndexPQFastScan(dim, m, 4, faiss.METRIC_INNER_PRODUCT)
            log.info("training %d product-quantizer codebooks on %d vectors", m, len(vectors))
            codes.train(vectors)  # FAISS samples 256 points per centroid
        codes.add(vectors)
    return RescoredPQ(codes, vectors, options.pq_rescore)


def set_search_options(index: faiss.Index, options: DenseOptions) -> None:
    """Apply the search-time settings (lists probed) to a loaded index."""
    if isinstance(index, faiss.IndexIVF):
        index.nprobe = max(1, min(options.ann_probe, index.nlist))


def recall_at_k(exact: np.ndarray, approx: np.ndarray, k: int = 10) -> float:
    """Share of the exact top-k ids that the approximate top-k also holds, over all queries."""
    found = sum(len(set(e[:k]) & set(a[:k]) - {-1}) for e, a in zip(exact, approx, strict=True))
    return found / max(1, sum(len(set(e[:k]) - {-1}) for e in exact))
