"""The worker's side of Stripe's webhooks. An event is only a trigger: the
object it names is read again from Stripe and its current state applied,
so repeats and any order of arrival end in the same snapshot."""
from __future__ import annotations

import json
import logging

from sqlalchemy import select

from guestguard.audit.services import record
from guestguard.billing import (
    apply_checkout,
    apply_payment_standing,
    apply_subscription,
    dunning_notice,
    money,
    owner_notice,
)
from guestguard.billing.models import BillingPayment, Entitlement
from guestguard.billing.plans import plan_of_price
from guestguard.plugins import InboundWebhook
from guestguard_stripe.backend import StripeBackend, _get, _id_of
from guestguard_stripe.views import PROVIDER

log = logging.getLogger(__name__)

SUBSCRIPTION_EVENTS = ("customer.subscription.created", "customer.subscription.updated",
                       "customer.subscription.deleted", "customer.subscription.trial_will_end")
CHECKOUT_EVENTS = ("checkout.session.completed", "checkout.session.expired")
INVOICE_EVENTS = ("invoice.paid", "invoice.payment_failed", "invoice.payment_action_required")
CHARGE_EVENTS = ("charge.refunded", "charge.dispute.created", "charge.dispute.updated", "charge.dispute.closed")


class StripeEvents:
    provider = PROVIDER

    def __init__(self, backend: StripeBackend):
        self.backend = backend

    def handle(self, ctx, webhook: InboundWebhook) -> str | None:
        event = json.loads(webhook.body)
        kind = event["type"]
        obj = _get(event.get("data", {}), "object", {})
        if kind in SUBSCRIPTION_EVENTS:
            return self._subscription(ctx, _id_of(obj.get("id")), kind)
        if kind in CHECKOUT_EVENTS:
            result = self.backend.read_checkout(obj["id"])  # BillingUnavailable: retried by the inbox
            if result is None:
                return f"Stripe has no Checkout Session {obj['id']}"
            return apply_checkout(ctx, result, source=kind)
        if kind in INVOICE_EVENTS:
            return self._invoice(ctx, obj, kind)
        if kind in CHARGE_EVENTS:
            return self._charge(ctx, obj, kind)
        return f"{kind}: not an event billing acts on"

    def _subscription(self, ctx, subscription_id: str | None, source: str) -> str:
        if not subscription_id:
            return "the event names no subscription"
        state = self.backend.read_subscription(subscription_id)
        if state is None:
            return f"Stripe has no subscription {subscription_id}"
        note = apply_subscription(ctx, state, source=source)
        if source == "customer.subscription.trial_will_end":
            note += self._trial_ending(ctx, state)
        return note

    def _trial_ending(self, ctx, state) -> str:
        """Tell the owners, once per subscription and trial end, while the
        subscription (as Stripe has it now) is still in its trial."""
        workspace_id = state.workspace_id or self._workspace_of(ctx, state.customer_id)
        if workspace_id is None or state.status != "trialing" or state.trial_end is None:
            return "; no trial-ending email: the trial is over"
        record(ctx, "billing.trial_ending", workspace_id=workspace_id, target_type="subscription",
               target_id=state.subscription_id)
        plan = plan_of_price(ctx.registry["billing.plans"], state.price_id)
        sent = owner_notice(ctx, workspace_id, "trial_ending",
                            f"trial_ending:{state.subscription_id}:{int(state.trial_end.timestamp())}",
                            {"plan": plan.label if plan else "paid", "trial_end": state.trial_end.strftime("%-d %B %Y"),
                             "cancelling": state.cancel_at_period_end})
        return f"; trial-ending email {'sent' if sent else 'sent before'}"

    def _workspace_of(self, ctx, customer_id: str | None):
        if not customer_id:
            return None
        return ctx.db.scalar(select(Entitlement.workspace_id).where(Entitlement.customer_id == customer_id))

    def _invoice(self, ctx, reported, kind: str) -> str:
        invoice_id = reported["id"]
        invoice = self.backend.read_invoice(invoice_id)
        if invoice is None:
            return f"Stripe has no invoice {invoice_id}"
        note = self._subscription(ctx, invoice.subscription_id, kind) if invoice.subscription_id else "no subscription"
        workspace_id = ctx.db.scalar(select(Entitlement.workspace_id)
                                     .where(Entitlement.customer_id == invoice.customer_id))
        if kind == "invoice.payment_failed" and workspace_id is not None:
            # The attempt is the one this (signed) event reports; the email goes
            # only while Stripe still has the invoice unpaid.
            attempt = int(_get(reported, "attempt_count", 0) or invoice.attempt_count)
            if invoice.status in ("paid", "void", "uncollectible"):
                note += f"; no dunning email: the invoice is {invoice.status} now"
            else:
                sent = dunning_notice(ctx, workspace_id, invoice.id, attempt, invoice.amount_due, invoice.currency)
                note += f"; dunning email {'sent' if sent else 'sent before'} for attempt {attempt}"
        if kind == "invoice.payment_action_required" and workspace_id is not None:
            record(ctx, "billing.payment_action_required", workspace_id=workspace_id, target_type="invoice",
                   target_id=invoice.id)
        return note

    def _charge(self, ctx, reported, kind: str) -> str:
        """A refund or a dispute: the charge (and dispute) read back from
        Stripe, the owners told once per refund amount and per dispute, a
        one-time payment's standing (revoked by a full refund or a dispute
        open or lost, restored by a dispute won) and the subscription, if
        any, applied as Stripe has it now."""
        if kind.startswith("charge.dispute."):
            dispute = self.backend.read_dispute(reported["id"])
            if dispute is None:
                return f"Stripe has no dispute {reported['id']}"
            charge = self.backend.read_charge(dispute.charge_id)
        else:
            dispute, charge = None, self.backend.read_charge(reported["id"])
        if charge is None:
            return f"{kind}: Stripe has no such charge"
        standing = ""
        if charge.payment_intent and ctx.db.get(BillingPayment, charge.payment_intent) is not None:
            # A payment not applied yet takes its standing when its checkout is.
            standing = "; " + apply_payment_standing(ctx, charge.payment_intent,
                                                     self.backend.payment_standing(charge.payment_intent), kind)
        found = ctx.db.execute(select(Entitlement.workspace_id, Entitlement.subscription_id)
                               .where(Entitlement.customer_id == charge.customer_id)).first() \
            if charge.customer_id else None
        if found is None:
            return f"{kind}: no workspace has this customer{standing}"
        workspace_id, subscription_id = found
        record(ctx, f"billing.{kind.split('.', 1)[1].replace('.', '_')}", workspace_id=workspace_id,
               target_type="charge", target_id=charge.id)
        if dispute is not None and kind != "charge.dispute.created":
            note = f"{kind}: dispute {dispute.status.replace('_', ' ')}"
        elif dispute is not None:
            sent = owner_notice(ctx, workspace_id, "dispute", f"dispute:{dispute.id}",
                                {"amount": money(dispute.amount, dispute.currency),
                                 "reason": dispute.reason.replace("_", " ")})
            note = f"{kind}: dispute email {'sent' if sent else 'sent before'}"
        elif charge.amount_refunded > 0:
            sent = owner_notice(ctx, workspace_id, "refunded", f"refund:{charge.id}:{charge.amount_refunded}",
                                {"amount": money(charge.amount_refunded, charge.currency),
                                 "paid": money(charge.amount, charge.currency),
                                 "full": charge.amount_refunded >= charge.amount})
            note = f"{kind}: refund email {'sent' if sent else 'sent before'}"
        else:
            note = f"{kind}: nothing refunded"
        return note + standing + ("; " + self._subscription(ctx, subscription_id, kind) if subscription_id else "")
