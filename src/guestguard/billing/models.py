"""What billing keeps: one entitlement snapshot per workspace (what every
limit check reads: never the provider), usage counters per workspace, meter
and period, the dunning notices sent, and feature flags."""
from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import Boolean, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from guestguard.db import Base, IdMixin, utcnow


class Entitlement(Base):
    """The workspace's plan as last applied from the billing provider. No row:
    the workspace is on Free."""

    __tablename__ = "billing_entitlements"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True)
    plan: Mapped[str] = mapped_column(String(32), default="free")
    # The provider's status: active, trialing, past_due, canceled, unpaid, incomplete...
    status: Mapped[str] = mapped_column(String(32), default="active")
    # The plan's limits when it was applied (None: unlimited).
    events_limit: Mapped[int | None] = mapped_column(Integer, default=None)
    guests_limit: Mapped[int | None] = mapped_column(Integer, default=None)
    sms_limit: Mapped[int | None] = mapped_column(Integer, default=None)
    branding: Mapped[bool] = mapped_column(Boolean, default=False)
    period_start: Mapped[dt.datetime | None] = mapped_column(default=None)
    period_end: Mapped[dt.datetime | None] = mapped_column(default=None)
    trial_end: Mapped[dt.datetime | None] = mapped_column(default=None)
    cancel_at_period_end: Mapped[bool] = mapped_column(Boolean, default=False)
    past_due_since: Mapped[dt.datetime | None] = mapped_column(default=None)
    customer_id: Mapped[str | None] = mapped_column(String(255), default=None, index=True)
    subscription_id: Mapped[str | None] = mapped_column(String(255), default=None, index=True)
    price_id: Mapped[str | None] = mapped_column(String(255), default=None)
    # A workspace's first subscription gets the trial; later ones do not.
    trial_used: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class UsageCounter(Base):
    """How much of a meter (events, sms) a workspace used in one period,
    counted by a conditional UPDATE so two requests at once never pass the
    limit together."""

    __tablename__ = "billing_usage"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True)
    meter: Mapped[str] = mapped_column(String(16), primary_key=True)
    period_start: Mapped[dt.datetime] = mapped_column(primary_key=True)
    used: Mapped[int] = mapped_column(Integer, default=0)


class BillingPayment(Base):
    """A one-time payment applied: a Personal purchase for one event, which
    then has that plan's guests and its own texts (``texts_used`` counted
    by a conditional UPDATE). The provider's id is unique, so a checkout
    seen twice is applied once. A payment refunded in full, or disputed
    (while the dispute is open, or once it is lost), is revoked: it buys
    nothing while ``revoked_at`` is set, and a dispute won clears it."""

    __tablename__ = "billing_payments"

    payment_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    plan: Mapped[str] = mapped_column(String(32))
    # The event it was bought for; None when that event was gone by the time
    # the payment arrived (the payment is kept, to be refunded).
    event_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("events.id", ondelete="SET NULL"), default=None, index=True)
    texts_used: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    applied_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    # Why: "refunded" or "disputed".
    revoked_reason: Mapped[str | None] = mapped_column(String(16), default=None)


class DunningNotice(Base):
    """A failed-payment email sent for one attempt of one invoice: its key
    is unique, so a repeated webhook sends nothing twice."""

    __tablename__ = "billing_dunning_notices"

    invoice_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    sent_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class BillingNotice(Base):
    """An email to a workspace's owners about its billing (a trial ending, a
    refund, a dispute), keyed by what it tells (``trial_ending:<subscription>:
    <trial end>``, ``refund:<charge>:<amount refunded>``, ``dispute:<id>``):
    the key is unique, so a repeated or retried webhook sends nothing twice."""

    __tablename__ = "billing_notices"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    sent_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class FeatureFlag(IdMixin, Base):
    """A feature switched on or off for one workspace (``flags.defaults``
    applies where no row says)."""

    __tablename__ = "feature_flags"

    name: Mapped[str] = mapped_column(String(64))
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    enabled: Mapped[bool] = mapped_column(Boolean)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("name", "workspace_id"),)
