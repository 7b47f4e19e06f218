from __future__ import annotations

import collections
import logging
import time
import uuid
from collections.abc import Sequence

from sqlalchemy import bindparam, case, update
from sqlalchemy.exc import DBAPIError

from guestguard import rls
from guestguard.context import context_of
from guestguard.db import _Execution, utcnow
from guestguard.group_commit import GroupCommit
from guestguard.notifications import resilience, services
from guestguard.notifications.delivery import QUEUED, SENT
from guestguard.notifications.models import Notification
from guestguard.outages import is_database_unavailable
from guestguard.tasks import RUNNING, give_back, hold_leases

log = logging.getLogger(__name__)
# Seconds between tries to record an outcome while the database is away.
RECORD_RETRY = (0.1, 0.2, 0.5, 1, 2, 3, 5)


def dispatch_notification(request, notification_id) -> None:
    """Deliver one notification: claim (transaction 1), send (no transaction
    held open while the provider works; the lease is renewed meanwhile),
    record (transaction 2). The task of every message, of a retry and of
    the reaper. The claim and the record are group commits: the worker's
    threads claiming (or recording) at the same moment share one
    transaction (``guestguard.group_commit``), while each send stays its
    thread's own, so a provider that hangs holds this one message only."""
    ctx = context_of(request)
    registry = request.registry
    attempt = registry["notifications.claims"].run(ctx, uuid.UUID(str(notification_id)))
    if attempt is None:
        return
    with hold_leases(ctx, Notification, [attempt.notification_id], attempt.claimed_at):
        registry["notifications.records"].run(ctx, (attempt, services.deliver(attempt)))


def claim_together(ctx, notification_ids: Sequence[uuid.UUID]) -> list[services.Attempt | None]:
    """Group-commit work: claim and render the notifications in one
    transaction (seeing every workspace: the thread leading the group runs
    in the workspaces of its own task, the others' messages may be of other
    hosts); each one's attempt, None when it is not ours to send (a
    notification named twice is claimed once: the second gets None)."""
    with rls.as_system(ctx.db), ctx.tm:
        claimed = {attempt.notification_id: attempt
                   for attempt in services.begin_attempts(ctx, list(dict.fromkeys(notification_ids)))}
    return [claimed.pop(notification_id, None) for notification_id in notification_ids]


def record_together(ctx, results: Sequence[tuple[services.Attempt, tuple]]) -> list[None]:
    """Group-commit work: record the attempts' outcomes in one transaction
    and queue the retries due. The provider has spoken once a send returns:
    losing its answer means sending again, so a database blip is waited out
    (for up to jobs.lease_seconds, the leases kept meanwhile) instead of
    leaving the outcomes unknown."""
    deadline = time.monotonic() + ctx.settings["jobs.lease_seconds"]
    for pause in (*RECORD_RETRY, None):
        try:
            with rls.as_system(ctx.db), ctx.tm:
                for notification_id, retry_at in services.record_outcomes(ctx, list(results)):
                    ctx.enqueue(dispatch_notification, notification_id, eta=retry_at)
            return [None] * len(results)
        except Exception as exc:
            if pause is None or not is_database_unavailable(exc) or time.monotonic() + pause > deadline:
                raise
            # A connection that failed before the transaction manager took
            # the session leaves the session's transaction begun and broken.
            ctx.db.rollback()
            log.warning("%d notifications: could not record the outcomes (%s); trying again in %g s",
                        len(results), type(exc).__name__, pause)
            time.sleep(pause)
    return []  # not reached: the last pause is None


def dispatch_notifications(request, notification_ids) -> None:
    """Deliver a bulk send's batch (``notifications.batch_size`` messages
    queued together): claimed and rendered in one transaction, sent one
    after another, each acceptance noted at once in a transaction of its own
    (``note_accepted``: a worker killed mid-batch leaves at most the send in
    flight unnoted, and the next attempt records a noted message as sent
    instead of sending it again), the outcomes recorded in one transaction
    at the end. The messages still waiting go back to the queue, each as a
    task of its own, when a send keeps the batch waiting longer than
    ``notifications.batch_patience_seconds`` (a provider that hangs holds
    one message, not the batch), when one fails for now (each of the others
    asks the provider's circuit breaker first), when the worker is asked to
    stop, and when the batch may have lost its claim (a note finds it gone,
    or the leases have not been renewed for half a lease: the reaper may be
    handing them to another worker, so not one more is sent here)."""
    ctx = context_of(request)
    attempts = [attempt for attempt in claim_together(ctx, [uuid.UUID(str(i)) for i in notification_ids])
                if attempt is not None]
    if not attempts:
        return
    with hold_leases(ctx, Notification, [attempt.notification_id for attempt in attempts],
                     attempts[0].claimed_at) as keeper:
        batch = _Batch(ctx, attempts, keeper)
        notes = _Notes(request.registry)
        results = []
        try:
            while batch.waiting:
                if _stopping(request.registry):
                    batch.give_back_the_rest("the worker is stopping")
                    break
                if keeper.at_risk:
                    batch.give_back_the_rest("the batch's leases were not renewed", stop=True)
                    break
                attempt = batch.waiting.popleft()
                patience = resilience.Patience(ctx.settings["notifications.batch_patience_seconds"],
                                               batch.give_back_the_rest) if batch.waiting else None
                outcome = services.deliver(attempt, patience)
                results.append((attempt, outcome))
                if outcome[1] is None and attempt.accepted is None:
                    if not notes.write(attempt, outcome[0], outcome[3]):
                        batch.give_back_the_rest("the batch's claim was taken back", stop=True)
                elif outcome[1] is not None and not outcome[2] and attempt.message is not None:
                    # A provider in trouble: the rest wait for their own
                    # claims, which ask its circuit breaker first.
                    batch.give_back_the_rest("a send failed for now")
        finally:
            notes.close()
            batch.give_back_the_rest("the batch stopped", stop=True)
            if results:
                record_together(ctx, results)


class _Batch:
    """The attempts of a batch still waiting for their send."""

    def __init__(self, ctx, attempts: Sequence[services.Attempt], keeper):
        self.ctx, self.keeper = ctx, keeper
        self.waiting = collections.deque(attempts)

    def give_back_the_rest(self, why: str = "a send kept the batch waiting", stop: bool = False) -> None:
        """Unclaim the messages still waiting and queue each alone. When the
        database is away they stay claimed: the batch goes on with them,
        unless ``stop`` (then the reaper takes them back once their leases
        lapse)."""
        rest = list(self.waiting)
        if not rest:
            return
        try:
            given = give_back(self.ctx, Notification, [attempt.notification_id for attempt in rest],
                              rest[0].claimed_at)
        except Exception as exc:
            log.warning("could not give back %d notifications (%s); %s", len(rest), type(exc).__name__,
                        "the reaper will" if stop else "the batch goes on")
            if stop:
                self.waiting.clear()
            return
        self.waiting.clear()
        self.keeper.let_go([attempt.notification_id for attempt in rest])
        log.info("%s: gave %d of a batch's notifications back to the queue", why, len(given))


def _stopping(registry) -> bool:
    consumer = registry.get("huey.consumer")
    return consumer is not None and consumer.stop_flag.is_set()


NOTE = (update(Notification)
        .where(Notification.id == bindparam("notification_id"), Notification.status == RUNNING,
               Notification.claimed_at == bindparam("claim"))
        .values(sent_at=bindparam("at"), provider=bindparam("sent_by"),
                provider_message_id=bindparam("provider_message_id"),
                delivery_state=case((Notification.delivery_state == QUEUED, SENT),
                                    else_=Notification.delivery_state))
        .returning(Notification.id))


# PostgreSQL: the note sent through the driver: a note per message is the
# batch's hottest statement, and SQLAlchemy's execution more than doubled
# its CPU. A note still takes four round trips (BEGIN, the scope's settings,
# this statement, COMMIT). NOTE's columns and values; updated_at as the
# model's onupdate sets it. It counts nothing: the day's count of the send
# is added when the outcome is recorded (``services.sent_values``), with the
# batch's, since every note adding one to the same day's row made the
# worker's threads wait for each other's COMMIT on that row.
NOTE_SQL = """
UPDATE notifications
SET sent_at = %(at)s, updated_at = %(at)s, provider = %(sent_by)s, provider_message_id = %(provider_message_id)s,
    delivery_state = CASE WHEN delivery_state = %(queued)s THEN %(sent)s ELSE delivery_state END
WHERE id = %(notification_id)s AND status = %(running)s AND claimed_at = %(claim)s
RETURNING id"""
# The note's transaction, on PostgreSQL, commits without waiting for the
# write-ahead log's flush: it is there for a worker that dies, which it
# survives once COMMIT returns; a database crash within the log writer's
# delay loses it, and the worker's record writes the same (architecture.md).
NOTE_SCOPE_SQL = rls.APPLY_DRIVER_SQL + ", set_config('synchronous_commit', 'off', true)"
NOTE_STATES = {"queued": QUEUED, "sent": SENT, "running": RUNNING}


class NoteNotStarted(Exception):
    """The note's connection failed before its UPDATE was sent (at BEGIN or
    the scope's settings): nothing was noted, so the note may
    be tried again on another connection. The database's error is the
    cause."""


def note_accepted(connection, attempt: services.Attempt, provider_message_id: str | None,
                  sent_by: str | None) -> bool:
    """Write down, at once and in a transaction of its own on ``connection``,
    that a provider accepted the attempt's message, before its outcome is
    recorded with the batch's: ``sent_at``, the provider and its message
    id, the delivery state ``sent`` (so a provider's early report finds the
    message); the row stays ``running``, and the send is counted in the
    day's figures when its outcome is recorded. If the worker dies
    meanwhile, the next attempt finds the note and records the message as
    sent (``Attempt.accepted``). False when the claim is no longer the batch's.
    A database error comes out as SQLAlchemy's own, the connection
    invalidated when it was lost (on PostgreSQL, ``NoteNotStarted`` when
    the UPDATE was not sent yet)."""
    now = utcnow()
    values = {"notification_id": attempt.notification_id, "claim": attempt.claimed_at, "at": now,
              "sent_by": sent_by, "provider_message_id": provider_message_id}
    if connection.dialect.name == "postgresql":
        return _note_on_driver(connection, {**values, **NOTE_STATES})
    with connection.begin():
        rls.apply_to(connection, rls.SYSTEM)
        return connection.execute(NOTE, values).first() is not None


def _note_on_driver(connection, values: dict) -> bool:
    """The note as two statements on the driver's connection, in a
    transaction of the driver's alone (nothing of SQLAlchemy's runs on the
    connection meanwhile). What SQLAlchemy does around a statement is kept,
    as ``db.Prepared`` keeps it: the engine's cursor listeners see both
    statements (statement counts, the trace's spans), and a driver error is
    SQLAlchemy's to handle: a lost connection is invalidated and so are the
    pool's connections older than it, which a database restarted has lost
    too."""
    driver = connection.connection.driver_connection
    cursor = driver.cursor()
    sql, params, updating = "BEGIN", None, False
    try:
        with driver.transaction():
            for sql, params in ((NOTE_SCOPE_SQL, rls.SYSTEM.settings()), (NOTE_SQL, values)):
                updating = sql is NOTE_SQL
                context = _Execution(connection.dialect) if connection.dispatch.before_cursor_execute else None
                if context is not None:
                    connection.dispatch.before_cursor_execute(connection, cursor, sql, params, context, False)
                cursor.execute(sql, params)
                if connection.dispatch.after_cursor_execute:
                    connection.dispatch.after_cursor_execute(connection, cursor, sql, params, context, False)
            noted = cursor.fetchone() is not None
            sql, params = "COMMIT", None
        cursor.close()
        return noted
    except connection.dialect.loaded_dbapi.Error as error:
        try:
            connection._handle_dbapi_exception(error, sql, params, cursor, None)
        except DBAPIError as exc:
            if not updating:
                raise NoteNotStarted() from exc
            raise
        raise  # not reached: SQLAlchemy's handling raises


def _lost_note(attempt: services.Attempt, exc: BaseException) -> None:
    log.warning("notification %s: could not note its acceptance (%s)", attempt.notification_id,
                type(exc).__name__)


class _Notes:
    """A batch's acceptance notes, on one connection it keeps while it sends
    (not one taken from the pool for each note). As the pool would, a
    connection that has sat unused for ``db.ping_idle_seconds`` is checked
    before its next note."""

    def __init__(self, registry):
        self.registry = registry
        self.connection = None
        self.used_at = 0.0

    def write(self, attempt: services.Attempt, provider_message_id: str | None, sent_by: str | None) -> bool:
        """``note_accepted`` on the batch's connection. A note whose
        connection was lost before it sent the UPDATE is tried once more on
        a fresh one; one lost later is not (the UPDATE or its COMMIT may
        have reached the database; the batch's record writes the same in
        any case). A database away loses this note and the connection (the
        next note opens another)."""
        for last_try in (False, True):
            try:
                if self.connection is not None and self._idle_too_long():
                    self._check()
                if self.connection is None:
                    self.connection = self.registry["db.engine"].connect()
                noted = note_accepted(self.connection, attempt, provider_message_id, sent_by)
                self.used_at = time.monotonic()
                return noted
            except NoteNotStarted as exc:
                self.close(invalidate=True)
                if not is_database_unavailable(exc.__cause__):
                    raise exc.__cause__ from None
                if last_try:
                    _lost_note(attempt, exc.__cause__)
            except Exception as exc:
                if not is_database_unavailable(exc):
                    raise
                _lost_note(attempt, exc)
                self.close(invalidate=True)
                return True
        return True

    def _idle_too_long(self) -> bool:
        idle_seconds = self.registry.settings["db.ping_idle_seconds"]
        return (self.connection.dialect.name != "sqlite" and idle_seconds >= 0
                and time.monotonic() - self.used_at >= idle_seconds)

    def _check(self) -> None:
        connection = self.connection
        try:
            connection.dialect.do_ping(connection.connection.dbapi_connection)
        except connection.dialect.loaded_dbapi.Error as error:
            try:
                connection._handle_dbapi_exception(error, "ping", None, None, None)
            except DBAPIError as exc:
                raise NoteNotStarted() from exc

    def close(self, invalidate: bool = False) -> None:
        if self.connection is not None:
            connection, self.connection = self.connection, None
            try:
                if invalidate:
                    connection.invalidate()
                connection.close()
            except Exception as exc:
                log.warning("could not close the batch's note connection (%s)", type(exc).__name__)


def includeme(config) -> None:
    registry = config.registry
    registry["notifications.batch_task"] = dispatch_notifications
    registry["notifications.claims"] = GroupCommit("notification claims", claim_together)
    registry["notifications.records"] = GroupCommit("notification outcomes", record_together)
    config.add_task(dispatch_notification, in_transaction=False)
    config.add_task(dispatch_notifications, in_transaction=False)
