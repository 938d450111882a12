"""The dense index: flat below the size setting, IVF above it, IVF recall, reuse of its lists."""

import faiss
import numpy as np

from indexer.build import build_index
from indexer.chunking import IndexDoc
from indexer.dense import DenseOptions, flat_index, is_approximate, make_dense, recall_at_k
from indexer.embedder import FakeEmbedder
from indexer.store import load_current


def unit_rows(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    """Clustered unit vectors, like embeddings of texts on a few topics."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, dim))
    x = centres[rng.integers(0, 20, n)] + 0.6 * rng.normal(size=(n, dim))
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
