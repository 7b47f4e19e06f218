from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence

from guestguard import rls
from guestguard.context import context_of
from guestguard.group_commit import GroupCommit
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
    record (transaction 2). The task of every message, of a retry and of
    the reaper. The claim and the record are group commits: the worker's
    threads claiming (or recording) at the same moment share one
    transaction (``guestguard.group_commit``), while each send stays its
    thread's own, so a provider that hangs holds this one message only."""
    ctx = context_of(request)
    registry = request.registry
    attempt = registry["notifications.claims"].run(ctx, uuid.UUID(str(notification_id)))
    if attempt is None:
        return
    with hold_leases(ctx, Notification, [attempt.notification_id], attempt.claimed_at):
        registry["notifications.records"].run(ctx, (attempt, services.deliver(attempt)))


def claim_together(ctx, notification_ids: Sequence[uuid.UUID]) -> list[services.Attempt | None]:
    """Group-commit work: claim and render the notifications in one
    transaction (seeing every workspace: the thread leading the group runs
    in the workspaces of its own task, the others' messages may be of other
    hosts); each one's attempt, None when it is not ours to send (a
    notification named twice is claimed once: the second gets None)."""
    with rls.as_system(ctx.db), ctx.tm:
        claimed = {attempt.notification_id: attempt
                   for attempt in services.begin_attempts(ctx, list(dict.fromkeys(notification_ids)))}
    return [claimed.pop(notification_id, None) for notification_id in notification_ids]


def record_together(ctx, results: Sequence[tuple[services.Attempt, tuple]]) -> list[None]:
    """Group-commit work: record the attempts' outcomes in one transaction
    and queue the retries due. The provider has spoken once a send returns:
    losing its answer means sending again, so a database blip is waited out
    (for up to jobs.lease_seconds, the leases kept meanwhile) instead of
    leaving the outcomes unknown."""
    deadline = time.monotonic() + ctx.settings["jobs.lease_seconds"]
    for pause in (*RECORD_RETRY, None):
        try:
            with rls.as_system(ctx.db), ctx.tm:
                for notification_id, retry_at in services.record_outcomes(ctx, list(results)):
                    ctx.enqueue(dispatch_notification, notification_id, eta=retry_at)
            return [None] * len(results)
        except Exception as exc:
            if pause is None or not is_database_unavailable(exc) or time.monotonic() + pause > deadline:
                raise
            log.warning("%d notifications: could not record the outcomes (%s); trying again in %g s",
                        len(results), type(exc).__name__, pause)
            time.sleep(pause)
    return []  # not reached: the last pause is None


def dispatch_notifications(request, notification_ids) -> None:
    """Deliver notifications queued together by a release that queued bulk
    sends fifty to a task: each as ``dispatch_notification`` does."""
    for notification_id in notification_ids:
        dispatch_notification(request, notification_id)


def includeme(config) -> None:
    registry = config.registry
    registry["notifications.claims"] = GroupCommit("notification claims", claim_together)
    registry["notifications.records"] = GroupCommit("notification outcomes", record_together)
    config.add_task(dispatch_notification, in_transaction=False)
    config.add_task(dispatch_notifications, in_transaction=False)
