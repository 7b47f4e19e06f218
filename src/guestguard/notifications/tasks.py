from __future__ import annotations

import logging
import time

from guestguard.context import context_of
from guestguard.notifications import services
from guestguard.notifications.models import Notification
from guestguard.outages import is_database_unavailable
from guestguard.tasks import hold_lease

log = logging.getLogger(__name__)
# Seconds between tries to record an outcome while the database is away.
RECORD_RETRY = (0.1, 0.2, 0.5, 1, 2, 3, 5)


def dispatch_notification(request, notification_id) -> None:
    """Deliver one notification: claim (transaction 1), send (no transaction
    held open while the provider works; the lease is renewed meanwhile),
    record (transaction 2)."""
    ctx = context_of(request)
    with ctx.tm:
        attempt = services.begin_attempt(ctx, notification_id)
    if attempt is None:
        return
    with hold_lease(ctx, Notification, attempt.notification_id, attempt.claimed_at):
        outcome = services.deliver(attempt)
        # The provider has spoken: losing its answer now means sending again.
        # A database blip is waited out (for up to jobs.lease_seconds) while
        # the lease is kept, instead of leaving the outcome unknown.
        deadline = time.monotonic() + ctx.settings["jobs.lease_seconds"]
        for pause in (*RECORD_RETRY, None):
            try:
                with ctx.tm:
                    retry_at = services.record_outcome(ctx, attempt, *outcome)
                    if retry_at is not None:
                        ctx.enqueue(dispatch_notification, notification_id, eta=retry_at)
                return
            except Exception as exc:
                if pause is None or not is_database_unavailable(exc) or time.monotonic() + pause > deadline:
                    raise
                log.warning("notification %s: could not record the outcome (%s); trying again in %g s",
                            notification_id, type(exc).__name__, pause)
                time.sleep(pause)
