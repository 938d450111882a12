"""The bot's brain in one place: small-talk and handoff rules, retrieval, the gate.

The chat API, the CLI's ``ask`` and the eval harness all call :meth:`Pipeline.reply`, so there is
one implementation of retrieval and of the gate.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bot.gate import REPLIES, Decision, GateSettings, decide, pre_retrieval
from bot.retrieval import ArticleHit, RetrievalOptions, Retriever
from bot.settings import Settings
from indexer.dense import DenseOptions
from indexer.embedder import Embedder, EmbedderUnavailable, FakeEmbedder, load_named
from indexer.store import SearchIndex, current_version, load_current, trim_heap

log = logging.getLogger(__name__)


EmbedderSource = Callable[[str], Embedder] | Embedder
RETRY_REFUSED_SECONDS = 30.0


class IndexHolder:
    """Holds the live index, with the embedder it was built with, and moves to a newer version
    when CURRENT changes.

    ``embedders`` gives the embedder for a model name: a function (which may load an adapted
    model), or one embedder, in which case versions built with another model are refused. A
    background thread polls CURRENT; the (index, embedder) pair is swapped as one reference, so a
    request in flight keeps a consistent pair and a switch never fails it.
    """

    def __init__(
        self,
        root: Path,
        check_seconds: float = 2.0,
        embedders: EmbedderSource | None = None,
        dense_options: DenseOptions | None = None,
    ) -> None:
        self.root = root
        self.dense_options = dense_options
        self.check_seconds = check_seconds
        self._embedders = embedders
        self.live: tuple[SearchIndex, Embedder] | None = None
        self.error: str | None = None
        self._refused: tuple[str, float] | None = None  # (version, when): retried later
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def index(self) -> SearchIndex | None:
        return self.live[0] if self.live else None

    @index.setter
    def index(self, value: None) -> None:  # tests and operators may drop the live index
        if value is not None:
            raise ValueError("set the live index through refresh()")
        self.live = None

    def _embedder_for(self, name: str) -> Embedder:
        source = self._embedders
        if source is None:
            raise EmbedderUnavailable("no embedder was given to the index holder")
        if callable(source) and not hasattr(source, "embed"):
            return source(name)
        if source.name != name:
            raise EmbedderUnavailable(
                f"the embedder is {source.name}: run `supportbot index` again"
            )
        return source

    def refresh(self) -> bool:
        """Load the current version if it differs from the one held; True when it switched."""
        version = current_version(self.root)
        if version is None:
            self.error = self.error or f"no index under {self.root}: run `supportbot index`"
            return False
        if self.index and self.index.manifest.version == version:
            return False
        refused = self._refused
        if (
            refused
            and refused[0] == version
            and time.monotonic() - refused[1] < RETRY_REFUSED_SECONDS
        ):
            return False  # e.g. its model is being restored: try again a bit later
        try:
            index = load_current(self.root, self.dense_options)
        except Exception as exc:  # noqa: BLE001 - missing, half-copied or corrupt: keep the old one
            message = f"could not load index version {version}: {exc.__class__.__name__}: {exc}"
            if message != self.error:
                log.error(message)
            self.error = message
            return False
        try:
            embedder = self._embedder_for(index.manifest.model)
        except EmbedderUnavailable as exc:
            self._refused = (version, time.monotonic())
            self.error = f"index version {version} was built with {index.manifest.model}: {exc}"
            log.error(self.error)
            return False
        self.live, self.error = (index, embedder), None
        trim_heap()  # what the load freed (and the old version, once no request holds it)
        log.info("index version %s loaded (%d passages)", version, len(index.passages))
        return True

    def start_watching(self) -> None:
        def loop() -> None:
            while not self._stop.wait(self.check_seconds):
                try:
                    self.refresh()
                except Exception:  # the watcher must outlive any bad version
                    log.exception("index refresh failed; keeping the current index")

        self._thread = threading.Thread(target=loop, name="index-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()


def embedder_source(
    settings: Settings, override: Embedder | None = None, threads: int | None = None
) -> Callable[[str], Embedder]:
    """Embedders by model name, loaded once each: ``override`` when it is the one named (tests),
    the fake when the settings say so, else the base or an adapted MiniLM (indexer.adapt)."""
    cache: dict[str, Embedder] = {}
    lock = threading.Lock()

    def get(name: str) -> Embedder:
        with lock:
            if name not in cache:
                if override is not None or settings.embedder == "fake":
                    chosen = override or FakeEmbedder()
                    if chosen.name != name:
                        raise EmbedderUnavailable(f"the embedder is {chosen.name}")
                    cache[name] = chosen
                else:
                    cache.clear()  # keep one model in memory: the live index's
                    cache[name] = load_named(
                        name,
                        settings.index_dir / "models",
                        threads or settings.torch_threads,
                        settings.embed_batch_size,
                    )
            return cache[name]

    return get


def retrieval_options(settings: Settings) -> RetrievalOptions:
    return RetrievalOptions(
        mode=settings.retrieval_mode,
        fusion=settings.fusion,
        candidates=settings.candidates,
        rrf_k=settings.rrf_k,
        title_weight=settings.title_weight,
        bm25_weight=settings.bm25_weight,
    )


def gate_settings(settings: Settings) -> GateSettings:
    return GateSettings(
        answer_threshold=settings.answer_threshold,
        clarify_threshold=settings.clarify_threshold,
        clarify_options=settings.clarify_options,
        max_unhelpful_turns=settings.max_unhelpful_turns,
    )


# Searches running at once: one per core. Each search is single-threaded (torch, onnxruntime and
# FAISS are set to one thread), so more would only share the cores and make every one slower.
CPU_SLOTS = threading.BoundedSemaphore(max(1, os.cpu_count() or 1))


class Pipeline:
    """Turns one customer message into a :class:`Decision`."""

    def __init__(self, holder: IndexHolder, options: RetrievalOptions, gate: GateSettings) -> None:
        self.holder = holder
        self.options = options
        self.gate = gate

    def _search(self, live: tuple[SearchIndex, Embedder], text: str, limit: int = 10):
        index, embedder = live
        with CPU_SLOTS:
            return Retriever(index, embedder, self.options).search(text, limit=limit).hits

    @classmethod
    def from_settings(cls, settings: Settings, holder: IndexHolder) -> Pipeline:
        return cls(holder, retrieval_options(settings), gate_settings(settings))

    @property
    def ready(self) -> bool:
        return self.holder.live is not None

    def reply(
        self,
        text: str,
        unhelpful_streak: int = 0,
        live: tuple[SearchIndex, Embedder] | None = None,
    ) -> Decision:
        """The decision for ``text`` (``live``: another index and embedder than the held one,
        e.g. the live index with a draft in it, to try a question)."""
        started = time.perf_counter()
        decision = pre_retrieval(text, unhelpful_streak, self.gate)
        if decision is None:
            live = live or self.holder.live  # read once: index and embedder belong together
            if live is None:
                decision = Decision("escalate", "no_index", REPLIES["no_index"], 0.0)
            else:
                hits = self._search(live, text)
                decision = decide(hits, self.gate)
                decision.ranking = hits
                decision.scores["index_version"] = live[0].manifest.version
        decision.scores["reason"] = decision.reason
        decision.scores["latency_ms"] = round((time.perf_counter() - started) * 1000, 2)
        return decision

    def search(self, text: str, limit: int = 10) -> list[ArticleHit]:
        """The best articles for ``text`` (empty while no index is loaded)."""
        live = self.holder.live
        if live is None:
            return []
        return self._search(live, text, limit)

    def answer_from(self, question: str, article_id: str) -> Decision | None:
        """Answer ``question`` from the article the customer picked (None: not found for it)."""
        started = time.perf_counter()
        hits = self.search(question)
        chosen = next((h for h in hits if h.article_id == article_id), None)
        if chosen is None:
            return None
        scores = {"reason": "picked", "candidates": [chosen.scores()]}
        decision = Decision(
            "answer",
            "picked",
            chosen.passage["text"],
            round(chosen.confidence, 4),
            [chosen],
            scores,
        )
        decision.ranking = hits
        scores["latency_ms"] = round((time.perf_counter() - started) * 1000, 2)
        return decision
