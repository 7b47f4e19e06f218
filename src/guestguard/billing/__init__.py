"""Plans, entitlements, usage limits and the glue to billing backends
(``register_billing_backends``). See docs/billing.md."""
from __future__ import annotations

from huey import crontab

from guestguard.billing.plans import plans_from
from guestguard.billing.services import (
    PlanLimitReached,
    apply_checkout,
    apply_payment_standing,
    apply_subscription,
    charge,
    dunning_notice,
    money,
    owner_notice,
)
from guestguard.billing.tasks import reconcile_billing
from guestguard.plugins import BillingBackend, by_name, collect

__all__ = ["PlanLimitReached", "apply_checkout", "apply_payment_standing", "apply_subscription", "charge",
           "dunning_notice", "money", "owner_notice"]

ROUTES = (
    ("workspace_billing", "/workspaces/{workspace_id}/billing"),
    ("workspace_billing_checkout", "/workspaces/{workspace_id}/billing/checkout"),
    ("workspace_billing_success", "/workspaces/{workspace_id}/billing/success"),
    ("workspace_billing_portal", "/workspaces/{workspace_id}/billing/portal"),
    ("workspace_billing_change", "/workspaces/{workspace_id}/billing/change"),
    ("workspace_billing_cancel", "/workspaces/{workspace_id}/billing/cancel"),
    ("api_billing", "/api/v1/workspaces/{workspace_id}/billing"),
    ("api_billing_checkout", "/api/v1/workspaces/{workspace_id}/billing/checkout"),
    ("api_billing_portal", "/api/v1/workspaces/{workspace_id}/billing/portal"),
    ("api_billing_preview", "/api/v1/workspaces/{workspace_id}/billing/preview"),
    ("api_billing_plan", "/api/v1/workspaces/{workspace_id}/billing/plan"),
    ("api_billing_cancel", "/api/v1/workspaces/{workspace_id}/billing/cancel"),
)


def includeme(config) -> None:
    from guestguard.workspaces.resources import workspace_factory

    settings = config.get_settings()
    registry = config.registry
    registry["billing.plans"] = plans_from(settings)
    registry["billing.backends"] = by_name(
        collect(registry["plugins"].hook.register_billing_backends(settings=settings)),
        BillingBackend, "billing backend")
    if settings["billing.backend"] and settings["billing.backend"] not in registry["billing.backends"]:
        from guestguard.plugins import chosen

        chosen(registry["billing.backends"], "billing.backend", settings["billing.backend"], "billing backend")
    for name, pattern in ROUTES:
        config.add_route(name, pattern, factory=workspace_factory)
    minutes = settings["billing.reconcile_minutes"]
    config.add_periodic_task(reconcile_billing, crontab(minute=f"*/{minutes}" if minutes < 60 else "23",
                                                       hour="*" if minutes <= 60 else f"*/{minutes // 60}"),
                             in_transaction=False)
    config.scan("guestguard.billing.api")
    config.scan("guestguard.billing.views")
