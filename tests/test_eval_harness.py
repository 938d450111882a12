"""End to end: a tiny dataset through `supportbot eval` with the fake embedder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app

ARTICLES = [
    {
        "id": "pw",
        "title": "Reset your password",
        "body": "Use Forgot password on the sign in page and follow the emailed link.",
    },
    {
        "id": "ship",
        "title": "Shipping costs",
        "body": "Standard shipping is free over 50 dollars; express shipping costs 15 dollars.",
    },
    {
        "id": "ret",
        "title": "Return policy",
        "body": "Return unused items within 30 days for a refund to the original payment method.",
    },
]
QUESTIONS = [
    {
        "id": "q1",
        "question": "forgot password sign in",
        "gold_article_ids": ["pw"],
        "gold_answer": "Use Forgot password on the sign in page",
        "subset": "normal",
    },
    {
        "id": "q2",
        "question": "express shipping cost",
        "gold_article_ids": ["ship"],
        "subset": "normal",
    },
    {
        "id": "q3",
        "question": "return items within 30 days refund",
        "gold_article_ids": ["ret"],
        "subset": "paraphrased",
    },
    {
        "id": "q4",
        "question": "quantum chromodynamics lecture notes",
        "gold_article_ids": [],
        "subset": "out_of_scope",
    },
]


def write_dataset(folder: Path, questions=QUESTIONS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "articles.jsonl").write_text("\n".join(json.dumps(a) for a in ARTICLES) + "\n")
    (folder / "questions.jsonl").write_text("\n".join(json.dumps(q) for q in questions) + "\n")
    return folder


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("SUPPORTBOT_EMBEDDER", "fake")
    monkeypatch.setenv("SUPPORTBOT_ANSWER_THRESHOLD", "0.3")
    monkeypatch.setenv("SUPPORTBOT_CLARIFY_THRESHOLD", "0.2")
    return tmp_path


def invoke(*args):
    return CliRunner().invoke(app, list(args))


def test_eval_end_to_end_writes_a_report_and_reuses_the_index(env):
    data = write_dataset(env / "ds")
    out, cache = env / "out", env / "cache"
    args = ["eval", str(data), "--out", str(out), "--cache-dir", str(cache)]
    first = invoke(*args, "--write-settings", str(env / "chosen.env"))
    assert first.exit_code == 0, first.output
    report = json.loads((out / "report.json").read_text())
    assert set(report["variants"]) == {
        "hybrid", "dense", "bm25", "hybrid-rrf", "hybrid-no-titles", "hybrid-adapted", "hybrid-int8",
        "hybrid-fp32",
    }  # fmt: skip
    hybrid = report["variants"]["hybrid"]["overall"]
    assert hybrid["answerable"] == 3 and hybrid["must_escalate"] == 1
    assert hybrid["metrics"]["hit@1"] == 1.0  # the questions share their words with the gold
    assert set(report["variants"]["hybrid"]["subsets"]) == {"normal", "paraphrased", "out_of_scope"}
    assert len(report["questions"]) == 4
    assert report["index"]["base"]["reused_from_cache"] is False  # the fake is never adapted
    assert "hybrid" in first.output and "calibration" in first.output
    html = (out / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == 2  # the curve and the histograms
    assert "Worst misses" in html and "hybrid-no-titles" in html

    second = invoke(*args, "--variant", "bm25")
    assert second.exit_code == 0, second.output
    again = json.loads((out / "report.json").read_text())
    assert again["index"]["base"]["reused_from_cache"] is True
    assert list(again["variants"]) == ["bm25"]


def test_eval_rejects_a_bad_dataset_with_a_clear_message(env):
    data = write_dataset(env / "bad")
    (data / "questions.jsonl").write_text('{"id": "q1", "question": "hi"}\n')
    result = invoke("eval", str(data), "--out", str(env / "o"), "--cache-dir", str(env / "c"))
    assert result.exit_code == 1
    assert "questions.jsonl:1" in result.output and "gold_article_ids" in result.output
    assert "Traceback" not in result.output

    missing = invoke("eval", str(env / "nowhere"))
    assert missing.exit_code == 1 and "articles.jsonl: not found" in missing.output


def test_html_report_escapes_dataset_text(env):
    questions = [*QUESTIONS[:3], {**QUESTIONS[3], "question": "<script>alert(1)</script> refund"}]
    data = write_dataset(env / "xss", questions)
    result = invoke("eval", str(data), "--out", str(env / "o"), "--cache-dir", str(env / "c"))
    assert result.exit_code == 0, result.output
    html = (env / "o" / "report.html").read_text()
    assert "<script>alert(1)</script>" not in html


def test_unknown_variant_is_refused(env):
    data = write_dataset(env / "ds")
    result = invoke("eval", str(data), "--variant", "magic")
    assert result.exit_code == 1 and "unknown variant" in result.output


def test_deeply_nested_question_line_is_a_clear_error(env):
    data = write_dataset(env / "deep")
    (data / "questions.jsonl").write_text("[" * 100_000 + "]" * 100_000 + "\n")
    result = invoke("eval", str(data), "--out", str(env / "o"), "--cache-dir", str(env / "c"))
    assert result.exit_code == 1
    assert "questions.jsonl:1: JSON nested too deeply" in result.output


def test_adapted_index_cache_key_follows_every_training_setting(env):
    from bot.settings import Settings
    from eval.dataset import load_dataset
    from eval.runner import adapt_options, cache_key

    dataset = load_dataset(write_dataset(env / "ds"))
    base = Settings(embedder="minilm")
    faster = base.model_copy(update={"adapt_learning_rate": 5e-4})
    assert adapt_options(faster).learning_rate == 5e-4
    assert cache_key(dataset, base, "adapted") != cache_key(dataset, faster, "adapted")
    # the base model's index does not depend on how adaptation would train
    assert cache_key(dataset, base, "base") == cache_key(dataset, faster, "base")
