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

log = logging.getLogger(__name__)


@dataclass
class ReindexStatus:
    requested: int = 0  # requests so far
    built: int = 0  # requests covered by the last finished build
    running: bool = False
    last_version: str | None = None
    last_seconds: float | None = None
    last_error: str | None = None

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

    def _build(self) -> None:
        live = self.holder.live
        if live is None:
            raise RuntimeError("no index is loaded, so there is no model to embed with")
        embedder = live[1]
        started = time.perf_counter()
        with session_scope(self.factory) as session:
            docs = published_docs(session, self.settings.public_url)
        result = build_index(
            docs,
            self.settings.index_dir,
            embedder,
            max_words=self.settings.passage_max_words,
            bm25_k1=self.settings.bm25_k1,
            bm25_b=self.settings.bm25_b,
        )
        self.holder.refresh()  # switch now rather than at the watcher's next look
        self.status.last_version = result.version
        self.status.last_seconds = round(time.perf_counter() - started, 2)
        self.status.last_error = None
        log.info("re-indexed in %.2f s: version %s", self.status.last_seconds, result.version)
