"""Retention: events that ended more than ``privacy.retention_months`` ago
(or the workspace's own ``retention_months``) are anonymized by a nightly
job, every guest forgotten as a host's forget does, one event per
transaction: an interrupted run leaves each event whole or done, and the
next run goes on. The workspace's owners are told
``privacy.retention_notice_days`` before.
"""
from __future__ import annotations

import calendar
import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy import func, select

from guestguard.audit.services import record
from guestguard.db import lock_row, utcnow
from guestguard.events.models import Event, Guest, InvitationLink
from guestguard.notifications.services import queue_notification
from guestguard.permissions import OWNER
from guestguard.privacy.services import erase_guest, lock_links
from guestguard.workspaces.models import Membership, Workspace

NOTICE_TEMPLATE = "retention_notice"


def months_before(moment: dt.datetime, months: int) -> dt.datetime:
    """``moment`` moved back by whole calendar months (31 March less one
    month is 28 or 29 February)."""
    index = moment.year * 12 + moment.month - 1 - months
    year, month = divmod(index, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


@dataclass(frozen=True)
class Due:
    event_id: uuid.UUID
    workspace_id: uuid.UUID
    workspace: str
    name: str
    ended_at: dt.datetime
    anonymize_on: dt.datetime
    guests: int
    noticed: bool


def due_events(db, settings, now: dt.datetime, *, within: dt.timedelta = dt.timedelta()) -> list[Due]:
    """Events not yet anonymized whose time comes by ``now + within``,
    oldest first, with their guests still to forget."""
    ended = func.coalesce(Event.ends_at, Event.starts_at)
    default = settings["privacy.retention_months"]
    overrides = {value for value in db.scalars(select(Workspace.retention_months).distinct())
                 if value is not None}
    found: list[Due] = []
    for months in {default, *overrides}:
        cutoff = months_before(now + within, months)
        if months == default:
            applies = Workspace.retention_months.is_(None) | (Workspace.retention_months == months)
        else:
            applies = Workspace.retention_months == months
        guests = (select(func.count()).select_from(Guest)
                  .where(Guest.event_id == Event.id, Guest.forgotten_at.is_(None)).scalar_subquery())
        rows = db.execute(
            select(Event.id, Event.workspace_id, Workspace.name, Event.name, ended, guests,
                   Event.retention_notice_at)
            .join(Workspace, Workspace.id == Event.workspace_id)
            .where(applies, Event.anonymized_at.is_(None), ended < cutoff)).all()
        for event_id, workspace_id, workspace, name, ended_on, count, noticed in rows:
            # coalesce() of two columns comes back from SQLite without the column type's zone.
            ended_at = ended_on if ended_on.tzinfo else ended_on.replace(tzinfo=dt.UTC)
            anonymize_on = _months_after(ended_at, months)
            found.append(Due(event_id, workspace_id, workspace, name, ended_at, anonymize_on, int(count),
                             noticed is not None))
    return sorted(found, key=lambda due: (due.ended_at, due.event_id))


def _months_after(moment: dt.datetime, months: int) -> dt.datetime:
    return months_before(moment, -months)


def anonymize_event(ctx, event_id: uuid.UUID, now: dt.datetime | None = None) -> int:
    """Forget every guest of the event and mark it anonymized, in the
    caller's one transaction. Returns guests forgotten; 0 when another run
    did it first."""
    now = now or utcnow()
    lock_links(ctx.db, InvitationLink.event_id == event_id)
    lock_row(ctx.db, Event, event_id)
    event = ctx.db.get(Event, event_id, populate_existing=True)
    if event is None or event.anonymized_at is not None:
        return 0
    forgotten = 0
    for guest in ctx.db.scalars(select(Guest).where(Guest.event_id == event_id, Guest.forgotten_at.is_(None))
                                .order_by(Guest.id)).all():
        erase_guest(ctx, guest)
        forgotten += 1
    event.anonymized_at = now
    record(ctx, "event.anonymized", workspace_id=event.workspace_id, target_type="event", target_id=event.id,
           guests=forgotten, reason="retention")
    return forgotten


def send_notices(ctx, now: dt.datetime) -> int:
    """Tell each workspace's owners which events are anonymized within the
    notice period, once per event. Returns emails queued."""
    within = dt.timedelta(days=ctx.settings["privacy.retention_notice_days"])
    coming = [due for due in due_events(ctx.db, ctx.settings, now, within=within) if not due.noticed]
    by_workspace: dict[uuid.UUID, list[Due]] = {}
    for due in coming:
        by_workspace.setdefault(due.workspace_id, []).append(due)
    sent = 0
    for workspace_id, events in by_workspace.items():
        owners = ctx.db.execute(select(Membership.user_id).where(Membership.workspace_id == workspace_id,
                                                                 Membership.role == OWNER)).scalars().all()
        from guestguard.accounts.models import User

        for owner in ctx.db.scalars(select(User).where(User.id.in_(owners), User.deleted_at.is_(None))):
            queue_notification(ctx, channel="email", recipient=owner.email, template=NOTICE_TEMPLATE,
                               workspace_id=workspace_id,
                               context={"display_name": owner.display_name, "workspace": events[0].workspace,
                                        "events": [{"name": due.name,
                                                    "on": f"{due.anonymize_on.day} {due.anonymize_on:%B %Y}",
                                                    "guests": due.guests} for due in events]})
            sent += 1
        for due in events:
            ctx.db.get(Event, due.event_id).retention_notice_at = now
    return sent
