from __future__ import annotations

import logging

from prometheus_client import Counter

from guestguard.billing import services
from guestguard.context import context_of
from guestguard.errors import Refusal

log = logging.getLogger(__name__)

DRIFT = Counter("billing_reconcile_drift_total", "Entitlement snapshots reconciliation found out of step.")
FAILURES = Counter("billing_reconcile_failures_total", "Workspaces reconciliation could not check.")


def reconcile_billing(request) -> int:
    """Periodic: every paying workspace's snapshot compared with the billing
    provider, one transaction each; drift is repaired, logged, counted and
    audited, so a missed webhook heals itself. Returns how many drifted."""
    ctx = context_of(request)
    if not ctx.settings["billing.backend"]:
        return 0
    with ctx.tm:
        paying = services.paying_workspaces(ctx)
    drifted = 0
    for workspace_id, subscription_id in paying:
        try:
            with ctx.tm:
                if services.reconcile_one(ctx, workspace_id, subscription_id):
                    drifted += 1
                    DRIFT.inc()
        except Refusal as refused:  # the provider is down: the next run tries again
            FAILURES.inc()
            log.warning("reconciliation of workspace %s failed: %s", workspace_id, refused.code)
    return drifted
