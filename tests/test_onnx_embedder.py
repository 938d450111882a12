"""The int8 ONNX backend: made from the installed weights, close to the PyTorch model, and
chosen by name (real model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from indexer.embedder import MINILM_NAME, EmbedderUnavailable, load_named
from indexer.onnx_embedder import SUFFIX

pytestmark = pytest.mark.model
TEXTS = [
    "How do I return a lamp I don't want?",
    "Standard shipping takes 3-7 business days and is free on orders over $49.",
    "  leading and trailing spaces  ",
    "Press the Home button on the remote, then Settings > Picture > Picture Mode.",
    "",
    "word " * 400,  # longer than the model's 256 tokens: truncated the same way
]


@pytest.fixture(scope="module")
def int8(tmp_path_factory):
    return load_named(MINILM_NAME + SUFFIX, tmp_path_factory.mktemp("models"), 1, 4)


def test_int8_vectors_are_close_to_the_pytorch_model(int8, minilm) -> None:
    ours, reference = int8.embed(TEXTS), minilm.embed(TEXTS)
    assert ours.shape == reference.shape == (len(TEXTS), 384)
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    cosines = (ours * reference).sum(axis=1)
    assert cosines.min() > 0.97, cosines  # tokenization, pooling and normalization match
    # the same ranking of passages for a question
    q_ours, q_ref = int8.embed([TEXTS[0]])[0], minilm.embed([TEXTS[0]])[0]
    assert (
        np.argsort(-(ours[1:] @ q_ours)).tolist() == np.argsort(-(reference[1:] @ q_ref)).tolist()
    )


def test_batches_keep_the_callers_order(int8) -> None:
    """Dynamic int8 scales activations per batch, so batchmates move a vector a little; the
    order is the callers' and each vector stays the same text's."""
    one_by_one = np.stack([int8.embed([t])[0] for t in TEXTS])
    batched = int8.embed(TEXTS)
    cosines = (batched * one_by_one).sum(axis=1)
    assert np.median(cosines) > 0.99 and cosines.min() > 0.95, cosines  # "" moves most
    assert (batched @ one_by_one.T).argmax(axis=1).tolist() == list(range(len(TEXTS)))


def test_the_export_is_made_once_and_reused(int8, tmp_path: Path) -> None:
    assert int8.name == MINILM_NAME + SUFFIX
    first = load_named(MINILM_NAME + SUFFIX, tmp_path, 1)
    exports = list((tmp_path / "onnx").glob("*/model.int8.onnx"))
    assert len(exports) == 1
    stamp = exports[0].stat().st_mtime_ns
    load_named(MINILM_NAME + SUFFIX, tmp_path, 1)
    assert exports[0].stat().st_mtime_ns == stamp
    assert np.allclose(first.embed(TEXTS[:2]), int8.embed(TEXTS[:2]), atol=1e-5)


def test_an_unknown_adapted_base_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EmbedderUnavailable, match="weights are gone"):
        load_named(MINILM_NAME + "+gone" + SUFFIX, tmp_path, 1)


def test_tokenization_is_the_models_own(int8, tmp_path_factory) -> None:
    """The tokenizers library reads the model's tokenizer.json: the same ids, masks and
    truncation as the transformers tokenizer sentence-transformers uses."""
    from transformers import AutoTokenizer

    from indexer.embedder import base_model_path

    texts = [t.strip() for t in [*TEXTS, "Ünïcödé café, naïve résumé 東京 😀", "x" * 3000]]
    reference = AutoTokenizer.from_pretrained(base_model_path(), local_files_only=True)
    expected = reference(texts, padding=True, truncation=True, max_length=256, return_tensors="np")
    ours = int8._tokenizer.encode_batch(texts)
    assert np.array_equal(np.array([e.ids for e in ours]), expected["input_ids"])
    assert np.array_equal(np.array([e.attention_mask for e in ours]), expected["attention_mask"])
    assert np.array_equal(np.array([e.type_ids for e in ours]), expected["token_type_ids"])


def test_serving_from_an_export_needs_no_torch(int8, tmp_path: Path) -> None:
    """Once exported, the int8 model loads without torch or transformers (fast start, small
    memory): checked in a fresh interpreter."""
    import subprocess
    import sys

    load_named(MINILM_NAME + SUFFIX, tmp_path, 1)  # the export, made once
    code = (
        "import sys; from pathlib import Path; from indexer.embedder import load_named; "
        f"e = load_named({MINILM_NAME + SUFFIX!r}, Path({str(tmp_path)!r}), 1); "
        "e.embed(['hello']); print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]", out.stderr[-2000:]
