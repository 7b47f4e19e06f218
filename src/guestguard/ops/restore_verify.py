"""``guestguard restore-verify <ini>``: is the database the ini points at (a
restored backup) one GuestGuard can run on? The schema at the migration
head, every foreign key holding, and the invariants the application keeps:
each check a line of a plain report, any breach a non-zero exit.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, and_, exists, func, select, text

from guestguard.models import metadata


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def schema_at_head(connection: Connection, script_dir) -> Check:
    from alembic.runtime.migration import MigrationContext

    heads = set(script_dir.get_heads())
    current = set(MigrationContext.configure(connection).get_current_heads())
    return Check("schema at the migration head", current == heads,
                 f"database at {', '.join(sorted(current)) or 'no revision'}, code at {', '.join(sorted(heads))}")


def references(table) -> list[tuple]:
    """(column, referenced column) of every foreign key of ``table``, and of
    its ``workspace_id`` when that names a workspace without one."""
    found = [(fk.parent, fk.column) for fk in table.foreign_keys]
    if "workspace_id" in table.c and not table.c.workspace_id.foreign_keys:
        found.append((table.c.workspace_id, metadata.tables["workspaces"].c.id))
    return found


def foreign_keys(connection: Connection) -> Check:
    broken = []
    for table in metadata.sorted_tables:
        for column, target in references(table):
            missing = connection.scalar(select(func.count()).select_from(table).where(
                column.is_not(None), ~exists().where(target == column)))
            if missing:
                broken.append(f"{table.name}.{column.name} -> {target.table.name}: {missing} row(s)")
    return Check("every reference points at a row", not broken, "; ".join(broken) or "all hold")


def answers_match_history(connection: Connection) -> Check:
    """Each guest's current answer is their latest RSVP's (forgotten guests
    keep the answer and lose the history, by design)."""
    guests, rsvps = metadata.tables["guests"], metadata.tables["rsvps"]
    latest = (select(rsvps.c.response, rsvps.c.plus_ones).where(rsvps.c.guest_id == guests.c.id)
              .order_by(rsvps.c.created_at.desc(), rsvps.c.id.desc()).limit(1))
    latest_response = latest.with_only_columns(rsvps.c.response).scalar_subquery()
    latest_plus_ones = latest.with_only_columns(rsvps.c.plus_ones).scalar_subquery()
    live = guests.c.forgotten_at.is_(None)
    answered_differently = connection.scalar(select(func.count()).select_from(guests).where(
        live, guests.c.response.is_not(None),
        (latest_response.is_(None)) | (latest_response != guests.c.response)
        | (latest_plus_ones != guests.c.plus_ones_coming)))
    history_without_answer = connection.scalar(select(func.count()).select_from(guests).where(
        live, guests.c.response.is_(None), exists().where(rsvps.c.guest_id == guests.c.id)))
    bad = answered_differently + history_without_answer
    return Check("every guest's answer is their latest RSVP", not bad,
                 f"{answered_differently} guest(s) whose answer is not their latest RSVP, "
                 f"{history_without_answer} with RSVPs but no answer" if bad else "all match")


def flag_counts(connection: Connection) -> Check:
    """The open-flag count kept on each guest is the number of their open flags."""
    guests, flags = metadata.tables["guests"], metadata.tables["flags"]
    open_flags = (select(func.count()).select_from(flags)
                  .where(flags.c.guest_id == guests.c.id, flags.c.status == "open").scalar_subquery())
    off = connection.scalar(select(func.count()).select_from(guests).where(guests.c.open_flags != open_flags))
    return Check("counts kept on guests match their flags", not off,
                 f"{off} guest(s) whose open_flags is not their open flags" if off else "all match")


def links_have_guests(connection: Connection) -> Check:
    links, guests = metadata.tables["invitation_links"], metadata.tables["guests"]
    orphaned = connection.scalar(select(func.count()).select_from(links).where(
        ~exists().where(and_(guests.c.id == links.c.guest_id, guests.c.event_id == links.c.event_id))))
    return Check("no invitation link without its guest", not orphaned,
                 f"{orphaned} link(s) whose guest (of that event) is missing" if orphaned else "all have one")


def outbox_has_owners(connection: Connection) -> Check:
    """Messages and domain events belong to a workspace that exists (or to none)."""
    workspaces = metadata.tables["workspaces"]
    missing = []
    for name in ("notifications", "domain_events"):
        table = metadata.tables[name]
        count = connection.scalar(select(func.count()).select_from(table).where(
            table.c.workspace_id.is_not(None), ~exists().where(workspaces.c.id == table.c.workspace_id)))
        if count:
            missing.append(f"{name}: {count} row(s)")
    return Check("no outbox row without its workspace", not missing, "; ".join(missing) or "all have one")


def delivery_counts(connection: Connection) -> Check:
    """Each workspace's delivery counts (``delivery_days``, per channel,
    summed over the days) match its messages: a message counts once in
    ``sent`` when it ends sent (a provider took it: ``sent_at``), once in
    ``delivered`` when it arrived, and once in the final state it ended in.
    Nothing deletes a message without its workspace's counts, so they agree
    exactly. A message a provider took but whose worker stopped before
    recording it (noted, still running or waiting) counts once its next
    attempt, or the reaper, finishes it. A failed message with a
    ``sent_at`` counts too: it comes from before notes stopped counting,
    when its note counted it and the reaper's giving up or a forgotten
    guest then failed it."""
    from guestguard.notifications.delivery import DAY_COLUMNS, DELIVERED, SENT
    from guestguard.tasks import FAILED, SUCCEEDED

    notifications, days = metadata.tables["notifications"], metadata.tables["delivery_days"]
    ended_sent = notifications.c.sent_at.is_not(None) & notifications.c.status.in_((SUCCEEDED, FAILED))
    passed_through = {SENT: ended_sent, DELIVERED: notifications.c.delivered_at.is_not(None)}
    reached = {state: passed_through.get(state, notifications.c.delivery_state == state) for state in DAY_COLUMNS}
    key = (notifications.c.workspace_id, notifications.c.channel)
    from_messages = {tuple(row[:2]): row[2:] for row in connection.execute(
        select(*key, *(func.count().filter(when) for when in reached.values()))
        .where(notifications.c.workspace_id.is_not(None)).group_by(*key))}
    from_days = {tuple(row[:2]): row[2:] for row in connection.execute(
        select(days.c.workspace_id, days.c.channel, *(func.sum(days.c[state]) for state in reached))
        .group_by(days.c.workspace_id, days.c.channel))}
    off = []
    for workspace_id, channel in sorted(from_messages.keys() | from_days.keys(), key=str):
        counted = [int(n or 0) for n in from_days.get((workspace_id, channel), ())] or [0] * len(reached)
        messages = [int(n or 0) for n in from_messages.get((workspace_id, channel), ())] or [0] * len(reached)
        for state, kept, found in zip(reached, counted, messages, strict=True):
            if kept != found:
                off.append(f"workspace {workspace_id} {channel} {state}: {kept} counted, {found} message(s)")
    return Check("delivery counts match the messages", not off,
                 "; ".join(off[:10]) + (f" (and {len(off) - 10} more)" if len(off) > 10 else "") if off
                 else "all match")


def jobs_not_stuck(connection: Connection, settings, now: dt.datetime) -> Check:
    """No durable job waits past ``jobs.lost_after``: a pending one long due,
    or a running one whose lease lapsed that long ago (the reaper takes such
    jobs back within its interval on a running system)."""
    from guestguard.tasks import PENDING, RUNNING

    late = now - dt.timedelta(seconds=settings["jobs.lost_after"])
    stuck = []
    for name in ("notifications", "webhook_inbox", "domain_events", "data_exports"):
        table = metadata.tables[name]
        count = connection.scalar(select(func.count()).select_from(table).where(
            ((table.c.status == PENDING) & (table.c.next_attempt_at < late))
            | ((table.c.status == RUNNING) & (table.c.lease_until < late))))
        if count:
            stuck.append(f"{name}: {count}")
    return Check("no durable job stuck beyond jobs.lost_after", not stuck,
                 "; ".join(stuck) + " (start a worker: its reaper takes them back)" if stuck else "none")


def verify(connection: Connection, settings, script_dir, now: dt.datetime | None = None) -> list[Check]:
    now = now or dt.datetime.now(dt.UTC)
    head = schema_at_head(connection, script_dir)
    if not head.ok:
        # The other checks read the current schema's columns.
        return [head]
    checks: Iterable[Callable[[], Check]] = (
        lambda: foreign_keys(connection),
        lambda: answers_match_history(connection),
        lambda: flag_counts(connection),
        lambda: links_have_guests(connection),
        lambda: outbox_has_owners(connection),
        lambda: delivery_counts(connection),
        lambda: jobs_not_stuck(connection, settings, now),
    )
    return [head, *(check() for check in checks)]


def report(checks: list[Check]) -> str:
    lines = [f"{'ok  ' if check.ok else 'FAIL'}  {check.name}: {check.detail}" for check in checks]
    failed = sum(not check.ok for check in checks)
    lines.append(f"{len(checks) - failed} of {len(checks)} checks passed" if failed
                 else f"all {len(checks)} checks passed")
    return "\n".join(lines)


# Read-only: the checks only SELECT.
READ_ONLY = text("SET TRANSACTION READ ONLY")
