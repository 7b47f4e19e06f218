"""The webhook inbox: every call a provider makes to us is stored raw first,
once per (provider, event id), and processed by the worker.

A receiving view checks what it must (the provider's signature), then calls
``receive``; the row commits with the view's transaction and its processing
task is queued after commit. A repeat of an event already stored is a
no-op, even two deliveries at the same moment (the unique constraint
decides). Processing calls the handler the provider's plugin registered
(``register_webhook_handlers``) in the worker's transaction, which also
marks the row processed; a handler that raises is retried with backoff
(the error kept on the row), and a row whose task was lost (the queue was
down at intake) is queued again by the reaper, as every durable job is.
"""
from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from guestguard.db import utcnow
from guestguard.inputs import text_problem
from guestguard.plugins import InboundWebhook, WebhookHandler
from guestguard.tasks import claim_job, enqueue_job, fail_job, finish_job, replay_failed, still_claimed
from guestguard.webhooks.models import InboxEntry

log = logging.getLogger(__name__)

# Seconds before each retry of a handler that raised; then the row is failed.
RETRY_BACKOFF = (1, 5, 30, 300, 1800)
PURGE_BATCH = 1000
MAX_EVENT_ID = 255
MAX_HEADERS = 20


class InvalidWebhook(ValueError):
    """A webhook the inbox cannot store; the message says why."""


@dataclass(frozen=True)
class Received:
    id: uuid.UUID
    # The event was stored before: this delivery changed nothing.
    duplicate: bool


def _check(settings, provider: str, event_id: str, payload: str, headers: Mapping[str, str]) -> None:
    if not isinstance(event_id, str) or not 0 < len(event_id) <= MAX_EVENT_ID:
        raise InvalidWebhook(f"the event id must be 1 to {MAX_EVENT_ID} characters")
    if not isinstance(payload, str):
        raise InvalidWebhook("the payload must be text")
    limit = settings["webhooks.max_payload_bytes"]
    if len(payload) > limit or len(payload.encode("utf-8", "surrogatepass")) > limit:
        raise InvalidWebhook(f"the payload is larger than {limit} bytes")
    if len(headers) > MAX_HEADERS:
        raise InvalidWebhook(f"at most {MAX_HEADERS} headers are kept")
    for what, text in (("event id", event_id), ("payload", payload),
                       *((f"header {name!r}", f"{name}{value}") for name, value in headers.items())):
        if not isinstance(text, str):
            raise InvalidWebhook(f"the {what} must be text")
        if (problem := text_problem(text)) is not None:
            raise InvalidWebhook(f"the {what} {problem}")


def receive(ctx, provider: str, event_id: str, payload: str,
            headers: Mapping[str, str] | None = None) -> Received:
    """Store a provider's call (``payload``: the body as it arrived;
    ``headers``: the ones its handler needs) unless the (provider, event id)
    pair is stored already, and queue its processing after commit.
    InvalidWebhook when it cannot be stored (too large, not text); LookupError
    when no plugin handles ``provider`` (a programming error)."""
    if provider not in ctx.registry["webhooks.handlers"]:
        raise LookupError(f"no webhook handler is registered for provider {provider!r}")
    headers = dict(headers or {})
    _check(ctx.settings, provider, event_id, payload, headers)
    key = {"provider": provider, "event_id": event_id}
    existing = ctx.db.scalar(select(InboxEntry.id).filter_by(**key))
    if existing is not None:
        return Received(existing, duplicate=True)
    entry = InboxEntry(id=uuid.uuid4(), **key, body=payload, headers=headers, received_at=utcnow())
    try:
        with ctx.db.begin_nested():
            ctx.db.add(entry)
    except IntegrityError:  # the same event, stored by a delivery running at the same moment
        return Received(ctx.db.scalar(select(InboxEntry.id).filter_by(**key)), duplicate=True)
    enqueue_job(ctx, entry)
    return Received(entry.id, duplicate=False)


@dataclass(frozen=True)
class Claimed:
    webhook: InboundWebhook
    claimed_at: object


def claim(ctx, entry_id) -> Claimed | None:
    """Claim a stored webhook for processing; None when it is not ours."""
    entry = claim_job(ctx, InboxEntry, entry_id)
    if entry is None:
        return None
    webhook = InboundWebhook(id=entry.id, provider=entry.provider, event_id=entry.event_id,
                             received_at=entry.received_at, body=entry.body, headers=dict(entry.headers or {}),
                             attempt=entry.attempts)
    return Claimed(webhook, entry.claimed_at)


def handle(ctx, claimed: Claimed) -> None:
    """Call the provider's handler and mark the row processed, in the one
    transaction of ``ctx`` (the handler's work and the mark commit together).
    Raises what the handler raised."""
    webhook = claimed.webhook
    entry = ctx.db.get(InboxEntry, webhook.id, with_for_update=True, populate_existing=True)
    if entry is None or not still_claimed(entry, claimed.claimed_at):
        return  # the reaper took it back meanwhile; the run it queued processes it
    handler: WebhookHandler | None = ctx.registry["webhooks.handlers"].get(webhook.provider)
    if handler is None:
        raise LookupError(f"no webhook handler is registered for provider {webhook.provider!r} "
                          "(is its plugin installed and enabled?)")
    about: list[uuid.UUID] = []
    reset = _REPORTED_ABOUT.set(about)
    try:
        note = handler.handle(ctx, webhook)
    finally:
        _REPORTED_ABOUT.reset(reset)
    finish_job(entry)
    entry.processed_at = utcnow()
    entry.note = note[:2000] if note else None
    entry.notification_id = about[0] if about else None


# The messages the webhook being handled reported on, as the notifications
# area finds them (``reports_on``).
_REPORTED_ABOUT: ContextVar[list[uuid.UUID] | None] = ContextVar("reported_about", default=None)


def reports_on(notification_id: uuid.UUID) -> None:
    """The webhook being handled (if any) reports on this message: the inbox
    row keeps its id, so the report goes when the message's person is erased."""
    about = _REPORTED_ABOUT.get()
    if about is not None:
        about.append(notification_id)


def record_failure(ctx, claimed: Claimed, error: str) -> None:
    """Keep the handler's error on the row and queue the next try (or give up
    after the last one; the row stays, failed, with its error)."""
    entry = ctx.db.get(InboxEntry, claimed.webhook.id, with_for_update=True, populate_existing=True)
    if entry is None or not still_claimed(entry, claimed.claimed_at):
        return
    retry_at = fail_job(entry, error, permanent=False, backoff=RETRY_BACKOFF)
    if retry_at is None:
        log.error("webhook %s from %s failed for good after %d attempts (see its last_error)",
                  entry.id, entry.provider, entry.attempts)
    else:
        enqueue_job(ctx, entry, eta=retry_at)


def purge_processed(ctx) -> int:
    """Delete up to PURGE_BATCH webhooks processed more than
    ``webhooks.retention_days`` ago (their bodies name people); pending and
    failed ones stay. Returns how many went."""
    cutoff = utcnow() - dt.timedelta(days=ctx.settings["webhooks.retention_days"])
    ids = list(ctx.db.scalars(select(InboxEntry.id).where(
        InboxEntry.processed_at.is_not(None), InboxEntry.processed_at < cutoff).limit(PURGE_BATCH)))
    if ids:
        ctx.db.execute(delete(InboxEntry).where(InboxEntry.id.in_(ids)))
    return len(ids)


def listing(ctx, status: str | None = None, provider: str | None = None, limit: int = 50) -> list[InboxEntry]:
    """Stored webhooks, oldest first, of one status and provider or all."""
    query = select(InboxEntry).order_by(InboxEntry.received_at, InboxEntry.id).limit(limit)
    if status:
        query = query.where(InboxEntry.status == status)
    if provider:
        query = query.where(InboxEntry.provider == provider)
    return list(ctx.db.scalars(query))


def replay(ctx, entry_ids: list[uuid.UUID] | None = None) -> list[InboxEntry]:
    """Process failed webhooks (those named, or every failed one) again, with
    fresh attempts. Raises NotReplayable for a named one that has not failed."""
    return replay_failed(ctx, InboxEntry, entry_ids, "webhook", order=(InboxEntry.received_at, InboxEntry.id))
