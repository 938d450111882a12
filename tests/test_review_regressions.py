"""Regressions from the second review: single-article confidence, corrupt adapted models,
retrying a refused index version, and the calibration tie-break."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import SMALL_KB, make_settings, seed

from bot import pipeline as pipeline_mod
from bot.gate import Decision, GateSettings, decide
from bot.pipeline import IndexHolder
from bot.retrieval import ArticleHit, RetrievalOptions, Retriever
from eval.calibrate import choose, sweep
from eval.dataset import Question
from eval.runner import Record
from indexer.embedder import EmbedderUnavailable, FakeEmbedder, load_named
from indexer.store import load_current


def test_a_lone_article_gets_no_lead_bonus(tmp_path: Path):
    settings = make_settings(tmp_path)
    embedder = FakeEmbedder()
    seed(settings, SMALL_KB[:1], embedder)
    hits = (
        Retriever(load_current(settings.index_dir), embedder, RetrievalOptions())
        .search("reset password link")
        .hits
    )
    assert len(hits) == 1
    assert hits[0].confidence == pytest.approx(hits[0].evidence)


def test_corrupt_adapted_model_is_unavailable_not_a_crash(tmp_path: Path):
    name = "all-MiniLM-L6-v2+kb-0123456789"
    folder = tmp_path / name
    folder.mkdir()
    (folder / "adapted.json").write_text("{}")  # weights missing
    with pytest.raises(EmbedderUnavailable, match="cannot be loaded"):
        load_named(name, tmp_path)


def test_a_refused_version_is_retried(tmp_path: Path, monkeypatch):
    settings = make_settings(tmp_path)
    embedder = FakeEmbedder()
    seed(settings, SMALL_KB, embedder)
    available = {"yes": False}

    def source(name: str):
        if not available["yes"]:
            raise EmbedderUnavailable("model folder is being restored")
        return embedder

    holder = IndexHolder(settings.index_dir, embedders=source)
    assert not holder.refresh() and "being restored" in holder.error
    available["yes"] = True
    assert not holder.refresh()  # within the retry delay: not tried again yet
    monkeypatch.setattr(pipeline_mod, "RETRY_REFUSED_SECONDS", 0.0)
    assert holder.refresh() and holder.live is not None and holder.error is None


def _record(gold: str, top: str, confidence: float, evidence: float) -> Record:
    hits = [
        ArticleHit(top, top, "/" + top, {"text": top}, 1.0, 0.5, 1.0),
        ArticleHit("other", "o", "/o", {"text": "o"}, 0.5, 0.1, 0.0),
    ]
    hits[0].confidence, hits[0].evidence = confidence, evidence
    hits[1].confidence = hits[1].evidence = 0.05
    decision = decide(hits, GateSettings())
    decision.ranking = hits
    return Record(Question("q", "q", [gold]), decision, 1.0, [h.article_id for h in hits])


def test_calibration_ties_go_to_the_more_precise_higher_threshold():
    records = [_record(f"a{i}", f"a{i}", 0.9, 0.8) for i in range(20)]
    records.append(_record("gold", "wrong", 0.72, 0.15))  # a wrong answer only low thresholds give
    chosen = choose(sweep(records, GateSettings()), min_precision=0.9, min_escalation_recall=0.0)
    assert chosen["answered_precision"] == 1.0
    assert chosen["answer_threshold"] > 0.72
    assert isinstance(records[0].decision, Decision)


def test_questions_with_few_or_no_bm25_matches_still_rank_by_meaning(tmp_path: Path):
    from indexer.lexical import tokenize

    settings = make_settings(tmp_path)
    embedder = FakeEmbedder()
    seed(settings, SMALL_KB, embedder)
    index = load_current(settings.index_dir)
    retriever = Retriever(index, embedder, RetrievalOptions())
    hits = retriever.search("what is it that they have").hits  # stop words only: no BM25
    assert len(hits) > 1 and all(h.lexical == 0 and h.lexical_rank is None for h in hits)
    # a word in one passage only: BM25 has one candidate, the dense side fills the rest
    df = np.bincount(index.lexical.counts.indices, minlength=len(index.lexical.vocab))
    word = next(
        t for i, t in enumerate(index.lexical.vocab) if df[i] == 1 and tokenize([t])[0] == [t]
    )
    hits = retriever.search(f"{word} zyzzyva").hits
    assert len(hits) > 1 and sum(h.lexical > 0 for h in hits) == 1
    matched = next(h for h in hits if h.lexical > 0)
    assert matched.lexical_rank == 1
