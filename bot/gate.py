"""The answer gate: answer, clarify (offer 2-3 articles), escalate, or a short small-talk reply.

Small and explainable on purpose: a decision is a comparison of the top article's confidence with
two thresholds, plus three rules (the customer asks for a person; small talk; too many unhelpful
turns in a row). Every decision carries the scores and the reason that produced it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bot.retrieval import ArticleHit

# Who the customer may ask for, with the words that may stand before it ("a real person").
_DET = r"(a |an |the |your |some |any |one of your )?(real |live |actual |human )?"
_PERSON = (
    r"(human(?!\s+resources)s?( being)?|person|people|someone|somebody|anyone|anybody|agent|"
    r"representative|rep|operator|staff|employee|manager|supervisor|"
    r"support (team|staff|agent)|customer (service|support|care))\b"
)
_HUMAN = re.compile(
    # "can I talk to a human", "I need to speak with someone", "chat with your support team"
    rf"\b(talk|speak|chat)\w*\b.{{0,25}}?\b(to|with)\s+{_DET}{_PERSON}"
    # "connect me to an agent", "put me through to someone"; not "transfer my gift card to ..."
    r"|\b(connect|transfer|put|pass|forward|escalate|hand)\w*\s+"
    r"((me|us|this|it|my (chat|conversation|case|question|issue|request))\s+)?"
    rf"(through\s+|over\s+)?(to|with)\s+{_DET}{_PERSON}"
    # "agent please", "real person now"
    r"|\b(human|real person|actual person|live (agent|person|chat)|agent|representative|rep|"
    r"operator|customer (service|support))s?( being)?\s*(please|pls|plz|now|asap)\b"
    # the whole message: "human", "a person please", "Live agent!"
    r"|^\W*(a |an )?(real |live |actual )?(human|person|agent|representative|rep|operator|"
    r"customer (service|support)|support)s?( being)?(\s*(please|pls|plz|now|asap))?\W*$"
    # "I need a human", "can I get an agent"; not "a human resources contact"
    r"|\b(want|need|get|give)\b(\s+me)?\s+(a |an |some )?"
    r"((real|live|actual) (human|person|agent)|human(?!\s+resources)|agent|rep|representative|"
    r"operator)s?\b"
    # "is there someone I can talk to", "are there any humans here"
    r"|\b(is|are) there\s+(a |an |any |some )?(real |live |actual )?(humans?|person|people|agents?|"
    r"someone|somebody|anyone|anybody|representatives?)\b.{0,25}?\b(talk|speak|chat|help|here|"
    r"online|available)"
    # "get me a person", "can a staff member help me", "I don't want a bot"
    r"|\b(get|give|find)\s+me\s+(a |an )?(real |live |actual )?(human|person|agent|someone|somebody)\b"
    r"|\b(can|could|may)\s+(a |an |one of your )?(real |live |actual )?(human|person|staff( member)?|"
    r"agent|representative|employee|team member)\s+(help|call|contact|assist|talk|speak|look)"
    r"|\b(don'?t|do not)\s+want\s+(to (talk|speak|chat) (to|with) )?(a |the |this |your )?"
    r"(chat)?(bot|robot|machine)\b",
    re.IGNORECASE,
)
# Person words used as modifiers of a thing ("operator manual", "human-sized"): removed before
# matching, so they never read as a request for a person.
_PERSON_AS_MODIFIER = re.compile(
    r"\b(human|operator|agent|person|people|staff|rep)s?('s)?[\s-]+"
    r"(manual|guide|handbook|sized?|resources|error|mode|settings?|id|number|code)\b",
    re.IGNORECASE,
)
_GREETING = re.compile(
    r"^\W*(hi|hello|hey|hiya|howdy|yo|good (morning|afternoon|evening)|greetings)"
    r"( there| all| team| bot)?\W*$",
    re.IGNORECASE,
)
_THANKS = re.compile(
    r"^\W*((thanks|thank you|thx|ty|cheers|great|perfect|awesome|ok|okay|got it|cool)"
    r"( so much| a lot| very much| again)?[\s,.!]*)+\W*$",
    re.IGNORECASE,
)
_BYE = re.compile(
    r"^\W*(bye|goodbye|see you|that'?s all|that is all|have a nice day)\W*$", re.IGNORECASE
)

REPLIES = {
    "greeting": "Hello! Ask me anything about our products, orders, shipping or your account, "
    "and I'll find the answer in our help center.",
    "thanks": "You're welcome! Is there anything else I can help you with?",
    "bye": "Thanks for chatting with us. Have a great day!",
    "clarify": "I found a few articles that may help. Which one is closest to your question?",
    "human_request": "Sure, I'm passing this conversation to our support team. "
    "A person will reply here as soon as possible.",
    "low_confidence": "I'm not sure I have the right answer for that, so I'm passing your "
    "question to our support team. A person will reply here as soon as possible.",
    "unhelpful_turns": "Sorry I couldn't help so far. I'm passing this conversation to our "
    "support team, and a person will reply here as soon as possible.",
    "no_index": "I can't look anything up right now, so I'm passing your question to our "
    "support team. A person will reply here as soon as possible.",
}


@dataclass
class GateSettings:
    answer_threshold: float = 0.5
    clarify_threshold: float = 0.35
    clarify_options: int = 3
    max_unhelpful_turns: int = 2


@dataclass
class Decision:
    """What the bot does with one message, and why."""

    action: str  # answer | clarify | escalate | smalltalk
    reason: str
    text: str
    confidence: float | None = None
    hits: list[ArticleHit] = field(default_factory=list)  # the cited articles
    scores: dict = field(default_factory=dict)
    ranking: list[ArticleHit] = field(default_factory=list)  # every article retrieved, best first

    def citations(self, snippet_chars: int = 240) -> list[dict]:
        out = []
        for h in self.hits:
            text = " ".join(h.passage["text"].split())
            snippet = text if len(text) <= snippet_chars else text[: snippet_chars - 1] + "…"
            out.append(
                {"article_id": h.article_id, "title": h.title, "url": h.url, "snippet": snippet}
            )
        return out


def asks_for_human(text: str) -> bool:
    return bool(_HUMAN.search(_PERSON_AS_MODIFIER.sub(" ", text)))


def smalltalk_kind(text: str) -> str | None:
    """'greeting', 'thanks' or 'bye' when the whole message is only that, else None."""
    if _GREETING.match(text):
        return "greeting"
    if _THANKS.match(text):
        return "thanks"
    if _BYE.match(text):
        return "bye"
    return None


def pre_retrieval(text: str, unhelpful_streak: int, gate: GateSettings) -> Decision | None:
    """Decisions that need no retrieval: a request for a person, small talk, too many misses."""
    if asks_for_human(text):
        return Decision("escalate", "human_request", REPLIES["human_request"])
    kind = smalltalk_kind(text)
    if kind:
        return Decision("smalltalk", kind, REPLIES[kind])
    if unhelpful_streak >= gate.max_unhelpful_turns:
        return Decision("escalate", "unhelpful_turns", REPLIES["unhelpful_turns"])
    return None


def decide(hits: list[ArticleHit], gate: GateSettings) -> Decision:
    """Answer, clarify or escalate from the ranked articles' confidence."""
    scores = {
        "answer_threshold": gate.answer_threshold,
        "clarify_threshold": gate.clarify_threshold,
        "candidates": [h.scores() for h in hits[:5]],
    }
    if not hits:
        return Decision("escalate", "no_match", REPLIES["low_confidence"], 0.0, [], scores)
    top = hits[0]
    confidence = round(top.confidence, 4)
    scores["evidence"] = round(top.evidence, 4)
    if confidence >= gate.answer_threshold:
        return Decision("answer", "confident", top.passage["text"], confidence, [top], scores)
    # not sure which article: offer a few when the evidence says they are on topic
    if top.evidence >= gate.clarify_threshold and len(hits) >= 2:
        options = hits[: max(2, gate.clarify_options)]
        return Decision("clarify", "middle_band", REPLIES["clarify"], confidence, options, scores)
    return Decision("escalate", "low_confidence", REPLIES["low_confidence"], confidence, [], scores)
