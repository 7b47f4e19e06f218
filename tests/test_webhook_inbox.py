"""The webhook inbox: a provider's call is stored raw once per (provider,
event id), answered, and processed by the worker with the handler its
plugin registered; repeats change nothing, reports out of order never move a
message's delivery state back, a handler that fails is retried with its
error kept, and a call stored while the queue is down is processed once it
is back."""
import datetime as dt
import json
import threading
import time

import pytest
import time_machine
from sqlalchemy import select

from guestguard.notifications.delivery import advance_delivery, moves_forward
from guestguard.notifications.models import Notification, Suppression
from guestguard.notifications.services import queue_notification
from guestguard.plugins import PermanentDeliveryError, SettingsError, hookimpl
from guestguard.tasks import reap, run_task_now
from guestguard.testing import DomainEvents, drain, free_port, in_request
from guestguard.webhooks import InvalidWebhook, receive
from guestguard.webhooks.models import InboxEntry
from guestguard.webhooks.services import RETRY_BACKOFF
from guestguard.webhooks.tasks import purge_processed_webhooks

T0 = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)


class Relay:
    """A provider's webhook handler: the body names a message (by the
    console provider's id for it) and what became of it."""

    provider = "relay"

    def __init__(self, failures=0):
        self.failures = failures
        self.handled = []

    def handle(self, ctx, webhook):
        self.handled.append(webhook.event_id)
        if self.failures:
            self.failures -= 1
            raise RuntimeError("the relay's handler broke")
        report = json.loads(webhook.body)
        return advance_delivery(ctx, "console", report["message_id"], report["state"], report.get("detail"))

    @hookimpl
    def register_webhook_handlers(self, settings):
        return [self]


@pytest.fixture
def relay():
    return Relay()


@pytest.fixture
def events():
    return DomainEvents()


@pytest.fixture
def app(make_app, relay, events):
    return make_app(plugins=[("relay", relay), ("events", events)])


def call(app, func):
    return in_request(app.app.registry, lambda request: func(request.ctx))


def deliver(app, event_id, body, headers=None):
    return call(app, lambda ctx: receive(ctx, "relay", event_id, body, headers))


def entries(app):
    def read(ctx):
        found = list(ctx.db.scalars(select(InboxEntry).order_by(InboxEntry.received_at)))
        ctx.db.expunge_all()
        return found
    return call(app, read)


def sent(app, recipient="grace@example.com"):
    """An email sent through the console provider: its provider message id."""
    notification_id = call(app, lambda ctx: queue_notification(
        ctx, channel="email", recipient=recipient, template="test_message",
        context={"base_url": "https://gg.example"}).id)
    drain(app.app.registry["huey"])
    return f"console-{notification_id}", notification_id


def notification(app, notification_id):
    def read(ctx):
        row = ctx.db.get(Notification, notification_id)
        ctx.db.expunge(row)
        return row
    return call(app, read)


def report(message_id, state, detail=None):
    return json.dumps({"message_id": message_id, "state": state, "detail": detail})


def test_a_webhook_is_stored_raw_processed_and_a_repeat_changes_nothing(app, relay, events):
    message_id, notification_id = sent(app)
    body = report(message_id, "delivered") + "  \n"  # kept exactly, whitespace and all
    first = deliver(app, "evt-1", body, {"X-Signature": "abc"})
    again = deliver(app, "evt-1", body, {"X-Signature": "abc"})
    assert (first.duplicate, again.duplicate, again.id) == (False, True, first.id)
    [entry] = entries(app)
    assert (entry.provider, entry.event_id, entry.body, entry.headers) == ("relay", "evt-1", body,
                                                                          {"X-Signature": "abc"})
    assert (entry.status, entry.attempts, entry.last_error) == ("succeeded", 1, None)
    assert entry.processed_at is not None and entry.processed_at >= entry.received_at
    assert entry.note == f"notification {notification_id}: sent -> delivered"
    assert relay.handled == ["evt-1"], "the repeat was not processed again"
    row = notification(app, notification_id)
    assert (row.delivery_state, row.delivered_at is not None) == ("delivered", True)
    assert events.names("notification.delivered") == ["notification.delivered"]


def test_the_same_event_id_from_another_provider_is_another_webhook(make_app, relay):
    other = Relay()
    other.provider = "other"
    app = make_app(plugins=[("relay", relay), ("other", other)])
    message_id, _ = sent(app)
    assert not deliver(app, "evt-1", report(message_id, "delivered")).duplicate
    assert not call(app, lambda ctx: receive(ctx, "other", "evt-1", report(message_id, "delivered"))).duplicate
    assert len(entries(app)) == 2


def test_two_deliveries_of_one_event_at_the_same_moment_store_and_process_it_once(make_app, relay):
    """The first delivery's transaction is still open when the second stores
    the same event: the second waits on the unique constraint and, once the
    first commits, answers as a repeat (no error, no second row)."""
    app = make_app({"huey.immediate": "false"}, plugins=[("relay", relay)])
    registry = app.app.registry
    message_id, _ = sent(app)
    stored = threading.Event()
    results, errors = {}, []

    def first(request):
        results["first"] = receive(request.ctx, "relay", "evt-9", report(message_id, "delivered"))
        request.db.flush()
        stored.set()
        time.sleep(0.5)  # the second delivery arrives while this one has not committed

    def second():
        stored.wait(5)
        try:
            results["second"] = in_request(registry, lambda request: receive(
                request.ctx, "relay", "evt-9", report(message_id, "delivered")))
        except Exception as exc:  # pragma: no cover - the failure being tested for
            errors.append(exc)

    other = threading.Thread(target=second)
    other.start()
    in_request(registry, first)
    other.join(10)
    assert errors == []
    assert results["first"].duplicate is False
    assert (results["second"].duplicate, results["second"].id) == (True, results["first"].id)
    drain(registry["huey"])
    [entry] = entries(app)
    assert entry.status == "succeeded"
    assert relay.handled == ["evt-9"]


def test_reports_out_of_order_never_move_the_state_back(app, events):
    message_id, notification_id = sent(app)
    for event_id, state in (("e1", "delivered"), ("e2", "sent"), ("e3", "complained"), ("e4", "delivered"),
                            ("e5", "bounced")):
        deliver(app, event_id, report(message_id, state))
    row = notification(app, notification_id)
    assert row.delivery_state == "complained", "a complaint is final: no later report changes it"
    notes = [entry.note for entry in entries(app)]
    assert notes[1] == f"notification {notification_id} is delivered: a later report, sent, changes nothing"
    assert notes[3].endswith("is complained: a later report, delivered, changes nothing")
    assert events.names("notification.") == ["notification.sent", "notification.delivered",
                                              "notification.complained"]
    assert [entry.status for entry in entries(app)] == ["succeeded"] * 5


def test_a_bounce_before_the_delivery_report_stays_a_bounce_and_suppresses_the_address(app, events):
    message_id, notification_id = sent(app, "Grace@Example.com")
    deliver(app, "b1", report(message_id, "bounced", "Permanent: General"))
    deliver(app, "d1", report(message_id, "delivered"))
    row = notification(app, notification_id)
    assert (row.delivery_state, row.delivery_detail, row.delivered_at) == ("bounced", "Permanent: General", None)
    [listed] = call(app, lambda ctx: [(s.address, s.reason, s.source) for s in ctx.db.scalars(select(Suppression))])
    assert listed == ("grace@example.com", "hard_bounce", "console")
    assert [event.data.get("detail") for event in events.named("notification.bounced")] == ["Permanent: General"]
    # The next message to the address is stopped when it is about to go out.
    _, next_id = sent(app, "grace@example.com")
    assert (notification(app, next_id).status, notification(app, next_id).delivery_state) == \
        ("suppressed", "suppressed")


def test_an_unknown_message_id_is_processed_with_a_note_and_no_retry(app, relay):
    deliver(app, "u1", report("console-nobody", "delivered"))
    [entry] = entries(app)
    assert (entry.status, entry.attempts, entry.last_error) == ("succeeded", 1, None)
    assert entry.note == "no notification sent through console has message id 'console-nobody': nothing to update"


def test_a_failing_handler_is_retried_with_backoff_and_its_error_kept(make_app):
    relay = Relay(failures=len(RETRY_BACKOFF))
    app = make_app({"huey.immediate": "false"}, plugins=[("relay", relay)])
    huey = app.app.registry["huey"]
    with time_machine.travel(T0, tick=False) as clock:
        message_id, notification_id = sent(app)
        deliver(app, "f1", report(message_id, "delivered"))
        for pause in RETRY_BACKOFF:
            drain(huey)
            [entry] = entries(app)
            assert (entry.status, entry.processed_at) == ("pending", None)
            assert entry.last_error == "RuntimeError: the relay's handler broke"
            assert entry.next_attempt_at == dt.datetime.now(dt.UTC) + dt.timedelta(seconds=pause)
            clock.shift(pause)
        drain(huey)
    [entry] = entries(app)
    assert (entry.status, entry.attempts, entry.last_error) == ("succeeded", len(RETRY_BACKOFF) + 1, None)
    assert notification(app, notification_id).delivery_state == "delivered", \
        "the failed attempts' work was rolled back, the last one's kept"


def test_a_handler_that_always_fails_leaves_the_webhook_failed_with_its_error(make_app):
    relay = Relay(failures=len(RETRY_BACKOFF) + 1)
    app = make_app({"huey.immediate": "false"}, plugins=[("relay", relay)])
    huey = app.app.registry["huey"]
    with time_machine.travel(T0, tick=False) as clock:
        deliver(app, "f2", report("console-x", "delivered"))
        for pause in RETRY_BACKOFF:
            drain(huey)
            clock.shift(pause)
        drain(huey)
        clock.shift(3600)
        assert run_task_now(app.app.registry, reap) == 0, "a failed webhook is not lost, and not retried"
    [entry] = entries(app)
    assert (entry.status, entry.attempts) == ("failed", len(RETRY_BACKOFF) + 1)
    assert entry.last_error == "RuntimeError: the relay's handler broke"
    assert entry.body == report("console-x", "delivered"), "the body stays for an operator"


def test_a_webhook_stored_while_redis_is_down_is_processed_once_it_is_back(make_app, relay, caplog):
    """The push after commit fails against a Redis that is not there: the
    call is still stored (so the provider is answered 2xx) and the reaper
    queues it once a worker can."""
    down = make_app({"huey.immediate": "false", "huey.url": f"redis://127.0.0.1:{free_port()}/11"},
                    plugins=[("relay", relay)])
    worker = make_app({"huey.immediate": "false"}, plugins=[("relay", relay)])
    with time_machine.travel(T0, tick=False) as clock:
        message_id, notification_id = sent(worker)
        assert deliver(down, "r1", report(message_id, "delivered")).duplicate is False
        assert any("could not enqueue" in record.getMessage() for record in caplog.records)
        [entry] = entries(worker)
        assert (entry.status, entry.attempts) == ("pending", 0)
        assert run_task_now(worker.app.registry, reap) == 0, "not lost yet: its task may still come"
        clock.shift(worker.app.registry.settings["jobs.lost_after"] + 1)
        assert run_task_now(worker.app.registry, reap) == 1
        drain(worker.app.registry["huey"])
    [entry] = entries(worker)
    assert (entry.status, entry.attempts) == ("succeeded", 1)
    assert notification(worker, notification_id).delivery_state == "delivered"


@pytest.mark.parametrize("event_id, body, headers, problem", [
    ("", "{}", {}, "the event id must be 1 to 255 characters"),
    ("x" * 256, "{}", {}, "the event id must be 1 to 255 characters"),
    ("e\x00", "{}", {}, "the event id must not contain a NUL character"),
    ("e", "{\x00}", {}, "the payload must not contain a NUL character"),
    ("e", "{\ud800}", {}, "the payload must be valid Unicode text"),
    ("e", b"{}", {}, "the payload must be text"),
    ("e", "x" * 262145, {}, "the payload is larger than 262144 bytes"),
    ("e", "\N{GRINNING FACE}" * 65537, {}, "the payload is larger than 262144 bytes"),
    ("e", "{}", {"X-Sig": "a\x00"}, "the header 'X-Sig' must not contain a NUL character"),
    ("e", "{}", {f"h{i}": "v" for i in range(21)}, "at most 20 headers are kept"),
])
def test_what_cannot_be_stored_is_refused_naming_the_problem(app, relay, event_id, body, headers, problem):
    with pytest.raises(InvalidWebhook) as refused:
        deliver(app, event_id, body, headers)
    assert str(refused.value) == problem
    assert entries(app) == [] and relay.handled == []


def test_a_provider_nobody_handles_is_a_programming_error(app):
    with pytest.raises(LookupError, match="no webhook handler is registered for provider 'nobody'"):
        call(app, lambda ctx: receive(ctx, "nobody", "e", "{}"))


def test_a_report_that_is_not_a_delivery_state_is_refused(app):
    with pytest.raises(ValueError, match="'opened' is not a delivery report"):
        call(app, lambda ctx: advance_delivery(ctx, "console", "console-x", "opened"))


@pytest.mark.parametrize("current, new, forward", [
    (None, "sent", True), ("queued", "sent", True), ("sent", "delivered", True), ("delivered", "sent", False),
    ("delivered", "delivered", False), ("delivered", "bounced", True), ("delivered", "complained", True),
    ("bounced", "delivered", False), ("bounced", "complained", False), ("complained", "failed", False),
    ("suppressed", "sent", False), ("failed", "delivered", False), ("queued", "failed", True),
])
def test_states_only_move_forward(current, new, forward):
    assert moves_forward(current, new) is forward


class Refusing:
    name, channels = "refusing", ("email",)

    def send(self, message):
        raise PermanentDeliveryError("550 no such mailbox")

    @hookimpl
    def register_notification_providers(self, settings):
        return [self]


def test_a_send_refused_for_good_is_failed_in_its_delivery_state_too(make_app):
    app = make_app({"notifications.email.provider": "refusing"}, plugins=[("refusing", Refusing())])
    notification_id = call(app, lambda ctx: queue_notification(
        ctx, channel="email", recipient="ada@example.com", template="test_message",
        context={"base_url": "https://gg.example"}).id)
    row = notification(app, notification_id)
    assert (row.status, row.delivery_state, row.delivery_detail) == (
        "failed", "failed", "permanent: 550 no such mailbox")


def test_two_handlers_for_one_provider_stop_startup(make_app, relay):
    with pytest.raises(SettingsError, match="two webhook handlers are for provider 'relay'"):
        make_app(plugins=[("relay", relay), ("again", Relay())])


def test_processed_webhooks_go_after_the_retention_period_and_failed_ones_stay(make_app):
    relay = Relay(failures=len(RETRY_BACKOFF) + 1)
    app = make_app({"huey.immediate": "false", "webhooks.retention_days": "30"}, plugins=[("relay", relay)])
    registry = app.app.registry
    with time_machine.travel(T0, tick=False) as clock:
        deliver(app, "failing", report("console-x", "delivered"))
        for pause in (0, *RETRY_BACKOFF):
            clock.shift(pause)
            drain(registry["huey"])
        deliver(app, "old", report("console-x", "delivered"))
        drain(registry["huey"])
        clock.shift(dt.timedelta(days=30, seconds=-1))
        deliver(app, "recent", report("console-x", "delivered"))
        drain(registry["huey"])
        assert run_task_now(registry, purge_processed_webhooks) == 0, "not yet 30 days"
        clock.shift(2)
        assert run_task_now(registry, purge_processed_webhooks) == 1
    assert sorted((entry.event_id, entry.status) for entry in entries(app)) == [
        ("failing", "failed"), ("recent", "succeeded")]
