from __future__ import annotations

import logging

from guestguard.context import context_of
from guestguard.tasks import hold_lease
from guestguard.webhooks import services
from guestguard.webhooks.models import InboxEntry

log = logging.getLogger(__name__)


def process_webhook(request, entry_id) -> None:
    """Process one stored webhook: claim (transaction 1), handle and mark it
    processed (transaction 2), or record the failure for a retry."""
    ctx = context_of(request)
    with ctx.tm:
        claimed = services.claim(ctx, entry_id)
    if claimed is None:
        return
    with hold_lease(ctx, InboxEntry, entry_id, claimed.claimed_at):
        try:
            with ctx.tm:
                services.handle(ctx, claimed)
            return
        except Exception as exc:
            # The body may name people: the log says which row, the row says why.
            log.warning("webhook %s from %s: attempt %d failed (%s)", entry_id, claimed.webhook.provider,
                        claimed.webhook.attempt, type(exc).__name__)
            error = f"{type(exc).__name__}: {exc}"
        with ctx.tm:
            services.record_failure(ctx, claimed, error)


def purge_processed_webhooks(request) -> int:
    """Nightly: processed webhooks past ``webhooks.retention_days`` go, a
    batch per transaction."""
    ctx = context_of(request)
    total = 0
    while True:
        with ctx.tm:
            purged = services.purge_processed(ctx)
        total += purged
        if purged < services.PURGE_BATCH:
            return total
