"""Quiet detection of shared invitation links: the access rules run on each
use in the worker, and what they find becomes a flag for the host.

One open flag per guest, link and rule: later findings of the same rule
update its evidence when they are at least as strong. A pattern the host
dismissed is not raised again for the same devices: only a device the
dismissed flags did not see brings the rule back for that guest.
Revoking and reissuing the link resolves the guest's open flags.
"""
from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import functools
import itertools
import json
import logging
import uuid

from prometheus_client import Counter
from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from guestguard.activity import feed
from guestguard.audit.services import record
from guestguard.context import context_of
from guestguard.db import lock_row, utcnow
from guestguard.events import invitations
from guestguard.events.models import Event, Guest, InvitationLink, is_listed
from guestguard.events.services import EventsError
from guestguard.guard.feedback import REVIEWS
from guestguard.guard.models import FLAG_DISMISSED, FLAG_OPEN, FLAG_RESOLVED, OK, VIEW, AccessEntry, Flag
from guestguard.guard.rules import Parties
from guestguard.guard.signals import Signals, enrich, phone_country
from guestguard.pagination import DESCENDING, ID, TIME, Key, Keyset
from guestguard.plugins import AccessHistory, AccessUse, Finding
from guestguard.workspaces.models import Workspace

log = logging.getLogger(__name__)

DISMISSED_AGAIN = Counter("guard_findings_dismissed_before_total", "Findings not raised because the host had "
                          "dismissed the same rule for the guest's same devices.", ["rule"])
RULE_ERRORS = Counter("guard_rule_errors_total", "Access rules that raised and were skipped.", ["rule"])
FLAGS_RAISED = Counter("guard_flags_raised_total", "New flags the access rules raised, by rule (an open flag "
                       "made stronger is not counted again).", ["rule"])
HISTORY_LIMIT = 1000


# --- running the rules ---------------------------------------------------------


# What a rule sees of a use, read as plain rows (no ORM objects: a busy
# link's history is hundreds of them).
USE_COLUMNS = (AccessEntry.id, AccessEntry.at, AccessEntry.kind, AccessEntry.outcome, AccessEntry.ip,
               AccessEntry.network, AccessEntry.device, AccessEntry.user_agent, AccessEntry.automated)


def as_use(entry: AccessEntry) -> AccessUse:
    return AccessUse(*(getattr(entry, column.key) for column in USE_COLUMNS))


BATCH = 500
_AT = AccessEntry.__table__.c.at.type
_PENDING = (select(AccessEntry.id)
            .where(AccessEntry.evaluated_at.is_(None), AccessEntry.link_id.is_not(None))
            .order_by(AccessEntry.at).limit(BATCH).with_for_update(skip_locked=True))
CLAIM = (update(AccessEntry)
         .where(AccessEntry.id.in_(_PENDING.scalar_subquery()), AccessEntry.evaluated_at.is_(None))
         .values(evaluated_at=bindparam("now", type_=_AT)).returning(AccessEntry.id)
         .execution_options(synchronize_session=False))


def claim_pending(db) -> list[uuid.UUID]:
    """Mark up to BATCH uses no rule has seen as taken, oldest first, and
    return them: one statement, so two workers never take the same use (on
    PostgreSQL the second skips rows the first has locked)."""
    return list(db.scalars(CLAIM, {"now": utcnow()}))


def evaluate_pending(request) -> list[Flag]:
    """Task: score every use logged since the last run with every enabled
    rule, a link's uses in order against one read of its history. Uses are
    claimed in the same transaction as the flags they raise: a worker that
    dies leaves them to the next run. A rule that raises is logged and
    skipped; the others still run. Returns the flags raised or strengthened."""
    ctx = context_of(request)
    db = ctx.db
    claimed = claim_pending(db)
    if not claimed:
        return []
    if len(claimed) == BATCH:
        ctx.enqueue(evaluate_pending)  # more are waiting
    rows = db.execute(select(AccessEntry, InvitationLink, Guest, Workspace.guard_sensitivity)
                      .join(InvitationLink, InvitationLink.id == AccessEntry.link_id)
                      .join(Guest, Guest.id == AccessEntry.guest_id)
                      .join(Workspace, Workspace.id == AccessEntry.workspace_id)
                      .where(AccessEntry.id.in_(claimed))
                      .order_by(AccessEntry.link_id, AccessEntry.at, AccessEntry.id)).all()
    window: dt.timedelta = ctx.registry["guard.history_window"]
    signals: Signals = ctx.registry["guard.signals"]
    flags = []
    for _, grouped in itertools.groupby(rows, key=lambda row: row[1].id):
        group = list(grouped)
        link, guest, sensitivity = group[0][1], group[0][2], group[0][3]
        earliest = group[0][0].at - window
        uses = [enrich(signals, AccessUse(*row))
                for row in history_of(db, link.id, group[0][0].at, group[-1][0].at, window)]
        known = {use.id: use for use in uses}
        for entry, *_ in group:
            use = known.get(entry.id) or enrich(signals, as_use(entry))
            if use.automated and not entry.automated:
                entry.automated = True  # a program the request took for a person: logged as one from now on
        learned = functools.cache(functools.partial(known_devices_of, db, guest.id, earliest, signals))
        times = [use.at for use in uses]
        for entry, *_ in group:
            # The uses in the window up to this one (the same moment
            # included), the latest HISTORY_LIMIT of them, by position in
            # the ordered history rather than by a pass over all of it.
            end = bisect.bisect_right(times, entry.at)
            start = max(bisect.bisect_left(times, entry.at - window), end - HISTORY_LIMIT - 1)
            recent = [u for u in uses[start:end] if u.id != entry.id]
            history = AccessHistory(use=known.get(entry.id) or enrich(signals, as_use(entry)),
                                    recent=tuple(recent[-HISTORY_LIMIT:]), window=window,
                                    link_revoked_at=link.revoked_at, plus_ones=guest.plus_ones_coming or 0,
                                    phone_country=phone_country(guest.phone),
                                    load_first_open=functools.partial(first_open_of, db, entry, signals),
                                    sensitivity=sensitivity, load_known_devices=learned)
            flags += run_rules(ctx, history, guest, link)
    return flags


# The statement of ``history_of``, built once: the uses within the window
# before the batch's first use of the link (the latest HISTORY_LIMIT of
# them: the rules see no more), then all up to its last.
_CUTOFF = (select(AccessEntry.at)
           .where(AccessEntry.link_id == bindparam("link_id"), AccessEntry.at < bindparam("first", type_=_AT))
           .order_by(AccessEntry.at.desc()).offset(HISTORY_LIMIT - 1).limit(1).scalar_subquery())
HISTORY = (select(*USE_COLUMNS)
           .where(AccessEntry.link_id == bindparam("link_id"), AccessEntry.at >= bindparam("since", type_=_AT),
                  AccessEntry.at >= func.coalesce(_CUTOFF, bindparam("since", type_=_AT)),
                  AccessEntry.at <= bindparam("last", type_=_AT))
           .order_by(AccessEntry.at, AccessEntry.id))


def history_of(db, link_id: uuid.UUID, first: dt.datetime, last: dt.datetime, window: dt.timedelta) -> list:
    """The uses of a link the rules may see for the batch's uses from
    ``first`` to ``last``: those within ``window`` before ``first`` (at
    most HISTORY_LIMIT of them, the latest: the rules see no more), and all
    from ``first`` to ``last``, in order. A link used thousands of times in
    its window costs the same to judge as one used a thousand times."""
    return db.execute(HISTORY, {"link_id": link_id, "first": first, "since": first - window, "last": last}).all()


def sweep_pending(request) -> list[Flag]:
    """Periodic: uses no batch took (the request that logged one scheduled
    nothing because its process had already scheduled that half second, and
    that task ran before it committed; or a task was lost)."""
    return evaluate_pending(request)


def first_open_of(db, entry: AccessEntry, signals: Signals) -> AccessUse | None:
    """The first time a person opened the link, unless ``entry`` is it."""
    first = db.execute(
        select(*USE_COLUMNS)
        .where(AccessEntry.link_id == entry.link_id, AccessEntry.kind == VIEW, AccessEntry.outcome == OK,
               AccessEntry.automated.is_(False))
        .order_by(AccessEntry.at, AccessEntry.id).limit(1)).first()
    return enrich(signals, AccessUse(*first)) if first is not None and first.id != entry.id else None


KNOWN_LIMIT = 200  # distinct devices and addresses a guest's earlier uses are learned from


def known_devices_of(db, guest_id: uuid.UUID, before: dt.datetime, signals: Signals) -> frozenset[str]:
    """The guest's own devices, learned from their whole history before
    ``before``: the party of the first person to open any of the guest's
    links (that device, and every device seen with it on one home
    network), while no flag questioned them (uses from the first flag the
    host did not dismiss on are not learned: they may be someone else's).
    A friend who opened a forwarded copy last week is not learned."""
    questioned = (select(func.min(Flag.created_at))
                  .where(Flag.guest_id == guest_id, Flag.status != FLAG_DISMISSED).scalar_subquery())
    first_at = func.min(AccessEntry.at)
    columns = (AccessEntry.kind, AccessEntry.outcome, AccessEntry.ip, AccessEntry.network, AccessEntry.device,
               AccessEntry.user_agent, AccessEntry.automated)
    rows = db.execute(
        select(first_at, *columns)
        .where(AccessEntry.guest_id == guest_id, AccessEntry.at < before, AccessEntry.outcome == OK,
               AccessEntry.automated.is_(False), or_(questioned.is_(None), AccessEntry.at < questioned))
        .group_by(*columns).order_by(first_at).limit(KNOWN_LIMIT)).all()
    uses = [use for use in (enrich(signals, AccessUse(uuid.uuid4(), *row)) for row in rows) if not use.automated]
    if not uses:
        return frozenset()
    parties = Parties(uses)
    guest = parties.of(uses[0])
    return frozenset(use.handset or use.device for use in uses if parties.of(use) == guest)


def run_rules(ctx, history: AccessHistory, guest: Guest, link: InvitationLink) -> list[Flag]:
    flags = []
    for rule in ctx.registry["guard.rules"]:
        try:
            finding = checked(rule.evaluate(history))
            if finding is None:
                continue
            finding = dataclasses.replace(finding, details={**finding.details, SEEN: seen_in(history)})
            with ctx.db.begin_nested():
                flag = raise_flag(ctx, guest, link, rule.name, finding)
        except Exception:
            RULE_ERRORS.labels(rule=rule.name).inc()
            log.exception("access rule %s failed on use %s; skipped", rule.name, history.use.id)
            continue
        if flag is not None:
            flags.append(flag)
    return flags


SEEN = "devices_seen"  # in a flag's details: who used the link in the rules' window


def seen_in(history: AccessHistory) -> list[str]:
    """The devices (and programs) that used the link in the history's
    window: what a host who dismisses the flag has seen and judged."""
    return sorted({f"program: {use.fetcher.name}" if use.fetcher is not None else (use.handset or use.device)
                   for use in (*history.recent, history.use)})


def checked(finding) -> Finding | None:
    """A rule's answer as a Finding we can store; TypeError or ValueError
    for anything else (a plugin's mistake, reported like an exception)."""
    if finding is None:
        return None
    if not isinstance(finding, Finding):
        raise TypeError(f"a rule returned {type(finding).__name__}, not a Finding or None")
    details = json.loads(json.dumps(dict(finding.details)))  # only what JSON keeps
    score = int(finding.score)
    evidence = finding.evidence
    if not isinstance(evidence, str) or not evidence.strip():
        raise ValueError("a finding needs its evidence in words")
    return Finding(score=max(1, min(100, score)), evidence=evidence.strip()[:2000], details=details)


def raise_flag(ctx, guest: Guest, link: InvitationLink, rule: str, finding: Finding) -> Flag | None:
    """Record a finding: a new flag, a stronger open one, or nothing when the
    host already dismissed the same pattern for this guest (the rule, from
    devices all seen in a flag they dismissed: more uses or networks of
    those devices are not news, a new device is). Two workers racing on one
    link meet at the unique index on open flags: the loser strengthens the
    winner's."""
    lock_guest(ctx.db, guest.id)
    score, evidence, details = finding.score, finding.evidence, dict(finding.details)
    previous = _latest_flag(ctx.db, guest, link, rule)
    if previous is not None and previous.status == FLAG_OPEN:
        return _strengthen(previous, score, evidence, details)
    if previous is not None and previous.status == FLAG_RESOLVED and score <= previous.score:
        return None  # the link it was about was replaced; only stronger evidence is news
    if _dismissed_already(ctx.db, guest, rule, details.get(SEEN)):
        DISMISSED_AGAIN.labels(rule=rule).inc()
        return None
    now = utcnow()
    flag = Flag(workspace_id=guest.workspace_id, event_id=guest.event_id, guest_id=guest.id, link_id=link.id,
                rule=rule, score=score, evidence=evidence, details=details, created_at=now, updated_at=now)
    try:
        with ctx.db.begin_nested():
            ctx.db.add(flag)
    except IntegrityError:
        return _strengthen(_latest_flag(ctx.db, guest, link, rule), score, evidence, details)
    recount(ctx.db, guest.id)
    FLAGS_RAISED.labels(rule=rule).inc()
    record(ctx, "access.flagged", workspace_id=guest.workspace_id, target_type="guest", target_id=guest.id,
           flag_id=str(flag.id), rule=rule, score=score)
    feed.add(ctx, workspace_id=guest.workspace_id, event_id=guest.event_id, guest_id=guest.id,
                 kind="access.flagged", summary=f"{guest.name}'s link was flagged: {evidence}",
                 data={"flag_id": str(flag.id), "rule": rule, "score": score})
    ctx.emit("access.flagged", {"event_id": str(guest.event_id), "guest_id": str(guest.id),
                                    "flag_id": str(flag.id), "rule": rule, "score": score,
                                    "evidence": evidence}, guest.workspace_id)
    return flag


def _dismissed_already(db, guest: Guest, rule: str, seen: list[str] | None) -> bool:
    """Whether the host dismissed a flag of ``rule`` for the guest whose
    devices include every one of ``seen``."""
    if not seen:
        return False
    dismissed = db.scalars(select(Flag.details).where(Flag.guest_id == guest.id, Flag.rule == rule,
                                                      Flag.status == FLAG_DISMISSED))
    judged = {device for details in dismissed for device in (details or {}).get(SEEN) or ()}
    return set(seen) <= judged


def _latest_flag(db, guest: Guest, link: InvitationLink, rule: str) -> Flag | None:
    return db.scalar(select(Flag).where(Flag.guest_id == guest.id, Flag.link_id == link.id, Flag.rule == rule)
                     .order_by(Flag.created_at.desc(), Flag.id.desc()).limit(1).execution_options(
                         populate_existing=True))


def _strengthen(flag: Flag, score: int, evidence: str, details: dict) -> Flag | None:
    """Newer evidence at least as strong replaces an open flag's."""
    if score < flag.score:
        return None
    flag.score, flag.evidence, flag.details, flag.updated_at = score, evidence, details, utcnow()
    return flag


# --- the host's review -----------------------------------------------------------


def find_flag(db, event_id: uuid.UUID, flag_id: uuid.UUID) -> Flag | None:
    return db.scalar(select(Flag).where(Flag.id == flag_id, Flag.event_id == event_id, is_listed(Flag.guest_id)))


def _close(ctx, flags: list[Flag], status: str) -> None:
    now, actor = utcnow(), ctx.actor_id
    for flag in flags:
        flag.status, flag.closed_at, flag.closed_by_id = status, now, actor
        REVIEWS.labels(rule=flag.rule, verdict=status).inc()
        record(ctx, f"flag.{status}", actor_id=actor, workspace_id=flag.workspace_id, target_type="flag",
               target_id=flag.id, guest_id=str(flag.guest_id), rule=flag.rule)


def lock_guest(db, guest_id: uuid.UUID) -> None:
    """Flags of one guest change one transaction at a time."""
    lock_row(db, Guest, guest_id)


def recount(db, guest_id: uuid.UUID) -> None:
    """The guest's count of open flags, from the flags themselves (run after
    lock_guest, so the count sees every committed flag)."""
    count = select(func.count(Flag.id)).where(Flag.guest_id == guest_id, Flag.status == FLAG_OPEN).scalar_subquery()
    db.execute(update(Guest).where(Guest.id == guest_id).values(open_flags=count)
               .execution_options(synchronize_session=False))


def dismiss(ctx, flag: Flag) -> Flag:
    """The host judged the finding harmless."""
    lock_guest(ctx.db, flag.guest_id)
    refuse_closed(ctx.db, flag)
    _close(ctx, [flag], FLAG_DISMISSED)
    ctx.db.flush()
    recount(ctx.db, flag.guest_id)
    return flag


def refuse_closed(db, flag: Flag) -> None:
    db.refresh(flag)  # as committed by whoever held the guest's lock before us
    if flag.status != FLAG_OPEN:
        raise EventsError(409, "flag_not_open", f"This flag was already {flag.status}.")


def reissue(ctx, flag: Flag, event: Event, channel: str | None = None) -> tuple[str, Guest, list[Flag]]:
    """Revoke the flagged guest's link, send them a new one through the
    outbox, and resolve their open flags. Returns the channel, the guest and
    the flags resolved. Only from an open flag: a second click finds it resolved
    (409); a guest the host removed meanwhile is not found (404)."""
    invitations.lock_sends(ctx.db, event)  # before the guest's row, as every send takes them
    lock_guest(ctx.db, flag.guest_id)
    guest = ctx.db.get(Guest, flag.guest_id)  # read once the row is held: hidden if removed
    if guest is None:
        raise EventsError(404, "not_found", "This guest is no longer on the list.")
    refuse_closed(ctx.db, flag)
    sent_by = invitations.send_invitation(ctx, guest, event, channel, fresh_link=True).channel
    open_flags = list(ctx.db.scalars(select(Flag).where(Flag.guest_id == guest.id, Flag.status == FLAG_OPEN)))
    _close(ctx, open_flags, FLAG_RESOLVED)
    ctx.db.flush()
    recount(ctx.db, guest.id)
    return sent_by, guest, open_flags


FLAG_FILTERS = ("status", "rule", "guest_id")
FLAG_ORDER = Keyset(Key(Flag.created_at, TIME), Key(Flag.id, ID), order=DESCENDING)  # newest first


def list_flags(db, event_id: uuid.UUID, *, after: str | None, limit: int, status: str | None = None,
               rule: str | None = None, guest_id: uuid.UUID | None = None) -> tuple[list[Flag], str | None]:
    """Newest first, keyset-paginated, in one query; a removed guest's flags are hidden with them."""
    query = select(Flag).where(Flag.event_id == event_id, is_listed(Flag.guest_id))
    if status:
        query = query.where(Flag.status == status)
    if rule:
        query = query.where(Flag.rule == rule)
    if guest_id:
        query = query.where(Flag.guest_id == guest_id)
    return FLAG_ORDER.page(db, query, after=after, limit=limit)


def guest_flags(db, guest_id: uuid.UUID, limit: int = 50) -> list[Flag]:
    """A guest's flags: open ones first, strongest first; then the closed
    ones, newest first."""
    flags = list(db.scalars(select(Flag).where(Flag.guest_id == guest_id)
                            .order_by(Flag.created_at.desc(), Flag.id.desc()).limit(limit)))
    return sorted(flags, key=lambda flag: (flag.status != FLAG_OPEN, -flag.score if flag.status == FLAG_OPEN else 0))
