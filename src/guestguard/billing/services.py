"""Billing's logic: the entitlement snapshot every limit check reads, usage
counted atomically, enforcement (one function, ``charge``), and applying
what the billing provider says (read from the provider, never taken from a
webhook's body) under a per-workspace lock.

Services take the house's context (``ctx``: db, settings, registry, actor)."""
from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from guestguard.audit.services import record
from guestguard.billing import flags
from guestguard.billing.models import BillingNotice, BillingPayment, DunningNotice, Entitlement, UsageCounter
from guestguard.billing.plans import EVENTS, FREE, GUESTS, METERS, MONTHLY, ONE_TIME, RANK, SMS, Plan, plan_of_price
from guestguard.db import is_sqlite, lock_name, lock_row, utcnow
from guestguard.errors import Refusal
from guestguard.plugins import BillingRefused, BillingUnavailable, CheckoutRequest, CheckoutResult, SubscriptionState

log = logging.getLogger(__name__)

ENTITLED = ("active", "trialing")
# The feature flag opening payments (checkout and plan changes) to a workspace.
BILLING_FLAG = "billing"
# Statuses after which the subscription is over: the workspace is on Free.
ENDED = ("canceled", "incomplete_expired", "unpaid")
LIVE = ("active", "trialing", "past_due")


class PlanLimitReached(Refusal):
    """402 ``plan_limit``: the workspace's plan allows no more of a meter."""

    def __init__(self, meter: str, limit: int, used: int, upgrade_url: str, plan: str):
        nouns = {EVENTS: ("event", "events", " this period"), GUESTS: ("guest", "guests", " per event"),
                 SMS: ("text message", "text messages", " this period")}
        one, many, per = nouns[meter]
        super().__init__(402, "plan_limit",
                         f"The {plan} plan allows {limit} {one if limit == 1 else many}{per}; {used} used. "
                         "Upgrade the plan to add more.",
                         limit=limit, used=used, upgrade_url=upgrade_url, meter=meter, plan=plan)


BRANDING = "branding"
FEATURES = {BRANDING: "custom branding (a theme colour and a cover image)"}


class PlanFeatureMissing(Refusal):
    """402 ``plan_limit``: the workspace's plan does not include a feature
    (its limit is 0)."""

    def __init__(self, feature: str, upgrade_url: str, plan: str, field: str | None = None):
        super().__init__(402, "plan_limit",
                         f"The {plan} plan does not include {FEATURES[feature]}. Upgrade the plan to use it; "
                         "what you already have stays as it is.",
                         field, limit=0, used=0, upgrade_url=upgrade_url, feature=feature, plan=plan)


def plans(ctx) -> Mapping[str, Plan]:
    return ctx.registry["billing.plans"]


@dataclass(frozen=True)
class Standing:
    """What a workspace may do now, from its entitlement row."""

    workspace_id: uuid.UUID
    plan: Plan
    status: str
    entitled: bool
    limits: Mapping[str, int | None]
    branding: bool
    period_start: dt.datetime
    period_end: dt.datetime | None
    trial_end: dt.datetime | None
    cancel_at_period_end: bool
    customer_id: str | None
    subscription_id: str | None


def month_start(now: dt.datetime) -> dt.datetime:
    return now.astimezone(dt.UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month(start: dt.datetime) -> dt.datetime:
    return (start + dt.timedelta(days=32)).replace(day=1)


def entitled(ctx, row: Entitlement, now: dt.datetime) -> bool:
    """Active or trialing; past due while the provider retries, for
    ``billing.past_due_grace_days``. A one-time plan (Personal) is never the
    workspace's: it belongs to the event it was bought for."""
    known = plans(ctx).get(row.plan)
    if row.plan == FREE or known is None or known.billing == ONE_TIME:
        return False
    if row.status in ENTITLED:
        return True
    if row.status == "past_due":
        since = row.past_due_since or now
        return now < since + dt.timedelta(days=ctx.settings["billing.past_due_grace_days"])
    return False


def standing(ctx, workspace_id: uuid.UUID, now: dt.datetime | None = None) -> Standing:
    now = now or utcnow()
    row = ctx.db.get(Entitlement, workspace_id)
    known = plans(ctx)
    free = known[FREE]
    if row is None or not entitled(ctx, row, now) or row.plan not in known:
        start = month_start(now)
        return Standing(workspace_id, free, row.status if row is not None else "active", False,
                        {meter: free.limit(meter) for meter in METERS}, free.branding, start, next_month(start),
                        None, False, row.customer_id if row else None, row.subscription_id if row else None)
    plan = known[row.plan]
    limits = {EVENTS: row.events_limit, GUESTS: row.guests_limit, SMS: row.sms_limit}
    if row.period_start is not None:
        start, end = row.period_start, row.period_end
    else:
        start = month_start(now)
        end = next_month(start)
    return Standing(workspace_id, plan, row.status, True, limits, row.branding, start, end, row.trial_end,
                    row.cancel_at_period_end, row.customer_id, row.subscription_id)


def upgrade_url(ctx, workspace_id) -> str:
    path = ctx.settings["billing.upgrade_path"].replace("{workspace_id}", str(workspace_id))
    return ctx.settings["app.base_url"].rstrip("/") + path


def _insert(db, model):
    return (sqlite_insert if is_sqlite(db) else pg_insert)(model)


def _refuse(ctx, st: Standing, meter: str, limit: int, used: int, bought: Plan | None = None,
            event_id: uuid.UUID | None = None) -> None:
    plan = bought if bought is not None and meter != EVENTS else st.plan
    url = upgrade_url(ctx, st.workspace_id)
    if event_id is not None and bought is None:
        url += f"?event_id={event_id}"  # the billing page offers to buy this event its own plan
    record(ctx, "billing.limit_reached", result="refused", actor_id=ctx.actor_id, workspace_id=st.workspace_id,
           target_type="workspace", target_id=st.workspace_id, meter=meter, limit=limit, used=used)
    ctx.emit("billing.limit_reached", {"meter": meter, "limit": limit, "used": used, "plan": plan.name},
             st.workspace_id)
    raise PlanLimitReached(meter, limit, used, url, plan.label)


def larger(limit: int | None, other: int | None) -> int | None:
    """The larger of two limits, None (unlimited) above any number."""
    if limit is None or other is None:
        return None
    return max(limit, other)


STANDING_PAYMENT = BillingPayment.revoked_at.is_(None)


def event_plan(ctx, event_id: uuid.UUID | None) -> Plan | None:
    """The one-time plan (Personal) bought for this event, if a payment for
    it stands (none refunded in full or disputed counts)."""
    if event_id is None:
        return None
    name = ctx.db.scalar(select(BillingPayment.plan).where(BillingPayment.event_id == event_id, STANDING_PAYMENT)
                         .order_by(BillingPayment.applied_at).limit(1))
    return plans(ctx).get(name) if name else None


def _event_payment(event_id: uuid.UUID):
    """The event's first standing purchase, which its texts are counted on."""
    return (select(BillingPayment.payment_id).where(BillingPayment.event_id == event_id, STANDING_PAYMENT)
            .order_by(BillingPayment.applied_at, BillingPayment.payment_id).limit(1).scalar_subquery())


def _charge_event_texts(ctx, st: Standing, event_id: uuid.UUID, bought: Plan, amount: int, enforce: bool) -> None:
    """One conditional UPDATE, as for a period's meter: two sends at once
    cannot both take the event's last text."""
    row = BillingPayment.payment_id == _event_payment(event_id)
    condition = (row,) if not enforce else (row, BillingPayment.texts_used + amount <= bought.sms)
    done = ctx.db.execute(update(BillingPayment).where(*condition)
                          .values(texts_used=BillingPayment.texts_used + amount)
                          .execution_options(synchronize_session=False))
    if done.rowcount == 0:
        used = ctx.db.scalar(select(BillingPayment.texts_used).where(row)) or 0
        _refuse(ctx, st, SMS, bought.sms, used, bought)


def charge(ctx, workspace_id: uuid.UUID, meter: str, amount: int = 1, event_id: uuid.UUID | None = None) -> None:
    """Count ``amount`` of ``meter`` against the workspace's plan, or raise
    PlanLimitReached (402) and count nothing. The one enforcement of plan
    limits: events and texts are counted per period by one conditional
    UPDATE (two requests at once cannot both take the last one); guests are
    counted live in the event, under the event's row lock. An event bought
    on its own plan (``event_id``; Personal) has the larger of the two guest
    limits, and outside a subscription that plan's texts, counted on its
    purchase. With ``billing.enforce`` off, usage is still counted and
    nothing is refused."""
    if meter not in METERS:
        raise ValueError(f"unknown meter {meter!r}")
    if amount <= 0:
        return
    enforce = ctx.settings["billing.enforce"]
    st = standing(ctx, workspace_id)
    limit = st.limits[meter]
    if meter == GUESTS and (not enforce or limit is None):
        return
    bought = event_plan(ctx, event_id)
    if meter == GUESTS:
        limit = larger(limit, bought.guests if bought else 0)
        if limit is None:
            return
        from guestguard.events.models import Event, Guest

        lock_row(ctx.db, Event, event_id)
        used = ctx.db.scalar(select(func.count()).select_from(Guest).where(Guest.event_id == event_id)) or 0
        if used + amount > limit:
            _refuse(ctx, st, meter, limit, used, bought, event_id)
        return
    if meter == SMS and bought is not None and bought.sms is not None and not st.entitled:
        # An event bought on its own plan sends that plan's texts, counted on its purchase
        # (a workspace paying a subscription counts every text on its period instead).
        _charge_event_texts(ctx, st, event_id, bought, amount, enforce)
        return
    key = {"workspace_id": workspace_id, "meter": meter, "period_start": st.period_start}
    ctx.db.execute(_insert(ctx.db, UsageCounter).values(**key, used=0).on_conflict_do_nothing())
    counter = (UsageCounter.workspace_id == workspace_id, UsageCounter.meter == meter,
               UsageCounter.period_start == st.period_start)
    condition = counter if (not enforce or limit is None) else (*counter, UsageCounter.used + amount <= limit)
    done = ctx.db.execute(update(UsageCounter).where(*condition).values(used=UsageCounter.used + amount)
                          .execution_options(synchronize_session=False))
    if done.rowcount == 0:
        used = ctx.db.scalar(select(UsageCounter.used).where(*counter)) or 0
        _refuse(ctx, st, meter, limit, used)


def require_feature(ctx, workspace_id: uuid.UUID, feature: str, field: str | None = None,
                    event_id: uuid.UUID | None = None) -> None:
    """Raise PlanFeatureMissing (402, naming the input ``field``) unless the
    workspace's plan includes ``feature`` (only branding today). Audited and
    emitted like a limit; with ``billing.enforce`` off nothing is refused."""
    if feature not in FEATURES:
        raise ValueError(f"unknown feature {feature!r}")
    if not ctx.settings["billing.enforce"] or has_feature(ctx, workspace_id, feature, event_id):
        return
    st = standing(ctx, workspace_id)
    record(ctx, "billing.limit_reached", result="refused", actor_id=ctx.actor_id, workspace_id=workspace_id,
           target_type="workspace", target_id=workspace_id, feature=feature)
    ctx.emit("billing.limit_reached", {"feature": feature, "limit": 0, "used": 0, "plan": st.plan.name},
             workspace_id)
    raise PlanFeatureMissing(feature, upgrade_url(ctx, workspace_id), st.plan.label, field)


def has_feature(ctx, workspace_id: uuid.UUID, feature: str, event_id: uuid.UUID | None = None) -> bool:
    """Whether the workspace's plan, or the plan bought for ``event_id``,
    includes ``feature`` now (always, with ``billing.enforce`` off)."""
    if not ctx.settings["billing.enforce"] or getattr(standing(ctx, workspace_id), feature):
        return True
    bought = event_plan(ctx, event_id)
    return bool(bought and getattr(bought, feature))


def remaining(ctx, workspace_id: uuid.UUID, meter: str, event_id: uuid.UUID | None = None) -> int | None:
    """How much of a period meter (events, sms) is left, or of the texts of
    the plan bought for ``event_id``; None: no limit (unlimited, or
    enforcement off). A hint for bulk work deciding what to skip; ``charge``
    is still what counts."""
    if not ctx.settings["billing.enforce"]:
        return None
    st = standing(ctx, workspace_id)
    bought = event_plan(ctx, event_id) if meter == SMS and not st.entitled else None
    if bought is not None and bought.sms is not None:
        used = ctx.db.scalar(select(BillingPayment.texts_used).where(
            BillingPayment.payment_id == _event_payment(event_id))) or 0
        return max(0, bought.sms - used)
    limit = st.limits[meter]
    if limit is None:
        return None
    used = ctx.db.scalar(select(UsageCounter.used).where(
        UsageCounter.workspace_id == workspace_id, UsageCounter.meter == meter,
        UsageCounter.period_start == st.period_start)) or 0
    return max(0, limit - used)


def usage(ctx, workspace_id: uuid.UUID) -> dict[str, Any]:
    """Used and limit of each meter this period (guests: the fullest event)."""
    from guestguard.events.models import Event, Guest

    st = standing(ctx, workspace_id)
    counted = dict(ctx.db.execute(select(UsageCounter.meter, UsageCounter.used).where(
        UsageCounter.workspace_id == workspace_id, UsageCounter.period_start == st.period_start)).all())
    bought = _bought_events(workspace_id)
    fullest = ctx.db.scalar(select(func.count(Guest.id)).join(Event, Event.id == Guest.event_id)
                            .where(Event.workspace_id == workspace_id, Event.id.not_in(bought))
                            .group_by(Guest.event_id)
                            .order_by(func.count(Guest.id).desc()).limit(1)) or 0
    used = {EVENTS: counted.get(EVENTS, 0), SMS: counted.get(SMS, 0), GUESTS: fullest}
    return {meter: {"used": used[meter], "limit": st.limits[meter]} for meter in METERS}


# --- applying what the provider says -----------------------------------------------


def workspace_lock(ctx, workspace_id) -> None:
    """One billing change per workspace at a time (webhooks, the success
    page and reconciliation may all apply the same subscription at once)."""
    lock_name(ctx.db, f"billing:{workspace_id}", Entitlement)


def _workspace_exists(ctx, workspace_id) -> bool:
    from guestguard.workspaces.models import Workspace

    found = ctx.db.get(Workspace, workspace_id)
    return found is not None and found.deleted_at is None


def _row_for(ctx, workspace_id) -> tuple[Entitlement, dict[str, Any]]:
    """The workspace's row (made on Free when it has none) and what it said before."""
    row = ctx.db.get(Entitlement, workspace_id, populate_existing=True)
    if row is not None:
        return row, _snapshot(row)
    row = Entitlement(workspace_id=workspace_id, plan=FREE, status="active", trial_used=False,
                      cancel_at_period_end=False, branding=False)
    ctx.db.add(row)
    return row, {}


SNAPSHOT = ("plan", "status", "period_start", "period_end", "trial_end", "cancel_at_period_end", "customer_id",
            "subscription_id", "price_id", "events_limit", "guests_limit", "sms_limit", "branding")


def _snapshot(row: Entitlement) -> dict[str, Any]:
    return {name: getattr(row, name) for name in SNAPSHOT}


def _set_plan(row: Entitlement, plan: Plan) -> None:
    row.plan = plan.name
    row.events_limit, row.guests_limit, row.sms_limit, row.branding = plan.events, plan.guests, plan.sms, plan.branding


def _changed(ctx, workspace_id, before: dict[str, Any], row: Entitlement, source: str) -> bool:
    after = _snapshot(row)
    if before == after:
        return False
    row.updated_at = utcnow()
    changes = {name: [_plain(before.get(name)), _plain(after[name])]
               for name in SNAPSHOT if before.get(name) != after[name]}
    record(ctx, "billing.subscription_changed", actor_id=ctx.actor_id, workspace_id=workspace_id,
           target_type="workspace", target_id=workspace_id, source=source, changes=changes)
    ctx.emit("billing.subscription_changed", {"plan": row.plan, "status": row.status, "source": source,
                                              "changes": sorted(changes)}, workspace_id)
    return True


def _plain(value):
    return value.isoformat() if isinstance(value, dt.datetime) else value


def apply_subscription(ctx, state: SubscriptionState, source: str = "provider",
                       workspace_id: uuid.UUID | None = None) -> str:
    """Make the workspace's snapshot say what the provider says about its
    subscription. Idempotent, and order-free: it is always the provider's
    current state that is applied. Returns what happened, in words."""
    workspace_id = workspace_id or state.workspace_id or _workspace_of_customer(ctx, state.customer_id)
    if workspace_id is None:
        return f"no workspace has subscription {state.subscription_id}"
    if not _workspace_exists(ctx, workspace_id):
        return f"workspace {workspace_id} no longer exists; subscription {state.subscription_id} ignored"
    workspace_lock(ctx, workspace_id)
    row, before = _row_for(ctx, workspace_id)
    if row.subscription_id and row.subscription_id != state.subscription_id and row.status in LIVE \
            and state.status in ENDED:
        return f"subscription {state.subscription_id} ended, workspace is on {row.subscription_id}"
    plan = plan_of_price(plans(ctx), state.price_id)
    if plan is None:
        log.warning("subscription %s has a price no plan lists; the snapshot keeps its plan", state.subscription_id)
        record(ctx, "billing.unknown_price", result="refused", workspace_id=workspace_id, target_type="workspace",
               target_id=workspace_id, price_id=state.price_id)
        return f"price {state.price_id} belongs to no plan"
    row.customer_id = state.customer_id or row.customer_id
    row.subscription_id = state.subscription_id
    row.price_id = state.price_id
    row.status = state.status
    row.trial_used = True
    if state.status in ENDED:
        _set_plan(row, plans(ctx)[FREE])
        row.period_start = row.period_end = row.trial_end = None
        row.cancel_at_period_end = False
    else:
        _set_plan(row, plan)
        row.period_start, row.period_end = state.period_start, state.period_end
        row.trial_end = state.trial_end
        row.cancel_at_period_end = state.cancel_at_period_end
    if state.status == "past_due":
        row.past_due_since = row.past_due_since or utcnow()
    else:
        row.past_due_since = None
    changed = _changed(ctx, workspace_id, before, row, source)
    return f"{'applied' if changed else 'unchanged'}: {row.plan} {row.status}"


def _workspace_of_customer(ctx, customer_id: str | None):
    if not customer_id:
        return None
    return ctx.db.scalar(select(Entitlement.workspace_id).where(Entitlement.customer_id == customer_id))


def apply_checkout(ctx, result: CheckoutResult, source: str = "checkout") -> str:
    """Apply a completed checkout: its subscription, or one purchase of a
    one-time plan (counted once by its payment id)."""
    if not result.complete:
        return f"checkout {result.session_id} is not complete"
    workspace_id = result.workspace_id
    if workspace_id is None:
        return f"checkout {result.session_id} names no workspace"
    if result.subscription is not None:
        return apply_subscription(ctx, result.subscription, source, workspace_id=workspace_id)
    if not _workspace_exists(ctx, workspace_id):
        return f"workspace {workspace_id} no longer exists; checkout {result.session_id} ignored"
    plan = plan_of_price(plans(ctx), result.price_id)
    if plan is None or plan.billing != ONE_TIME:
        return f"price {result.price_id} is not a one-time plan"
    workspace_lock(ctx, workspace_id)
    payment_id = result.payment_id or result.session_id
    applied = ctx.db.get(BillingPayment, payment_id, populate_existing=True)
    if applied is not None:
        changed = _set_standing(ctx, applied, result.revoked, source)
        return f"payment {payment_id} was applied before" + (f"; {changed}" if changed else "")
    if result.revoked:
        # Refunded or disputed before its checkout was seen: recorded, buying nothing.
        ctx.db.add(BillingPayment(payment_id=payment_id, workspace_id=workspace_id, plan=plan.name,
                                  event_id=result.event_id if _event_of(ctx, workspace_id, result.event_id) else None,
                                  texts_used=0, applied_at=utcnow(), revoked_at=utcnow(),
                                  revoked_reason=result.revoked))
        row, _ = _row_for(ctx, workspace_id)
        row.customer_id = result.customer_id or row.customer_id
        record(ctx, "billing.event_plan_revoked", workspace_id=workspace_id, target_type="payment",
               target_id=payment_id, plan=plan.name, reason=result.revoked, source=source)
        return f"payment {payment_id} recorded as {result.revoked}: it buys nothing"
    event = _event_of(ctx, workspace_id, result.event_id)
    paid_before = event is not None and event_plan(ctx, event.id) is not None
    ctx.db.add(BillingPayment(payment_id=payment_id, workspace_id=workspace_id, plan=plan.name,
                              event_id=event.id if event else None, texts_used=0, applied_at=utcnow()))
    row, _ = _row_for(ctx, workspace_id)
    row.customer_id = result.customer_id or row.customer_id  # the portal, refunds and disputes find it
    if event is None:
        log.warning("payment %s is for an event that is gone; it is kept, to be refunded", payment_id)
        record(ctx, "billing.payment_unassigned", workspace_id=workspace_id, target_type="payment",
               target_id=payment_id, plan=plan.name)
        return f"payment {payment_id} recorded; its event is gone, refund it"
    if paid_before:
        record(ctx, "billing.paid_twice", workspace_id=workspace_id, target_type="event", target_id=event.id,
               payment_id=payment_id)
        return f"payment {payment_id} recorded; event {event.id} was paid for before, refund it"
    _return_event_slot(ctx, workspace_id, event)
    record(ctx, "billing.event_plan_bought", actor_id=ctx.actor_id, workspace_id=workspace_id, target_type="event",
           target_id=event.id, plan=plan.name, payment_id=payment_id, source=source)
    ctx.emit("billing.subscription_changed", {"plan": plan.name, "status": "active", "source": source,
                                              "event_id": str(event.id), "changes": ["event_plan"]}, workspace_id)
    return f"applied: {plan.name} for event {event.id}"


def _event_of(ctx, workspace_id: uuid.UUID, event_id: uuid.UUID | None):
    from guestguard.events.models import Event

    if event_id is None:
        return None
    return ctx.db.scalar(select(Event).where(Event.id == event_id, Event.workspace_id == workspace_id,
                                             Event.deleted_at.is_(None)))


def _return_event_slot(ctx, workspace_id: uuid.UUID, event, back: bool = False) -> None:
    """An event bought on its own plan is paid for: if it was counted
    against this period's events, that count is given back. ``back``: its
    plan was taken back, so it counts again (over the limit if it must: the
    event exists, and a new one is refused)."""
    st = standing(ctx, workspace_id)
    if event.created_at is None or _aware(event.created_at) < st.period_start:
        return
    counter = (UsageCounter.workspace_id == workspace_id, UsageCounter.meter == EVENTS,
               UsageCounter.period_start == st.period_start)
    if back:
        ctx.db.execute(_insert(ctx.db, UsageCounter).values(workspace_id=workspace_id, meter=EVENTS,
                                                            period_start=st.period_start, used=0)
                       .on_conflict_do_nothing())
    ctx.db.execute(update(UsageCounter).where(*counter, *(() if back else (UsageCounter.used > 0,)))
                   .values(used=UsageCounter.used + (1 if back else -1))
                   .execution_options(synchronize_session=False))


def _bought_events(workspace_id: uuid.UUID):
    """The workspace's events a standing payment bought their own plan for."""
    return select(BillingPayment.event_id).where(BillingPayment.workspace_id == workspace_id,
                                                 BillingPayment.event_id.is_not(None), STANDING_PAYMENT)


def apply_payment_standing(ctx, payment_id: str, revoked: str | None, source: str = "provider") -> str:
    """Make a one-time payment stand or not as the provider has it now:
    ``revoked`` ("refunded" in full, or "disputed": a dispute open or lost)
    takes its plan back from its event, which counts against the period's
    events again; None (a dispute won) gives both back. Idempotent and
    order-free: the same standing applied twice changes nothing."""
    workspace_id = ctx.db.scalar(select(BillingPayment.workspace_id).where(BillingPayment.payment_id == payment_id))
    if workspace_id is None:
        return f"no payment {payment_id} was applied"
    workspace_lock(ctx, workspace_id)
    payment = ctx.db.get(BillingPayment, payment_id, populate_existing=True)
    return _set_standing(ctx, payment, revoked, source) or f"payment {payment_id} unchanged: {revoked or 'standing'}"


def _set_standing(ctx, payment: BillingPayment, revoked: str | None, source: str) -> str | None:
    """``apply_payment_standing`` under the workspace's lock: what changed, in
    words, or None when the payment stood so already."""
    if (payment.revoked_reason if payment.revoked_at else None) == revoked:
        return None
    workspace_id, payment_id = payment.workspace_id, payment.payment_id
    event = _event_of(ctx, workspace_id, payment.event_id)
    had_plan = event is not None and event_plan(ctx, event.id) is not None
    payment.revoked_at = utcnow() if revoked else None
    payment.revoked_reason = revoked
    ctx.db.flush()
    has_plan = event is not None and event_plan(ctx, event.id) is not None
    if had_plan and not has_plan:
        _return_event_slot(ctx, workspace_id, event, back=True)
    elif has_plan and not had_plan:
        _return_event_slot(ctx, workspace_id, event)
    action = "billing.event_plan_revoked" if revoked else "billing.event_plan_restored"
    record(ctx, action, workspace_id=workspace_id, target_type="payment", target_id=payment_id,
           plan=payment.plan, event_id=str(event.id) if event else None, reason=revoked, source=source)
    if had_plan != has_plan:
        ctx.emit("billing.subscription_changed", {"plan": payment.plan if has_plan else FREE,
                                                  "status": "active" if has_plan else revoked, "source": source,
                                                  "event_id": str(event.id), "changes": ["event_plan"]}, workspace_id)
    return f"payment {payment_id} {'revoked: ' + revoked if revoked else 'restored'}"


def events_to_buy(ctx, workspace_id: uuid.UUID) -> list:
    """The workspace's live events not bought on their own plan, soonest first."""
    from guestguard.events.models import Event

    bought = _bought_events(workspace_id)
    return list(ctx.db.execute(select(Event.id, Event.name).where(
        Event.workspace_id == workspace_id, Event.deleted_at.is_(None), Event.id.not_in(bought))
        .order_by(Event.starts_at, Event.id).limit(200)).all())


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def event_plans(ctx, workspace_id: uuid.UUID) -> list[dict[str, Any]]:
    """The workspace's live events bought on their own plan, with their
    guests and texts against that plan."""
    from guestguard.events.models import Event, Guest

    guests = (select(func.count(Guest.id)).where(Guest.event_id == Event.id).correlate(Event).scalar_subquery())
    rows = ctx.db.execute(select(Event.id, Event.name, BillingPayment.plan, BillingPayment.texts_used, guests)
                          .join(BillingPayment, BillingPayment.event_id == Event.id)
                          .where(BillingPayment.workspace_id == workspace_id, Event.deleted_at.is_(None),
                                 STANDING_PAYMENT)
                          .order_by(Event.starts_at, Event.id, BillingPayment.applied_at)).all()
    known, seen, found = plans(ctx), set(), []
    for event_id, name, plan_name, texts, guest_count in rows:
        if event_id in seen or plan_name not in known:
            continue
        seen.add(event_id)
        plan = known[plan_name]
        found.append({"event_id": event_id, "name": name, "plan": plan.name,
                      "guests": {"used": guest_count, "limit": plan.guests},
                      "sms": {"used": texts, "limit": plan.sms}})
    return found


# --- asking the provider -----------------------------------------------------------


def backend(ctx):
    name = ctx.settings["billing.backend"]
    found = ctx.registry["billing.backends"].get(name) if name else None
    if found is None:
        raise Refusal(409, "billing_not_configured", "Payments are not set up on this site yet.")
    return found


def page_origins(ctx) -> tuple[str, ...]:
    """Where the billing backend's Checkout and portal pages are, for the
    billing page's form-action; none without a backend."""
    name = ctx.settings["billing.backend"]
    found = ctx.registry["billing.backends"].get(name) if name else None
    return tuple(getattr(found, "page_origins", ()))


def _asking(what: str):
    """Turn the provider's failures into the house's answers."""
    class Asking:
        def __enter__(self):
            return self

        def __exit__(self, kind, exc, tb):
            if isinstance(exc, BillingUnavailable):
                log.warning("billing provider unavailable while %s: %s", what, type(exc).__name__)
                raise Refusal(503, "billing_unavailable",
                              "The payment provider could not be reached; nothing was changed. Try again shortly.",
                              retry_after=30) from None
            if isinstance(exc, BillingRefused):
                raise Refusal(422, "billing_refused", f"The payment provider refused this: {exc}") from None
            return False
    return Asking()


def start_checkout(ctx, workspace, plan_name: str, email: str, success_url: str, cancel_url: str,
                   event_id: uuid.UUID | None = None) -> dict[str, str]:
    """A payment page for ``plan_name``; a one-time plan (Personal) is
    bought for one event, ``event_id``. A workspace already paying for a
    subscription is sent to the portal instead of a second checkout."""
    flags.require(ctx, BILLING_FLAG, workspace.id)
    plan = plans(ctx).get(plan_name)
    if plan is None or plan.billing == "free":
        raise Refusal(422, "validation_failed", f"{plan_name!r} is not a plan one can buy.", field="plan")
    if not plan.price_id:
        raise Refusal(422, "validation_failed", f"The {plan.label} plan has no price set up.", field="plan")
    if plan.billing == ONE_TIME:
        _check_event_to_buy(ctx, workspace.id, plan, event_id)
    else:
        event_id = None
    chosen = backend(ctx)
    row = ctx.db.get(Entitlement, workspace.id)
    if row is not None and row.subscription_id and row.status in LIVE and row.customer_id:
        with _asking("opening the portal"):
            return {"kind": "portal", "url": chosen.portal(row.customer_id, cancel_url)}
    subscription = plan.billing == MONTHLY
    trial = ctx.settings["billing.trial_days"] if subscription and not (row and row.trial_used) else 0
    request = CheckoutRequest(workspace_id=workspace.id, plan=plan.name, price_id=plan.price_id,
                              mode="subscription" if subscription else "payment",
                              customer_id=row.customer_id if row else None, customer_email=email,
                              trial_days=trial, success_url=success_url, cancel_url=cancel_url,
                              idempotency_key=str(uuid.uuid4()), event_id=event_id)
    with _asking("starting a checkout"):
        url = chosen.checkout(request)
    record(ctx, "billing.checkout_started", actor_id=ctx.actor_id, workspace_id=workspace.id,
           target_type="workspace", target_id=workspace.id, plan=plan.name, trial_days=trial,
           event_id=str(event_id) if event_id else None)
    return {"kind": "checkout", "url": url}


def _check_event_to_buy(ctx, workspace_id: uuid.UUID, plan: Plan, event_id: uuid.UUID | None) -> None:
    if event_id is None:
        raise Refusal(422, "validation_failed", f"The {plan.label} plan is bought for one event: choose it.",
                      field="event_id")
    if _event_of(ctx, workspace_id, event_id) is None:
        raise Refusal(422, "validation_failed", "That is not an event of this workspace.", field="event_id")
    if event_plan(ctx, event_id) is not None:
        raise Refusal(409, "already_paid", "This event is paid for already: nothing more to buy for it.",
                      field="event_id")


def open_portal(ctx, workspace, return_url: str) -> str:
    row = ctx.db.get(Entitlement, workspace.id)
    if row is None or not row.customer_id:
        raise Refusal(409, "no_customer", "This workspace has not paid for a plan yet: choose one first.")
    chosen = backend(ctx)
    with _asking("opening the portal"):
        return chosen.portal(row.customer_id, return_url)


def finish_checkout(ctx, workspace, session_id: str) -> str:
    """The success page: read the session back from the provider and apply
    it (its query string proves nothing)."""
    chosen = backend(ctx)
    with _asking("reading the checkout"):
        result = chosen.read_checkout(session_id)
    if result is None or result.workspace_id != workspace.id:
        raise Refusal(404, "not_found", "No such checkout for this workspace.")
    return apply_checkout(ctx, result, source="checkout")


def _subscription_of(ctx, workspace) -> Entitlement:
    row = ctx.db.get(Entitlement, workspace.id)
    if row is None or not row.subscription_id or row.status not in LIVE:
        raise Refusal(409, "no_subscription", "This workspace has no subscription to change.")
    return row


def preview_change(ctx, workspace, plan_name: str) -> dict[str, Any]:
    flags.require(ctx, BILLING_FLAG, workspace.id)
    plan = plans(ctx).get(plan_name)
    if plan is None or plan.billing != MONTHLY or not plan.price_id:
        raise Refusal(422, "validation_failed", f"{plan_name!r} is not a subscription plan.", field="plan")
    row = _subscription_of(ctx, workspace)
    with _asking("previewing a change"):
        proration = backend(ctx).preview_change(row.subscription_id, plan.price_id)
    direction = "upgrade" if RANK[plan.name] > RANK.get(row.plan, 0) else "downgrade"
    return {"plan": plan.name, "direction": direction, "amount_due": proration.amount_due,
            "currency": proration.currency}


def change_plan(ctx, workspace, plan_name: str) -> str:
    preview_change(ctx, workspace, plan_name)  # the same checks
    row = _subscription_of(ctx, workspace)
    with _asking("changing the plan"):
        state = backend(ctx).change_price(row.subscription_id, plans(ctx)[plan_name].price_id)
    return apply_subscription(ctx, state, source="plan_change", workspace_id=workspace.id)


def set_cancel(ctx, workspace, cancel: bool) -> str:
    row = _subscription_of(ctx, workspace)
    with _asking("cancelling" if cancel else "undoing the cancellation"):
        state = backend(ctx).set_cancel_at_period_end(row.subscription_id, cancel)
    return apply_subscription(ctx, state, source="cancel" if cancel else "undo_cancel", workspace_id=workspace.id)


# --- dunning and reconciliation --------------------------------------------------------


def _owners_emailed(ctx, workspace_id: uuid.UUID, template: str, context: dict[str, Any]) -> None:
    """The billing email ``template`` queued (through the outbox) to each owner."""
    from guestguard.notifications.services import queue_notification
    from guestguard.workspaces.models import Membership

    owners = ctx.db.scalars(select(Membership).where(Membership.workspace_id == workspace_id,
                                                     Membership.role == "owner"))
    for owner in owners:
        queue_notification(ctx, channel="email", recipient=owner.user.email, template=template,
                           context={**context, "billing_url": upgrade_url(ctx, workspace_id)},
                           workspace_id=workspace_id)


def _first_time(ctx, model, **key) -> bool:
    """Insert the notice row ``key``; False when it was there (sent before).
    RETURNING says whether this call inserted it (a rowcount is not reliable
    for ON CONFLICT DO NOTHING across drivers)."""
    first = next(iter(model.__table__.primary_key.columns))
    return ctx.db.scalar(_insert(ctx.db, model).values(**key, sent_at=utcnow()).on_conflict_do_nothing()
                         .returning(first)) is not None


def dunning_notice(ctx, workspace_id: uuid.UUID, invoice_id: str, attempt: int, amount_due: int,
                   currency: str) -> bool:
    """Email the owners once for this attempt of this invoice; False when
    it was sent before (a repeated webhook)."""
    if not _workspace_exists(ctx, workspace_id):
        return False
    if not _first_time(ctx, DunningNotice, invoice_id=invoice_id, attempt=attempt, workspace_id=workspace_id):
        return False
    _owners_emailed(ctx, workspace_id, "billing_payment_failed",
                    {"amount": money(amount_due, currency), "attempt": attempt,
                     "grace_days": ctx.settings["billing.past_due_grace_days"]})
    record(ctx, "billing.dunning_sent", workspace_id=workspace_id, target_type="invoice", target_id=invoice_id,
           attempt=attempt)
    return True


NOTICES = {"trial_ending": "billing_trial_ending", "refunded": "billing_refunded", "dispute": "billing_dispute"}


def owner_notice(ctx, workspace_id: uuid.UUID, kind: str, key: str, context: dict[str, Any]) -> bool:
    """Email the workspace's owners about a billing event of ``kind``
    (trial_ending, refunded, dispute) once per ``key``, through the outbox,
    audited; False when it was sent before or the workspace is gone."""
    if kind not in NOTICES:
        raise ValueError(f"unknown billing notice {kind!r}")
    if len(key) > 255:
        raise ValueError("a notice key is at most 255 characters")
    if not _workspace_exists(ctx, workspace_id):
        return False
    if not _first_time(ctx, BillingNotice, key=key, workspace_id=workspace_id, kind=kind):
        return False
    _owners_emailed(ctx, workspace_id, NOTICES[kind], context)
    record(ctx, f"billing.{kind}_notice_sent", workspace_id=workspace_id, target_type="billing_notice",
           target_id=key)
    return True


def money(amount: int, currency: str) -> str:
    """Minor units as the amount people read: 2900, "eur" -> "29.00 EUR"."""
    return f"{amount / 100:.2f} {currency.upper()}"


def paying_workspaces(ctx) -> list[tuple[uuid.UUID, str]]:
    return list(ctx.db.execute(select(Entitlement.workspace_id, Entitlement.subscription_id).where(
        Entitlement.subscription_id.is_not(None), Entitlement.status.in_(LIVE))).all())


def reconcile_one(ctx, workspace_id: uuid.UUID, subscription_id: str) -> bool:
    """Compare one workspace's snapshot with the provider; repair drift.
    True when it had drifted."""
    with _asking("reconciling"):
        state = backend(ctx).read_subscription(subscription_id)
    if state is None:
        row = ctx.db.get(Entitlement, workspace_id)
        state = SubscriptionState(workspace_id=workspace_id, customer_id=row.customer_id or "",
                                  subscription_id=subscription_id, price_id=row.price_id or "", status="canceled",
                                  period_start=None, period_end=None)
    note = apply_subscription(ctx, state, source="reconciliation", workspace_id=workspace_id)
    drifted = note.startswith("applied")
    if drifted:
        log.warning("billing drift repaired for workspace %s", workspace_id)
        record(ctx, "billing.reconciled", workspace_id=workspace_id, target_type="workspace", target_id=workspace_id)
    return drifted
