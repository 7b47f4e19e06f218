from __future__ import annotations

import logging
import time

from guestguard.context import context_of
from guestguard.notifications import services
from guestguard.notifications.models import Notification
from guestguard.outages import is_database_unavailable
from guestguard.tasks import hold_leases

log = logging.getLogger(__name__)
# Seconds between tries to record an outcome while the database is away.
RECORD_RETRY = (0.1, 0.2, 0.5, 1, 2, 3, 5)


def dispatch_notification(request, notification_id) -> None:
    """Deliver one notification: claim (transaction 1), send (no transaction
    held open while the provider works; the lease is renewed meanwhile),
    record (transaction 2). The task of a message queued alone, of a retry
    and of the reaper; a batch of one for ``dispatch_notifications``."""
    dispatch_notifications(request, [notification_id])


def dispatch_notifications(request, notification_ids) -> None:
    """Deliver notifications queued together (a bulk send's) with two
    transactions for the batch: claim and render them all, send each (no
    transaction open; their leases kept by one thread), record every
    outcome. The provider has spoken once a send returns: losing its answer
    means sending again, so a database blip while recording is waited out
    (for up to jobs.lease_seconds) while the leases are kept, instead of
    leaving the outcomes unknown."""
    ctx = context_of(request)
    with ctx.tm:
        attempts = services.begin_attempts(ctx, notification_ids)
    if not attempts:
        return
    with hold_leases(ctx, Notification, [a.notification_id for a in attempts], attempts[0].claimed_at):
        results = [(attempt, services.deliver(attempt)) for attempt in attempts]
        deadline = time.monotonic() + ctx.settings["jobs.lease_seconds"]
        for pause in (*RECORD_RETRY, None):
            try:
                with ctx.tm:
                    for notification_id, retry_at in services.record_outcomes(ctx, results):
                        ctx.enqueue(dispatch_notification, notification_id, eta=retry_at)
                return
            except Exception as exc:
                if pause is None or not is_database_unavailable(exc) or time.monotonic() + pause > deadline:
                    raise
                log.warning("%d notifications: could not record the outcomes (%s); trying again in %g s",
                            len(results), type(exc).__name__, pause)
                time.sleep(pause)
