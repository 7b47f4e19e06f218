"""What sending the invitations will do, shown before it is done: how many go
by email and by text, who is skipped and why, the message as guests will
read it, and a test copy to the host's own address."""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select

from guestguard.accounts.models import User
from guestguard.audit.services import record
from guestguard.db import utcnow
from guestguard.events.invitations import (
    EMAIL,
    RESEND_AFTER,
    SMS,
    TEMPLATE,
    guest_message_context,
    lock_sends,
    plan_sends,
)
from guestguard.events.models import Event, Guest
from guestguard.notifications.models import Notification
from guestguard.notifications.rendering import Rendered
from guestguard.notifications.services import queue_notification
from guestguard.notifications.suppression import GUEST_MESSAGE

# Each guest's own link stands where the preview shows this.
UNSUBSCRIBE_STAND_IN = "(each guest's own unsubscribe link)"


@dataclass(frozen=True)
class SendPreview:
    by_channel: dict[str, int]
    # reason -> the names skipped for it, by name
    skipped: dict[str, list[str]] = field(default_factory=dict)
    email: Rendered | None = None
    text: Rendered | None = None

    @property
    def total(self) -> int:
        return sum(self.by_channel.values())


def preview_url(ctx, event: Event) -> str:
    """The invitation page as guests see it, for the host (it records nothing)."""
    return ctx.url("event_invitation_preview", event_id=event.id)


def sample_guest(event: Event, name: str) -> Guest:
    """A guest that is never stored, for a message to show."""
    return Guest(name=name, plus_ones_allowed=event.default_plus_ones, plus_ones_coming=0)


def render_invitation(ctx, event: Event, guest: Guest, channel: str, **extra: str) -> Rendered:
    """The invitation ``guest`` would get on ``channel``, its link leading
    to the host's preview of the invitation page."""
    context = {**guest_message_context(ctx, event, guest), "invitation_url": preview_url(ctx, event), **extra}
    if channel == EMAIL:
        context.setdefault("unsubscribe_url", UNSUBSCRIBE_STAND_IN)
    return ctx.registry["notifications.renderer"].render(channel, TEMPLATE, context)


def preview_send_all(ctx, event: Event) -> SendPreview:
    """What send-all would do now; sends and stores nothing."""
    planned, skipped = plan_sends(ctx, event)
    by_channel: dict[str, int] = {}
    for _, channel in planned:
        by_channel[channel] = by_channel.get(channel, 0) + 1
    reasons: dict[str, list[str]] = {}
    for item in skipped:
        reasons.setdefault(item["reason"], []).append(item["name"])
    first = {channel: guest for guest, channel in reversed(planned)}  # the first guest, by name, per channel
    email_guest = first.get(EMAIL) or sample_guest(event, "Grace")
    return SendPreview(
        by_channel=by_channel, skipped=reasons,
        email=render_invitation(ctx, event, email_guest, EMAIL),
        text=render_invitation(ctx, event, first[SMS], SMS) if SMS in first else None)


def send_test(ctx, event: Event) -> bool:
    """Queue the invitation email, marked as a test, to the acting host's
    own address, as a guest would get it. False when one went there moments
    ago (a double click): nothing new is queued."""
    user = ctx.db.get(User, ctx.actor_id)
    lock_sends(ctx.db, event)
    recent = ctx.db.scalar(select(func.count(Notification.id)).where(
        Notification.workspace_id == event.workspace_id, Notification.template == TEMPLATE,
        Notification.channel == EMAIL, Notification.recipient == user.email,
        Notification.created_at > utcnow() - RESEND_AFTER))
    if recent:
        return False
    context = {**guest_message_context(ctx, event, sample_guest(event, user.display_name)),
               "invitation_url": preview_url(ctx, event), "test": "yes"}
    notification = queue_notification(ctx, channel=EMAIL, recipient=user.email, template=TEMPLATE,
                                      workspace_id=event.workspace_id, context=context,
                                      about={"event_id": str(event.id)}, kind=GUEST_MESSAGE)
    record(ctx, "invitation.test_sent", actor_id=ctx.actor_id, workspace_id=event.workspace_id,
           target_type="event", target_id=event.id, notification_id=str(notification.id))
    return True

