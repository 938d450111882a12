"""Metric functions against hand-computed cases."""

from __future__ import annotations

import math

import pytest

from eval.metrics import bootstrap_ci, hit_at, ndcg_at, rate, reciprocal_rank, rouge_l, token_f1


def test_hit_at_k():
    ranked = ["a", "b", "c", "d"]
    assert hit_at(ranked, {"c"}, 1) == 0.0
    assert hit_at(ranked, {"c"}, 3) == 1.0
    assert hit_at(ranked, {"z"}, 5) == 0.0


def test_reciprocal_rank():
    assert reciprocal_rank(["a", "b", "c"], {"c"}) == pytest.approx(1 / 3)
    assert reciprocal_rank(["a", "b", "c"], {"b", "c"}) == pytest.approx(1 / 2)
    assert reciprocal_rank(["a"] * 10 + ["g"], {"g"}, k=10) == 0.0


def test_ndcg_binary_relevance():
    # gold at rank 2 only: DCG = 1/log2(3); ideal (one gold) = 1/log2(2) = 1
    assert ndcg_at(["x", "g"], {"g"}) == pytest.approx(1 / math.log2(3))
    # two gold at ranks 1 and 3: (1 + 1/log2(4)) / (1 + 1/log2(3))
    expected = (1 + 1 / 2) / (1 + 1 / math.log2(3))
    assert ndcg_at(["g1", "x", "g2"], {"g1", "g2"}) == pytest.approx(expected)
    assert ndcg_at(["x"], set()) == 0.0


def test_token_f1():
    # pred: the cat sat (3), ref: the cat ran away (4); common: the, cat = 2
    p, r = 2 / 3, 2 / 4
    assert token_f1("The cat sat", "the cat ran away") == pytest.approx(2 * p * r / (p + r))
    assert token_f1("", "") == 1.0
    assert token_f1("dog", "cat") == 0.0


def test_rouge_l():
    # LCS of "a b c d" and "a c d e" is "a c d" (3): p = 3/4, r = 3/4
    assert rouge_l("a b c d", "a c d e") == pytest.approx(0.75)
    assert rouge_l("x y", "z") == 0.0


def test_rate_and_bootstrap():
    assert rate([True, False, True, True]) == 0.75
    assert rate([]) is None
    low, high = bootstrap_ci([1, 0] * 50, lambda xs: sum(xs) / len(xs), rounds=500)
    assert 0.35 < low < 0.5 < high < 0.65
    assert bootstrap_ci([], lambda xs: 0.0) is None
