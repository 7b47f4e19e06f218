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

    return registry, provider, ids, recipients, rows, queued_now



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


def test_messages_noted_as_accepted_by_a_worker_that_died_are_recorded_not_sent_again(lab, run_in_request):
    """What a worker killed mid-batch leaves: two messages sent and noted,
    the batch's outcomes never recorded. The reaper takes the batch back
    once its lease lapses; the noted two are recorded as sent by their next
    attempt without a send, the others are sent."""
    from guestguard.notifications import services
    from guestguard.notifications.tasks import claim_together, dispatch_notification, note_accepted
    from guestguard.tasks import reap, run_task_now
    from guestguard.testing import scripted

    registry, provider, ids, recipients, rows, _ = lab
    with time_machine.travel(dt.datetime.now(dt.UTC), tick=False) as clock:
        with scripted(registry) as env:
            attempts = claim_together(env["request"].ctx, ids)
        for attempt in attempts[:2]:
            provider_message_id, error, _, sent_by, _ = services.deliver(attempt)
            assert error is None
            note_accepted(registry, attempt, provider_message_id, sent_by)
        clock.shift(registry.settings["jobs.lease_seconds"] + 1)
        assert run_task_now(registry, reap) == COUNT
        for notification_id in ids:
            run_task_now(registry, dispatch_notification, notification_id)
    assert sorted(provider.sent) == recipients, "the noted two were not sent again"
    final = rows()
    assert {(row.status, row.attempts, row.provider_message_id) for row in final.values()} == {
        ("succeeded", 2, f"batchy-{row.id}") for row in final.values()}
    noted = [final[to] for to in recipients[:2]]
    assert all(row.sent_at is not None and row.delivery_state == "sent" for row in noted)


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
