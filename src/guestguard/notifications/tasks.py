from __future__ import annotations

from guestguard.notifications import services


def dispatch_notification(request, notification_id) -> None:
    """Deliver one notification: claim (transaction 1), send (no transaction
    held open while the provider works), record (transaction 2)."""
    with request.tm:
        attempt = services.begin_attempt(request, notification_id)
    if attempt is None:
        return
    provider_message_id, error, permanent = services.deliver(attempt)
    with request.tm:
        retry_at = services.record_outcome(request, attempt, provider_message_id, error, permanent)
        if retry_at is not None:
            request.enqueue(dispatch_notification, notification_id, eta=retry_at)
