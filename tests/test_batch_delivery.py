"""A bulk send's messages are delivered a batch to a task: claimed together,
sent one after another with each acceptance noted at once, recorded
together. A send that keeps the batch waiting, or a worker asked to stop,
gives the rest back; a worker that dies mid-batch leaves its noted messages
to be recorded, not sent again."""
from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
import time_machine
from sqlalchemy import select

from guestguard.plugins import TransientDeliveryError, hookimpl
from guestguard.testing import together

COUNT = 5


class Provider:
    """Accepts every email but ``fail``'s (refused for now); ``hold`` keeps the send of the recipient it names
    waiting (``holding`` set) until ``go`` is set; ``on_send(message)`` is
    called in each send."""

    name = "batchy"
    channels = ("email",)

    def __init__(self):
        self.lock = threading.Lock()
        self.sent: list[str] = []
        self.hold: str | None = None
        self.fail: str | None = None
        self.go = threading.Event()
        self.holding = threading.Event()
        self.on_send = None

    def send(self, message):
        if message.recipient == self.fail:
            raise TransientDeliveryError("the provider is busy")
        if message.recipient == self.hold:
            self.holding.set()
            assert self.go.wait(30)
        if self.on_send is not None:
            self.on_send(message)
        with self.lock:
            self.sent.append(message.recipient)
        return f"batchy-{message.notification_id}"

    @hookimpl
    def register_notification_providers(self, settings):
        return [self]


@pytest.fixture
def lab(make_app, run_in_request):
    from guestguard.notifications.services import Outgoing, queue_notifications

    provider = Provider()
    app = make_app({"huey.immediate": "false", "notifications.email.provider": "batchy",
                    "notifications.batch_patience_seconds": "0.2"}, plugins=[("batchy", provider)])
    registry = app.app.registry
    recipients = [f"guest{n}@example.com" for n in range(COUNT)]
    ids = run_in_request(lambda request: queue_notifications(request.ctx, [
        Outgoing(channel="email", recipient=to, template="test_message", context={"base_url": "https://gg.example"})
        for to in recipients]), registry)
    huey = registry["huey"]
    queued = [huey.dequeue() for _ in range(huey.pending_count())]
    assert [(task.name.rpartition(".")[2], task.args[0]) for task in queued] == [("dispatch_notifications", ids)]

    def rows():
        from guestguard.notifications.models import Notification

        return run_in_request(lambda request: {row.recipient: row for row in request.db.scalars(
            select(Notification).execution_options(populate_existing=True))}, registry)

    def queued_now():
        tasks = [huey.dequeue() for _ in range(huey.pending_count())]
        return sorted((task.name.rpartition(".")[2], str(task.args[0])) for task in tasks
                      if "notification" in task.name)

    yield registry, provider, ids, recipients, rows, queued_now
    assert registry["db.engine"].pool.checkedout() == 0, "every connection went back to the pool"


def test_a_batch_sends_each_message_once_noting_each_acceptance_before_the_batch_is_recorded(lab):
    from guestguard.notifications.tasks import dispatch_notifications
    from guestguard.tasks import run_task_now

    registry, provider, ids, recipients, rows, _ = lab
    seen = []
    provider.on_send = lambda message: seen.append(
        [(row.status, row.sent_at is not None, row.delivery_state, row.provider_message_id)
         for row in map(rows().get, recipients)])
    run_task_now(registry, dispatch_notifications, ids)
    assert provider.sent == recipients
    # When the third message went out, the first two were noted as accepted
    # (sent, as a provider's early report must find them), their outcome not
    # yet recorded (the batch records at its end).
    assert seen[2] == [("running", True, "sent", f"batchy-{ids[0]}"), ("running", True, "sent", f"batchy-{ids[1]}"),
                       ("running", False, "queued", None), ("running", False, "queued", None),
                       ("running", False, "queued", None)]
    final = rows()
    assert {(row.status, row.attempts, row.delivery_state, row.provider_message_id) for row in final.values()} == {
        ("succeeded", 1, "sent", f"batchy-{row.id}") for row in final.values()}


def test_the_same_batch_run_twice_at_once_sends_each_message_once(lab):
    from guestguard.notifications.tasks import dispatch_notifications
    from guestguard.tasks import run_task_now

    registry, provider, ids, recipients, rows, _ = lab
    outcomes = together([lambda: run_task_now(registry, dispatch_notifications, ids)] * 2, timeout=30)
    assert [outcome for outcome in outcomes if isinstance(outcome, Exception)] == []
    assert sorted(provider.sent) == recipients
    assert {(row.status, row.attempts) for row in rows().values()} == {("succeeded", 1)}


def test_a_send_that_keeps_the_batch_waiting_gives_the_rest_back_each_as_a_task_of_its_own(lab):
    from guestguard.notifications.tasks import dispatch_notification, dispatch_notifications
    from guestguard.tasks import run_task_now
    from guestguard.testing import drain

    registry, provider, ids, recipients, rows, queued_now = lab
    provider.hold = recipients[1]
    batch = threading.Thread(target=run_task_now, args=(registry, dispatch_notifications, ids))
    batch.start()
    assert provider.holding.wait(20)
    deadline = time.monotonic() + 20
    while rows()[recipients[2]].status != "pending":
        assert time.monotonic() < deadline, "the rest of the batch was not given back"
        time.sleep(0.02)
    given_back = rows()
    # The first was sent, the second is being sent; the rest are as they were
    # before the claim (pending, no attempt counted), each queued alone.
    assert [(given_back[to].status, given_back[to].attempts) for to in recipients] == [
        ("running", 1), ("running", 1), ("pending", 0), ("pending", 0), ("pending", 0)]
    assert queued_now() == sorted(("dispatch_notification", str(notification_id)) for notification_id in ids[2:])
    for notification_id in ids[2:]:
        run_task_now(registry, dispatch_notification, notification_id)
    provider.go.set()
    batch.join(30)
    assert not batch.is_alive()
    drain(registry["huey"])
    assert sorted(provider.sent) == recipients, "each once"
    assert {(row.status, row.attempts) for row in rows().values()} == {("succeeded", 1)}


def test_a_worker_asked_to_stop_sends_no_more_of_its_batch_and_gives_the_rest_back(lab):
    from guestguard.notifications.tasks import dispatch_notifications
    from guestguard.tasks import WorkerConsumer, run_task_now

    registry, provider, ids, recipients, rows, queued_now = lab
    consumer = WorkerConsumer(registry, workers=1)
    registry["huey.consumer"] = consumer
    provider.on_send = lambda message: consumer.stop_flag.set()
    try:
        run_task_now(registry, dispatch_notifications, ids)
    finally:
        del registry["huey.consumer"]
    assert provider.sent == recipients[:1]
    after = rows()
    assert [(after[to].status, after[to].attempts) for to in recipients] == [("succeeded", 1)] + [("pending", 0)] * 4
    assert queued_now() == sorted(("dispatch_notification", str(notification_id)) for notification_id in ids[1:])


def in_a_workspace(request) -> None:
    """The lab's messages made a workspace's (whose messages are counted)."""
    from sqlalchemy import update

    from guestguard.notifications.models import Notification
    from guestguard.testing import create_user
    from guestguard.workspaces.services import memberships_of

    user = create_user(request, "host@example.com", "Host")
    request.db.execute(update(Notification).values(workspace_id=memberships_of(request.db, user.id)[0].workspace_id))


def noted_then_died(registry, ids, sent: int) -> list[str]:
    """What a worker killed mid-batch leaves: the batch claimed, its first
    ``sent`` messages sent and noted, no outcome recorded. The provider's
    ids for them."""
    from guestguard.notifications import services
    from guestguard.notifications.tasks import _Notes, claim_together
    from guestguard.testing import scripted

    with scripted(registry) as env:
        attempts = claim_together(env["request"].ctx, ids)
    notes = _Notes(registry)
    provider_message_ids = []
    try:
        for attempt in attempts[:sent]:
            provider_message_id, error, _, sent_by, _ = services.deliver(attempt)
            assert error is None
            assert notes.write(attempt, provider_message_id, sent_by)
            provider_message_ids.append(provider_message_id)
    finally:
        notes.close()
    return provider_message_ids


def test_messages_noted_as_accepted_by_a_worker_that_died_are_recorded_not_sent_again(lab, run_in_request):
    """What a worker killed mid-batch leaves: two messages sent and noted,
    the batch's outcomes never recorded. The reaper takes the batch back
    once its lease lapses; the noted two are recorded as sent by their next
    attempt without a send, the others are sent. Each send counts once in
    the day's figures, when it is recorded, on the day it was sent: the
    noted two on the evening of the notes, the others after midnight."""
    from guestguard.notifications.models import DeliveryDay
    from guestguard.notifications.tasks import dispatch_notification
    from guestguard.tasks import reap, run_task_now

    registry, provider, ids, recipients, rows, _ = lab
    run_in_request(in_a_workspace, registry)
    evening = dt.datetime(2031, 3, 4, 23, 59, 30, tzinfo=dt.UTC)

    def counted():
        return run_in_request(lambda request: {(row.day.isoformat(), row.sent) for row in request.db.scalars(
            select(DeliveryDay))}, registry)

    with time_machine.travel(evening, tick=False) as clock:
        noted_then_died(registry, ids, 2)
        assert counted() == set(), "a note counts nothing"
        clock.shift(registry.settings["jobs.lease_seconds"] + 1)
        assert run_task_now(registry, reap) == COUNT
        for notification_id in ids:
            run_task_now(registry, dispatch_notification, notification_id)
    assert sorted(provider.sent) == recipients, "the noted two were not sent again"
    assert counted() == {("2031-03-04", 2), ("2031-03-05", COUNT - 2)}
    final = rows()
    assert {(row.status, row.attempts, row.provider_message_id) for row in final.values()} == {
        ("succeeded", 2, f"batchy-{row.id}") for row in final.values()}
    noted = [final[to] for to in recipients[:2]]
    assert all(row.sent_at is not None and row.delivery_state == "sent" for row in noted)


def sent_and_delivered(registry, run_in_request, provider_message_id) -> list:
    """The day's sent and delivered after the provider reports the message delivered."""
    from guestguard.notifications.delivery import DELIVERED, advance_delivery
    from guestguard.notifications.models import DeliveryDay

    run_in_request(lambda request: advance_delivery(request.ctx, "batchy", provider_message_id, DELIVERED), registry)
    return run_in_request(lambda request: [(day.sent, day.delivered) for day in request.db.scalars(
        select(DeliveryDay))], registry)


def test_a_noted_message_the_reaper_gives_up_on_ends_sent_and_counts_once(lab, run_in_request):
    """Its worker died after the provider took it, on its last attempt: the
    reaper's giving up finishes it as sent, not failed, and counts it."""
    from sqlalchemy import update

    from guestguard.notifications.models import Notification
    from guestguard.tasks import reap, run_task_now

    registry, provider, ids, recipients, rows, _ = lab
    run_in_request(in_a_workspace, registry)
    run_in_request(lambda request: request.db.execute(
        update(Notification).where(Notification.id == ids[0]).values(attempts=5)), registry)
    with time_machine.travel(dt.datetime.now(dt.UTC), tick=False) as clock:
        [provider_message_id] = noted_then_died(registry, ids, 1)
        clock.shift(registry.settings["jobs.lease_seconds"] + 1)
        run_task_now(registry, reap)
    first = rows()[recipients[0]]
    assert (first.status, first.last_error, first.delivery_state, first.sealed_context) == (
        "succeeded", None, "sent", None)
    assert {row.status for to, row in rows().items() if to != recipients[0]} == {"pending"}, "the others go again"
    assert sent_and_delivered(registry, run_in_request, provider_message_id) == [(1, 1)]


def test_a_noted_message_whose_guest_is_forgotten_before_its_next_attempt_ends_sent_and_counts_once(
        lab, run_in_request):
    """Taken back by the reaper after the provider took it, then its guest
    forgotten before the next attempt: it was sent, so it ends sent and
    counts; the batch's unsent message of the same guest ends failed."""
    import uuid

    from sqlalchemy import update

    from guestguard.notifications.models import Notification
    from guestguard.privacy.jobs import forget_in_notifications
    from guestguard.tasks import reap, run_task_now

    registry, provider, ids, recipients, rows, _ = lab
    run_in_request(in_a_workspace, registry)
    guest = type("Forgotten", (), {"id": uuid.uuid4()})
    run_in_request(lambda request: request.db.execute(
        update(Notification).where(Notification.id.in_(ids[:2])).values(guest_id=guest.id)), registry)
    with time_machine.travel(dt.datetime.now(dt.UTC), tick=False) as clock:
        [provider_message_id] = noted_then_died(registry, ids, 1)
        clock.shift(registry.settings["jobs.lease_seconds"] + 1)
        run_task_now(registry, reap)
    run_in_request(lambda request: forget_in_notifications(request.ctx, guest), registry)
    ended = run_in_request(lambda request: {row.id: (row.status, row.sent_at is not None) for row in request.db.execute(
        select(Notification.id, Notification.status, Notification.sent_at))}, registry)
    assert [ended[notification_id] for notification_id in ids[:2]] == [("succeeded", True), ("failed", False)]
    assert sent_and_delivered(registry, run_in_request, provider_message_id) == [(1, 1)]


def test_a_send_that_fails_for_now_gives_the_rest_back_to_ask_the_breaker_first(lab):
    from guestguard.notifications.tasks import dispatch_notifications
    from guestguard.tasks import run_task_now

    registry, provider, ids, recipients, rows, queued_now = lab
    provider.fail = recipients[1]
    run_task_now(registry, dispatch_notifications, ids)
    assert provider.sent == recipients[:1]
    after = rows()
    assert [(after[to].status, after[to].attempts) for to in recipients] == [
        ("succeeded", 1), ("pending", 1)] + [("pending", 0)] * 3
    assert after[recipients[1]].last_error.startswith("transient: the provider is busy")
    queued = queued_now()
    assert sorted(notification_id for name, notification_id in queued if name == "dispatch_notification") == sorted(
        map(str, ids[1:])), "the failed one queued for its retry, the others each for its own claim"


def test_a_batch_whose_claim_was_taken_back_sends_no_more(lab, run_in_request):
    """The reaper took the batch back while its first message was being sent
    (its leases had lapsed: the database was away, the worker stalled):
    that message's note finds the claim gone, and the batch sends none of
    the others, which another worker is sending by now."""
    from sqlalchemy import update

    from guestguard.notifications.models import Notification
    from guestguard.notifications.tasks import dispatch_notifications
    from guestguard.tasks import run_task_now

    registry, provider, ids, recipients, rows, _ = lab

    def taken_back(message):
        run_in_request(lambda request: request.db.execute(
            update(Notification).values(status="pending", claimed_at=None, lease_until=None)), registry)

    provider.on_send = taken_back
    run_task_now(registry, dispatch_notifications, ids)
    assert provider.sent == recipients[:1]
    after = rows()
    # The one sent is recorded (as after any taking back: not to be sent
    # again); the others are as the reaper left them.
    assert [after[to].status for to in recipients] == ["succeeded"] + ["pending"] * 4


def test_a_lease_keeper_whose_claims_were_taken_back_says_its_batch_is_at_risk(lab, run_in_request):
    from sqlalchemy import update

    from guestguard.notifications.models import Notification
    from guestguard.notifications.tasks import claim_together
    from guestguard.tasks import LeaseKeeper
    from guestguard.testing import scripted

    registry, _, ids, _, _, _ = lab
    with scripted(registry) as env:
        attempts = claim_together(env["request"].ctx, ids)
    keeper = LeaseKeeper(registry, Notification, ids, attempts[0].claimed_at)
    keeper.every = 0.05
    keeper.start()
    try:
        time.sleep(0.3)
        assert not keeper.at_risk, "renewed, held"
        run_in_request(lambda request: request.db.execute(
            update(Notification).where(Notification.id == ids[0]).values(status="pending", claimed_at=None)),
            registry)
        deadline = time.monotonic() + 10
        while not keeper.at_risk:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        keeper.stop()


def test_a_batch_whose_claim_another_worker_holds_now_sends_no_more(lab, run_in_request):
    """The reaper took the batch back and another worker claimed it again
    (still running, another claim): the first note finds the claim not the
    batch's and the batch stops; what it did not send stays the other
    worker's."""
    from sqlalchemy import update

    from guestguard.db import utcnow
    from guestguard.notifications.models import Notification
    from guestguard.notifications.tasks import dispatch_notifications
    from guestguard.tasks import run_task_now

    registry, provider, ids, recipients, rows, _ = lab
    other_claim = utcnow() + dt.timedelta(seconds=1)

    def claimed_by_another(message):
        run_in_request(lambda request: request.db.execute(
            update(Notification).values(claimed_at=other_claim)), registry)

    provider.on_send = claimed_by_another
    run_task_now(registry, dispatch_notifications, ids)
    assert provider.sent == recipients[:1]
    after = rows()
    assert [(after[to].status, after[to].claimed_at, after[to].sent_at) for to in recipients] == [
        ("running", other_claim, None)] * COUNT, "neither noted nor given back: the other worker's"


def test_a_batch_whose_connections_were_lost_with_the_database_back_notes_every_later_send(
        lab, postgres_url, caplog):
    """The database's connections are cut (a restart, a failover, a pooler
    restarted) between two notes, while the batch holds its note connection
    and the pool holds idle ones; the database is back at once. The next
    note finds its connection lost before it sent anything, and the pool's
    idle connections are known lost with it: every later note reaches the
    database before the next send, none is lost."""
    import psycopg

    from guestguard.notifications.tasks import dispatch_notifications
    from guestguard.tasks import run_task_now

    if postgres_url is None:
        pytest.skip("SQLite has no connections to cut")
    registry, provider, ids, recipients, rows, _ = lab
    engine = registry["db.engine"]
    idle = [engine.connect() for _ in range(3)]
    for connection in idle:
        connection.close()
    assert engine.pool.checkedin() >= 3
    server = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    noted_before_send = []

    def cut_after_two(message):
        position = recipients.index(message.recipient)
        # Read on a connection of its own: the pool's are the batch's to find lost.
        with psycopg.connect(server, autocommit=True) as reader:
            noted = dict(reader.execute("SELECT recipient, sent_at IS NOT NULL FROM notifications").fetchall())
            if position == 2:
                killed = reader.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchone()[0]
                assert killed >= 2, "the note connection and the pool's idle ones"
        noted_before_send.append([noted[to] for to in recipients[:position]])

    provider.on_send = cut_after_two
    run_task_now(registry, dispatch_notifications, ids)
    assert provider.sent == recipients
    assert noted_before_send == [[True] * position for position in range(COUNT)]
    assert rows()[recipients[4]].sent_at is not None
    assert "could not note its acceptance" not in caplog.text
    assert {(row.status, row.attempts) for row in rows().values()} == {("succeeded", 1)}


@pytest.mark.parametrize("ping_idle_seconds, found_lost_by", [(0, ["ping"]), (-1, ["BEGIN"])])
def test_a_batchs_note_connection_idle_long_enough_is_checked_before_its_next_note(
        lab, postgres_url, ping_idle_seconds, found_lost_by):
    """As the pool checks a connection that has sat idle for
    db.ping_idle_seconds, the batch checks the one it keeps for its notes:
    one lost is found by the check, not by the next note's BEGIN (with the
    check off); either way SQLAlchemy is told, and the note is written on
    another connection."""
    import psycopg
    from sqlalchemy import event

    from guestguard.notifications.tasks import NOTE_SQL, dispatch_notifications
    from guestguard.tasks import run_task_now

    if postgres_url is None:
        pytest.skip("SQLite has no connections to lose")
    registry, provider, ids, recipients, rows, _ = lab
    registry.settings["db.ping_idle_seconds"] = ping_idle_seconds
    engine = registry["db.engine"]
    server = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    failed_statements = []
    event.listen(engine, "handle_error", lambda context: failed_statements.append(context.statement))
    note_connections = []

    def seen(connection, _cursor, statement, *_):
        # The engine's listeners see the notes (statement counts, tracing).
        if statement is NOTE_SQL:
            note_connections.append(connection.connection.driver_connection.info.backend_pid)

    event.listen(engine, "before_cursor_execute", seen)

    def note_connection_lost(message):
        if recipients.index(message.recipient) == 2:
            with psycopg.connect(server, autocommit=True) as killer:
                assert killer.execute("SELECT pg_terminate_backend(%s)", [note_connections[-1]]).fetchone()[0]

    provider.on_send = note_connection_lost
    run_task_now(registry, dispatch_notifications, ids)
    assert len(note_connections) == COUNT
    assert len(set(note_connections[:2])) == 1 and len(set(note_connections[2:])) == 1, "one kept for the notes"
    assert note_connections[2] != note_connections[1], "another one after the loss"
    assert failed_statements == found_lost_by
    assert all(row.sent_at is not None for row in rows().values())


def test_a_batchs_note_connection_is_back_in_the_pool_before_its_outcomes_are_recorded(lab):
    """The batch's note connection is given back when it stops sending, not
    when the task's frame goes: the record at its end takes one connection,
    and the note connection is not held beside it."""
    from sqlalchemy import event

    from guestguard.notifications.tasks import dispatch_notifications
    from guestguard.tasks import run_task_now

    registry, provider, ids, recipients, _, _ = lab
    pool = registry["db.engine"].pool
    in_use_at_each_checkout_after_the_sends = []
    provider.on_send = lambda message: (message.recipient == recipients[-1]
                                        and in_use_at_each_checkout_after_the_sends.append("sent"))
    event.listen(pool, "checkout", lambda *_: in_use_at_each_checkout_after_the_sends
                 and in_use_at_each_checkout_after_the_sends.append(pool.checkedout()))
    run_task_now(registry, dispatch_notifications, ids)
    assert provider.sent == recipients
    assert in_use_at_each_checkout_after_the_sends[:2] == ["sent", 1], "the record's connection alone"


def test_a_batchs_notes_do_not_wait_for_the_database_to_flush_its_log(lab, postgres_url):
    """A note is a safeguard against a worker that dies mid-batch, and the
    batch's record (which waits for the flush as every other transaction
    does) writes the same: on PostgreSQL each note's transaction commits
    without waiting for the write-ahead log to reach the disk, and leaves
    the setting behind on none of the pool's connections."""
    from sqlalchemy import event

    from guestguard.notifications.tasks import NOTE_SQL, dispatch_notifications
    from guestguard.tasks import run_task_now

    if postgres_url is None:
        pytest.skip("SQLite's notes are its own transactions on one file")
    registry, provider, ids, recipients, rows, _ = lab
    engine = registry["db.engine"]
    in_the_notes = []

    def setting_of_the_note(connection, _cursor, statement, *_):
        if statement is NOTE_SQL:
            driver = connection.connection.driver_connection
            in_the_notes.append(driver.execute("SHOW synchronous_commit").fetchone()[0])

    event.listen(engine, "after_cursor_execute", setting_of_the_note)
    run_task_now(registry, dispatch_notifications, ids)
    assert provider.sent == recipients
    assert in_the_notes == ["off"] * COUNT
    pooled = [engine.connect() for _ in range(engine.pool.checkedin())]
    try:
        assert {connection.exec_driver_sql("SHOW synchronous_commit").scalar() for connection in pooled} == {"on"}
    finally:
        for connection in pooled:
            connection.close()
    assert {(row.status, row.attempts) for row in rows().values()} == {("succeeded", 1)}
