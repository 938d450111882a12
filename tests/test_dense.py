"""The dense index: flat, product-quantized with exact rescoring, or IVF by size; their recall,
reuse of trained codebooks and lists, saving and loading."""

import faiss
import numpy as np

from indexer.build import build_index
from indexer.chunking import IndexDoc
from indexer.dense import (
    DenseOptions,
    RescoredPQ,
    flat_index,
    is_approximate,
    make_dense,
    recall_at_k,
    subquantizers,
)
from indexer.embedder import FakeEmbedder
from indexer.store import load_current


def unit_rows(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    """Clustered unit vectors, like embeddings of texts on a few topics."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, dim))
    x = centres[rng.integers(0, 20, n)] + 0.6 * rng.normal(size=(n, dim))
    return np.ascontiguousarray((x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32))


def topical_rows(n: int, dim: int = 64, seed: int = 0) -> np.ndarray:
    """Unit vectors around 200 topics shared by every seed: passages and the questions on them."""
    centres = np.random.default_rng(99).normal(size=(200, dim))
    rng = np.random.default_rng(seed)
    x = centres[rng.integers(0, 200, n)] + 0.4 * rng.normal(size=(n, dim))
    return np.ascontiguousarray((x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32))


def test_flat_below_the_size_setting_ivf_from_it():
    x = unit_rows(2000)
    flat = make_dense(x, DenseOptions(ann_min_passages=2001))
    assert not is_approximate(flat) and flat.ntotal == 2000
    ivf = make_dense(x, DenseOptions(ann_min_passages=2000, ann_probe=8))
    assert is_approximate(ivf) and isinstance(ivf, faiss.IndexIVFFlat)
    assert ivf.ntotal == 2000 and ivf.nlist == DenseOptions().lists_for(2000) and ivf.nprobe == 8


def test_flat_is_float16_with_the_exact_top_ten():
    x, queries = unit_rows(5000), unit_rows(100, seed=1)
    want_scores, want = faiss.knn(queries, x, 10, metric=faiss.METRIC_INNER_PRODUCT)
    flat = flat_index(x)
    assert flat.sa_code_size() == 2 * x.shape[1]  # two bytes a dimension
    got_scores, got = flat.search(queries, 10)
    assert recall_at_k(want, got) >= 0.999
    np.testing.assert_allclose(got_scores, want_scores, atol=2e-3)
    assert flat_index(x[:0]).ntotal == 0


def test_ivf_recall_against_flat():
    x, queries = unit_rows(5000), unit_rows(100, seed=1)
    ivf = make_dense(x, DenseOptions(ann_min_passages=1, ann_lists=50, ann_probe=16))
    _, exact = faiss.knn(queries, x, 10, metric=faiss.METRIC_INNER_PRODUCT)
    _, approx = ivf.search(queries, 10)
    assert recall_at_k(exact, approx) >= 0.95
    one_list = make_dense(x, DenseOptions(ann_min_passages=1, ann_lists=50, ann_probe=1))
    _, poor = one_list.search(queries, 10)
    assert recall_at_k(exact, poor) < recall_at_k(exact, approx)  # probing fewer lists costs


def test_recall_at_k_by_hand():
    exact = np.array([[1, 2, 3], [4, 5, 6]])
    approx = np.array([[3, 2, 9], [7, 8, -1]])
    assert recall_at_k(exact, approx, k=3) == 2 / 6


def test_ivf_rebuild_keeps_the_trained_lists():
    x = unit_rows(3000)
    options = DenseOptions(ann_min_passages=1, ann_lists=40)
    first = make_dense(x, options)
    centroids = first.quantizer.reconstruct_n(0, 40)
    second = make_dense(x[:2900], options, previous=first)
    assert second.ntotal == 2900
    np.testing.assert_array_equal(second.quantizer.reconstruct_n(0, 40), centroids)
    assert first.ntotal == 3000  # the live index is not touched


def test_an_index_above_the_setting_is_saved_and_searched_as_ivf(tmp_path):
    docs = [
        IndexDoc(f"a{i}", 1, f"Article {i}", f"Topic {i % 7} text number {i}. " * 5, f"/a{i}")
        for i in range(300)
    ]
    options = DenseOptions(ann_min_passages=100, ann_probe=4)
    build_index(docs, tmp_path, FakeEmbedder(), dense_options=options)
    loaded = load_current(tmp_path, DenseOptions(ann_min_passages=100, ann_probe=6))
    assert isinstance(loaded.dense, faiss.IndexIVFFlat)
    assert loaded.dense.nprobe == 6  # the search setting applies to a saved index
    _, ids = loaded.dense.search(loaded.vectors[:1], 1)
    assert ids[0][0] == 0


def test_product_quantized_between_the_two_size_settings():
    x = unit_rows(3000, dim=64)
    options = DenseOptions(pq_min_passages=3000, ann_min_passages=3001)
    pq = make_dense(x, options)
    assert isinstance(pq, RescoredPQ) and is_approximate(pq) and pq.ntotal == 3000
    assert pq.codes.pq.M == subquantizers(64) == 16 and pq.codes.pq.nbits == 4
    assert not isinstance(make_dense(x[:2999], options), RescoredPQ)  # below: flat
    assert isinstance(
        make_dense(x, DenseOptions(pq_min_passages=1, ann_min_passages=1)), faiss.IndexIVF
    )


def test_product_quantized_recall_and_exact_scores():
    x, queries = topical_rows(4000), topical_rows(200, seed=1)
    _, want = faiss.knn(queries, x, 10, metric=faiss.METRIC_INNER_PRODUCT)
    pq = make_dense(x, DenseOptions(pq_min_passages=1, pq_rescore=8))
    got_scores, got = pq.search(queries, 10)
    assert got.shape == (200, 10) and got.dtype == np.int64
    assert recall_at_k(want, got) >= 0.99
    # the scores are the exact inner products of the rows returned, best first
    np.testing.assert_allclose(got_scores, np.einsum("qd,qkd->qk", queries, x[got]), rtol=1e-5)
    assert (np.diff(got_scores, axis=1) <= 0).all()
    # the codes alone (no rescoring) rank worse: the rescoring is what makes it near exact
    _, codes_only = pq.codes.search(queries, 10)
    assert recall_at_k(want, codes_only) < recall_at_k(want, got)
    # fewer candidates rescored costs recall
    _, fewer = RescoredPQ(pq.codes, x, rescore=1).search(queries, 10)
    assert recall_at_k(want, fewer) < recall_at_k(want, got)


def test_product_quantized_asked_for_more_than_it_holds():
    x = unit_rows(300, dim=32)
    pq = make_dense(x, DenseOptions(pq_min_passages=1))
    scores, ids = pq.search(x[:2], 500)
    assert ids.shape == (2, 500) and (ids[:, :300] >= 0).all() and (ids[:, 300:] == -1).all()
    assert ids[0, 0] == 0 and ids[1, 0] == 1  # each row finds itself first
    assert sorted(ids[0, :300].tolist()) == list(range(300))
    assert np.isneginf(scores[:, 300:]).all()


def test_product_quantized_rebuild_keeps_the_trained_codebooks(monkeypatch):
    x = unit_rows(3000, dim=64)
    options = DenseOptions(pq_min_passages=1)
    first = make_dense(x, options)
    books = faiss.vector_to_array(first.codes.pq.centroids)

    def no_training(*_):
        raise AssertionError("a rebuild must not train the codebooks again")

    monkeypatch.setattr(faiss.IndexPQFastScan, "train", no_training)
    second = make_dense(x[100:], options, previous=first)
    assert second.ntotal == 2900 and first.ntotal == 3000  # the live index is not touched
    np.testing.assert_array_equal(faiss.vector_to_array(second.codes.pq.centroids), books)
    _, ids = second.search(x[100:103], 1)
    assert ids[:, 0].tolist() == [0, 1, 2]


def test_an_index_between_the_settings_is_saved_and_loaded_as_product_quantized(tmp_path):
    docs = [
        IndexDoc(f"a{i}", 1, f"Article {i}", f"Topic {i % 7} text number {i}. " * 5, f"/a{i}")
        for i in range(300)
    ]
    options = DenseOptions(pq_min_passages=100)
    build_index(docs, tmp_path, FakeEmbedder(), dense_options=options)
    loaded = load_current(tmp_path, DenseOptions(pq_min_passages=100, pq_rescore=3))
    assert isinstance(loaded.dense, RescoredPQ) and loaded.dense.rescore == 3
    assert (loaded.path / "dense.faiss").stat().st_size < loaded.vectors.nbytes / 4
    assert isinstance(loaded.vectors, np.memmap)  # rescoring reads the mapped file
    scores, ids = loaded.dense.search(np.ascontiguousarray(loaded.vectors[:5]), 1)
    assert ids[:, 0].tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(scores[:, 0], 1.0, rtol=1e-5)
