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
import itertools
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    LABEL_STYLE_TABLENAME_PLUS_COL,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal,
    literal_column,
    null,
    or_,
    select,
    true,
)

from guestguard import rls
from guestguard.accounts.devices import classify
from guestguard.accounts.tokens import hash_token, looks_like_token
from guestguard.context import context_of
from guestguard.db import Prepared, is_sqlite, utcnow
from guestguard.events.invitations import Answer, latest_answer
from guestguard.events.models import Event, Guest, InvitationLink
from guestguard.guard.flags import evaluate_pending
from guestguard.guard.models import ACCESS_KINDS, EXPIRED, OK, REVOKED, UNKNOWN, AccessEntry, AccessTally
from guestguard.guard.signals import prefix_of as network_of
from guestguard.workspaces.models import Workspace

log = logging.getLogger(__name__)

USER_AGENT_LIMIT = 512
BATCH_SECONDS = 0.5


@dataclass(slots=True)
class LinkRow:
    """The columns of an invitation link a guest's request uses."""

    id: uuid.UUID
    workspace_id: uuid.UUID
    event_id: uuid.UUID
    guest_id: uuid.UUID
    revoked_at: dt.datetime | None


@dataclass(slots=True)
class GuestRow:
    """The columns of the guest a guest's page shows; the answer fields are
    brought up to date when the request records a new one."""

    id: uuid.UUID
    workspace_id: uuid.UUID
    event_id: uuid.UUID
    name: str
    plus_ones_allowed: int
    response: str | None
    plus_ones_coming: int
    responded_at: dt.datetime | None
    opened_at: dt.datetime | None
    plus_one_names: list
    answers: dict
    waitlisted_at: dt.datetime | None


@dataclass(slots=True)
class EventRow:
    """The columns of the event a guest's page, answer and calendar file use."""

    id: uuid.UUID
    workspace_id: uuid.UUID
    name: str
    description: str
    venue: str
    starts_at: dt.datetime
    ends_at: dt.datetime | None
    timezone: str
    rsvp_deadline: dt.datetime | None
    host_message: str
    status: str
    host_name: str
    theme_colour: str
    cover_id: uuid.UUID | None
    ask_plus_one_names: bool
    questions: list
    capacity: int | None
    sequence: int
    deleted_at: dt.datetime | None


@dataclass(frozen=True)
class TokenUse:
    """What a token named: its outcome and, unless unknown, the link, its
    guest and event, and the guest's latest answer (None before the first)."""

    outcome: str
    link: LinkRow | None = None
    guest: GuestRow | None = None
    event: EventRow | None = None
    latest: Answer | None = None
    # Whether the look-up's statement logged the use too (``look_up``'s ``use``).
    logged: bool = False


# Built once per process, of tables rather than mapped classes, and run on
# the session's DBAPI connection (``db.Prepared``): the link, its guest,
# event and the use's outcome (revoked, expired or ok; no row is unknown),
# and the guest's latest answer folded in (``invitations.latest_answer``),
# exactly the columns the pages use, in one indexed statement (the token's
# hash is unique).
_links, _guests, _events = InvitationLink.__table__, Guest.__table__, Event.__table__
_workspaces, _log = Workspace.__table__, AccessEntry.__table__
OUTCOME = case((_links.c.revoked_at.is_not(None), REVOKED),
               (or_(_events.c.deleted_at.is_not(None), _workspaces.c.deleted_at.is_not(None)), EXPIRED),
               else_=OK)
FOUND = (
    select(*(_links.c[name] for name in LinkRow.__slots__), *(_guests.c[name] for name in GuestRow.__slots__),
           *(_events.c[name] for name in EventRow.__slots__), OUTCOME.label("outcome"),
           *latest_answer(_guests.c.id, *Answer.__slots__))
    .select_from(_links)
    .join(_guests, _guests.c.id == _links.c.guest_id)
    .join(_events, _events.c.id == _links.c.event_id)
    .join(_workspaces, _workspaces.c.id == _links.c.workspace_id)
    # A removed guest's link opens nothing at once, like a link never issued.
    .where(_links.c.token_hash == bindparam("token_hash"), _guests.c.removed_at.is_(None))
    # FOR KEY SHARE OF the link (the lock the access log's foreign key takes
    # anyway, taken first): a use waits for a forget deleting the link and
    # then finds none, rather than logging against a link that is gone.
    .with_for_update(read=True, key_share=True, of=_links)
    .set_label_style(LABEL_STYLE_TABLENAME_PLUS_COL)
)
LOOK_UP = Prepared(FOUND)
SPANS = tuple(itertools.accumulate((len(LinkRow.__slots__), len(GuestRow.__slots__), len(EventRow.__slots__), 1)))
# What a use's row takes from the request rather than from the look-up.
USE = ("id", "at", "kind", "ip", "network", "user_agent", "device", "automated")
# Built once per process; every column is given.
LOG_USE = Prepared(insert(_log))


def _looked_up_and_logged():
    """The look-up with the link's workspace opened and the use's row
    written by the same statement (data-modifying WITHs: PostgreSQL's, not
    SQLite's): every guest's request is one statement.

    ``opened`` (``guestguard_open``, materialized: run once) comes first
    because the look-up is a LATERAL subquery on its result, which
    PostgreSQL can only run after it (OFFSET 0 keeps the planner from
    merging the subquery into the outer query): the look-up's row-security
    checks see the workspace the function opened. Were they ever to run
    first, they would find nothing, never more. The use's row is written
    whether or not the token names a link: the look-up joined to one row,
    the outcome ``unknown`` when it found none."""
    opened = (select(rls.open_credential_sql(_links.c.token_hash, bindparam("token_hash")).label("workspace_id"))
              .cte("opened").prefix_with("MATERIALIZED"))
    looked = FOUND.where(_links.c.workspace_id == opened.c.workspace_id).offset(literal_column("0")).lateral("looked")
    found = select(*looked.c).select_from(opened).join(looked, true()).cte("found")
    given = {name: bindparam(name, type_=_log.c[name].type) for name in USE}
    row = {**given, "workspace_id": found.c.invitation_links_workspace_id,
           "event_id": found.c.invitation_links_event_id, "guest_id": found.c.invitation_links_guest_id,
           "link_id": found.c.invitation_links_id, "outcome": func.coalesce(found.c.outcome, UNKNOWN),
           "evaluated_at": null()}
    one = select(literal(1).label("one")).subquery("one")
    logged = insert(_log).from_select(list(row), select(*row.values()).select_from(one.outerjoin(found, true())))
    return Prepared(select(*found.c).add_cte(logged.cte("logged")), writes=True)


LOOK_UP_LOGGED = _looked_up_and_logged()


def look_up(db, raw: object, use: dict[str, Any] | None = None) -> TokenUse:
    """One query: the link a token names, revoked or not, and whether it can
    be used. A link of a deleted event or workspace has ``expired``. Given
    the ``use`` to log (``use_of``), the same statement logs it on
    PostgreSQL, and the answer says so (``logged``)."""
    if not looks_like_token(raw):
        return TokenUse(UNKNOWN)
    token_hash = hash_token(raw)
    return _found(db, token_hash, use)


def _found(db, token_hash: str, use: dict[str, Any] | None) -> TokenUse:
    """The look-up's statement run: on PostgreSQL given a use, the one that
    opens the link's workspace and logs the use too (``LOOK_UP_LOGGED``),
    keeping the workspace in the session's scope when it found the link (a
    removed guest's link, found by no look-up, adds nothing to it); else
    the link's workspace opened (PostgreSQL), then the plain look-up."""
    if use is not None and not is_sqlite(db):
        row = LOOK_UP_LOGGED.first(db, {"token_hash": token_hash, **use})
        if row is None:
            return TokenUse(UNKNOWN, logged=True)
        found = found_in(row, True)
        rls.opened(db, found.link.workspace_id)
        return found
    # The link's workspace, and only that, opens to this transaction.
    rls.open_credential(db, _links.c.token_hash, token_hash)
    row = LOOK_UP.first(db, {"token_hash": token_hash})
    return TokenUse(UNKNOWN) if row is None else found_in(row, False)


def found_in(row: tuple, logged: bool) -> TokenUse:
    """A look-up's row as the use it names: outcome, link, guest, event and
    latest answer."""
    links, guests, events, latest = SPANS
    answer = Answer(*row[latest:]) if row[latest] is not None else None
    return TokenUse(row[events], LinkRow(*row[:links]), GuestRow(*row[links:guests]), EventRow(*row[guests:events]),
                    answer, logged)


def use_of(ctx, kind: str) -> dict[str, Any] | None:
    """What a use's row in the log says of the request (``USE``); None when
    the guard is off, which logs nothing."""
    if not ctx.settings["guard.enabled"]:
        return None
    user_agent = user_agent_of(ctx)
    device = classify(user_agent)
    ip = ctx.client_ip
    return {"id": uuid.uuid4(), "at": utcnow(), "kind": kind, "ip": ip[:45], "network": network_of(ip),
            "user_agent": user_agent, "device": device.name, "automated": device.automated}


def log_use(db, use: dict[str, Any], found: TokenUse) -> None:
    """The use's row as one plain INSERT: no ORM object, nothing left for the
    commit to flush."""
    link = found.link
    LOG_USE.write(db, {**use, "workspace_id": link.workspace_id if link else None,
                       "event_id": link.event_id if link else None, "guest_id": link.guest_id if link else None,
                       "link_id": link.id if link else None, "outcome": found.outcome, "evaluated_at": None})


def record(ctx, found: TokenUse, kind: str) -> uuid.UUID | None:
    """Log one use and queue the rules on it; nothing when the guard is off.
    Returns the new entry's id."""
    use = use_of(ctx, kind)
    keep(ctx, use, found)
    return use["id"] if use is not None else None


def keep(ctx, use: dict[str, Any] | None, found: TokenUse) -> None:
    """Log ``use`` unless its look-up did (``found.logged``), and queue the
    rules on it when it named a link; nothing when the guard is off (no use)."""
    if use is None:
        return
    if not found.logged:
        log_use(ctx.db, use, found)
    if found.link is not None:
        schedule_rules(ctx)


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


def use_token(ctx, raw: object, kind: str) -> TokenUse | None:
    """What a live token names (link, guest, event, latest answer), with the
    use logged; None for any unusable token (after counting it against the
    caller's ``invalid_link`` limit, which raises RateLimited when over).
    Past the limit nothing stays logged: a use the look-up logged (PostgreSQL,
    a well-formed token) is rolled back with the request's transaction, and
    any other is not written."""
    use = use_of(ctx, kind)
    found = look_up(ctx.db, raw, use)
    if found.outcome != OK:
        ctx.limit("invalid_link")
    keep(ctx, use, found)
    if found.outcome != OK:
        return None
    return found


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
