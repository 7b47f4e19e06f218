"""The outbox: rows first, delivery by task, retries on the backoff schedule,
recovery by the reaper, secrets sealed at rest."""
import datetime as dt

import pytest
import time_machine
from pyramid_jinja2 import IJinja2Environment
from sqlalchemy import select, text, update

from guestguard import keys
from guestguard.notifications.models import Notification
from guestguard.notifications.rendering import TemplateMissing
from guestguard.notifications.services import RETRY_BACKOFF, SEAL_PURPOSE, queue_notification
from guestguard.notifications.tasks import dispatch_notification
from guestguard.plugins import PermanentDeliveryError, TransientDeliveryError, hookimpl
from guestguard.tasks import claim_job, reap, run_task_now
from guestguard.testing import drain, scripted, together

T0 = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)


class ScriptedProvider:
    """Fails as scripted, then delivers; records what it was handed."""

    name = "scripted"
    channels = ("email", "sms")

    def __init__(self, failures=()):
        self.failures = list(failures)
        self.sent = []
        self.calls = 0

    def send(self, message):
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(message)
        return f"scripted-{len(self.sent)}"

    @hookimpl
    def register_notification_providers(self, settings):
        return [self]


@pytest.fixture
def queued_app(make_app):
    """An app whose queue is read only when the test drains it."""

    def build(provider=None, **settings):
        plugins = [("scripted", provider)] if provider else []
        chosen = {"notifications.email.provider": "scripted"} if provider else {}
        return make_app({"huey.immediate": "false", **chosen, **settings}, plugins=plugins)

    return build


def queue(registry, run_in_request, **overrides):
    values = {"channel": "email", "recipient": "ada@example.com", "template": "test_message",
                  "context": {"base_url": "https://gg.example"}}
    values.update(overrides)
    return run_in_request(lambda request: queue_notification(request.ctx, **values).id, registry)


def load(registry, notification_id):
    with scripted(registry) as env:
        request = env["request"]
        with request.tm:
            row = request.db.get(Notification, notification_id)
            request.db.expunge(row)
            return row


def test_queued_email_is_delivered_with_all_parts(queued_app, run_in_request):
    provider = ScriptedProvider()
    app = queued_app(provider)
    registry = app.app.registry
    notification_id = queue(registry, run_in_request)
    assert load(registry, notification_id).status == "pending"
    assert provider.sent == [], "nothing is sent before the task runs"
    assert drain(registry["huey"]) == 2, "the delivery, then its notification.sent domain event"
    message = provider.sent[0]
    assert message.subject == "GuestGuard test message"
    assert "https://gg.example" in message.text
    assert '<a href="https://gg.example">' in message.html
    assert message.sender == "GuestGuard <no-reply@localhost>"
    row = load(registry, notification_id)
    assert (row.status, row.attempts, row.provider, row.provider_message_id) == (
        "succeeded", 1, "scripted", "scripted-1")
    assert row.sent_at is not None


def test_sms_renders_its_single_part(queued_app, run_in_request):
    provider = ScriptedProvider()
    app = queued_app(provider, **{"notifications.sms.provider": "scripted"})
    registry = app.app.registry
    queue(registry, run_in_request, channel="sms", recipient="+14155550100")
    drain(registry["huey"])
    message = provider.sent[0]
    assert message.text.startswith("GuestGuard test message from https://gg.example")
    assert message.subject == "" and message.html == ""


def test_transient_failures_retry_on_the_backoff_schedule_then_fail(queued_app, run_in_request):
    failures = [TransientDeliveryError("try later")] * (len(RETRY_BACKOFF) + 1)
    provider = ScriptedProvider(failures)
    app = queued_app(provider)
    registry = app.app.registry
    huey = registry["huey"]
    with time_machine.travel(T0, tick=False) as clock:
        notification_id = queue(registry, run_in_request, sealed={"link": "https://gg.example/t/SECRET"})
        drain(huey)
        waits = []
        for attempt, _ in enumerate(RETRY_BACKOFF, start=2):
            row = load(registry, notification_id)
            assert row.status == "pending"
            waits.append((row.next_attempt_at - dt.datetime.now(dt.UTC)).total_seconds())
            clock.move_to(row.next_attempt_at - dt.timedelta(milliseconds=1))
            assert drain(huey) == 0, "not before it is due"
            clock.move_to(row.next_attempt_at)
            last = attempt == len(RETRY_BACKOFF) + 1
            # The last attempt fails for good and announces notification.failed.
            assert drain(huey) == (2 if last else 1)
    assert waits == [float(s) for s in RETRY_BACKOFF] == [1, 5, 30, 300, 1800]
    row = load(registry, notification_id)
    assert row.status == "failed"
    assert row.attempts == len(RETRY_BACKOFF) + 1
    assert "try later" in row.last_error
    assert row.sealed_context is None, "secrets are dropped once the message is final"
    assert provider.calls == 6


def test_a_transient_failure_then_success(queued_app, run_in_request):
    provider = ScriptedProvider([OSError("connection reset")])
    app = queued_app(provider)
    registry = app.app.registry
    with time_machine.travel(T0, tick=False) as clock:
        notification_id = queue(registry, run_in_request)
        drain(registry["huey"])
        assert "connection reset" in load(registry, notification_id).last_error
        clock.shift(1)
        drain(registry["huey"])
    row = load(registry, notification_id)
    assert (row.status, row.attempts, row.last_error) == ("succeeded", 2, None)


def test_a_permanent_failure_stops_at_once(queued_app, run_in_request):
    provider = ScriptedProvider([PermanentDeliveryError("550 no such mailbox")])
    app = queued_app(provider)
    registry = app.app.registry
    notification_id = queue(registry, run_in_request)
    drain(registry["huey"])
    row = load(registry, notification_id)
    assert (row.status, row.attempts) == ("failed", 1)
    assert "550 no such mailbox" in row.last_error


def test_a_lost_task_is_delivered_by_the_reaper(queued_app, run_in_request):
    provider = ScriptedProvider()
    app = queued_app(provider)
    registry = app.app.registry
    huey = registry["huey"]
    lost_after = registry.settings["jobs.lost_after"]
    with time_machine.travel(T0, tick=False) as clock:
        notification_id = queue(registry, run_in_request)
        assert huey.dequeue() is not None  # the worker took it and died
        assert drain(huey) == 0
        assert run_task_now(registry, reap) == 0, "not yet overdue"
        clock.shift(lost_after + 1)
        assert run_task_now(registry, reap) == 1
        assert drain(huey) == 2, "the delivery, then its notification.sent domain event"
    row = load(registry, notification_id)
    assert row.status == "succeeded"
    assert len(provider.sent) == 1


def test_a_job_whose_worker_died_mid_run_is_retried(queued_app, run_in_request):
    provider = ScriptedProvider()
    app = queued_app(provider)
    registry = app.app.registry
    huey = registry["huey"]
    lease = registry.settings["jobs.lease_seconds"]
    with time_machine.travel(T0, tick=False) as clock:
        notification_id = queue(registry, run_in_request)
        huey.dequeue()
        run_in_request(lambda request: claim_job(request, Notification, notification_id,
                                                 dispatch_notification), registry)
        assert load(registry, notification_id).status == "running"
        clock.shift(lease - 5)
        assert run_task_now(registry, reap) == 0, "a running job is left alone while its lease holds"
        clock.shift(10)
        assert run_task_now(registry, reap) == 1
        drain(huey)
    row = load(registry, notification_id)
    assert (row.status, row.attempts) == ("succeeded", 2)
    assert len(provider.sent) == 1


def test_a_send_that_outlives_its_claim_is_not_repeated(queued_app, run_in_request):
    """The reaper took the job back while a slow send was still running; the
    send then succeeded. The success is recorded and the re-queued task
    finds nothing to do."""
    from guestguard.notifications import services

    provider = ScriptedProvider()
    app = queued_app(provider)
    registry = app.app.registry
    huey = registry["huey"]
    with time_machine.travel(T0, tick=False) as clock:
        notification_id = queue(registry, run_in_request)
        huey.dequeue()
        attempt = run_in_request(lambda request: services.begin_attempt(request.ctx, notification_id), registry)
        clock.shift(registry.settings["jobs.lease_seconds"] + 1)
        assert run_task_now(registry, reap) == 1
        result = services.deliver(attempt)
        run_in_request(lambda request: services.record_outcomes(request.ctx, [(attempt, result)]), registry)
        assert load(registry, notification_id).status == "succeeded"
        drain(huey)
    assert len(provider.sent) == 1


def test_dispatch_is_idempotent(queued_app, run_in_request):
    provider = ScriptedProvider()
    app = queued_app(provider)
    registry = app.app.registry
    notification_id = queue(registry, run_in_request)
    drain(registry["huey"])
    run_task_now(registry, dispatch_notification, notification_id)
    run_task_now(registry, dispatch_notification, notification_id)
    assert len(provider.sent) == 1




def test_sealed_values_are_not_stored_readable(queued_app, run_in_request):
    provider = ScriptedProvider()
    app = queued_app(provider)
    registry = app.app.registry
    secret = "tok_9f8e7d6c5b4a39281706f5e4d3c2b1a0"
    notification_id = queue(registry, run_in_request, template="test_message",
                            context={}, sealed={"base_url": f"https://gg.example/i/{secret}"})

    def dump():
        with registry["db.engine"].connect() as connection:
            return repr(connection.execute(text("SELECT * FROM notifications")).all())

    assert secret not in dump()
    assert load(registry, notification_id).sealed_context
    drain(registry["huey"])
    assert secret in provider.sent[0].text
    assert secret not in dump()
    assert load(registry, notification_id).sealed_context is None


def test_values_sealed_under_another_secret_fail_the_notification(queued_app, run_in_request):
    """A message queued before app.secret changed cannot be opened: it
    fails, naming why, and nothing half-rendered is sent."""
    provider = ScriptedProvider()
    app = queued_app(provider)
    registry = app.app.registry
    notification_id = queue(registry, run_in_request, template="test_message",
                            context={}, sealed={"base_url": "https://gg.example/i/tok"})
    other = keys.seal({"app.secret": "another-secret-" + "x" * 32}, SEAL_PURPOSE,
                      b'{"base_url": "https://gg.example/i/tok"}').decode()
    with registry["db.engine"].begin() as connection:
        connection.execute(update(Notification).where(Notification.id == notification_id)
                           .values(sealed_context=other))
    drain(registry["huey"])
    row = load(registry, notification_id)
    assert row.status == "failed"
    assert row.last_error == "sealed context cannot be decrypted"
    assert provider.sent == []


def test_a_template_error_fails_the_notification(queued_app, run_in_request):
    provider = ScriptedProvider()
    app = queued_app(provider)
    registry = app.app.registry
    notification_id = queue(registry, run_in_request, context={})  # base_url missing
    drain(registry["huey"])
    row = load(registry, notification_id)
    assert row.status == "failed"
    assert "rendering failed" in row.last_error and "base_url" in row.last_error
    assert provider.sent == []


def test_unknown_template_is_refused_when_queueing(app, run_in_request):
    with pytest.raises(TemplateMissing):
        queue(app.app.registry, run_in_request, template="no_such_template")
    with pytest.raises(TemplateMissing):
        queue(app.app.registry, run_in_request, template="../errors/404")


def test_messages_and_pages_share_the_compiled_templates_cache(make_app, tmp_path):
    """jinja2.bytecode_caching holds the messages' compiled templates beside
    the pages': an application built later loads them instead of compiling."""
    app = make_app({"jinja2.bytecode_caching_directory": str(tmp_path)})
    renderer = app.app.registry["notifications.renderer"]
    renderer.env.get_template("sms/invitation.txt")
    assert len(list(tmp_path.glob("__jinja2_*.cache"))) == 1
    app.get("/login")
    assert renderer.env.bytecode_cache is app.app.registry.queryUtility(
        IJinja2Environment, name=".jinja2").bytecode_cache
    assert len(list(tmp_path.glob("__jinja2_*.cache"))) >= 2


def test_immediate_mode_delivers_through_the_console_provider(app, run_in_request):
    registry = app.app.registry
    notification_id = queue(registry, run_in_request)
    console = registry["notifications.providers_by_name"]["console"]
    assert console.messages[0][1].notification_id == notification_id
    assert load(registry, notification_id).status == "succeeded"


def test_dev_outbox_shows_console_messages_in_development(make_app, run_in_request):
    app = make_app({"app.env": "development"})
    registry = app.app.registry
    queue(registry, run_in_request, recipient="grace@example.com")
    page = app.get("/dev/outbox")
    assert "grace@example.com" in page.text
    assert "GuestGuard test message" in page.text
    assert '<a href="https://gg.example"' in page.text


def test_dev_outbox_does_not_exist_outside_development(app):
    app.get("/dev/outbox", status=404)


def test_outbox_rows_list_by_status(app, run_in_request):
    registry = app.app.registry
    queue(registry, run_in_request)
    statuses = run_in_request(lambda r: r.db.scalars(select(Notification.status)).all(), registry)
    assert statuses == ["succeeded"]


def test_retry_times_survive_a_server_clock_in_another_time_zone(queued_app, run_in_request, monkeypatch):
    """Huey reads naive datetimes as local time; the eta handed over is aware."""
    import time

    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        provider = ScriptedProvider([TransientDeliveryError("later")])
        app = queued_app(provider)
        registry = app.app.registry
        notification_id = queue(registry, run_in_request)
        drain(registry["huey"])
        row = load(registry, notification_id)
        scheduled = registry["huey"].scheduled()
        assert len(scheduled) == 1
        eta = scheduled[0].eta.replace(tzinfo=dt.UTC)  # Huey keeps naive UTC
        assert abs((eta - row.next_attempt_at).total_seconds()) < 0.01
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_a_task_that_arrives_early_waits_for_its_time(queued_app, run_in_request):
    provider = ScriptedProvider([TransientDeliveryError("later")])
    app = queued_app(provider)
    registry = app.app.registry
    huey = registry["huey"]
    with time_machine.travel(T0, tick=False) as clock:
        notification_id = queue(registry, run_in_request)
        drain(huey)
        huey.flush()  # lose the scheduled retry ...
        run_task_now(registry, dispatch_notification, notification_id)  # ... and arrive early
        assert provider.calls == 1, "not sent before it is due"
        [requeued] = huey.pending()
        assert requeued.eta.replace(tzinfo=dt.UTC) == load(registry, notification_id).next_attempt_at
        clock.shift(1)
        drain(huey)
    assert load(registry, notification_id).status == "succeeded"


def test_a_job_whose_worker_keeps_dying_is_given_up(queued_app, run_in_request):
    provider = ScriptedProvider()
    app = queued_app(provider)
    registry = app.app.registry
    huey = registry["huey"]
    lease = registry.settings["jobs.lease_seconds"]
    with time_machine.travel(T0, tick=False) as clock:
        notification_id = queue(registry, run_in_request, sealed={"link": "https://gg.example/x"})
        for _ in range(len(RETRY_BACKOFF) + 1):
            huey.flush()
            run_in_request(lambda request: claim_job(request, Notification, notification_id,
                                                     dispatch_notification), registry)
            clock.shift(lease + 1)
            run_task_now(registry, reap)
    row = load(registry, notification_id)
    assert (row.status, row.attempts) == ("failed", len(RETRY_BACKOFF) + 1)
    assert "giving up" in row.last_error
    assert row.sealed_context is None
    assert provider.calls == 0


def test_the_reaper_leaves_a_job_that_finished_after_it_was_read(queued_app, run_in_request):
    """The reset is conditional on what the reaper saw, so a job completed in
    between (no row locks on SQLite) is not sent again."""
    from guestguard.tasks import DurableKind, _take_back

    provider = ScriptedProvider()
    app = queued_app(provider)
    registry = app.app.registry
    with time_machine.travel(T0, tick=False) as clock:
        notification_id = queue(registry, run_in_request)
        registry["huey"].flush()
        run_in_request(lambda request: claim_job(request, Notification, notification_id,
                                                 dispatch_notification), registry)
        seen = load(registry, notification_id)  # what the reaper read
        run_in_request(lambda request: setattr(request.db.get(Notification, notification_id),
                                               "status", "succeeded"), registry)
        clock.shift(registry.settings["jobs.lease_seconds"] + 1)
        kind = DurableKind(Notification, dispatch_notification, 6, None)
        took = run_in_request(lambda request: _take_back(request, kind, seen, T0), registry)
    assert took is False
    assert load(registry, notification_id).status == "succeeded"
    assert registry["huey"].pending() == []


def test_only_one_of_many_concurrent_claims_wins(queued_app, run_in_request):
    """Threads with their own connections race to claim one job."""
    import threading

    provider = ScriptedProvider()
    app = queued_app(provider)
    registry = app.app.registry
    notification_id = queue(registry, run_in_request)
    registry["huey"].flush()
    barrier = threading.Barrier(6)
    winners = []

    def contend():
        barrier.wait()
        job = run_in_request(lambda request: claim_job(request, Notification, notification_id,
                                                       dispatch_notification), registry)
        if job is not None:
            winners.append(job.id)

    threads = [threading.Thread(target=contend) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert winners == [notification_id]
    assert load(registry, notification_id).attempts == 1


# --- one Message-ID per message, whatever the attempts --------------------------


class RecordingProvider(ScriptedProvider):
    """Also keeps the message of every attempt, failed ones included."""

    def __init__(self, failures=()):
        super().__init__(failures)
        self.attempts = []

    def send(self, message):
        self.attempts.append(message)
        return super().send(message)


def unknown_outcome_resends(channel="email"):
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("gg_notification_unknown_outcome_resends_total", {"channel": channel}) or 0.0


def test_the_message_id_is_fixed_when_the_row_is_made_and_sent_with_every_attempt(queued_app, run_in_request):
    provider = RecordingProvider([TransientDeliveryError("421 try later"), OSError("reset")])
    app = queued_app(provider, **{"notifications.email.sender": "Gala <hello@gala.example>"})
    registry = app.app.registry
    with time_machine.travel(T0, tick=False) as clock:
        notification_id = queue(registry, run_in_request)
        row = load(registry, notification_id)
        assert row.message_id == f"<{notification_id.hex}@gala.example>"
        for wait in (0, 1, 5):
            clock.shift(wait)
            drain(registry["huey"])
    assert [m.message_id for m in provider.attempts] == [row.message_id] * 3
    assert load(registry, notification_id).status == "succeeded"


def test_sms_has_no_message_id(queued_app, run_in_request):
    provider = RecordingProvider()
    app = queued_app(provider, **{"notifications.sms.provider": "scripted"})
    registry = app.app.registry
    notification_id = queue(registry, run_in_request, channel="sms", recipient="+14155550100")
    drain(registry["huey"])
    assert load(registry, notification_id).message_id is None
    assert provider.attempts[0].message_id == ""


def test_a_sender_without_an_ascii_domain_takes_the_app_host():
    import uuid

    from guestguard.notifications.services import message_id_for

    notification_id = uuid.uuid4()
    settings = {"notifications.email.sender": "Fête <bonjour@fête.example>", "app.base_url": "https://gg.example:8443"}
    assert message_id_for(settings, notification_id) == f"<{notification_id.hex}@gg.example>"


def test_a_row_queued_before_message_ids_gets_one_at_its_first_attempt(queued_app, run_in_request):
    from sqlalchemy import update

    provider = RecordingProvider()
    app = queued_app(provider)
    registry = app.app.registry
    notification_id = queue(registry, run_in_request)
    run_in_request(lambda request: request.db.execute(
        update(Notification).where(Notification.id == notification_id).values(message_id=None)), registry)
    drain(registry["huey"])
    row = load(registry, notification_id)
    assert row.message_id == f"<{notification_id.hex}@localhost>"
    assert provider.attempts[0].message_id == row.message_id


def test_a_send_whose_outcome_was_lost_goes_again_with_the_same_message_id_and_is_counted(
        queued_app, run_in_request, caplog):
    """The provider accepted the message, then the worker died before it
    recorded that: after the lease the message is sent again, as the same
    Message-ID, and the re-send is counted."""
    from guestguard.notifications import services

    provider = RecordingProvider()
    app = queued_app(provider)
    registry = app.app.registry
    before = unknown_outcome_resends()
    with time_machine.travel(T0, tick=False) as clock:
        notification_id = queue(registry, run_in_request)
        registry["huey"].flush()
        attempt = run_in_request(lambda request: services.begin_attempt(request.ctx, notification_id), registry)
        services.deliver(attempt)  # accepted ... and the worker is gone
        clock.shift(registry.settings["jobs.lease_seconds"] + 1)
        assert run_task_now(registry, reap) == 1
        drain(registry["huey"])
    assert len(provider.attempts) == 2
    assert provider.attempts[0].message_id == provider.attempts[1].message_id != ""
    assert unknown_outcome_resends() - before == 1
    assert any("outcome is unknown" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    row = load(registry, notification_id)
    assert (row.status, row.attempts) == ("succeeded", 2)


class AskableProvider(RecordingProvider):
    """A provider whose API says whether it accepted a message (as SES's or
    Twilio's can), keyed by the notification id; ``unsure`` makes it fail to
    answer that many times."""

    def __init__(self, unsure=0):
        super().__init__()
        self.accepted, self.asked, self.unsure = {}, [], unsure

    def send(self, message):
        provider_id = super().send(message)
        self.accepted[message.notification_id] = provider_id
        return provider_id

    def find_accepted(self, message):
        self.asked.append(message.notification_id)
        if self.unsure:
            self.unsure -= 1
            raise TransientDeliveryError("the provider's API timed out")
        return self.accepted.get(message.notification_id)


def reconciled(channel="email"):
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("gg_notification_reconciled_total", {"channel": channel}) or 0.0


def interrupted_send(app, run_in_request, clock, *, accepted: bool):
    """Claim and (if ``accepted``) send a notification, then lose the
    worker before it records anything; the reaper takes the job back."""
    from guestguard.notifications import services

    registry = app.app.registry
    notification_id = queue(registry, run_in_request)
    registry["huey"].flush()
    attempt = run_in_request(lambda request: services.begin_attempt(request.ctx, notification_id), registry)
    if accepted:
        services.deliver(attempt)
    clock.shift(registry.settings["jobs.lease_seconds"] + 1)
    assert run_task_now(registry, reap) == 1
    return notification_id


def test_a_provider_that_can_be_asked_is_asked_before_sending_again(queued_app, run_in_request):
    provider = AskableProvider()
    app = queued_app(provider)
    registry = app.app.registry
    before, resends = reconciled(), unknown_outcome_resends()
    with time_machine.travel(T0, tick=False) as clock:
        notification_id = interrupted_send(app, run_in_request, clock, accepted=True)
        drain(registry["huey"])
    assert provider.asked == [notification_id]
    assert len(provider.attempts) == 1  # found accepted: not sent again
    row = load(registry, notification_id)
    assert (row.status, row.attempts, row.provider_message_id) == ("succeeded", 2, "scripted-1")
    assert row.sealed_context is None
    assert (reconciled() - before, unknown_outcome_resends() - resends) == (1, 0)


def test_a_message_the_provider_never_accepted_is_sent_after_asking(queued_app, run_in_request):
    provider = AskableProvider()
    app = queued_app(provider)
    registry = app.app.registry
    before = reconciled()
    with time_machine.travel(T0, tick=False) as clock:
        notification_id = interrupted_send(app, run_in_request, clock, accepted=False)
        drain(registry["huey"])
    assert provider.asked == [notification_id] and len(provider.attempts) == 1
    assert load(registry, notification_id).status == "succeeded"
    assert reconciled() == before


def test_a_provider_that_cannot_answer_is_asked_again_later_not_sent_blind(queued_app, run_in_request):
    provider = AskableProvider(unsure=1)
    app = queued_app(provider)
    registry = app.app.registry
    with time_machine.travel(T0, tick=False) as clock:
        notification_id = interrupted_send(app, run_in_request, clock, accepted=True)
        drain(registry["huey"])
        row = load(registry, notification_id)
        assert (row.status, len(provider.attempts)) == ("pending", 1)
        assert "could not ask scripted about it" in row.last_error
        clock.shift(max(RETRY_BACKOFF) + 1)
        drain(registry["huey"])
    assert provider.asked == [notification_id] * 2
    row = load(registry, notification_id)
    assert (row.status, row.provider_message_id, len(provider.attempts)) == ("succeeded", "scripted-1", 1)


def test_a_database_blip_while_recording_is_waited_out_not_sent_twice(queued_app, run_in_request, monkeypatch):
    """Recording the provider's answer fails twice (the database is away for
    a moment): the worker tries again while it keeps the lease, so the
    message is not sent a second time."""
    import psycopg
    from sqlalchemy.exc import OperationalError

    from guestguard.notifications import services

    provider = RecordingProvider()
    app = queued_app(provider)
    registry = app.app.registry
    record, failures = services.record_outcomes, [2]
    before = unknown_outcome_resends()

    def flaky_record(*args, **kwargs):
        if failures[0]:
            failures[0] -= 1
            raise OperationalError("UPDATE notifications", {}, psycopg.OperationalError("server closed the connection"))
        return record(*args, **kwargs)

    monkeypatch.setattr(services, "record_outcomes", flaky_record)
    notification_id = queue(registry, run_in_request)
    drain(registry["huey"])
    row = load(registry, notification_id)
    assert (row.status, row.attempts, len(provider.attempts)) == ("succeeded", 1, 1)
    assert unknown_outcome_resends() == before


def test_a_database_away_longer_than_the_lease_leaves_the_job_to_the_reaper(queued_app, run_in_request, monkeypatch):
    import psycopg
    from sqlalchemy.exc import OperationalError

    from guestguard.notifications import services

    provider = RecordingProvider()
    app = queued_app(provider, **{"jobs.lease_seconds": "1"})
    registry = app.app.registry

    def down(*args, **kwargs):
        raise OperationalError("UPDATE notifications", {}, psycopg.OperationalError("connection refused"))

    monkeypatch.setattr(services, "record_outcomes", down)
    notification_id = queue(registry, run_in_request)
    registry["huey"].flush()
    with pytest.raises(OperationalError):
        run_task_now(registry, dispatch_notification, notification_id)
    assert load(registry, notification_id).status == "running", "the outcome is unknown: the reaper decides"


def test_threads_rendering_their_first_messages_together_compile_each_template_once(app):
    """The worker's threads start their first batches at the same moment:
    each part of the message, and the layout and button its HTML takes in,
    is compiled once, not once a thread."""
    import threading

    renderer = app.app.registry["notifications.renderer"]
    renderer.env.bytecode_cache = None
    compiled = []
    compile_ = renderer.env.compile

    def counted(source, name=None, *args, **kwargs):
        compiled.append(name)
        return compile_(source, name, *args, **kwargs)

    renderer.env.compile = counted
    context = {"display_name": "Ada", "attempts": 5, "reset_url": "https://gg.example/reset", "minutes": 30,
               "base_url": "https://gg.example"}
    start = threading.Barrier(8)

    def render():
        start.wait()
        return renderer.render("email", "account_locked", context)

    assert len(set(together([render] * 8))) == 1
    parts = renderer.template_paths("email", "account_locked").values()
    assert sorted(compiled) == sorted([*parts, "email/base.html", "email/button.html"])
