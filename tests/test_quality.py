"""The real model over the sample help center: paraphrased questions find the right article,
off-topic questions and requests for a person go to a human."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bot.pipeline import IndexHolder, Pipeline
from bot.settings import Settings

QUESTIONS = yaml.safe_load((Path(__file__).parent / "data" / "kb_questions.yaml").read_text())

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def pipeline(sample_kb: Settings, sample_embedder) -> Pipeline:
    holder = IndexHolder(sample_kb.index_dir, embedders=sample_embedder)
    assert holder.refresh()
    return Pipeline.from_settings(sample_kb, holder)


def test_question_set_is_big_enough():
    assert len(QUESTIONS["answerable"]) >= 30
    assert len(QUESTIONS["offtopic"]) >= 15
    assert len(QUESTIONS["human"]) >= 10


def test_paraphrased_questions_find_the_right_article_first(pipeline: Pipeline):
    misses = []
    for item in QUESTIONS["answerable"]:
        decision = pipeline.reply(item["question"])
        top = (
            decision.scores["candidates"][0]["article_id"]
            if decision.scores.get("candidates")
            else None
        )
        if top != item["article_id"]:
            misses.append((item["question"], item["article_id"], top))
    hit_rate = 1 - len(misses) / len(QUESTIONS["answerable"])
    assert hit_rate >= 0.90, f"top-1 {hit_rate:.2%}; misses: {misses}"


def test_answers_are_right_and_most_questions_get_help(pipeline: Pipeline):
    """The gate is tuned for precision (defaults from the eval sweep): answers must be right,
    and a majority of answerable questions must be answered or clarified, not handed over."""
    decisions = [(item, pipeline.reply(item["question"])) for item in QUESTIONS["answerable"]]
    answers = [(item, d) for item, d in decisions if d.action == "answer"]
    right = [d for item, d in answers if d.hits[0].article_id == item["article_id"]]
    assert answers and len(right) / len(answers) >= 0.95, [
        (item["question"], d.hits[0].article_id) for item, d in answers
    ]
    helped = sum(d.action in ("answer", "clarify") for _, d in decisions) / len(decisions)
    assert helped >= 0.5, f"only {helped:.0%} answered or clarified"


def test_answers_cite_the_article_they_quote(pipeline: Pipeline):
    item = QUESTIONS["answerable"][0]
    decision = pipeline.reply(item["question"])
    if decision.action == "answer":
        assert len(decision.hits) == 1
        assert decision.text == decision.hits[0].passage["text"]
        assert decision.citations()[0]["url"].endswith(decision.hits[0].article_id)


def test_off_topic_questions_escalate(pipeline: Pipeline):
    """Off-topic questions go to a person. The set includes shopping questions about other
    companies ("cancel my netflix subscription"), which the confidence does not always tell
    apart yet: the bar is 90% escalated (measured and reported, see eval/)."""
    wrong = {}
    for question in QUESTIONS["offtopic"]:
        decision = pipeline.reply(question)
        if decision.action != "escalate":
            wrong[question] = (decision.action, decision.confidence)
    escalated = 1 - len(wrong) / len(QUESTIONS["offtopic"])
    assert escalated >= 0.90, f"{escalated:.0%} escalated; not escalated: {wrong}"


@pytest.mark.parametrize("question", QUESTIONS["human"])
def test_asking_for_a_person_escalates(pipeline: Pipeline, question: str):
    decision = pipeline.reply(question)
    assert (decision.action, decision.reason) == ("escalate", "human_request")


def test_chat_api_with_the_real_model(sample_kb: Settings, sample_embedder):
    from conftest import wait_ready
    from fastapi.testclient import TestClient

    from bot.app import create_app

    item = QUESTIONS["answerable"][1]
    with TestClient(create_app(sample_kb, embedder=sample_embedder)) as client:
        wait_ready(client)
        conv = client.post("/api/v1/conversations").json()
        headers = {"X-Conversation-Token": conv["token"]}
        url = f"/api/v1/conversations/{conv['id']}/messages"
        reply = client.post(url, json={"text": item["question"]}, headers=headers).json()
        assert reply["action"] in ("answer", "clarify"), reply
        assert item["article_id"] in [c["article_id"] for c in reply["citations"]]
        off = client.post(url, json={"text": QUESTIONS["offtopic"][0]}, headers=headers).json()
        assert off["action"] == "escalate"
        assert off["conversation_status"] == "queued"
