"""The BM25 index: same scores as bm25s, and an incremental build equal to a fresh one."""

import bm25s
import numpy as np
import pytest
from scipy import sparse

from indexer.lexical import LexicalIndex, tokenize

CORPUS = [
    "Refunds reach your card within 5 to 10 business days after we receive the return.",
    "Reset your password from the sign-in page: choose Forgot password and follow the email.",
    "Gift cards can't be refunded or exchanged for cash, except where the law requires it.",
    "Track your order from Account > Orders; the carrier's tracking link appears once shipped.",
    "Cancel Larkspur Plus at any time; you keep the benefits until the end of the paid period.",
    "Returns are free within 30 days. Print the label, pack the item and drop it off.",
    "Password rules: at least 12 characters. A password manager helps you keep it safe.",
]
QUERIES = ["how long does a refund take", "forgot my password", "return label", "plus plus"]


@pytest.mark.parametrize("k1,b", [(0.9, 0.4), (1.5, 0.75)])
def test_scores_match_bm25s(k1, b):
    reference = bm25s.BM25(k1=k1, b=b)
    reference.index(tokenize(CORPUS), show_progress=False)
    ours = LexicalIndex.build(CORPUS, k1, b)
    for query in QUERIES:
        tokens = tokenize([query])[0]
        np.testing.assert_allclose(ours.scores(tokens), reference.get_scores(tokens), rtol=1e-5)


def test_unknown_words_score_nothing():
    ours = LexicalIndex.build(CORPUS)
    assert not ours.scores(tokenize(["zyzzyva quixotic"])[0]).any()
    assert ours.scores([]).shape == (len(CORPUS),)


def test_incremental_build_equals_a_fresh_one():
    first = LexicalIndex.build(CORPUS)
    edited = list(CORPUS)
    edited[2] = "Gift cards never expire and work on larkspur.example and in our shops."
    edited.insert(4, "Brand new passage about parcel lockers and pickup points.")
    del edited[0]
    # rows kept from the first build: everything except the edited and the new passage
    reuse = [CORPUS.index(t) if t in CORPUS else None for t in edited]
    texts = [None if r is not None else t for t, r in zip(edited, reuse, strict=True)]
    incremental = LexicalIndex.build(texts, previous=first, previous_rows=reuse)
    fresh = LexicalIndex.build(edited)
    assert incremental.size == len(edited)
    for query in [*QUERIES, "gift card expire", "parcel locker pickup"]:
        tokens = tokenize([query])[0]
        np.testing.assert_allclose(incremental.scores(tokens), fresh.scores(tokens), rtol=1e-6)


def test_save_and_load(tmp_path):
    index = LexicalIndex.build(CORPUS, 1.2, 0.5)
    index.save(tmp_path / "lexical")
    loaded = LexicalIndex.load(tmp_path / "lexical")
    assert (loaded.k1, loaded.b) == (1.2, 0.5)
    tokens = tokenize(["refund to my card"])[0]
    np.testing.assert_array_equal(loaded.scores(tokens), index.scores(tokens))


def test_a_loaded_index_reads_its_counts_from_disk_when_a_rebuild_needs_them(tmp_path):
    index = LexicalIndex.build(CORPUS)
    index.save(tmp_path / "lexical")
    loaded = LexicalIndex.load(tmp_path / "lexical")
    assert loaded._counts is None  # a server keeps the weights only
    assert (loaded.counts != index.counts).nnz == 0
    edited = [*CORPUS[:3], "A passage about parcel lockers.", *CORPUS[4:]]
    reuse = [None if i == 3 else i for i in range(len(edited))]
    texts = [t if r is None else None for t, r in zip(edited, reuse, strict=True)]
    rebuilt = LexicalIndex.build(texts, previous=loaded, previous_rows=reuse)
    tokens = tokenize(["parcel locker refund"])[0]
    np.testing.assert_allclose(
        rebuilt.scores(tokens), LexicalIndex.build(edited).scores(tokens), rtol=1e-6
    )
    # the version's folder may be pruned while a server still holds the version
    (tmp_path / "lexical" / "counts.npz").unlink()
    assert (loaded.counts != index.counts).nnz == 0


def test_empty_index():
    index = LexicalIndex.build([])
    assert index.size == 0
    assert index.scores(["refund"]).shape == (0,)


def _zipf_index(passages: int, vocab: int, seed: int) -> LexicalIndex:
    """Random term counts with word frequencies like real text: a few very common terms (long
    posting lists, low weights) and a long tail of rare ones."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 60, passages)
    terms = np.minimum(rng.zipf(1.3, lengths.sum()) - 1, vocab - 1)
    rows = np.repeat(np.arange(passages), lengths)
    counts = sparse.csr_matrix(
        (np.ones(len(terms), dtype=np.int32), (rows, terms)), shape=(passages, vocab)
    )
    counts.sum_duplicates()
    return LexicalIndex(counts, [f"t{i}" for i in range(vocab)], 0.9, 0.4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_top_is_the_exact_top_k(seed):
    index = _zipf_index(20_000, 3_000, seed)
    rng = np.random.default_rng(seed + 100)
    for _ in range(200):
        # mostly common words, sometimes a rare one, sometimes a word twice or unknown
        words = np.minimum(rng.zipf(1.2, rng.integers(1, 8)) - 1, 3_500)
        tokens = [f"t{w}" for w in words]
        expected = np.zeros(index.size)
        for w in words:  # one term at a time, the textbook way
            if w < 3_000:
                expected += index.weights[:, int(w)].toarray().ravel()
        positive = int((expected > 0).sum())
        for k in (1, 10, 50, 400):
            rows, scores = index.top(tokens, k)
            np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)
            assert len(rows) == min(k, positive) == len(set(rows.tolist()))
            best = np.sort(expected)[::-1][: len(rows)]
            np.testing.assert_allclose(scores[rows], best, rtol=1e-5)
            assert np.all(np.diff(scores[rows]) <= 0)


def test_top_with_nothing_to_find():
    index = LexicalIndex.build(CORPUS)
    for tokens in ([], ["zyzzyva"]):
        rows, scores = index.top(tokens, 5)
        assert len(rows) == 0 and not scores.any() and len(scores) == len(CORPUS)
    assert len(index.top(tokenize(["password"])[0], 0)[0]) == 0
    assert len(LexicalIndex.build([]).top(["refund"], 5)[0]) == 0
