"""The BM25 index: same scores as bm25s, and an incremental build equal to a fresh one."""

import bm25s
import numpy as np
import pytest

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


def test_empty_index():
    index = LexicalIndex.build([])
    assert index.size == 0
    assert index.scores(["refund"]).shape == (0,)
