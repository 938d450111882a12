"""Metric functions: retrieval ranks, answer-text overlap, gate decisions, bootstrap intervals.

Each takes plain values so it can be checked against hand-computed cases.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

_WORD = re.compile(r"\w+")


def hit_at(ranked: Sequence[str], gold: set[str], k: int) -> float:
    """1 if a gold article is among the first k, else 0."""
    return float(any(a in gold for a in ranked[:k]))


def reciprocal_rank(ranked: Sequence[str], gold: set[str], k: int = 10) -> float:
    """1 / rank of the first gold article within the first k, else 0."""
    for rank, article in enumerate(ranked[:k], start=1):
        if article in gold:
            return 1.0 / rank
    return 0.0


def ndcg_at(ranked: Sequence[str], gold: set[str], k: int = 10) -> float:
    """Binary-relevance nDCG@k: DCG of the ranking over the DCG of a perfect one."""
    dcg = sum(1.0 / math.log2(i + 2) for i, a in enumerate(ranked[:k]) if a in gold)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(gold), k)))
    return dcg / ideal if ideal else 0.0


def tokens(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD-style token F1 between two texts (lowercased word tokens, multiset overlap)."""
    pred, ref = tokens(prediction), tokens(reference)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1: longest common subsequence of word tokens."""
    pred, ref = tokens(prediction), tokens(reference)
    if not pred or not ref:
        return float(pred == ref)
    prev = [0] * (len(ref) + 1)
    for p in pred:
        cur = [0]
        for j, r in enumerate(ref, start=1):
            cur.append(prev[j - 1] + 1 if p == r else max(prev[j], cur[j - 1]))
        prev = cur
    lcs = prev[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def rate(numerator: Sequence[bool | float], denominator_size: int | None = None) -> float | None:
    """Mean of 0/1 values (None when there is nothing to average)."""
    n = len(numerator) if denominator_size is None else denominator_size
    return float(sum(numerator)) / n if n else None


def bootstrap_ci(
    items: Sequence,
    statistic: Callable[[Sequence], float | None],
    rounds: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of ``statistic`` over resamples of ``items``."""
    if not items:
        return None
    rng = np.random.default_rng(seed)
    n = len(items)
    values = []
    for _ in range(rounds):
        sample = [items[i] for i in rng.integers(0, n, n)]
        value = statistic(sample)
        if value is not None:
            values.append(value)
    if not values:
        return None
    tail = (1 - level) / 2 * 100
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))
