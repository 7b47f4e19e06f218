"""The access log: every use of an invitation token (page view, answer,
calendar download, check-in) with its time, address, browser and outcome.

The guest's request writes one row in its own transaction and queues the
access rules for after the commit (``flags.evaluate_pending``, which takes
every use logged in the last half second at once), so the rules never slow
the guest's page. Unusable tokens are logged too (outcome
``revoked``, ``expired`` or ``unknown``); a client presenting too many of
them is refused with 429 (``ratelimit.invalid_link``), which also bounds what
a scanner can write here.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from dataclasses import dataclass

from sqlalchemy import delete, func, select

from guestguard.accounts.devices import classify
from guestguard.accounts.tokens import hash_token, looks_like_token
from guestguard.context import context_of
from guestguard.db import utcnow
from guestguard.events.models import Event, Guest, InvitationLink
from guestguard.guard.flags import evaluate_pending
from guestguard.guard.models import ACCESS_KINDS, EXPIRED, OK, REVOKED, UNKNOWN, AccessEntry, AccessTally
from guestguard.guard.signals import prefix_of as network_of
from guestguard.workspaces.models import Workspace

log = logging.getLogger(__name__)

USER_AGENT_LIMIT = 512
BATCH_SECONDS = 0.5


@dataclass(frozen=True)
class TokenUse:
    """What a token named: its outcome and, unless unknown, the link."""

    outcome: str
    link: InvitationLink | None = None
    guest: Guest | None = None
    event: Event | None = None


def look_up(db, raw: object) -> TokenUse:
    """One query: the link a token names, revoked or not, and whether it can
    be used. A link of a deleted event or workspace has ``expired``."""
    if not looks_like_token(raw):
        return TokenUse(UNKNOWN)
    row = db.execute(
        select(InvitationLink, Guest, Event, Workspace.deleted_at)
        .join(Guest, Guest.id == InvitationLink.guest_id)
        .join(Event, Event.id == InvitationLink.event_id)
        .join(Workspace, Workspace.id == InvitationLink.workspace_id)
        .where(InvitationLink.token_hash == hash_token(raw))
    ).first()
    if row is None:
        return TokenUse(UNKNOWN)
    link, guest, event, workspace_deleted_at = row
    if link.revoked_at is not None:
        outcome = REVOKED
    elif event.deleted_at is not None or workspace_deleted_at is not None:
        outcome = EXPIRED
    else:
        outcome = OK
    return TokenUse(outcome, link, guest, event)


def record(ctx, found: TokenUse, kind: str) -> AccessEntry | None:
    """Log one use and queue the rules on it; nothing when the guard is off."""
    if not ctx.settings["guard.enabled"]:
        return None
    user_agent = user_agent_of(ctx)
    device = classify(user_agent)
    ip = ctx.client_ip
    link = found.link
    # The id is chosen here, so the row goes out with the commit instead of
    # costing a round trip of its own.
    entry = AccessEntry(
        id=uuid.uuid4(), workspace_id=link.workspace_id if link else None, event_id=link.event_id if link else None,
        guest_id=link.guest_id if link else None, link_id=link.id if link else None,
        kind=kind, outcome=found.outcome, ip=ip[:45], network=network_of(ip), user_agent=user_agent,
        device=device.name, automated=device.automated)
    ctx.db.add(entry)
    if link is not None:
        schedule_rules(ctx)
    return entry


def schedule_rules(ctx) -> None:
    """Have the rules run over the uses logged meanwhile, BATCH_SECONDS from
    now: one task a process for each such slice of time, however many uses
    it holds (a periodic run catches any a slice missed)."""
    registry = ctx.registry
    if registry["huey"].immediate:
        ctx.enqueue(evaluate_pending)
        return
    slot = int(time.monotonic() / BATCH_SECONDS)
    if registry.get("guard.scheduled_slot") == slot:
        return
    registry["guard.scheduled_slot"] = slot
    ctx.enqueue(evaluate_pending, delay=BATCH_SECONDS)


def use_token(ctx, raw: object, kind: str) -> tuple[InvitationLink, Guest, Event] | None:
    """The live link, guest and event a token names, with the use logged;
    None for any unusable token (after counting it against the caller's
    ``invalid_link`` limit, which raises RateLimited when over)."""
    found = look_up(ctx.db, raw)
    if found.outcome != OK:
        ctx.limit("invalid_link")
    record(ctx, found, kind)
    if found.outcome != OK:
        return None
    return found.link, found.guest, found.event


def user_agent_of(ctx) -> str:
    return ctx.user_agent.replace("\x00", "")[:USER_AGENT_LIMIT]


def is_person(ctx) -> bool:
    """Whether the caller looks driven by a person, not a program (a link
    preview, a mail scanner, a crawler: those must not count as the guest
    opening the invitation); ``guard.signals`` knows them by user agent and
    by the address ranges their operators publish."""
    return ctx.registry["guard.signals"].fetcher(user_agent_of(ctx), ctx.client_ip) is None


# --- reading the log ---------------------------------------------------------------


def recent_uses(db, guest_id: uuid.UUID, limit: int = 20) -> list[AccessEntry]:
    """The guest's latest uses of any of their links, newest first."""
    return list(db.scalars(select(AccessEntry).where(AccessEntry.guest_id == guest_id)
                           .order_by(AccessEntry.at.desc(), AccessEntry.id.desc()).limit(limit)))


def totals(db, guest_id: uuid.UUID) -> dict[str, int]:
    """Uses of the guest's links since the first: the kept log plus the
    tallies of purged rows (two queries)."""
    counts = dict.fromkeys(ACCESS_KINDS, 0) | {"unusable": 0, "automated": 0}
    kept = db.execute(select(AccessEntry.kind, AccessEntry.outcome, AccessEntry.automated, func.count())
                      .where(AccessEntry.guest_id == guest_id)
                      .group_by(AccessEntry.kind, AccessEntry.outcome, AccessEntry.automated))
    purged = db.execute(select(AccessTally.kind, AccessTally.outcome, AccessTally.automated,
                               func.sum(AccessTally.uses))
                        .where(AccessTally.guest_id == guest_id)
                        .group_by(AccessTally.kind, AccessTally.outcome, AccessTally.automated))
    for kind, outcome, automated, count in [*kept, *purged]:
        if automated:
            counts["automated"] += count
        elif outcome != OK:
            counts["unusable"] += count
        else:
            counts[kind] += count
    return counts


# --- retention ---------------------------------------------------------------------


def purge(request, now: dt.datetime | None = None) -> int:
    """Periodic task: roll the log's rows older than ``guard.retention_days``
    up into per-day tallies, then delete them; whole days at a time, one
    transaction each, so a day is counted once even if a run is cut short.
    Returns rows purged."""
    ctx = context_of(request)
    now = now or utcnow()
    days = ctx.registry.settings["guard.retention_days"]
    cutoff = dt.datetime.combine((now - dt.timedelta(days=days)).date(), dt.time(), tzinfo=dt.UTC)
    purged = 0
    while True:
        with ctx.tm:
            oldest = ctx.db.scalar(select(func.min(AccessEntry.at)).where(AccessEntry.at < cutoff))
            if oldest is None:
                break
            start = dt.datetime.combine(oldest.date(), dt.time(), tzinfo=dt.UTC)
            end = min(start + dt.timedelta(days=1), cutoff)
            in_day = (AccessEntry.at >= start) & (AccessEntry.at < end)
            keys = (AccessEntry.workspace_id, AccessEntry.event_id, AccessEntry.guest_id, AccessEntry.kind,
                    AccessEntry.outcome, AccessEntry.automated)
            groups = ctx.db.execute(select(*keys, func.count()).where(in_day).group_by(*keys)).all()
            ctx.db.add_all(AccessTally(workspace_id=workspace_id, event_id=event_id, guest_id=guest_id,
                                           day=start.date(), kind=kind, outcome=outcome, automated=automated,
                                           uses=count)
                               for workspace_id, event_id, guest_id, kind, outcome, automated, count in groups)
            deleted = ctx.db.execute(delete(AccessEntry).where(in_day)
                                         .execution_options(synchronize_session=False)).rowcount
            counted = sum(group[-1] for group in groups)
            if deleted != counted:
                # Another purge took these rows first: its tallies stand, ours go.
                ctx.tm.abort()
                log.info("access log: another purge is at work on %s; leaving it that day", start.date())
                return purged
            purged += deleted
    if purged:
        log.info("access log: %d use(s) older than %d days purged into daily tallies", purged, days)
    return purged
