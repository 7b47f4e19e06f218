"""Domain events: facts about the product (``guest.created``,
``rsvp.received``...) handed to plugins through the ``domain_event`` hook.

An event is an outbox row (``domain_events``) written in the transaction of
the change it reports, so it exists exactly when the change does; its
delivery is a durable job queued after commit (and re-queued by the reaper
when that push was lost). The worker calls each listener in a transaction of
its own and records, in that same transaction, that the listener has the
event: a listener that raised is called again on the next attempt, one that
succeeded never is. Events that concern the same aggregate (a guest, else a
party event, else a notification) are delivered in the order they occurred:
an event waits while an earlier one of its aggregate is undelivered, dead
ones included, so an operator's replay restores the order.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from huey import crontab
from sqlalchemy import ForeignKey, Index, String, and_, delete, exists, insert, or_, select
from sqlalchemy.orm import Mapped, aliased, mapped_column

from guestguard.db import Base, utcnow
from guestguard.plugins import DomainEvent
from guestguard.tasks import (
    PENDING,
    DurableJobMixin,
    NotReplayable,  # noqa: F401 (what replay raises, for its callers)
    claim_job,
    claim_jobs,
    enqueue_job,
    enqueue_job_batched,
    fail_job,
    finish_job,
    finish_jobs,
    hold_lease,
    hold_leases,
    replay_failed,
    still_claimed,
)

log = logging.getLogger(__name__)

DELIVERED, DEAD = "delivered", "dead"
EVENT_STATUSES = (PENDING, "running", DELIVERED, DEAD)
# Seconds before each retry of the listeners that raised; then the event is dead.
RETRY_BACKOFF = (1, 5, 30, 300, 1800)
# What an event is about, most specific first: the first of these ids found
# in its data (or in data["about"], for notifications) names its aggregate.
AGGREGATE_KEYS = ("guest_id", "event_id", "notification_id")
PURGE_BATCH = 1000


class DomainEventRow(DurableJobMixin, Base):
    """One domain event, written with the change it reports and delivered to
    every listener at least once (the durable-job columns track delivery)."""

    __tablename__ = "domain_events"
    succeeded_status = DELIVERED
    failed_status = DEAD

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4, sort_order=-1)
    name: Mapped[str] = mapped_column(String(100))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    workspace_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    # "guest:<id>", "event:<id>", "notification:<id>", or None (no order kept).
    aggregate: Mapped[str | None] = mapped_column(String(100), default=None)
    occurred_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_domain_events_aggregate", "aggregate", "occurred_at"),)

    def as_event(self) -> DomainEvent:
        return DomainEvent(name=self.name, data=dict(self.data), workspace_id=self.workspace_id,
                           occurred_at=self.occurred_at, id=self.id, aggregate=self.aggregate)


# What delivering a claimed event reads of its row.
CLAIMED = (DomainEventRow.name, DomainEventRow.data, DomainEventRow.workspace_id, DomainEventRow.occurred_at,
           DomainEventRow.aggregate, DomainEventRow.attempts, DomainEventRow.claimed_at)


class DomainEventDelivery(Base):
    """A listener has an event: written in the listener's own transaction, so
    its work and this row commit (or roll back) together."""

    __tablename__ = "domain_event_deliveries"

    event_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("domain_events.id", ondelete="CASCADE"), primary_key=True)
    listener: Mapped[str] = mapped_column(String(200), primary_key=True)
    delivered_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # The attempt of the event that delivered it (1 = the first).
    attempt: Mapped[int] = mapped_column(default=1)


def aggregate_of(data: Mapping[str, Any]) -> str | None:
    about = data.get("about")
    sources = (data, about) if isinstance(about, Mapping) else (data,)
    for key in AGGREGATE_KEYS:
        for source in sources:
            value = source.get(key)
            if value:
                return f"{key.removesuffix('_id')}:{value}"
    return None


_clock = threading.Lock()
_last_moment: list[dt.datetime] = []


def moment() -> dt.datetime:
    """The current time, later than the last one this process handed out:
    events emitted one after the other keep their order even when the clock
    does not move between them. A clock set back by more than a second (by
    hand, or a test's time travel) is followed rather than outrun."""
    with _clock:
        now = utcnow()
        if _last_moment and _last_moment[0] - _SET_BACK < now <= _last_moment[0]:
            now = _last_moment[0] + dt.timedelta(microseconds=1)
        _last_moment[:] = [now]
        return now


_SET_BACK = dt.timedelta(seconds=1)


def emit(ctx, name: str, data: Mapping[str, Any], workspace_id: uuid.UUID | None = None,
         aggregate: str | None = None) -> DomainEvent:
    """Record ``name`` in the current transaction; it is delivered once that
    commits. ``data`` must be JSON (ids as strings). ``aggregate`` defaults to
    what the data names (the guest, else the event, else the notification)."""
    row = DomainEventRow(**event_row(name, data, workspace_id, aggregate))
    ctx.db.add(row)
    enqueue_job_batched(ctx, DomainEventRow, row.id, deliver_domain_events)
    return row.as_event()


def event_row(name: str, data: Mapping[str, Any], workspace_id: uuid.UUID | None,
              aggregate: str | None) -> dict[str, Any]:
    """Every column of a new domain event's row."""
    try:
        json.dumps(dict(data))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"domain event {name!r}: data must be JSON (ids as strings): {exc}") from None
    return {"id": uuid.uuid4(), "name": name, "data": dict(data), "workspace_id": workspace_id,
            "aggregate": aggregate or aggregate_of(data), "occurred_at": moment(), "next_attempt_at": utcnow(),
            "status": PENDING, "attempts": 0, "claimed_at": None, "lease_until": None, "last_error": None}


def emit_many(ctx, events: list[tuple[str, Mapping[str, Any], uuid.UUID | None]]) -> None:
    """``emit`` for many events of one bulk action, (name, data, workspace
    id) each, in the order given (their order per aggregate): one
    multi-row INSERT."""
    rows = [event_row(name, data, workspace_id, None) for name, data, workspace_id in events]
    if not rows:
        return
    ctx.db.execute(insert(DomainEventRow.__table__), rows)  # Core: no per-row ORM bookkeeping
    for row in rows:
        enqueue_job_batched(ctx, DomainEventRow, row["id"], deliver_domain_events)


@functools.cache
def in_turn(model) -> Any:
    """SQL: no earlier event of the same aggregate is undelivered (built once:
    every claim of a batch adds it)."""
    earlier = aliased(model)
    return ~exists().where(
        earlier.aggregate == model.aggregate,
        earlier.status != DELIVERED,
        or_(earlier.occurred_at < model.occurred_at,
            and_(earlier.occurred_at == model.occurred_at, earlier.id < model.id)),
    )


@dataclass(frozen=True)
class Listener:
    """A plugin that hears domain events: through ``domain_events`` (a
    batch at once) when it implements that hook, else through
    ``domain_event`` (one event at a time)."""

    name: str  # the plugin's: what its delivery rows record
    function: Callable[..., Any]
    argnames: tuple[str, ...]
    batch: bool

    def hear(self, request, events: list[DomainEvent]) -> None:
        """Hand over ``events`` (in the caller's transaction) as pluggy
        would: the listener takes only the arguments it names."""
        if self.batch:
            arguments = {"events": list(events), "request": request}
            self.function(*(arguments[name] for name in self.argnames))
            return
        for event in events:
            arguments = {"event": event, "request": request}
            self.function(*(arguments[name] for name in self.argnames))


def listeners(registry) -> list[Listener]:
    hook = registry["plugins"].hook
    batched = [Listener(impl.plugin_name, impl.function, tuple(impl.argnames), True)
               for impl in hook.domain_events.get_hookimpls()]
    names = {listener.name for listener in batched}
    return batched + [Listener(impl.plugin_name, impl.function, tuple(impl.argnames), False)
                      for impl in hook.domain_event.get_hookimpls() if impl.plugin_name not in names]


def deliver_domain_event(request, event_id) -> None:
    """Task: claim the event (transaction 1), call each listener that does
    not have it yet in a transaction of its own that also records the
    delivery, then record the outcome (transaction 2): delivered, or retried
    for the listeners that raised, or dead after the last attempt."""
    from guestguard.context import context_of

    if isinstance(event_id, DomainEvent):
        # An event object queued by a release before the outbox: delivered
        # as it was then, at most once.
        event, recorded, delivered, attempt = event_id, False, set(), 1
    else:
        ctx = context_of(request)
        with ctx.tm:
            row = claim_job(ctx, DomainEventRow, event_id)
            if row is None:
                return
            event, claimed_at, attempt, recorded = row.as_event(), row.claimed_at, row.attempts, True
            delivered = set(ctx.db.scalars(select(DomainEventDelivery.listener)
                                           .where(DomainEventDelivery.event_id == event.id)))
    failures = []
    keep = hold_lease(ctx, DomainEventRow, event.id, claimed_at) if recorded else contextlib.nullcontext()
    with keep:
        for listener in listeners(request.registry):
            if listener.name in delivered:
                continue
            try:
                with request.tm:
                    listener.hear(request, [event])
                    if recorded:
                        request.db.add(DomainEventDelivery(event_id=event.id, listener=listener.name,
                                                           attempt=attempt))
            except Exception as exc:
                log.exception("plugin %s failed on domain event %s (%s), attempt %d",
                              listener.name, event.name, event.id, attempt)
                failures.append(f"{listener.name}: {exc!r}"[:500])
    if recorded:
        with ctx.tm:
            record_outcome(ctx, event.id, claimed_at, failures)


def deliver_domain_events(request, event_ids) -> None:
    """Task: deliver events queued together (a bulk action's), each as
    ``deliver_domain_event`` would: claimed together (one transaction), each
    listener called for all of them in one transaction that also records
    its deliveries, the outcomes recorded together (one transaction). When a
    listener raises on one of them, that listener is called again for each
    event in a transaction of its own, so one bad event holds back no other.
    An event that waits for an earlier one of its aggregate in the same
    batch is taken in the next round."""
    from guestguard.context import context_of

    ctx = context_of(request)
    remaining = [uuid.UUID(str(event_id)) for event_id in event_ids]
    while remaining:
        with ctx.tm:
            rows = claim_jobs(ctx, DomainEventRow, remaining, columns=CLAIMED)
            if not rows:
                return
            batch = [(DomainEvent(name=row.name, data=dict(row.data), workspace_id=row.workspace_id,
                                  occurred_at=row.occurred_at, id=row.id, aggregate=row.aggregate), row.attempts)
                     for row in rows]
            claimed_at = rows[0].claimed_at
            had = set(ctx.db.execute(select(DomainEventDelivery.event_id, DomainEventDelivery.listener).where(
                DomainEventDelivery.event_id.in_([event.id for event, _ in batch]))).all())
        taken = {event.id for event, _ in batch}
        remaining = [event_id for event_id in remaining if event_id not in taken]
        failures: dict[uuid.UUID, list[str]] = {event.id: [] for event, _ in batch}
        with hold_leases(ctx, DomainEventRow, list(taken), claimed_at):
            for listener in listeners(request.registry):
                todo = [(event, attempt) for event, attempt in batch if (event.id, listener.name) not in had]
                if not todo:
                    continue
                _hand_over(request.tm, listener, functools.partial(listener.hear, request),
                           functools.partial(_record_deliveries, request.db, listener.name), todo, failures)
        with ctx.tm:
            # Locked in id order, as every locker takes them; read as plain
            # rows: only the failed ones are loaded whole.
            locked = {row.id: row for row in ctx.db.execute(
                select(DomainEventRow.id, DomainEventRow.status, DomainEventRow.claimed_at,
                       DomainEventRow.aggregate, DomainEventRow.occurred_at)
                .where(DomainEventRow.id.in_(list(taken))).order_by(DomainEventRow.id).with_for_update())}
            ours = [locked[event.id] for event, _ in batch
                    if event.id in locked and still_claimed(locked[event.id], claimed_at)]
            finished = [row for row in ours if not failures[row.id]]
            finish_jobs(ctx.db, DomainEventRow, [row.id for row in finished])
            for row in ours:
                if failures[row.id]:
                    record_outcome(ctx, row.id, claimed_at, failures[row.id], release=False)
            release_following(ctx, finished, waiting=set(remaining))


def _hand_over(tm, listener: Listener, hear, record, todo: list, failures: dict[uuid.UUID, list[str]]) -> None:
    """Hand a batch's events to one listener (``hear(events)``) in one
    transaction that also records (``record(handed)``, one INSERT) that it has them. When it
    raises, the others are handed over again one by one, each in a
    transaction of its own: the event a per-event listener raised on has
    failed (called again on its next attempt), and for a batch listener,
    which cannot say which event it raised on, each event is tried alone."""
    current = None
    try:
        with tm:
            if listener.batch:
                hear([event for event, _ in todo])
            else:
                for current in todo:
                    hear([current[0]])
            record(todo)
        return
    except Exception as exc:
        if current is None and not listener.batch:
            raise
        if listener.batch and len(todo) == 1:
            current = todo[0]
        if current is not None:
            _failed(listener.name, *current, exc, failures)
    for event, attempt in todo:
        if current is not None and event.id == current[0].id:
            continue
        try:
            with tm:
                hear([event])
                record([(event, attempt)])
        except Exception as exc:
            _failed(listener.name, event, attempt, exc, failures)


def _failed(name: str, event: DomainEvent, attempt: int, exc: Exception, failures: dict[uuid.UUID, list[str]]) -> None:
    log.error("plugin %s failed on domain event %s (%s), attempt %d", name, event.name, event.id, attempt,
              exc_info=exc)
    failures[event.id].append(f"{name}: {exc!r}"[:500])


def _record_deliveries(db, listener: str, handed: list) -> None:
    """The listener has these (event, attempt): in the transaction of its work."""
    now = utcnow()
    db.execute(insert(DomainEventDelivery.__table__), [
        {"event_id": event.id, "listener": listener, "attempt": attempt, "delivered_at": now}
        for event, attempt in handed])


_UNREAD = object()


def record_outcome(ctx, event_id, claimed_at: dt.datetime, failures: list[str], row: Any = _UNREAD,
                   release: bool = True) -> bool:
    """The attempt's outcome; ``row`` when the caller locked it already.
    Whether the event is delivered now (then the next event of its
    aggregate is queued, unless ``release`` leaves that to the caller)."""
    if row is _UNREAD:
        row = ctx.db.get(DomainEventRow, event_id, with_for_update=True, populate_existing=True)
    if row is None or not still_claimed(row, claimed_at):
        # The reaper took it back meanwhile: the run it queued calls only the
        # listeners that do not have the event yet.
        return False
    if not failures:
        finish_job(row)
        if release:
            release_next(ctx, row)
        return True
    retry_at = fail_job(row, "; ".join(failures), permanent=False, backoff=RETRY_BACKOFF)
    if retry_at is None:
        log.error("domain event %s (%s) is dead after %d attempts: %s", row.id, row.name, row.attempts,
                  row.last_error)
    else:
        enqueue_job(ctx, row, eta=retry_at)
    return False


def release_next(ctx, row: DomainEventRow) -> None:
    """Queue the next pending event of the aggregate, which may have been
    waiting for this one."""
    if row.aggregate is None:
        return
    following = ctx.db.scalar(
        select(DomainEventRow)
        .where(DomainEventRow.aggregate == row.aggregate, DomainEventRow.status == PENDING,
               or_(DomainEventRow.occurred_at > row.occurred_at,
                   and_(DomainEventRow.occurred_at == row.occurred_at, DomainEventRow.id > row.id)))
        .order_by(DomainEventRow.occurred_at, DomainEventRow.id).limit(1))
    if following is not None:
        enqueue_job(ctx, following)


def release_following(ctx, rows: list[Any], waiting: set) -> None:
    """``release_next`` for a batch's delivered events, in one query: the
    next pending event of each one's aggregate is queued, unless it is among
    ``waiting`` (events the batch's task takes next)."""
    aggregates = sorted({row.aggregate for row in rows if row.aggregate is not None})
    if not aggregates:
        return
    pending: dict[str, list[Any]] = {}
    for later in ctx.db.execute(select(DomainEventRow.id, DomainEventRow.aggregate, DomainEventRow.occurred_at).where(
            DomainEventRow.aggregate.in_(aggregates), DomainEventRow.status == PENDING)
            .order_by(DomainEventRow.aggregate, DomainEventRow.occurred_at, DomainEventRow.id)):
        pending.setdefault(later.aggregate, []).append(later)
    released = set()
    for row in rows:
        following = next((later for later in pending.get(row.aggregate, ())
                          if (later.occurred_at, later.id) > (row.occurred_at, row.id)), None)
        if following is not None and following.id not in waiting and following.id not in released:
            released.add(following.id)
            enqueue_job_batched(ctx, DomainEventRow, following.id, deliver_domain_events)


# --- what operators do (the ``guestguard events`` command) ------------------------


def listing(ctx, status: str | None = None, limit: int = 50) -> list[DomainEventRow]:
    """Events, oldest first, of one status or all."""
    query = select(DomainEventRow).order_by(DomainEventRow.occurred_at, DomainEventRow.id).limit(limit)
    if status:
        query = query.where(DomainEventRow.status == status)
    return list(ctx.db.scalars(query))


def replay(ctx, event_ids: list[uuid.UUID] | None = None) -> list[DomainEventRow]:
    """Put dead events (those named, or every dead one) back to pending with
    fresh attempts and queue them; listeners that had them are not called
    again. Raises NotReplayable for a named event that is not dead."""
    return replay_failed(ctx, DomainEventRow, event_ids, "domain event",
                         order=(DomainEventRow.occurred_at, DomainEventRow.id))


def purge_delivered(request) -> int:
    """Nightly: delivered events older than ``domain_events.retention_days``
    go (with their delivery rows), a batch per transaction. Dead and pending
    ones stay until an operator replays them."""
    cutoff = utcnow() - dt.timedelta(days=request.registry.settings["domain_events.retention_days"])
    total = 0
    while True:
        with request.tm:
            ids = list(request.db.scalars(
                select(DomainEventRow.id)
                .where(DomainEventRow.status == DELIVERED, DomainEventRow.occurred_at < cutoff)
                .limit(PURGE_BATCH)))
            if ids:
                request.db.execute(delete(DomainEventDelivery).where(DomainEventDelivery.event_id.in_(ids)))
                request.db.execute(delete(DomainEventRow).where(DomainEventRow.id.in_(ids)))
        total += len(ids)
        if len(ids) < PURGE_BATCH:
            return total


def includeme(config) -> None:
    config.add_task(deliver_domain_event, in_transaction=False)
    config.add_task(deliver_domain_events, in_transaction=False)
    config.add_durable_job(DomainEventRow, deliver_domain_event, max_attempts=len(RETRY_BACKOFF) + 1,
                           ready=in_turn)
    config.add_periodic_task(purge_delivered, crontab(minute="37", hour="3"), in_transaction=False)
