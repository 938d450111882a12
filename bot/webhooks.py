"""The webhook: a signed POST to ``webhook_url`` when a handoff is created and when a customer
rates a conversation (CSAT; a changed rating is sent again).

Each event becomes a :class:`~bot.models.WebhookDelivery` row added in the same transaction as the
handoff or rating it reports: a rolled-back handoff sends nothing, a committed one is never lost
(not even when the server stops before it was sent). A worker thread sends the due rows.

The request::

    POST <webhook_url>
    Content-Type: application/json
    X-Supportbot-Event: handoff | csat
    X-Supportbot-Delivery: <the payload's "id": the same on every retry, to drop duplicates>
    X-Supportbot-Timestamp: <unix seconds of this attempt>
    X-Supportbot-Signature: sha256=<hex HMAC-SHA256 of "{timestamp}.{body}" keyed with webhook_secret>

To verify, compute the HMAC over the timestamp header, a dot and the raw body bytes, compare it
with the header in constant time, and refuse timestamps more than a few minutes old (replays).
Without a secret the header is left out. Any 2xx answer means delivered; anything else, or no
answer within 5 s, is retried 10 s, 30 s, 2 min and 10 min later, then hourly, until
``webhook_max_attempts`` attempts were made; then the delivery is marked failed with the error.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import event, inspect, select
from sqlalchemy.orm import Session, sessionmaker

from bot.db import session_scope
from bot.models import CsatResponse, Handoff, WebhookDelivery, utcnow
from bot.settings import Settings

log = logging.getLogger(__name__)

BACKOFF_SECONDS = (10, 30, 120, 600, 3600)  # wait after the 1st, 2nd, ... failed attempt
TIMEOUT_SECONDS = 5.0
BATCH = 20  # deliveries claimed per round
POLL_SECONDS = 2.0
_PENDING = "webhook_events"  # session.info keys
_ENQUEUED = "webhook_enqueued"


def _iso(value: datetime | None) -> str:
    value = value or utcnow()
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def _console_url(settings: Settings, conversation_id: str) -> str | None:
    if not settings.public_url:
        return None
    return f"{settings.public_url.rstrip('/')}/agent/conversations/{conversation_id}"


def handoff_payload(handoff: Handoff, settings: Settings) -> dict[str, Any]:
    """What is sent when a conversation is handed to a person."""
    return {
        "event": "handoff",
        "id": uuid.uuid4().hex,
        "created_at": _iso(handoff.created_at),
        "conversation_id": handoff.conversation_id,
        "handoff_id": handoff.id,
        "reason": handoff.reason,
        "offline": bool(handoff.offline),
        "contact_email": handoff.contact_email,
        "console_url": _console_url(settings, handoff.conversation_id),
    }


def csat_payload(csat: CsatResponse, settings: Settings, changed: bool = False) -> dict[str, Any]:
    """What is sent when a customer rates a conversation (``changed``: a new score replaced one)."""
    return {
        "event": "csat",
        "id": uuid.uuid4().hex,
        "created_at": _iso(utcnow() if changed else csat.created_at),
        "conversation_id": csat.conversation_id,
        "csat_id": csat.id,
        "handoff_id": csat.handoff_id,
        "score": csat.score,
        "comment": csat.comment,
        "changed": changed,
        "console_url": _console_url(settings, csat.conversation_id),
    }


def _rating_changed(csat: CsatResponse) -> bool:
    attrs = inspect(csat).attrs
    return attrs.score.history.has_changes() or attrs.comment.history.has_changes()


class _Hooks:
    """Session events: note handoffs and ratings as they are flushed, add their deliveries to the
    same transaction, and wake the worker once it has committed."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.wake = threading.Event()

    def collect(self, session: Session, _flush_context: Any) -> None:
        # after_flush: the new rows have their ids, and attribute history is still readable
        if not self.settings.webhook_url:
            return
        found: list[dict[str, Any]] = []
        for obj in session.new:
            if isinstance(obj, Handoff):
                found.append(handoff_payload(obj, self.settings))
            elif isinstance(obj, CsatResponse):
                found.append(csat_payload(obj, self.settings))
        for obj in session.dirty:
            if isinstance(obj, CsatResponse) and _rating_changed(obj):
                found.append(csat_payload(obj, self.settings, changed=True))
        if found:
            session.info.setdefault(_PENDING, []).extend(found)

    def enqueue(self, session: Session, _flush_context: Any) -> None:
        # after_flush_postexec: objects added here are flushed by the commit's next flush round
        pending = session.info.pop(_PENDING, None)
        if not pending:
            return
        now = utcnow()
        session.add_all(
            WebhookDelivery(event=p["event"], payload=p, status="pending", next_attempt_at=now)
            for p in pending
        )
        session.info[_ENQUEUED] = True

    def committed(self, session: Session) -> None:
        if session.info.pop(_ENQUEUED, False):
            self.wake.set()

    def rolled_back(self, session: Session, _transaction: Any) -> None:
        session.info.pop(_PENDING, None)
        session.info.pop(_ENQUEUED, None)


def install_webhooks(factory: sessionmaker[Session], settings: Settings) -> threading.Event:
    """Enqueue webhook deliveries from the factory's sessions (idempotent: installing twice only
    updates the settings). Returns the event set when a delivery was committed."""
    hooks: _Hooks | None = getattr(factory, "_supportbot_webhooks", None)
    if hooks is not None:
        hooks.settings = settings
        return hooks.wake
    hooks = _Hooks(settings)
    event.listen(factory, "after_flush", hooks.collect)
    event.listen(factory, "after_flush_postexec", hooks.enqueue)
    event.listen(factory, "after_commit", hooks.committed)
    event.listen(factory, "after_soft_rollback", hooks.rolled_back)
    factory._supportbot_webhooks = hooks  # type: ignore[attr-defined]
    return hooks.wake


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The X-Supportbot-Signature value: HMAC-SHA256 of ``{timestamp}.{body}``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def backoff(attempts: int) -> timedelta:
    """How long to wait after the ``attempts``-th failed attempt."""
    return timedelta(seconds=BACKOFF_SECONDS[min(attempts, len(BACKOFF_SECONDS)) - 1])


def _claim(factory: sessionmaker[Session], now: datetime) -> list[tuple[int, int, str, dict]]:
    """Take the due deliveries: count the attempt and push the next one back by its backoff
    (a lease: another worker, or this one after a crash, retries only then)."""
    with session_scope(factory) as session:
        rows = session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now)
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
            .limit(BATCH)
            .with_for_update(skip_locked=True)
        ).all()
        claimed = []
        for row in rows:
            row.attempts += 1
            row.next_attempt_at = now + backoff(row.attempts)
            claimed.append((row.id, row.attempts, row.event, dict(row.payload)))
        return claimed


def _post(client: httpx.Client, settings: Settings, event_name: str, payload: dict, now: datetime):
    """Send one delivery; None when the receiver took it, else what went wrong."""
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    timestamp = int(now.timestamp())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "supportbot-webhook/1",
        "X-Supportbot-Event": event_name,
        "X-Supportbot-Delivery": str(payload.get("id", "")),
        "X-Supportbot-Timestamp": str(timestamp),
    }
    if settings.webhook_secret:
        headers["X-Supportbot-Signature"] = sign(settings.webhook_secret, timestamp, body)
    try:
        response = client.post(settings.webhook_url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return f"{exc.__class__.__name__}: {exc}"
    if 200 <= response.status_code < 300:
        return None
    return f"HTTP {response.status_code}: {' '.join(response.text[:200].split())}"


def _record(
    factory: sessionmaker[Session],
    settings: Settings,
    delivery_id: int,
    attempt: int,
    error: str | None,
    now: datetime,
) -> None:
    with session_scope(factory) as session:
        row = session.get(WebhookDelivery, delivery_id)
        if row is None or row.attempts != attempt or row.status != "pending":
            return  # deleted, or claimed again meanwhile: that attempt records its own outcome
        if error is None:
            row.status, row.delivered_at, row.last_error = "delivered", now, None
            return
        row.last_error = error[:500]
        if row.attempts >= settings.webhook_max_attempts:
            row.status = "failed"
            log.warning(
                "webhook delivery %s (%s) failed after %d attempts: %s",
                delivery_id,
                row.event,
                row.attempts,
                error,
            )
        else:
            log.info("webhook delivery %s attempt %d failed: %s", delivery_id, attempt, error)


def deliver_due(
    session_factory: sessionmaker[Session],
    settings: Settings,
    now: datetime | None = None,
    client: httpx.Client | None = None,
) -> int:
    """Send the deliveries due at ``now`` (one batch); how many were attempted."""
    if not settings.webhook_url:
        return 0
    now = now or utcnow()
    claimed = _claim(session_factory, now)
    if not claimed:
        return 0
    own = client is None
    http = client or httpx.Client(timeout=TIMEOUT_SECONDS)
    try:
        for delivery_id, attempt, event_name, payload in claimed:
            error = _post(http, settings, event_name, payload, now)
            _record(session_factory, settings, delivery_id, attempt, error, now)
    finally:
        if own:
            http.close()
    return len(claimed)


class WebhookWorker:
    """A daemon thread that sends due deliveries: woken by a committed event, else every few
    seconds (retries come due by the clock)."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        settings: Settings,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self.factory = factory
        self.settings = settings
        self.poll_seconds = poll_seconds
        self.wake = install_webhooks(factory, settings)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if not self.settings.webhook_url:
            log.info("no webhook_url set: webhooks are off")
            return
        if not self.settings.webhook_secret:
            log.warning("webhook_secret is empty: webhook requests are sent unsigned")
        self._thread = threading.Thread(target=self._run, name="webhook-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = TIMEOUT_SECONDS + 1) -> None:
        self._stop.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        with httpx.Client(timeout=TIMEOUT_SECONDS) as client:
            while not self._stop.is_set():
                self.wake.clear()
                try:
                    sent = deliver_due(self.factory, self.settings, client=client)
                except Exception:  # the worker must outlive a database hiccup
                    log.exception("webhook round failed; retrying shortly")
                    sent = 0
                if sent < BATCH and not self._stop.is_set():
                    self.wake.wait(self.poll_seconds)


def start_worker(factory: sessionmaker[Session], settings: Settings) -> WebhookWorker:
    """Install the session hooks and start sending (a no-op without ``webhook_url``)."""
    worker = WebhookWorker(factory, settings)
    worker.start()
    return worker


def stop_worker(worker: WebhookWorker | None) -> None:
    """Stop the worker, waiting for the request in flight (at most the timeout)."""
    if worker is not None:
        worker.stop()
