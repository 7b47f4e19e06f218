from __future__ import annotations

from guestguard.context import context_of
from guestguard.notifications import services
from guestguard.notifications.models import Notification
from guestguard.tasks import hold_lease


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
        provider_message_id, error, permanent = services.deliver(attempt)
        with ctx.tm:
            retry_at = services.record_outcome(ctx, attempt, provider_message_id, error, permanent)
            if retry_at is not None:
                ctx.enqueue(dispatch_notification, notification_id, eta=retry_at)
