"""`supportbot eval --tune-fusion`: the fusion weights chosen on a dataset, end to end."""

from __future__ import annotations

import json

import pytest

from eval.fusion import BM25_WEIGHTS, TITLE_WEIGHTS, choose_weights
from tests.test_eval_harness import env, invoke, write_dataset  # noqa: F401 (env is a fixture)


def row(title: float, bm25: float, mrr: float, hit1: float) -> dict:
    return {"title_weight": title, "bm25_weight": bm25, "mrr@10": mrr, "hit@1": hit1, "hit@5": 1}


def test_choose_weights_prefers_mrr_then_hit1_then_the_current_pair():
    grid = [row(0.0, 0.2, 0.70, 0.6), row(0.1, 0.5, 0.75, 0.6), row(0.4, 0.6, 0.75, 0.7)]
    assert choose_weights(grid, (0.3, 0.3)) == grid[2]  # equal MRR: the better hit@1
    grid[2]["hit@1"] = 0.6
    assert choose_weights(grid, (0.3, 0.3)) == grid[1]  # all equal: nearer 0.3 / 0.3
    assert choose_weights(grid, (0.4, 0.6)) == grid[2]


def test_tune_fusion_runs_the_grid_and_every_variant_with_the_chosen_pair(env):  # noqa: F811
    data = write_dataset(env / "ds")
    out, settings_file = env / "out", env / "bot.env"
    settings_file.write_text(
        "SUPPORTBOT_DATABASE_URL=sqlite:///kept.db\nSUPPORTBOT_BM25_WEIGHT=9\n"
    )
    result = invoke(
        "eval", str(data), "--out", str(out), "--cache-dir", str(env / "cache"),
        "--variant", "hybrid", "--variant", "bm25", "--tune-fusion",
        "--write-settings", str(settings_file),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    fusion = report["fusion"]
    assert fusion["current"] == {"title_weight": 0.3, "bm25_weight": 0.3}
    assert fusion["questions"] == 3  # the answerable ones
    pairs = {(r["title_weight"], r["bm25_weight"]) for r in fusion["grid"]}
    assert pairs == {(t, b) for t in TITLE_WEIGHTS for b in BM25_WEIGHTS}
    best = max(r["mrr@10"] for r in fusion["grid"])
    chosen = fusion["chosen"]
    assert chosen["mrr@10"] == best
    assert set(fusion["held_out"]) == {"hit@1", "hit@5", "mrr@10"}
    # the variants ran with the chosen pair: the table agrees with the chosen grid row
    assert report["settings"]["title_weight"] == chosen["title_weight"]
    assert report["settings"]["bm25_weight"] == chosen["bm25_weight"]
    hybrid = report["variants"]["hybrid"]["overall"]["metrics"]
    assert hybrid["mrr@10"] == chosen["mrr@10"] and hybrid["hit@1"] == chosen["hit@1"]
    assert f"title weight {chosen['title_weight']}, BM25 weight" in result.output

    lines = settings_file.read_text().splitlines()
    assert "SUPPORTBOT_DATABASE_URL=sqlite:///kept.db" in lines  # other settings are kept
    assert f"SUPPORTBOT_TITLE_WEIGHT={chosen['title_weight']}" in lines
    assert [x for x in lines if x.startswith("SUPPORTBOT_BM25_WEIGHT=")] == [
        f"SUPPORTBOT_BM25_WEIGHT={chosen['bm25_weight']}"
    ]
    html = (out / "report.html").read_text()
    assert "Fusion weights (hybrid, 3 answerable questions)" in html
    assert html.count("<b>chosen</b>") == 1


def test_a_pair_off_the_grid_is_scored_too(env, monkeypatch):  # noqa: F811
    monkeypatch.setenv("SUPPORTBOT_TITLE_WEIGHT", "0.25")
    data = write_dataset(env / "ds")
    result = invoke(
        "eval", str(data), "--out", str(env / "o"), "--cache-dir", str(env / "c"),
        "--variant", "hybrid", "--tune-fusion",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    grid = json.loads((env / "o" / "report.json").read_text())["fusion"]["grid"]
    assert len(grid) == len(TITLE_WEIGHTS) * len(BM25_WEIGHTS) + 1
    assert {"title_weight": 0.25, "bm25_weight": 0.3}.items() <= grid[-1].items()
    assert "the settings' 0.25 / 0.3" in result.output


@pytest.mark.parametrize("variant", ["bm25", "dense", "hybrid-rrf", "hybrid-no-titles"])
def test_variants_the_weights_do_not_shape_are_refused(env, variant):  # noqa: F811
    data = write_dataset(env / "ds")
    result = invoke(
        "eval", str(data), "--out", str(env / "o"), "--cache-dir", str(env / "c"),
        "--variant", variant, "--tune-fusion",
    )  # fmt: skip
    assert result.exit_code == 1
    assert "--tune-fusion tunes the first variant" in result.output and variant in result.output
    assert "Traceback" not in result.output
    assert not (env / "c").exists()  # refused before any index is built


def test_a_dataset_without_answerable_questions_is_refused(env):  # noqa: F811
    questions = [
        {"id": "q1", "question": "weather on mars", "gold_article_ids": [], "subset": "oos"}
    ]
    data = write_dataset(env / "ds", questions)
    result = invoke(
        "eval", str(data), "--out", str(env / "o"), "--cache-dir", str(env / "c"),
        "--variant", "hybrid", "--tune-fusion",
    )  # fmt: skip
    assert result.exit_code == 1 and "needs answerable questions" in result.output
