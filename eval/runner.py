"""Run a dataset through the bot's own pipeline, in-process, for one or more retrieval variants.

The articles are imported into a throw-away SQLite database with the article store's importer and
indexed with the same indexer as production. The built index is cached under a key made of the
dataset's content and the settings that shape the index, so repeated runs skip the embedding.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from bot.article_store import import_into
from bot.gate import Decision
from bot.pipeline import IndexHolder, Pipeline, embedder_source
from bot.settings import Settings
from eval.dataset import Dataset, Question
from indexer.adapt import AdaptOptions, adapt
from indexer.build import build_index
from indexer.chunking import split_article
from indexer.embedder import MINILM_NAME, Embedder, FakeEmbedder, MiniLMEmbedder, load_named
from indexer.manifest import FORMAT as INDEX_FORMAT
from indexer.onnx_embedder import RECIPE as INT8_RECIPE
from indexer.onnx_embedder import SUFFIX as INT8_SUFFIX

log = logging.getLogger(__name__)

VARIANTS: dict[str, dict] = {
    "hybrid": {},
    "dense": {"retrieval_mode": "dense"},
    "bm25": {"retrieval_mode": "bm25"},
    "hybrid-rrf": {"fusion": "rrf"},
    "hybrid-no-titles": {"title_weight": 0.0},
    "hybrid-adapted": {"_model": "adapted"},  # after `supportbot adapt`
    "hybrid-int8": {"_model": "int8"},  # SUPPORTBOT_EMBEDDER=minilm-int8 (the default)
    "hybrid-fp32": {"_model": "base"},  # SUPPORTBOT_EMBEDDER=minilm (PyTorch)
}


@dataclass
class Record:
    """One question's outcome under one variant."""

    question: Question
    decision: Decision
    latency_ms: float
    ranked: list[str] = field(default_factory=list)

    @property
    def cited(self) -> list[str]:
        return [h.article_id for h in self.decision.hits]

    def to_dict(self) -> dict:
        q, d = self.question, self.decision
        return {
            "id": q.id,
            "subset": q.subset,
            "question": q.question,
            "gold_article_ids": q.gold_article_ids,
            "action": d.action,
            "reason": d.reason,
            "confidence": d.confidence,
            "ranked": self.ranked[:10],
            "cited": self.cited,
            "answer_text": d.text if d.action == "answer" else None,
            "latency_ms": round(self.latency_ms, 3),
        }


MODELS = ("adapted", "int8", "base")  # which embedder a variant's index is built with


def model_kind(settings: Settings, variant: str) -> str:
    """'adapted' for variants that want the model adapted to the dataset, 'base' for the
    PyTorch model, 'int8' for the int8 ONNX backend (asked by the variant or the settings, the
    default), else 'base' (always, with the fake)."""
    wants = VARIANTS[variant].get("_model")
    if settings.embedder == "fake":
        return "base"
    if wants in ("adapted", "base"):
        return wants
    if wants == "int8" or settings.embedder == "minilm-int8":
        return "int8"
    return "base"


def adapt_options(settings: Settings) -> AdaptOptions:
    """How `supportbot adapt` trains with these settings (the harness adapts the same way)."""
    return AdaptOptions(epochs=settings.adapt_epochs, learning_rate=settings.adapt_learning_rate)


def cache_key(dataset: Dataset, settings: Settings, kind: str) -> str:
    shaping = {
        "embedder": settings.embedder,
        "model": kind,
        "adapt": adapt_options(settings).__dict__ if kind == "adapted" else None,
        "passage_max_words": settings.passage_max_words,
        "bm25_k1": settings.bm25_k1,
        "bm25_b": settings.bm25_b,
        "ann": [settings.ann_min_passages, settings.ann_lists],
        # the harness's, the index's and the int8 export's formats: a change rebuilds
        "format": [2, INDEX_FORMAT, INT8_RECIPE],
    }
    payload = dataset.fingerprint() + json.dumps(shaping, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def prepare_index(
    dataset: Dataset, settings: Settings, kind: str, cache_dir: Path, progress: bool = True
) -> tuple[Path, bool]:
    """The index folder for this dataset, settings and model kind, built (and for 'adapted' the
    model adapted to the dataset's articles, exactly as `supportbot adapt` does) unless cached."""
    folder = cache_dir / cache_key(dataset, settings, kind)
    index_dir = folder / "index"
    if (index_dir / "CURRENT").exists():
        return index_dir, True
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    _, docs = import_into(f"sqlite:///{folder / 'articles.db'}", dataset.articles)
    threads = os.cpu_count()
    if settings.embedder == "fake":
        embedder: Embedder = FakeEmbedder()
    elif kind == "adapted":
        passages = [
            p for d in docs for p in split_article(d, settings.passage_max_words, MINILM_NAME)
        ]
        models_root = index_dir / "models"
        result = adapt(passages, models_root, adapt_options(settings), threads, progress)
        embedder = load_named(result.name, models_root, threads, settings.embed_batch_size)
    elif kind == "int8":
        name = MINILM_NAME + INT8_SUFFIX
        embedder = load_named(name, index_dir / "models", threads, settings.embed_batch_size)
    else:
        embedder = MiniLMEmbedder(threads=threads, batch_size=settings.embed_batch_size)
    build_index(
        docs,
        index_dir,
        embedder,
        max_words=settings.passage_max_words,
        bm25_k1=settings.bm25_k1,
        bm25_b=settings.bm25_b,
        progress=progress,
        dense_options=settings.dense_options(build_threads=threads),
    )
    return index_dir, False


def open_index(settings: Settings, index_dir: Path) -> IndexHolder:
    """A holder over a prepared index, with the embedder it names (base, adapted or fake)."""
    holder = IndexHolder(
        index_dir,
        embedders=embedder_source(settings.model_copy(update={"index_dir": index_dir})),
        dense_options=settings.dense_options(),
    )
    holder.refresh()
    if holder.live is None:
        raise RuntimeError(holder.error or f"no index under {index_dir}")
    return holder


def variant_settings(settings: Settings, name: str) -> Settings:
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
    update = {k: v for k, v in VARIANTS[name].items() if not k.startswith("_")}
    return settings.model_copy(update=update)


def run_variant(
    dataset: Dataset,
    settings: Settings,
    holder: IndexHolder,
    name: str = "hybrid",
    progress: bool = True,
) -> list[Record]:
    """Every question through :meth:`Pipeline.reply` with the variant's settings."""
    pipeline = Pipeline.from_settings(variant_settings(settings, name), holder)
    records = []
    for q in tqdm(dataset.questions, desc=name, unit="q", disable=not progress):
        started = time.perf_counter()
        decision = pipeline.reply(q.question)
        elapsed = (time.perf_counter() - started) * 1000
        ranked = [h.article_id for h in decision.ranking]
        records.append(Record(q, decision, elapsed, ranked))
    return records
