"""Sweep the gate's thresholds over recorded rankings and pick the best setting.

The sweep re-runs the bot's own :func:`bot.gate.decide` on each question's recorded ranking, so
there is no second implementation of the gate. Decisions that need no retrieval (a request for a
person, small talk) keep the action they had.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from bot.gate import GateSettings, decide
from eval.runner import Record


def _outcome(records: Sequence[Record], gate: GateSettings) -> dict:
    deflected = assisted = answered = answered_right = escalated_oos = oos = answerable = 0
    for r in records:
        if r.decision.ranking or r.decision.reason in ("no_match", "low_confidence"):
            d = decide(r.decision.ranking, gate)
        else:
            d = r.decision
        gold = r.question.gold_article_ids
        right = d.action == "answer" and bool(d.hits) and d.hits[0].article_id in gold
        if r.question.answerable:
            answerable += 1
            deflected += right
            assisted += d.action == "clarify" and any(h.article_id in gold for h in d.hits)
        else:
            oos += 1
            escalated_oos += d.action == "escalate"
        if d.action == "answer":
            answered += 1
            answered_right += right
    return {
        "answer_threshold": gate.answer_threshold,
        "clarify_threshold": gate.clarify_threshold,
        "deflection": deflected / answerable if answerable else None,
        "assisted": assisted / answerable if answerable else None,
        "answered_precision": answered_right / answered if answered else None,
        "escalation_recall": escalated_oos / oos if oos else None,
    }


def sweep(
    records: Sequence[Record],
    base: GateSettings,
    answer_grid: Sequence[float] | None = None,
    clarify_step: float = 0.02,
) -> list[dict]:
    """One outcome per (answer, clarify) threshold pair, clarify <= answer."""
    answer_grid = (
        answer_grid if answer_grid is not None else np.round(np.arange(0.30, 0.96, 0.01), 2)
    )
    points = []
    for a in answer_grid:
        for c in np.round(np.arange(0.20, a + 1e-9, clarify_step), 2):
            points.append(
                _outcome(
                    records, replace(base, answer_threshold=float(a), clarify_threshold=float(c))
                )
            )
    return points


def choose(
    points: Sequence[dict], min_precision: float = 0.90, min_escalation_recall: float = 0.95
) -> dict | None:
    """The point with the highest deflection meeting both floors; ties go to the one that helps
    more customers by clarifying, then to the higher escalation recall, the higher precision,
    and the higher answer threshold."""
    ok = [
        p
        for p in points
        if (p["answered_precision"] or 0) >= min_precision
        and (p["escalation_recall"] is None or p["escalation_recall"] >= min_escalation_recall)
    ]
    if not ok:
        return None
    return max(
        ok,
        key=lambda p: (
            round(p["deflection"] or 0, 6),
            round(p["assisted"] or 0, 6),
            p["escalation_recall"] or 0,
            p["answered_precision"] or 0,
            p["answer_threshold"],
        ),
    )


def curve(points: Sequence[dict]) -> list[dict]:
    """Deflection against answered precision: for each answer threshold, its best clarify point."""
    best: dict[float, dict] = {}
    for p in points:
        a = p["answer_threshold"]
        if a not in best or (p["escalation_recall"] or 0) > (best[a]["escalation_recall"] or 0):
            best[a] = p
    return [best[a] for a in sorted(best)]
