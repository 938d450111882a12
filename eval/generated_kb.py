"""A large help center generated for `make bench`: 10,000 articles of about 5 sections each.

The text is help-center English: sentences of the sample knowledge base (``kb_articles/``, our
own writing) recombined and given one product name and feature per article, so every article has
words of its own for BM25 and a meaning of its own for the embedder. Deterministic for a seed.
Its questions (an article's title or one of its headings, asked as a question) have a known
article, so the bench can check that the large index still finds things; they are not a quality
benchmark.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

from indexer.articles import SourceArticle, load_path
from indexer.chunking import sections

PRODUCTS = [
    "Aster",
    "Beacon",
    "Cobalt",
    "Dune",
    "Ember",
    "Fjord",
    "Garnet",
    "Harbor",
    "Iris",
    "Juniper",
    "Kestrel",
    "Lumen",
    "Meridian",
    "Nimbus",
    "Onyx",
    "Pioneer",
    "Quartz",
    "Rover",
    "Sierra",
    "Tundra",
    "Umber",
    "Vector",
    "Willow",
    "Xenon",
    "Yarrow",
    "Zephyr",
]
MODELS = ["Mini", "Plus", "Pro", "Max", "Air", "Lite", "Studio", "Home", "Go", "Edge"]
FEATURES = [
    "battery",
    "bluetooth pairing",
    "wi-fi setup",
    "firmware update",
    "screen calibration",
    "voice control",
    "parental controls",
    "backup",
    "sync",
    "notifications",
    "warranty claim",
    "subscription",
    "invoice",
    "data export",
    "two-step sign-in",
    "guest access",
    "offline mode",
    "dark mode",
    "sound settings",
    "camera",
    "storage",
    "printing",
    "family sharing",
    "gift cards",
    "returns",
    "shipping",
    "repairs",
    "trade-in",
    "accessibility",
    "language settings",
    "time zone",
    "payment method",
    "refund",
    "account recovery",
    "privacy settings",
    "cloud storage",
    "installation",
    "mounting",
    "cleaning",
    "charging",
    "remote control",
    "energy saving",
    "child lock",
    "software licence",
    "api keys",
    "team members",
    "single sign-on",
    "audit log",
    "webhooks",
    "reports",
]
ACTIONS = [
    "Set up",
    "Turn on",
    "Turn off",
    "Reset",
    "Troubleshoot",
    "Change",
    "Update",
    "Fix problems with",
    "Manage",
    "Understand",
    "Cancel",
    "Move",
    "Share",
    "Restore",
    "Check",
]
HEADINGS = [
    "Before you start",
    "Step by step",
    "If it doesn't work",
    "What happens next",
    "Limits and fees",
    "On a phone",
    "On a computer",
    "For business accounts",
    "Known issues",
    "Related settings",
    "Error messages",
    "Keep your data safe",
    "How long it takes",
    "Who can do this",
]


@dataclass
class GeneratedQuestion:
    question: str
    article_id: str


def _sentences(kb_dir: Path) -> list[str]:
    articles, _ = load_path(kb_dir)
    found: list[str] = []
    for article in articles:
        for _, text in sections(article.body):
            flat = " ".join(line.lstrip("0123456789.-* ") for line in text.splitlines())
            found += [s for s in re.split(r"(?<=[.!?])\s+", flat) if 6 <= len(s.split()) <= 40]
    return sorted(set(found))


def generate(
    kb_dir: Path, articles: int = 10_000, seed: int = 7
) -> tuple[list[SourceArticle], list[GeneratedQuestion]]:
    """``articles`` help articles built from ``kb_dir``'s sentences, and one question for every
    tenth article."""
    rng = random.Random(seed)
    bank = _sentences(kb_dir)
    out: list[SourceArticle] = []
    questions: list[GeneratedQuestion] = []
    for n in range(articles):
        product = f"{rng.choice(PRODUCTS)} {rng.choice(MODELS)} {rng.randint(2, 9)}"
        feature = rng.choice(FEATURES)
        action = rng.choice(ACTIONS)
        title = f"{action} {feature} on the {product}"
        heads = rng.sample(HEADINGS, rng.randint(3, 5))
        parts = [f"This article explains how to {action.lower()} {feature} on the {product}."]
        for head in heads:
            words = 0
            body: list[str] = []
            while words < rng.randint(55, 95):
                sentence = rng.choice(bank)
                if rng.random() < 0.3 and sentence[1:2].islower():
                    sentence = f"On the {product}, {sentence[0].lower()}{sentence[1:]}"
                body.append(sentence)
                words += len(sentence.split())
            parts.append(f"## {head} ({feature})\n{' '.join(body)}")
        article_id = f"gen-{n:05d}"
        out.append(
            SourceArticle(
                id=article_id,
                title=title,
                body="\n\n".join(parts),
                category=feature.replace(" ", "-"),
                source=f"generated:{n}",
            )
        )
        if n % 10 == 0:
            questions.append(
                GeneratedQuestion(
                    f"how do I {action.lower()} {feature} on my {product}?", article_id
                )
            )
    return out, questions
