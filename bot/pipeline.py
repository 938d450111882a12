"""The bot's brain in one place: small-talk and handoff rules, retrieval, the gate.

The chat API, the CLI's ``ask`` and the eval harness all call :meth:`Pipeline.reply`, so there is
one implementation of retrieval and of the gate.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from bot.gate import REPLIES, Decision, GateSettings, decide, pre_retrieval
from bot.retrieval import RetrievalOptions, Retriever
from bot.settings import Settings
from indexer.embedder import Embedder
from indexer.store import SearchIndex, current_version, load_current

log = logging.getLogger(__name__)


class IndexHolder:
    """Holds the live index and moves to a newer version when CURRENT changes.

    A background thread polls CURRENT; requests keep using the index they picked up, so a switch
    never fails a request in flight.
    """

    def __init__(self, root: Path, check_seconds: float = 2.0, model: str | None = None) -> None:
        self.root = root
        self.check_seconds = check_seconds
        self.model = model  # when set, versions built with another model are refused
        self.index: SearchIndex | None = None
        self.error: str | None = None
        self._refused: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> bool:
        """Load the current version if it differs from the one held; True when it switched."""
        version = current_version(self.root)
        if version is None:
            self.error = self.error or f"no index under {self.root}: run `supportbot index`"
            return False
        if version == self._refused or (self.index and self.index.manifest.version == version):
            return False
        try:
            index = load_current(self.root)
        except Exception as exc:  # noqa: BLE001 - missing, half-copied or corrupt: keep the old one
            message = f"could not load index version {version}: {exc.__class__.__name__}: {exc}"
            if message != self.error:
                log.error(message)
            self.error = message
            return False
        if self.model and index.manifest.model != self.model:
            self._refused = version
            self.error = (
                f"index version {version} was built with {index.manifest.model} but the embedder "
                f"is {self.model}: run `supportbot index` again"
            )
            log.error(self.error)
            return False
        self.index, self.error = index, None
        log.info("index version %s loaded (%d passages)", version, len(index.passages))
        return True

    def start_watching(self) -> None:
        def loop() -> None:
            while not self._stop.wait(self.check_seconds):
                self.refresh()

        self._thread = threading.Thread(target=loop, name="index-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()


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


class Pipeline:
    """Turns one customer message into a :class:`Decision`."""

    def __init__(
        self,
        holder: IndexHolder,
        embedder: Embedder,
        options: RetrievalOptions,
        gate: GateSettings,
    ) -> None:
        self.holder = holder
        self.embedder = embedder
        self.options = options
        self.gate = gate

    @classmethod
    def from_settings(cls, settings: Settings, holder: IndexHolder, embedder: Embedder) -> Pipeline:
        return cls(holder, embedder, retrieval_options(settings), gate_settings(settings))

    @property
    def ready(self) -> bool:
        return self.holder.index is not None

    def reply(self, text: str, unhelpful_streak: int = 0) -> Decision:
        started = time.perf_counter()
        decision = pre_retrieval(text, unhelpful_streak, self.gate)
        if decision is None:
            index = self.holder.index
            if index is None:
                decision = Decision("escalate", "no_index", REPLIES["no_index"], 0.0)
            else:
                hits = Retriever(index, self.embedder, self.options).search(text).hits
                decision = decide(hits, self.gate)
                decision.ranking = hits
                decision.scores["index_version"] = index.manifest.version
        decision.scores["reason"] = decision.reason
        decision.scores["latency_ms"] = round((time.perf_counter() - started) * 1000, 2)
        return decision
