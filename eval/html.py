"""Render a report dict as one self-contained HTML page (charts embedded as PNG data URIs)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from jinja2 import Environment, FileSystemLoader, select_autoescape

TEMPLATES = Path(__file__).parent / "templates"
TABLE_METRICS = [
    "hit@1", "hit@3", "hit@5", "mrr@10", "ndcg@10", "answer_token_f1", "answer_rouge_l",
    "deflection", "assisted", "answered_precision", "escalation_recall", "false_escalation",
]  # fmt: skip


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def curve_chart(report: dict) -> str | None:
    points = [
        p for p in report["calibration"]["curve"]
        if p["deflection"] is not None and p["answered_precision"] is not None
    ]  # fmt: skip
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(
        [p["deflection"] for p in points], [p["answered_precision"] for p in points], "o-", ms=3
    )
    chosen = report["calibration"]["chosen"]
    if chosen:
        ax.plot(chosen["deflection"], chosen["answered_precision"], "r*", ms=14, label="chosen")
        ax.legend()
    ax.axhline(report["calibration"]["min_answered_precision"], color="grey", ls="--", lw=1)
    ax.set_xlabel("deflection")
    ax.set_ylabel("answered precision")
    ax.set_title("Answer threshold sweep")
    ax.grid(alpha=0.3)
    return _png(fig)


def histogram_chart(report: dict) -> str | None:
    answerable = [q["confidence"] for q in report["questions"]
                  if q["gold_article_ids"] and q["confidence"] is not None]  # fmt: skip
    oos = [q["confidence"] for q in report["questions"]
           if not q["gold_article_ids"] and q["confidence"] is not None]  # fmt: skip
    if not answerable and not oos:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = [i / 40 for i in range(41)]
    ax.hist(answerable, bins=bins, alpha=0.6, label=f"answerable ({len(answerable)})")
    ax.hist(oos, bins=bins, alpha=0.6, label=f"must escalate ({len(oos)})")
    s = report["settings"]
    ax.axvline(s["answer_threshold"], color="green", ls="--", lw=1, label="answer threshold")
    ax.axvline(s["clarify_threshold"], color="orange", ls="--", lw=1, label="clarify threshold")
    ax.set_xlabel("confidence of the top article")
    ax.set_ylabel("questions")
    ax.legend(fontsize=8)
    return _png(fig)


def render(report: dict) -> str:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"])
    )
    return env.get_template("report.html.j2").render(
        report=report,
        metrics=TABLE_METRICS,
        curve=curve_chart(report),
        histogram=histogram_chart(report),
    )
