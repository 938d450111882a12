"""The answer gate: requests for a person, small talk, and answer / clarify / escalate from scores."""

from __future__ import annotations

import pytest

from bot.gate import (
    REPLIES,
    GateSettings,
    asks_for_human,
    decide,
    pre_retrieval,
    smalltalk_kind,
)
from bot.retrieval import ArticleHit

GATE = GateSettings(answer_threshold=0.5, clarify_threshold=0.35, clarify_options=3)

HUMAN_REQUESTS = [
    "can I talk to a human?",
    "agent please",
    "human",
    "REPRESENTATIVE",
    "Live agent!",
    "operator!!",
    "a person please",
    "real human please",
    "customer service please",
    "I want to speak to a real person",
    "Let me speak with a representative",
    "I'd like to chat with your support team",
    "I need to speak with someone about my order",
    "I want to talk about my refund with someone",
    "let me talk to your manager",
    "I want to speak to a supervisor",
    "Can I chat with a live agent?",
    "connect me to customer service",
    "transfer me to an agent",
    "put me through to someone",
    "pass me to a human",
    "Can you transfer this to a human?",
    "escalate this to a manager",
    "I need a human",
    "I need human help",
    "Can I get a real person?",
    "can I get an agent",
    "get me a human",
    "i don't want a bot, get me a person",
    "is there someone I can talk to?",
    "Is there a human I can speak with?",
    "is there an actual human i can chat with",
    "are there any humans here",
    "can a staff member help me instead",
]

NOT_HUMAN_REQUESTS = [
    "how do I add a person to my account",
    "my human resources department needs an invoice",
    "Do you need a human resources contact for invoicing?",
    "agent of change book",
    "Does the agent app work on Android?",
    "which shipping agent do you use?",
    "Is the delivery agent responsible for damage?",
    "Can I transfer my gift card to another person?",
    "How do I put someone else on my account?",
    "How do I connect my account to someone else's?",
    "Can someone else pick up my order?",
    "Can I change the person who receives the package?",
    "How do I share my wishlist with other people?",
    "what personal data do you keep?",
    "I want to know how many people work there",
    "can i move my leftover store credit over to my sister's account",
    "can i call you and order a rug over the phone",
    "How do I reset my password?",
    "I need to change my address",
    "Where can I get an operator manual for the blender?",
    "I need a human-sized dog bed",
    "do you have a human sized bean bag, I need one",
]


@pytest.mark.parametrize("text", HUMAN_REQUESTS)
def test_asks_for_human_positives(text):
    assert asks_for_human(text)


@pytest.mark.parametrize("text", NOT_HUMAN_REQUESTS)
def test_asks_for_human_negatives(text):
    assert not asks_for_human(text)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("hi", "greeting"),
        ("Hello!", "greeting"),
        ("hey there", "greeting"),
        ("Good morning", "greeting"),
        ("thanks!", "thanks"),
        ("Thank you so much", "thanks"),
        ("ok thanks", "thanks"),
        ("great, thanks a lot!", "thanks"),
        ("bye", "bye"),
        ("that's all", "bye"),
        ("Goodbye!", "bye"),
    ],
)
def test_smalltalk_kind(text, kind):
    assert smalltalk_kind(text) == kind


@pytest.mark.parametrize(
    "text",
    [
        "hi, how do I reset my password?",
        "thanks, but where is my order?",
        "hello? my package never arrived",
        "great, it says my card was declined",
        "history of the company",
        "thinking about returning a lamp",
        "",
    ],
)
def test_questions_with_a_greeting_are_not_smalltalk(text):
    assert smalltalk_kind(text) is None


def test_pre_retrieval_order_of_rules():
    human = pre_retrieval("hi, can I talk to a human?", 0, GATE)
    assert (human.action, human.reason, human.text) == (
        "escalate",
        "human_request",
        REPLIES["human_request"],
    )
    hello = pre_retrieval("hello", 5, GATE)  # small talk never escalates on its own
    assert (hello.action, hello.reason) == ("smalltalk", "greeting")
    assert hello.hits == [] and hello.citations() == []
    assert pre_retrieval("where is my parcel", GATE.max_unhelpful_turns - 1, GATE) is None
    tired = pre_retrieval("where is my parcel", GATE.max_unhelpful_turns, GATE)
    assert (tired.action, tired.reason) == ("escalate", "unhelpful_turns")


# --- decide() --------------------------------------------------------------------------------


def hit(article_id: str, confidence: float, evidence: float | None = None) -> ArticleHit:
    """A hit with the given confidence; its evidence (and the cosine behind it) default to it."""
    h = ArticleHit(
        article_id=article_id,
        title=f"Title of {article_id}",
        url=f"/help/articles/{article_id}",
        passage={"article_id": article_id, "text": f"The   passage\nof {article_id}."},
        score=confidence,
        dense=confidence,
        lexical=1.0,
    )
    h.confidence = confidence
    h.evidence = confidence if evidence is None else evidence
    return h


def test_clarify_needs_evidence_and_answer_needs_confidence():
    # on topic (evidence) but no clear winner (confidence): offer articles
    unsure = [hit("a0", 0.45, evidence=0.6), hit("a1", 0.3)]
    assert decide(unsure, GATE).action == "clarify"
    # a lead over weak rivals but little evidence of being on topic: hand over
    weak = [hit("a0", 0.45, evidence=0.2), hit("a1", 0.1)]
    assert decide(weak, GATE).action == "escalate"


def ranked(top: float, n: int = 5) -> list[ArticleHit]:
    """``n`` hits, the first with confidence ``top`` and the others a little lower."""
    return [hit(f"a{i}", top - 0.05 * i) for i in range(n)]


@pytest.mark.parametrize(
    ("top", "action"),
    [
        (0.95, "answer"),
        (0.5, "answer"),  # at the answer threshold
        (0.4999, "clarify"),
        (0.42, "clarify"),
        (0.35, "clarify"),  # at the clarify threshold
        (0.3499, "escalate"),
        (0.1, "escalate"),
        (-0.2, "escalate"),
    ],
)
def test_decide_around_the_thresholds(top, action):
    d = decide(ranked(top), GATE)
    assert d.action == action
    assert d.confidence == pytest.approx(top)
    assert d.scores["answer_threshold"] == GATE.answer_threshold
    assert d.scores["clarify_threshold"] == GATE.clarify_threshold
    assert [c["article_id"] for c in d.scores["candidates"]] == ["a0", "a1", "a2", "a3", "a4"]


def test_answer_cites_the_top_article_and_quotes_its_passage():
    hits = ranked(0.7)
    d = decide(hits, GATE)
    assert (d.action, d.reason) == ("answer", "confident")
    assert d.text == hits[0].passage["text"]
    assert d.citations() == [
        {
            "article_id": "a0",
            "title": "Title of a0",
            "url": "/help/articles/a0",
            "snippet": "The passage of a0.",  # whitespace collapsed
        }
    ]


def test_long_snippets_are_cut():
    h = hit("long", 0.9)
    h.passage["text"] = "word " * 200
    d = decide([h], GATE)
    snippet = d.citations(snippet_chars=50)[0]["snippet"]
    assert len(snippet) == 50 and snippet.endswith("…")


@pytest.mark.parametrize(("options", "n_hits", "offered"), [(3, 5, 3), (2, 5, 2), (3, 2, 2)])
def test_clarify_offers_two_or_three_articles_in_rank_order(options, n_hits, offered):
    gate = GateSettings(answer_threshold=0.5, clarify_threshold=0.35, clarify_options=options)
    hits = ranked(0.45, n_hits)
    d = decide(hits, gate)
    assert (d.action, d.reason) == ("clarify", "middle_band")
    assert d.text == REPLIES["clarify"]
    assert [c["article_id"] for c in d.citations()] == [h.article_id for h in hits[:offered]]


def test_clarify_with_a_single_candidate_escalates():
    d = decide([hit("only", 0.45)], GATE)
    assert (d.action, d.reason) == ("escalate", "low_confidence")
    assert d.citations() == []


def test_no_hits_escalate():
    d = decide([], GATE)
    assert (d.action, d.reason) == ("escalate", "no_match")
    assert d.confidence == 0.0
    assert d.citations() == [] and d.scores["candidates"] == []


def test_low_confidence_escalates_without_citations():
    d = decide(ranked(0.2), GATE)
    assert (d.action, d.reason) == ("escalate", "low_confidence")
    assert d.text == REPLIES["low_confidence"]
    assert d.citations() == []
