"""The ``stripe`` billing backend: the Stripe SDK's client, every call
turned into the core's answers (BillingUnavailable when Stripe cannot be
reached or fails, BillingRefused when it says no, None for what it does not
have). What is read is mapped to the core's dataclasses here, in one place.

The SDK (with requests and aiohttp behind it, 12 MiB of a web process) is
imported at the first call to Stripe, not when the plugin loads: a web
worker that serves no billing page never holds it. The settings are checked
at startup all the same (the plugin's ``configure``)."""
from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from guestguard.plugins import (
    BillingRefused,
    BillingUnavailable,
    CheckoutRequest,
    CheckoutResult,
    Proration,
    SubscriptionState,
)

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class InvoiceState:
    id: str
    customer_id: str
    subscription_id: str | None
    amount_due: int
    currency: str
    attempt_count: int
    status: str


@dataclass(frozen=True)
class ChargeState:
    id: str
    customer_id: str
    amount: int
    amount_refunded: int
    currency: str
    payment_intent: str | None = None


@dataclass(frozen=True)
class DisputeState:
    id: str
    charge_id: str
    amount: int
    currency: str
    reason: str
    status: str


# A dispute in these statuses takes back what the payment bought; "won"
# (and "warning_closed": an inquiry closed without a chargeback) gives it back.
DISPUTE_REVOKES = ("warning_needs_response", "warning_under_review", "needs_response", "under_review", "lost")


def _moment(value) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(int(value), dt.UTC) if value else None


def _get(obj: Any, key: str, default: Any = None) -> Any:
    """A field of a StripeObject or dict, None when absent."""
    try:
        value = obj[key]
    except (KeyError, TypeError):
        return default
    return default if value is None else value


def _id_of(value: Any) -> str | None:
    """An id, whether Stripe sent it bare or expanded."""
    if value is None or isinstance(value, str):
        return value
    return _get(value, "id")


def _uuid_in(metadata: Any, key: str = "workspace_id") -> uuid.UUID | None:
    try:
        return uuid.UUID(str(_get(metadata, key, "")))
    except ValueError:
        return None


def subscription_state(subscription: Any) -> SubscriptionState:
    items = _get(_get(subscription, "items", {}), "data", []) or []
    item = items[0] if items else {}
    # Newer API versions keep the period on the item; older ones on the subscription.
    start = _get(item, "current_period_start") or _get(subscription, "current_period_start")
    end = _get(item, "current_period_end") or _get(subscription, "current_period_end")
    return SubscriptionState(
        workspace_id=_uuid_in(_get(subscription, "metadata", {})),
        customer_id=_id_of(_get(subscription, "customer")) or "",
        subscription_id=subscription["id"],
        price_id=_id_of(_get(item, "price")) or "",
        status=_get(subscription, "status", ""),
        period_start=_moment(start), period_end=_moment(end), trial_end=_moment(_get(subscription, "trial_end")),
        cancel_at_period_end=bool(_get(subscription, "cancel_at_period_end", False)))


class StripeBackend:
    name = "stripe"

    def __init__(self, secret_key: str, api_base: str = "", timeout: int = 10, max_retries: int = 2):
        self._secret_key, self._api_base = secret_key, api_base
        self._timeout, self._max_retries = timeout, max_retries
        self._client = None
        self._making = threading.Lock()
        # Where Checkout and the portal live, for the billing page's form-action.
        self.page_origins = ("https://checkout.stripe.com", "https://billing.stripe.com")
        if api_base:
            parts = urlsplit(api_base)
            self.page_origins += (f"{parts.scheme}://{parts.netloc}",)
        self.configured = bool(secret_key)

    @property
    def client(self):
        """The SDK's client, made (and the SDK imported) at the first call."""
        if self._client is None:
            with self._making:
                if self._client is None:
                    import stripe

                    options: dict[str, Any] = {"max_network_retries": self._max_retries,
                                               "http_client": stripe.RequestsClient(timeout=self._timeout)}
                    if self._api_base:
                        options["base_addresses"] = {"api": self._api_base}
                    self._client = stripe.StripeClient(self._secret_key or "sk_unset", **options)
        return self._client

    def _call(self, what: str, func: Callable[[], T], missing_ok: bool = False) -> T | None:
        if not self.configured:
            raise BillingUnavailable("stripe.secret_key is not set")
        import stripe

        try:
            return func()
        except stripe.InvalidRequestError as refused:
            if missing_ok and refused.code == "resource_missing":
                return None
            raise BillingRefused(refused.user_message or str(refused)) from None
        except (stripe.APIConnectionError, stripe.APIError, stripe.RateLimitError,
                stripe.AuthenticationError, stripe.PermissionError) as failed:
            log.warning("Stripe failed while %s: %s", what, type(failed).__name__)
            raise BillingUnavailable(f"{type(failed).__name__} while {what}") from None
        except stripe.StripeError as failed:
            raise BillingRefused(f"{type(failed).__name__}: {failed.user_message or failed}") from None

    def checkout(self, request: CheckoutRequest) -> str:
        metadata = {"workspace_id": str(request.workspace_id), "plan": request.plan, "price_id": request.price_id}
        if request.event_id is not None:
            metadata["event_id"] = str(request.event_id)
        params: dict[str, Any] = {
            "mode": request.mode, "line_items": [{"price": request.price_id, "quantity": 1}],
            "success_url": request.success_url, "cancel_url": request.cancel_url,
            "client_reference_id": str(request.workspace_id), "metadata": metadata}
        if request.customer_id:
            params["customer"] = request.customer_id
        else:
            params["customer_email"] = request.customer_email
        if request.mode == "subscription":
            params["subscription_data"] = {"metadata": metadata}
            if request.trial_days:
                params["subscription_data"]["trial_period_days"] = request.trial_days
        else:
            params["customer_creation"] = "always" if not request.customer_id else None
            params = {key: value for key, value in params.items() if value is not None}
        session = self._call("creating a Checkout Session", lambda: self.client.v1.checkout.sessions.create(
            params, {"idempotency_key": request.idempotency_key}))
        return session["url"]

    def portal(self, customer_id: str, return_url: str) -> str:
        session = self._call("creating a portal session", lambda: self.client.v1.billing_portal.sessions.create(
            {"customer": customer_id, "return_url": return_url}))
        return session["url"]

    def read_checkout(self, session_id: str) -> CheckoutResult | None:
        session = self._call("reading a Checkout Session",
                             lambda: self.client.v1.checkout.sessions.retrieve(session_id), missing_ok=True)
        if session is None:
            return None
        subscription = None
        subscription_id = _id_of(_get(session, "subscription"))
        if subscription_id:
            subscription = self.read_subscription(subscription_id)
        mode = _get(session, "mode", "")
        complete = _get(session, "status") == "complete" and (
            subscription is not None if mode == "subscription" else _get(session, "payment_status") == "paid")
        price = _get(_get(session, "metadata", {}), "price_id", "")
        if subscription is not None:
            price = subscription.price_id
        payment_id = _id_of(_get(session, "payment_intent"))
        revoked = self.payment_standing(payment_id) if complete and subscription is None and payment_id else None
        return CheckoutResult(session_id=session["id"], workspace_id=_uuid_in(_get(session, "metadata", {})),
                              customer_id=_id_of(_get(session, "customer")), mode=mode, price_id=price,
                              complete=complete, subscription=subscription, payment_id=payment_id, revoked=revoked,
                              event_id=_uuid_in(_get(session, "metadata", {}), "event_id"))

    def read_subscription(self, subscription_id: str) -> SubscriptionState | None:
        subscription = self._call("reading a subscription",
                                  lambda: self.client.v1.subscriptions.retrieve(subscription_id), missing_ok=True)
        return None if subscription is None else subscription_state(subscription)

    def read_invoice(self, invoice_id: str) -> InvoiceState | None:
        invoice = self._call("reading an invoice", lambda: self.client.v1.invoices.retrieve(invoice_id),
                             missing_ok=True)
        if invoice is None:
            return None
        subscription = _id_of(_get(invoice, "subscription")) or _id_of(
            _get(_get(_get(invoice, "parent", {}), "subscription_details", {}), "subscription"))
        return InvoiceState(id=invoice["id"], customer_id=_id_of(_get(invoice, "customer")) or "",
                            subscription_id=subscription, amount_due=int(_get(invoice, "amount_due", 0)),
                            currency=_get(invoice, "currency", ""),
                            attempt_count=int(_get(invoice, "attempt_count", 0)),
                            status=_get(invoice, "status", ""))

    def read_charge(self, charge_id: str) -> ChargeState | None:
        charge = self._call("reading a charge", lambda: self.client.v1.charges.retrieve(charge_id), missing_ok=True)
        if charge is None:
            return None
        return ChargeState(id=charge["id"], customer_id=_id_of(_get(charge, "customer")) or "",
                           amount=int(_get(charge, "amount", 0)),
                           amount_refunded=int(_get(charge, "amount_refunded", 0)),
                           currency=_get(charge, "currency", ""),
                           payment_intent=_id_of(_get(charge, "payment_intent")))

    def payment_standing(self, payment_intent: str) -> str | None:
        """Why a one-time payment no longer buys anything, as Stripe has it
        now: "refunded" when a charge of it is refunded in full, "disputed"
        while a dispute of it is open or once one is lost; None while it
        stands. Read from the payment's charges and their disputes, so it
        does not depend on which webhook came first."""
        charges = self._call("listing a payment's charges", lambda: self.client.v1.charges.list(
            {"payment_intent": payment_intent, "limit": 100}))
        paid = [charge for charge in charges.auto_paging_iter() if _get(charge, "paid", True)]
        if any(int(_get(charge, "amount", 0)) > 0 and int(_get(charge, "amount_refunded", 0))
               >= int(_get(charge, "amount", 0)) for charge in paid):
            return "refunded"
        for charge in paid:
            if not _get(charge, "disputed", False):
                continue
            disputes = self._call("listing a charge's disputes", lambda charge=charge: self.client.v1.disputes.list(
                {"charge": charge["id"], "limit": 100}))
            if any(_get(dispute, "status", "") in DISPUTE_REVOKES for dispute in disputes.auto_paging_iter()):
                return "disputed"
        return None

    def read_dispute(self, dispute_id: str) -> DisputeState | None:
        dispute = self._call("reading a dispute", lambda: self.client.v1.disputes.retrieve(dispute_id),
                             missing_ok=True)
        if dispute is None:
            return None
        return DisputeState(id=dispute["id"], charge_id=_id_of(_get(dispute, "charge")) or "",
                            amount=int(_get(dispute, "amount", 0)), currency=_get(dispute, "currency", ""),
                            reason=_get(dispute, "reason", ""), status=_get(dispute, "status", ""))

    def _item(self, subscription_id: str) -> str:
        subscription = self._call("reading a subscription",
                                  lambda: self.client.v1.subscriptions.retrieve(subscription_id))
        return subscription["items"]["data"][0]["id"]

    def preview_change(self, subscription_id: str, price_id: str) -> Proration:
        item = self._item(subscription_id)
        invoice = self._call("previewing a plan change", lambda: self.client.v1.invoices.create_preview({
            "subscription": subscription_id,
            "subscription_details": {"items": [{"id": item, "price": price_id}],
                                     "proration_behavior": "always_invoice"},
        }))
        return Proration(amount_due=int(_get(invoice, "amount_due", 0)), currency=_get(invoice, "currency", ""))

    def change_price(self, subscription_id: str, price_id: str) -> SubscriptionState:
        item = self._item(subscription_id)
        subscription = self._call("changing a plan", lambda: self.client.v1.subscriptions.update(
            subscription_id, {"items": [{"id": item, "price": price_id}], "proration_behavior": "always_invoice"}))
        return subscription_state(subscription)

    def set_cancel_at_period_end(self, subscription_id: str, cancel: bool) -> SubscriptionState:
        subscription = self._call("cancelling" if cancel else "undoing a cancellation",
                                  lambda: self.client.v1.subscriptions.update(
                                      subscription_id, {"cancel_at_period_end": cancel}))
        return subscription_state(subscription)


def from_settings(settings: Mapping[str, Any]) -> StripeBackend:
    return StripeBackend(settings["stripe.secret_key"], settings["stripe.api_base"], settings["stripe.timeout"],
                         settings["stripe.max_retries"])
