"""Re-indexing in the background: a published change to an article asks for a new index version;
one worker thread builds it incrementally (only changed passages are embedded) and the live
holder switches to it at once, without a restart and without failing a request in flight."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from bot.article_store import published_docs
from bot.db import session_scope
from bot.pipeline import IndexHolder
from bot.settings import Settings
from indexer.build import build_index
from indexer.store import build_lock

log = logging.getLogger(__name__)


@dataclass
class ReindexStatus:
    requested: int = 0  # requests so far
    built: int = 0  # requests covered by the last finished build
    running: bool = False
    last_version: str | None = None
    last_seconds: float | None = None
    last_error: str | None = None
    failures: int = 0  # failed builds in a row (each retried after a longer pause)

    @property
    def pending(self) -> bool:
        return self.running or self.built < self.requested


class Reindexer:
    """Coalesces requests: however many arrive while a build runs, one more build follows."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        holder: IndexHolder,
        settings: Settings,
        debounce: float = 0.3,
    ) -> None:
        self.factory = factory
        self.holder = holder
        self.settings = settings
        self.debounce = debounce
        self.status = ReindexStatus()
        self._wake = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="reindexer", daemon=True)
        self._thread.start()

    def request(self) -> int:
        """Ask for a new version with the published articles as they are after this call."""
        with self._wake:
            self.status.requested += 1
            self._wake.notify()
            return self.status.requested

    def wait(self, ticket: int, timeout: float = 60.0) -> bool:
        """Wait until the build covering request ``ticket`` is done (tests, CLI)."""
        deadline = time.monotonic() + timeout
        with self._wake:
            while self.status.built < ticket:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._wake.wait(left)
        return True

    def stop(self) -> None:
        with self._wake:
            self._stop = True
            self._wake.notify_all()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._stop and self.status.built >= self.status.requested:
                    self._wake.wait()
                if self._stop:
                    return
            time.sleep(self.debounce)  # let a burst of edits land in one build
            with self._wake:
                ticket = self.status.requested
                self.status.running = True
            try:
                self._build()
            except Exception as exc:
                log.exception("background re-index failed")
                self.status.last_error = f"{exc.__class__.__name__}: {exc}"
            with self._wake:
                self.status.running = False
                self.status.built = ticket
                self._wake.notify_all()

    def _embedder(self):
        """The live index's model, or (no index yet) the one `supportbot index` would use."""
        live = self.holder.live
        if live is not None:
            return live[1]
        from indexer.adapt import current_model
        from indexer.embedder import MINILM_NAME, FakeEmbedder

        if self.settings.embedder == "fake":
            name = FakeEmbedder().name
        else:
            name = current_model(self.settings.index_dir / "models") or MINILM_NAME
            if self.settings.embedder == "minilm-int8":
                from indexer.onnx_embedder import SUFFIX

                name += SUFFIX
        return self.holder._embedder_for(name)

    def _build(self) -> None:
        embedder = self._embedder()
        started = time.perf_counter()
        with build_lock(self.settings.index_dir):
            with session_scope(self.factory) as session:
                docs = published_docs(session, self.settings.public_url)
            if not docs:
                raise RuntimeError("no published articles to index")
            result = build_index(
                docs,
                self.settings.index_dir,
                embedder,
                max_words=self.settings.passage_max_words,
                bm25_k1=self.settings.bm25_k1,
                bm25_b=self.settings.bm25_b,
                dense_options=self.settings.dense_options(),
                live=self.holder.index,
            )
        self.holder.refresh()  # switch now rather than at the watcher's next look
        live = self.holder.index
        if live is None or live.manifest.version != result.version:
            raise RuntimeError(
                f"the server did not take version {result.version}: {self.holder.error}"
            )
        self.status.last_version = result.version
        self.status.last_seconds = round(time.perf_counter() - started, 2)
        self.status.last_error = None
        log.info("re-indexed in %.2f s: version %s", self.status.last_seconds, result.version)
