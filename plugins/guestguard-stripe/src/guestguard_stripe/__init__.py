"""GuestGuard plugin: plans and billing through Stripe (``billing.backend =
stripe``): Checkout, the Customer Portal, plan changes and cancellation
through the Stripe SDK, and Stripe's webhooks at ``POST /webhooks/stripe``,
stored in the core's webhook inbox and applied by the worker."""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from guestguard.plugins import Setting, SettingsError, as_int, as_list, as_url, hookimpl
from guestguard_stripe.backend import StripeBackend, from_settings
from guestguard_stripe.events import StripeEvents

__all__ = ["StripeBackend", "StripeEvents"]

log = logging.getLogger(__name__)


def _secrets(value: str) -> tuple[str, ...]:
    secrets = as_list(value)
    if len(secrets) > 2:
        raise ValueError("at most two secrets: the current one and, during a rotation, the next")
    return secrets


@hookimpl
def register_settings() -> list[Setting]:
    return [
        Setting("stripe.secret_key", str, "", "Stripe's secret API key (sk_live_… or sk_test_…).", secret=True),
        Setting("stripe.webhook_secrets", _secrets, (),
                "Signing secrets (whsec_…) of the /webhooks/stripe endpoint, comma-separated: one, or two while "
                "rotating.", secret=True),
        Setting("stripe.webhook_tolerance", as_int(30, 3600), 300,
                "Seconds a webhook's signature timestamp may be old (replays past it are refused)."),
        Setting("stripe.api_base", as_url("http", "https", allow_empty=True), "",
                "Another Stripe API address (a local stand-in in tests); empty means Stripe's own."),
        Setting("stripe.timeout", as_int(1, 60), 10, "Seconds to wait for Stripe before answering 503."),
        Setting("stripe.max_retries", as_int(0, 5), 2, "Retries of a failed call to Stripe (idempotent ones)."),
    ]


@hookimpl
def register_billing_backends(settings: Mapping[str, Any]) -> list[StripeBackend]:
    return [from_settings(settings)]


@hookimpl
def register_webhook_handlers(settings: Mapping[str, Any]) -> list[StripeEvents]:
    return [StripeEvents(from_settings(settings))]


@hookimpl
def configure(config) -> None:
    from guestguard.contract import Refused
    from guestguard_stripe.views import Stored, stripe_events

    settings = config.get_settings()
    if settings["billing.backend"] == "stripe":
        if not settings["stripe.secret_key"]:
            raise SettingsError("billing.backend is stripe but stripe.secret_key (GG_STRIPE_SECRET_KEY) is not set")
        if not settings["stripe.webhook_secrets"]:
            log.warning("billing goes through Stripe but stripe.webhook_secrets is empty: /webhooks/stripe "
                        "refuses every event, so payments are seen only by reconciliation")
        if settings["app.env"] == "production" and settings["stripe.api_base"]:
            raise SettingsError("setting 'stripe.api_base' is for tests: leave it empty in production")
    config.add_route("stripe_webhook", "/webhooks/stripe")
    config.add_view(stripe_events, route_name="stripe_webhook", request_method="POST", renderer="json",
                    require_csrf=False,
                    response={200: Stored, 400: Refused("invalid_signature", "invalid_event"),
                              413: Refused("too_large")})


