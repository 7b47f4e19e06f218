"""Provider resilience in the core: a timeout on every send, a circuit
breaker per provider (state shared through Redis; closed when Redis is
away), a fallback provider per channel, and quiet hours for guests' texts."""
import datetime as dt
import logging
import threading

import pytest
import time_machine
from prometheus_client import REGISTRY

from guestguard.events.deliveries import held_words
from guestguard.notifications.breaker import Breakers, MemoryState, RedisState
from guestguard.notifications.models import Notification
from guestguard.notifications.services import queue_notification
from guestguard.notifications.suppression import GUEST_MESSAGE
from guestguard.plugins import PermanentDeliveryError, TransientDeliveryError, hookimpl
from guestguard.testing import drain, free_port

T0 = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)


class Provider:
    """Fails as scripted (an exception, or "hang" to outlive the timeout),
    then delivers; records what it was handed."""

    def __init__(self, name, failures=(), channels=("email", "sms")):
        self.name, self.channels = name, channels
        self.failures = list(failures)
        self.sent = []
        self.calls = 0
        self.release = threading.Event()

    def send(self, message):
        self.calls += 1
        if self.failures:
            failure = self.failures.pop(0)
            if failure == "hang":
                self.sent.append(message)  # it went out; the answer never came in time
                self.release.wait(10)
                return "late"
            raise failure
        self.sent.append(message)
        return f"{self.name}-{len(self.sent)}"

    @hookimpl
    def register_notification_providers(self, settings):
        return [self]


@pytest.fixture
def build(make_app):
    def build(*providers, **settings):
        values = {"huey.immediate": "false", "notifications.email.provider": providers[0].name,
                  "notifications.breaker.failures": "3", "notifications.breaker.cooldown_seconds": "60",
                  "notifications.quiet_hours.enabled": "true"}
        values.update({key.replace("__", "."): value for key, value in settings.items()})
        return make_app(values, plugins=[(p.name, p) for p in providers])
    return build


def queue(registry, run_in_request, **overrides):
    values = {"channel": "email", "recipient": "ada@example.com", "template": "test_message",
              "context": {"base_url": "https://gg.example"}}
    values.update(overrides)
    return run_in_request(lambda request: queue_notification(request.ctx, **values).id, registry)


def load(registry, run_in_request, notification_id):
    def read(request):
        row = request.db.get(Notification, notification_id)
        request.db.expunge(row)
        return row
    return run_in_request(read, registry)


def metric(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


# --- the circuit breaker ---------------------------------------------------------


def test_the_breaker_opens_after_consecutive_failures_holds_without_burning_attempts_then_probes(
        build, run_in_request, caplog):
    primary = Provider("flaky", [TransientDeliveryError("503 unavailable")] * 4)
    app = build(primary)
    registry = app.app.registry
    huey = registry["huey"]
    opened = metric("gg_notification_breaker_transitions_total", provider="flaky", to="open")
    closed = metric("gg_notification_breaker_transitions_total", provider="flaky", to="closed")
    caplog.set_level(logging.INFO)
    with time_machine.travel(T0, tick=False) as clock:
        ids = [queue(registry, run_in_request, recipient=f"guest{i}@example.com") for i in range(5)]
        drain(huey)
        # Three failures in a row open the breaker; the other two messages are held.
        assert primary.calls == 3
        rows = [load(registry, run_in_request, i) for i in ids]
        assert sorted(r.attempts for r in rows) == [0, 0, 1, 1, 1], "a held message burns no attempt"
        held = [r for r in rows if r.attempts == 0]
        assert all(r.status == "pending" and r.next_attempt_at == T0 + dt.timedelta(seconds=60) for r in held)
        assert all("circuit breaker of flaky is open" in r.last_error for r in held)
        assert metric("gg_notification_breaker_transitions_total", provider="flaky", to="open") == opened + 1
        assert metric("gg_notification_breaker_open", provider="flaky") == 1
        assert "circuit breaker open for 60 s (3 transient failures in a row)" in caplog.text
        assert registry["notifications.breakers"].status("flaky") == "open"

        # The retries due within the cool-down are held too, still without an attempt.
        clock.shift(30)
        drain(huey)
        assert primary.calls == 3

        # After the cool-down, one message probes; it fails: open again.
        clock.move_to(T0 + dt.timedelta(seconds=60))
        drain(huey)
        assert primary.calls == 4
        assert metric("gg_notification_breaker_transitions_total", provider="flaky", to="open") == opened + 2
        assert "its probe failed" in caplog.text

        # Next cool-down: the probe succeeds, the breaker closes, everything goes.
        clock.move_to(T0 + dt.timedelta(seconds=121))
        drain(huey)
        drain(huey)
    rows = [load(registry, run_in_request, i) for i in ids]
    assert [r.status for r in rows] == ["succeeded"] * 5
    assert len(primary.sent) == 5, "every message sent once"
    assert max(r.attempts for r in rows) <= 3
    assert metric("gg_notification_breaker_transitions_total", provider="flaky", to="closed") == closed + 1
    assert metric("gg_notification_breaker_open", provider="flaky") == 0
    assert registry["notifications.breakers"].status("flaky") == "closed"


def test_a_success_resets_the_count_so_only_consecutive_failures_open_it():
    breakers = Breakers(MemoryState(), failures=3, cooldown=60, probe_seconds=5, clock=lambda: 1000.0)
    for _ in range(5):
        breakers.failed("p")
        breakers.failed("p")
        breakers.succeeded("p")
    assert breakers.verdict("p").go
    breakers.failed("p")
    breakers.failed("p")
    breakers.failed("p")
    assert breakers.verdict("p") == type(breakers.verdict("p"))(False, 1060.0)


def test_only_one_probe_goes_through_a_half_open_breaker():
    now = [1000.0]
    breakers = Breakers(MemoryState(), failures=1, cooldown=60, probe_seconds=25, clock=lambda: now[0])
    breakers.failed("p")
    now[0] = 1060.0
    first, second = breakers.verdict("p"), breakers.verdict("p")
    assert first.go and first.probe
    assert not second.go and second.hold_until == 1086.0, "the others wait for the probe's answer"
    now[0] = 1090.0  # the probe never answered (its worker died): another may probe
    assert breakers.verdict("p").probe


def test_breaker_state_is_shared_by_workers_through_redis(redis_url):
    if not redis_url:
        pytest.skip("GG_TEST_REDIS_URL is not set")
    one, two = RedisState(redis_url), RedisState(redis_url)
    one.clear("shared")
    worker_a = Breakers(one, failures=2, cooldown=60, probe_seconds=5, clock=lambda: 1000.0)
    worker_b = Breakers(two, failures=2, cooldown=60, probe_seconds=5, clock=lambda: 1000.0)
    worker_a.failed("shared")
    worker_b.failed("shared")  # the second failure, seen by another worker
    assert not worker_a.verdict("shared").go and not worker_b.verdict("shared").go
    later_a = Breakers(one, failures=2, cooldown=60, probe_seconds=5, clock=lambda: 1061.0)
    later_b = Breakers(two, failures=2, cooldown=60, probe_seconds=5, clock=lambda: 1061.0)
    assert [later_a.verdict("shared").go, later_b.verdict("shared").go] == [True, False], "one probe"
    later_b.succeeded("shared")
    assert later_a.verdict("shared").go and later_b.verdict("shared").go
    one.clear("shared")


def test_with_redis_away_the_breaker_counts_as_closed_and_messages_go(build, run_in_request, caplog):
    provider = Provider("steady", [TransientDeliveryError("busy")] * 5)
    app = build(provider, notifications__breaker__url=f"redis://127.0.0.1:{free_port()}/0",
                notifications__breaker__failures="1")
    registry = app.app.registry
    errors = metric("gg_notification_breaker_store_errors_total", provider="steady")
    with time_machine.travel(T0, tick=False) as clock:
        notification_id = queue(registry, run_in_request)
        for _ in range(6):
            drain(registry["huey"])
            clock.shift(1800)
    row = load(registry, run_in_request, notification_id)
    assert (row.status, row.attempts) == ("succeeded", 6), "never held: the retries went on as usual"
    assert metric("gg_notification_breaker_store_errors_total", provider="steady") > errors
    assert "every provider counts as closed" in caplog.text


def test_a_hanging_redis_costs_one_timeout_per_pause_not_one_per_message(caplog):
    import socket
    import time

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # connections are taken into the backlog and never answered
    try:
        breakers = Breakers(RedisState(f"redis://127.0.0.1:{silent.getsockname()[1]}/0"), failures=1,
                            cooldown=60, probe_seconds=5)
        started = time.monotonic()
        for _ in range(20):
            assert breakers.verdict("p").go
            breakers.failed("p")
            breakers.succeeded("p")
        assert time.monotonic() - started < 5, "without the pause: 60 timeouts of half a second"
    finally:
        silent.close()
    assert caplog.text.count("circuit breaker state unavailable") == 1, "one warning per pause"


# --- the fallback -----------------------------------------------------------------


def send_one_with_fallback(build, run_in_request, failure):
    """One email through a primary that fails once with ``failure``, and a fallback."""
    primary, fallback = Provider("primary", [failure]), Provider("backup")
    registry = build(primary, fallback, notifications__email__fallback="backup").app.registry
    notification_id = queue(registry, run_in_request)
    drain(registry["huey"])
    return primary, fallback, load(registry, run_in_request, notification_id)


def test_a_transient_failure_falls_back_and_the_notification_says_which_provider_sent_it(build, run_in_request):
    primary, fallback, row = send_one_with_fallback(build, run_in_request, TransientDeliveryError("421 try later"))
    assert (row.status, row.attempts, row.provider, row.provider_message_id) == (
        "succeeded", 1, "backup", "backup-1")
    assert len(fallback.sent) == 1 and primary.sent == []
    assert fallback.sent[0].message_id == row.message_id, "the same Message-ID whichever provider sends"


def test_an_open_primary_sends_everything_through_the_fallback(build, run_in_request):
    primary = Provider("primary", [TransientDeliveryError("down")] * 3)
    fallback = Provider("backup")
    app = build(primary, fallback, notifications__email__fallback="backup")
    registry = app.app.registry
    with time_machine.travel(T0, tick=False):
        ids = [queue(registry, run_in_request, recipient=f"g{i}@example.com") for i in range(6)]
        drain(registry["huey"])
    assert primary.calls == 3, "after three failures the primary is not tried"
    rows = [load(registry, run_in_request, i) for i in ids]
    assert {(r.status, r.provider, r.attempts) for r in rows} == {("succeeded", "backup", 1)}
    assert len(fallback.sent) == 6


def test_a_permanent_refusal_is_not_retried_through_the_fallback(build, run_in_request):
    primary, fallback, row = send_one_with_fallback(build, run_in_request, PermanentDeliveryError("550 no user"))
    assert (row.status, row.provider) == ("failed", "primary")
    assert fallback.calls == 0


def test_when_both_are_open_the_message_is_held_until_the_first_cools_down(build, run_in_request):
    primary = Provider("primary", [TransientDeliveryError("down")] * 9)
    fallback = Provider("backup", [TransientDeliveryError("down too")] * 9)
    app = build(primary, fallback, notifications__email__fallback="backup",
                notifications__breaker__failures="1")
    registry = app.app.registry
    with time_machine.travel(T0, tick=False):
        first = queue(registry, run_in_request)
        drain(registry["huey"])
        second = queue(registry, run_in_request, recipient="bob@example.com")
        drain(registry["huey"])
    assert (primary.calls, fallback.calls) == (1, 1)
    row = load(registry, run_in_request, second)
    assert (row.status, row.attempts, row.next_attempt_at) == ("pending", 0, T0 + dt.timedelta(seconds=60))
    assert load(registry, run_in_request, first).attempts == 1


@pytest.mark.parametrize("settings, words", [
    ({"notifications__email__fallback": "nobody"}, "unknown provider 'nobody'"),
    ({"notifications__email__fallback": "primary"}, "must differ from the provider"),
    ({"notifications__sms__fallback": "backup", "notifications__sms__provider": ""},
     "sms has no provider to fall back from"),
])
def test_a_fallback_that_cannot_serve_stops_startup(build, settings, words):
    from guestguard.settings import SettingsError

    with pytest.raises(SettingsError, match=words):
        build(Provider("primary"), Provider("backup"), **settings)


# --- the send timeout ----------------------------------------------------------------


def test_a_send_that_outlives_the_timeout_is_an_unknown_outcome_asked_about_not_resent_blind(
        build, run_in_request):
    class Askable(Provider):
        def find_accepted(self, message):
            return "found-it" if message in self.sent else None

    primary = Askable("slow", ["hang"])
    fallback = Provider("backup")
    app = build(primary, fallback, notifications__email__fallback="backup",
                notifications__send_timeout_seconds="0.5")
    registry = app.app.registry
    try:
        with time_machine.travel(T0, tick=False) as clock:
            notification_id = queue(registry, run_in_request)
            drain(registry["huey"])
            row = load(registry, run_in_request, notification_id)
            assert row.status == "pending"
            assert row.last_error.startswith("outcome unknown: transient: slow did not answer within 0.5 s")
            assert fallback.calls == 0, "the slow provider may have sent it: no second copy by the fallback"
            assert primary.sent[0].timeout == 0.5, "the provider is told the timeout"
            clock.shift(1)
            drain(registry["huey"])
    finally:
        primary.release.set()
    row = load(registry, run_in_request, notification_id)
    assert (row.status, row.provider, row.provider_message_id) == ("succeeded", "slow", "found-it")
    assert primary.calls == 1 and fallback.calls == 0, "asked, not sent again"


# --- quiet hours ---------------------------------------------------------------------


NEW_YORK_PHONE = "+12125550123"


def test_a_guest_text_at_night_is_held_until_morning_without_burning_an_attempt(build, run_in_request):
    provider = Provider("texts")
    app = build(provider, notifications__sms__provider="texts")
    registry = app.app.registry
    night = dt.datetime(2026, 5, 1, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-4)))  # New York, EDT
    morning = dt.datetime(2026, 5, 2, 12, 0, tzinfo=dt.UTC)  # 08:00 EDT
    with time_machine.travel(night, tick=False) as clock:
        guest = queue(registry, run_in_request, channel="sms", recipient=NEW_YORK_PHONE, kind=GUEST_MESSAGE,
                      workspace_id=None, context={"base_url": "x", "timezone": "Europe/Paris"})
        account = queue(registry, run_in_request, channel="sms", recipient=NEW_YORK_PHONE,
                        context={"base_url": "x"})
        drain(registry["huey"])
        assert load(registry, run_in_request, account).status == "succeeded", "account texts are exempt"
        row = load(registry, run_in_request, guest)
        assert (row.status, row.attempts, row.next_attempt_at) == ("pending", 0, morning)
        assert "quiet hours" in row.last_error
        # The host's pages say why it waits, and until when, in the event's zone.
        assert held_words(row.last_error, "America/New_York") == (
            "quiet hours at the recipient's; it goes out at Sat 2 May 2026, 8:00 am EDT")
        clock.move_to(morning - dt.timedelta(minutes=1))
        drain(registry["huey"])
        assert load(registry, run_in_request, guest).status == "pending"
        clock.move_to(morning)
        drain(registry["huey"])
    row = load(registry, run_in_request, guest)
    assert (row.status, row.attempts) == ("succeeded", 1)
    assert len(provider.sent) == 2


def test_quiet_hours_can_be_switched_off(build, run_in_request):
    provider = Provider("texts")
    app = build(provider, notifications__sms__provider="texts", notifications__quiet_hours__enabled="false")
    registry = app.app.registry
    with time_machine.travel(dt.datetime(2026, 5, 2, 3, 0, tzinfo=dt.UTC), tick=False):  # 23:00 in New York
        guest = queue(registry, run_in_request, channel="sms", recipient=NEW_YORK_PHONE, kind=GUEST_MESSAGE,
                      context={"base_url": "x"})
        drain(registry["huey"])
    assert load(registry, run_in_request, guest).status == "succeeded"


def test_email_has_no_quiet_hours(build, run_in_request):
    provider = Provider("mail")
    app = build(provider)
    registry = app.app.registry
    with time_machine.travel(dt.datetime(2026, 5, 2, 3, 0, tzinfo=dt.UTC), tick=False):
        notification_id = queue(registry, run_in_request, kind=GUEST_MESSAGE, context={"base_url": "x"})
        drain(registry["huey"])
    assert load(registry, run_in_request, notification_id).status == "succeeded"


def test_the_plugins_command_names_each_channels_fallback():
    from guestguard.testing import REPO_ROOT, guestguard_command

    result = guestguard_command(
        "plugins", str(REPO_ROOT / "development.ini"), timeout=60,
        env={"GG_DB_URL": "sqlite:////tmp/gg-plugins-fallback.sqlite", "GG_HUEY_URL": "memory://",
             "GG_NOTIFICATIONS_EMAIL_FALLBACK": "smtp"})
    assert result.returncode == 0, result.stderr
    assert "email -> console (fallback smtp), sms -> console" in result.stdout


def test_production_warns_when_each_worker_keeps_its_own_breakers(caplog):
    from guestguard.settings import CORE_SETTINGS, SettingsReader, production_problems

    reader = SettingsReader()
    reader.declare(CORE_SETTINGS)
    shared = {"notifications.breaker.url": "redis://127.0.0.1:6379/4", "huey.in_process_worker": False}
    production_problems(shared, reader.specs)
    assert "circuit breakers" not in caplog.text
    production_problems({**shared, "notifications.breaker.url": "memory://"}, reader.specs)
    assert "each worker process keeps its own circuit breakers" in caplog.text
