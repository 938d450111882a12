"""Turn a variant's records into the figures of the report, overall and per subset."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from eval.metrics import bootstrap_ci, hit_at, ndcg_at, rate, reciprocal_rank, rouge_l, token_f1
from eval.runner import Record

HEADLINE = ("hit@1", "hit@5", "deflection", "answered_precision", "escalation_recall")


def _answered_right(r: Record) -> bool:
    return (
        r.decision.action == "answer"
        and bool(r.cited)
        and r.cited[0] in r.question.gold_article_ids
    )


def _metric_fns() -> dict:
    """name -> function(records) -> value | None; each defined in eval/README.md."""

    def answerable(rs: Sequence[Record]) -> list[Record]:
        return [r for r in rs if r.question.answerable]

    def must_escalate(rs: Sequence[Record]) -> list[Record]:
        return [r for r in rs if not r.question.answerable]

    def mean_over(rs, fn):
        vals = [fn(r) for r in rs]
        return float(np.mean(vals)) if vals else None

    def gold(r: Record) -> set[str]:
        return set(r.question.gold_article_ids)

    def with_answer(rs):
        return [
            r for r in answerable(rs) if r.question.gold_answer and r.decision.action == "answer"
        ]

    return {
        "hit@1": lambda rs: mean_over(answerable(rs), lambda r: hit_at(r.ranked, gold(r), 1)),
        "hit@3": lambda rs: mean_over(answerable(rs), lambda r: hit_at(r.ranked, gold(r), 3)),
        "hit@5": lambda rs: mean_over(answerable(rs), lambda r: hit_at(r.ranked, gold(r), 5)),
        "mrr@10": lambda rs: mean_over(
            answerable(rs), lambda r: reciprocal_rank(r.ranked, gold(r))
        ),
        "ndcg@10": lambda rs: mean_over(answerable(rs), lambda r: ndcg_at(r.ranked, gold(r))),
        "answer_token_f1": lambda rs: mean_over(
            with_answer(rs), lambda r: token_f1(r.decision.text, r.question.gold_answer)
        ),
        "answer_rouge_l": lambda rs: mean_over(
            with_answer(rs), lambda r: rouge_l(r.decision.text, r.question.gold_answer)
        ),
        "deflection": lambda rs: rate([_answered_right(r) for r in answerable(rs)]),
        "assisted": lambda rs: rate(
            [
                r.decision.action == "clarify" and bool(gold(r) & set(r.cited))
                for r in answerable(rs)
            ]
        ),
        "answered_precision": lambda rs: rate(
            [_answered_right(r) for r in rs if r.decision.action == "answer"]
        ),
        "escalation_recall": lambda rs: rate(
            [r.decision.action == "escalate" for r in must_escalate(rs)]
        ),
        "false_escalation": lambda rs: rate(
            [r.decision.action == "escalate" for r in answerable(rs)]
        ),
    }


def summarize(records: Sequence[Record], rounds: int = 1000) -> dict:
    """Metrics, counts and latency for a set of records; 95% intervals on the headline figures."""
    fns = _metric_fns()
    out: dict = {
        "questions": len(records),
        "answerable": sum(r.question.answerable for r in records),
        "must_escalate": sum(not r.question.answerable for r in records),
        "actions": {},
        "metrics": {},
        "ci95": {},
    }
    for r in records:
        out["actions"][r.decision.action] = out["actions"].get(r.decision.action, 0) + 1
    for name, fn in fns.items():
        value = fn(records)
        out["metrics"][name] = None if value is None else round(value, 4)
    for name in HEADLINE:
        ci = bootstrap_ci(list(records), fns[name], rounds=rounds) if rounds else None
        out["ci95"][name] = None if ci is None else [round(ci[0], 4), round(ci[1], 4)]
    latencies = [r.latency_ms for r in records]
    out["latency_ms"] = {
        "p50": round(float(np.percentile(latencies, 50)), 2) if latencies else None,
        "p95": round(float(np.percentile(latencies, 95)), 2) if latencies else None,
    }
    return out


def summarize_by_subset(records: Sequence[Record], rounds: int = 1000) -> dict:
    subsets = sorted({r.question.subset for r in records})
    return {
        s: summarize([r for r in records if r.question.subset == s], rounds=rounds) for s in subsets
    }
