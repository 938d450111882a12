"""Adapting the embedder to the knowledge base: trained from the articles, saved beside the index,
reused when nothing changed, and served by whoever loads an index built with it."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from conftest import SMALL_KB, make_settings, wait_ready
from fastapi.testclient import TestClient

from bot.app import create_app
from bot.article_store import import_into
from indexer.adapt import AdaptOptions, adapt, current_model, model_name, training_pairs
from indexer.build import build_index
from indexer.chunking import split_article
from indexer.embedder import MINILM_NAME, load_named

pytestmark = pytest.mark.model


def passages_of(docs):
    return [p for d in docs for p in split_article(d, 120, MINILM_NAME)]


def test_training_pairs_come_from_the_articles_only():
    from indexer.chunking import IndexDoc

    doc = IndexDoc("a", 1, "Returns", "## Window\nYou have thirty days to return an item. "
                   "Refunds go back to the card you paid with.", "/a")  # fmt: skip
    pairs = training_pairs(passages_of([doc]), random.Random(0))
    text = "You have thirty days to return an item. Refunds go back to the card you paid with."
    assert ("Returns Window", text) in pairs
    assert len(pairs) == 2  # heading -> text, and one sentence -> the rest (inverse cloze)
    assert all(q and d for q, d in pairs)


def test_adapt_saves_reuses_and_is_served(tmp_path):
    settings = make_settings(tmp_path, embedder="minilm", answer_threshold=0.5)
    _, docs = import_into(settings.database_url, SMALL_KB)
    models_root = settings.index_dir / "models"
    options = AdaptOptions(epochs=1)

    first = adapt(passages_of(docs), models_root, options, threads=2)
    assert not first.reused and first.pairs > 0
    assert first.name == model_name(passages_of(docs), options) == current_model(models_root)
    assert first.name.startswith(MINILM_NAME + "+kb-")
    meta = json.loads((first.path / "adapted.json").read_text())
    assert meta["options"]["epochs"] == 1
    again = adapt(passages_of(docs), models_root, options, threads=2)
    assert again.reused and again.name == first.name

    adapted = load_named(first.name, models_root, threads=2)
    base = load_named(MINILM_NAME, models_root, threads=2)
    text = ["Forgot password? Use the reset link."]
    assert not np.allclose(adapted.embed(text), base.embed(text))  # training changed the weights

    build_index(docs, settings.index_dir, adapted)
    with TestClient(create_app(settings)) as client:  # no embedder given: the index names it
        wait_ready(client)
        assert client.get("/health").json()["model"] == first.name
        conv = client.post("/api/v1/conversations").json()
        reply = client.post(
            f"/api/v1/conversations/{conv['id']}/messages",
            json={"text": "I forgot my password, how do I reset it?"},
            headers={"X-Conversation-Token": conv["token"]},
        ).json()
        assert reply["citations"] and reply["citations"][0]["article_id"] == "reset-password"
