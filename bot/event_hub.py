"""Live updates across server processes: a hub in the ``supportbot serve`` process relays every
event one worker publishes to all the other workers.

With several uvicorn workers each has its own :class:`~bot.events.Broker`, and a customer's
widget may be streaming from a different worker than the agent who answers. Before the workers
start, the serve process calls :func:`start_hub` and puts :meth:`Hub.environ` into
``os.environ``; each worker's app then calls :func:`connect_from_environ`, which links its broker
to the hub. The link sends every event the broker publishes to the hub, and hands what the hub
relays to the broker's own subscribers only (``Broker.deliver_local``), so nothing comes back to
the worker it started from and nothing is delivered twice. Without the variables (one worker)
there is no link and nothing changes.

The hub listens on a Unix socket in a private temporary directory (mode 0700) and both sides
prove they know a random key (``multiprocessing.connection``'s challenge). Each frame is the JSON
``[topic, event]``, never a pickle; the hub relays the bytes without reading them. An empty frame
is the hub's hello: from then on the worker gets every event published elsewhere.

Live events are best effort, as within one process: a worker that stops reading is dropped by
the hub (it reconnects), a worker that cannot reach the hub logs it, keeps serving its own
subscribers and retries, and events published meanwhile do not reach the other workers. Stored
messages are not lost: a widget that reconnects asks for the messages after the last one it saw.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import secrets
import shutil
import socket
import tempfile
import threading
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Connection, Listener
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.events import Broker

log = logging.getLogger(__name__)

ADDRESS_VAR = "SUPPORTBOT_EVENT_HUB"  # the hub's socket path
KEY_VAR = "SUPPORTBOT_EVENT_HUB_KEY"  # the shared key, hex
QUEUE_SIZE = 1000  # frames waiting for one worker (hub) or for the hub (link)
RETRY_FIRST_SECONDS = 0.1  # the link's wait before reconnecting, doubled up to the most
RETRY_MAX_SECONDS = 5.0
_HELLO = b""


def _shutdown(conn: Connection) -> None:
    """Wake every thread reading from or writing to ``conn`` (closing its fd would not)."""
    try:
        with socket.socket(fileno=os.dup(conn.fileno())) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed, or the other side is gone
        pass


class _Worker:
    """One connected worker, as the hub sees it: a reader thread and a writer thread."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.outbox: queue.Queue[bytes | None] = queue.Queue(maxsize=QUEUE_SIZE)
        self.reader: threading.Thread | None = None
        self.writer: threading.Thread | None = None


class Hub:
    """Relays each worker's frames to every other worker (see the module docstring)."""

    def __init__(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="supportbot-hub-")  # mode 0700
        self.address = os.path.join(self._dir, "hub.sock")
        self._key = secrets.token_bytes(32)
        try:
            self._listener = Listener(self.address, family="AF_UNIX", backlog=64, authkey=self._key)
        except BaseException:
            shutil.rmtree(self._dir, ignore_errors=True)
            raise
        self._workers: set[_Worker] = set()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._acceptor = threading.Thread(target=self._accept, name="event-hub", daemon=True)
        self._acceptor.start()

    def environ(self) -> dict[str, str]:
        """The variables through which the workers find the hub."""
        return {ADDRESS_VAR: self.address, KEY_VAR: self._key.hex()}

    def workers(self) -> int:
        """How many workers are connected."""
        with self._lock:
            return len(self._workers)

    def close(self) -> None:
        """Disconnect the workers, stop listening and remove the socket's directory."""
        if self._closing.is_set():
            return
        self._closing.set()
        try:  # wake accept(): it fails the key exchange with this connection and sees _closing
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(1)
                sock.connect(self.address)
        except OSError:
            pass
        self._acceptor.join(timeout=2)
        self._listener.close()
        with self._lock:
            workers = list(self._workers)
        for worker in workers:
            self._drop(worker)
            if worker.reader is not None:
                worker.reader.join(timeout=2)
        shutil.rmtree(self._dir, ignore_errors=True)

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                conn = self._listener.accept()
            except (OSError, EOFError, AuthenticationError) as exc:
                if not self._closing.is_set():
                    log.warning("event hub: refused a connection: %s", exc)
                    self._closing.wait(0.1)  # not a busy loop when accept() keeps failing
                continue
            worker = _Worker(conn)
            worker.outbox.put_nowait(_HELLO)  # first, before any event relayed to it
            with self._lock:
                if self._closing.is_set():
                    conn.close()
                    return
                self._workers.add(worker)
            worker.reader = threading.Thread(
                target=self._read, args=(worker,), name="event-hub-in", daemon=True
            )
            worker.writer = threading.Thread(
                target=self._write, args=(worker,), name="event-hub-out", daemon=True
            )
            worker.writer.start()
            worker.reader.start()
            log.info("event hub: a worker connected")

    def _read(self, worker: _Worker) -> None:
        """Relay the worker's frames; on the way out, close its connection (only this thread
        does, once the writer has stopped, so no thread ever uses a closed fd)."""
        try:
            while True:
                data = worker.conn.recv_bytes()
                with self._lock:
                    others = [w for w in self._workers if w is not worker]
                for other in others:
                    try:
                        other.outbox.put_nowait(data)
                    except queue.Full:
                        log.warning("event hub: dropping a worker that is not reading its events")
                        self._drop(other)
        except (OSError, EOFError):
            pass
        finally:
            self._drop(worker)
            if worker.writer is not None:
                worker.writer.join(timeout=5)
            worker.conn.close()
            log.info("event hub: a worker disconnected")

    def _write(self, worker: _Worker) -> None:
        try:
            while (data := worker.outbox.get()) is not None:
                worker.conn.send_bytes(data)
        except OSError:
            pass
        finally:
            self._drop(worker)

    def _drop(self, worker: _Worker) -> None:
        """Stop relaying to ``worker`` and wake its threads (idempotent)."""
        with self._lock:
            if worker not in self._workers:
                return
            self._workers.discard(worker)
            _shutdown(worker.conn)  # under the lock: the reader closes it only after this
        try:
            worker.outbox.put_nowait(None)
        except queue.Full:  # the writer is not waiting for frames; its next send fails
            pass


def start_hub() -> Hub:
    """Start relaying events between worker processes (call in the serve process, before the
    workers start, and put :meth:`Hub.environ` into ``os.environ``)."""
    return Hub()


class HubLink:
    """A worker's connection to the hub: sends what its broker publishes, delivers what the hub
    relays, and reconnects (waiting longer each time, up to ``RETRY_MAX_SECONDS``) when cut."""

    def __init__(self, broker: Broker, address: str, key: bytes) -> None:
        self.broker = broker
        self.address = address
        self._key = key
        self.connected = threading.Event()  # set once the hub relays to this worker
        self._outbox: queue.Queue[bytes | None] = queue.Queue(maxsize=QUEUE_SIZE)
        self._conn: Connection | None = None
        self._lock = threading.Lock()  # guards _conn: shut down only while it is open
        self._send_lock = threading.Lock()  # held while sending: closed only while not
        self._closed = threading.Event()
        self._full = False  # the outbox overflowed (logged once per overflow)
        self._dropping = False  # events are dropped for want of a hub (logged once)
        self._receiver = threading.Thread(target=self._receive, name="hub-link-in", daemon=True)
        self._sender = threading.Thread(target=self._send, name="hub-link-out", daemon=True)

    def start(self) -> None:
        self._receiver.start()
        self._sender.start()

    def send(self, topic: str, event: dict) -> None:
        """Queue an event for the other workers (never blocks; drops it when the queue is full)."""
        try:
            data = json.dumps([topic, event], separators=(",", ":")).encode()
        except (TypeError, ValueError):
            log.exception(
                "a live event on %s is not JSON; the other workers will not get it", topic
            )
            return
        try:
            self._outbox.put_nowait(data)
            self._full = False
        except queue.Full:
            if not self._full:
                log.warning("the event hub is not keeping up; dropping live events for now")
            self._full = True

    def close(self) -> None:
        """Send what is queued (briefly), disconnect and stop both threads."""
        if self.broker.link is self:
            self.broker.link = None
        try:
            self._outbox.put(None, timeout=1)
        except queue.Full:
            pass
        self._sender.join(timeout=2)
        with self._lock:
            self._closed.set()
            if self._conn is not None:
                _shutdown(self._conn)
        try:  # in case the sender is still waiting for a frame
            self._outbox.put_nowait(None)
        except queue.Full:
            pass
        self._sender.join(timeout=2)
        self._receiver.join(timeout=2)

    def _send(self) -> None:
        while not self._closed.is_set() and (data := self._outbox.get()) is not None:
            with self._send_lock:
                with self._lock:
                    conn = self._conn
                if conn is None:
                    if not self._dropping:
                        log.warning(
                            "not connected to the event hub at %s: live events of this worker "
                            "reach only its own subscribers until it reconnects",
                            self.address,
                        )
                    self._dropping = True
                    continue
                try:
                    conn.send_bytes(data)
                    self._dropping = False
                except OSError as exc:
                    log.warning("could not send a live event to the event hub: %s", exc)
                    with self._lock:
                        if self._conn is conn:
                            _shutdown(conn)  # the receiver notices and reconnects

    def _receive(self) -> None:
        delay = RETRY_FIRST_SECONDS
        failures = 0
        while not self._closed.is_set():
            try:
                conn = Client(self.address, family="AF_UNIX", authkey=self._key)
            except (OSError, EOFError, AuthenticationError) as exc:
                if failures == 0:
                    log.warning(
                        "cannot reach the event hub at %s (%s); retrying", self.address, exc
                    )
                failures += 1
                self._closed.wait(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)
                continue
            with self._lock:
                if self._closed.is_set():
                    conn.close()
                    return
                self._conn = conn
            try:
                while True:
                    data = conn.recv_bytes()
                    if data == _HELLO:
                        self.connected.set()
                        log.info("connected to the event hub at %s", self.address)
                        delay, failures = RETRY_FIRST_SECONDS, 0
                    else:
                        self._deliver(data)
            except (OSError, EOFError):
                pass
            with self._lock:
                self._conn = None
                _shutdown(conn)  # wakes a send in progress
            self.connected.clear()
            with self._send_lock:
                conn.close()
            if not self._closed.is_set():
                log.warning("lost the connection to the event hub; reconnecting")
                self._closed.wait(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)

    def _deliver(self, data: bytes) -> None:
        try:
            topic, event = json.loads(data)
            self.broker.deliver_local(topic, event)
        except Exception:  # one bad frame must not stop the link
            log.exception("could not deliver a live event from the event hub")


def connect_from_environ(broker: Broker) -> HubLink | None:
    """Link ``broker`` to the hub named by the environment (``None`` without one: one worker).
    ``close()`` the link on shutdown."""
    address = os.environ.get(ADDRESS_VAR)
    if not address:
        return None
    key = os.environ.get(KEY_VAR)
    if not key:
        raise RuntimeError(f"{ADDRESS_VAR} is set but {KEY_VAR} is not")
    link = HubLink(broker, address, bytes.fromhex(key))
    broker.link = link
    link.start()
    return link
