"""Running jobs hold a lease their worker renews; a lapsed lease is taken back
by the reaper within seconds, and the reaper's batch does not cap recovery."""
import datetime as dt
import threading
import time
import types

import pytest
import time_machine

from guestguard.notifications.models import Notification
from guestguard.notifications.services import queue_notification
from guestguard.notifications.tasks import dispatch_notification
from guestguard.plugins import hookimpl
from guestguard.tasks import INTERRUPTED, claim_job, reap, renew_lease, run_task_now, start_reaper
from guestguard.testing import drain

T0 = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)


class Provider:
    """Delivers, after ``delay`` seconds; signals when a send starts."""

    name = "slow"
    channels = ("email",)

    def __init__(self, delay=0.0):
        self.delay = delay
        self.sent = []
        self.started = threading.Event()

    def send(self, message):
        self.started.set()
        time.sleep(self.delay)
        self.sent.append(message)
        return f"slow-{len(self.sent)}"

    @hookimpl
    def register_notification_providers(self, settings):
        return [self]


@pytest.fixture
def build(make_app):
    def build(provider=None, **settings):
        provider = provider or Provider()
        app = make_app({"huey.immediate": "false", "notifications.email.provider": "slow", **settings},
                       plugins=[("slow", provider)])
        return app, app.app.registry, provider

    return build


def queue(registry, run_in_request, recipient="ada@example.com"):
    return run_in_request(lambda request: queue_notification(
        request.ctx, channel="email", recipient=recipient, template="test_message",
        context={"base_url": "https://gg.example"}).id, registry)


def claim(registry, run_in_request, notification_id):
    """A worker claims the job (and then, as far as the test is concerned, dies)."""
    job = run_in_request(lambda request: claim_job(request, Notification, notification_id,
                                                   dispatch_notification), registry)
    return job.claimed_at


def load(registry, run_in_request, notification_id):
    def read(request):
        row = request.db.get(Notification, notification_id)
        request.db.expunge(row)
        return row

    return run_in_request(read, registry)


def test_a_claim_takes_a_lease_of_the_configured_length(build, run_in_request):
    app, registry, _ = build(**{"jobs.lease_seconds": "45"})
    with time_machine.travel(T0, tick=False):
        notification_id = queue(registry, run_in_request)
        registry["huey"].flush()
        claim(registry, run_in_request, notification_id)
    row = load(registry, run_in_request, notification_id)
    assert (row.status, row.claimed_at, row.lease_until) == ("running", T0, T0 + dt.timedelta(seconds=45))


def test_a_job_whose_worker_died_is_requeued_once_its_lease_lapses(build, run_in_request):
    app, registry, provider = build()
    lease = registry.settings["jobs.lease_seconds"]
    assert lease <= 60
    with time_machine.travel(T0, tick=False) as clock:
        notification_id = queue(registry, run_in_request)
        registry["huey"].flush()
        claim(registry, run_in_request, notification_id)
        clock.shift(lease - 1)
        assert run_task_now(registry, reap) == 0, "the lease still holds"
        clock.shift(1)
        assert run_task_now(registry, reap) == 1
        row = load(registry, run_in_request, notification_id)
        assert (row.status, row.lease_until) == ("pending", None)
        assert row.last_error.startswith(INTERRUPTED)
        drain(registry["huey"])
    row = load(registry, run_in_request, notification_id)
    assert (row.status, row.attempts, row.lease_until) == ("succeeded", 2, None)
    assert len(provider.sent) == 1


def test_a_live_workers_renewed_lease_is_not_taken(build, run_in_request):
    app, registry, _ = build()
    lease = registry.settings["jobs.lease_seconds"]
    with time_machine.travel(T0, tick=False) as clock:
        notification_id = queue(registry, run_in_request)
        registry["huey"].flush()
        claimed_at = claim(registry, run_in_request, notification_id)
        clock.shift(lease * 2 / 3)
        assert renew_lease(registry, Notification, notification_id, claimed_at) is True
        clock.shift(lease * 2 / 3)  # past the first lease, within the renewed one
        assert run_task_now(registry, reap) == 0
        assert renew_lease(registry, Notification, notification_id, claimed_at) is True
        clock.shift(lease + 1)  # the worker stopped renewing
        assert run_task_now(registry, reap) == 1
        assert renew_lease(registry, Notification, notification_id, claimed_at) is False, (
            "a worker that comes back learns it lost the job")


def test_the_reaper_does_not_take_a_job_renewed_after_it_read_it(build, run_in_request):
    from guestguard.tasks import _take_back, durable_kind

    app, registry, _ = build()
    lease = registry.settings["jobs.lease_seconds"]
    with time_machine.travel(T0, tick=False) as clock:
        notification_id = queue(registry, run_in_request)
        registry["huey"].flush()
        claimed_at = claim(registry, run_in_request, notification_id)
        clock.shift(lease + 1)
        seen = load(registry, run_in_request, notification_id)  # what the reaper read: lapsed
        assert renew_lease(registry, Notification, notification_id, claimed_at)  # the worker was slow, not dead
        kind = durable_kind(registry, Notification)
        took = run_in_request(lambda request: _take_back(request, kind, seen, dt.datetime.now(dt.UTC)), registry)
    assert took is False
    assert load(registry, run_in_request, notification_id).status == "running"


def test_the_heartbeat_keeps_a_slow_send_from_being_retried(build, run_in_request):
    """A send that takes longer than the lease: the worker renews it, so the
    reaper running meanwhile leaves it alone and the message goes out once."""
    provider = Provider(delay=2.5)
    app, registry, _ = build(provider, **{"jobs.lease_seconds": "1"})
    notification_id = queue(registry, run_in_request)
    registry["huey"].flush()
    worker = threading.Thread(target=run_task_now, args=(registry, dispatch_notification, notification_id))
    worker.start()
    assert provider.started.wait(10)
    reaped = []
    for _ in range(4):
        time.sleep(0.5)
        reaped.append(run_task_now(registry, reap))
    worker.join(10)
    assert reaped == [0, 0, 0, 0]
    row = load(registry, run_in_request, notification_id)
    assert (row.status, row.attempts, row.lease_until) == ("succeeded", 1, None)
    assert len(provider.sent) == 1
    drain(registry["huey"])
    assert len(provider.sent) == 1


def test_the_reaper_takes_back_every_stuck_job_whatever_its_batch(build, run_in_request):
    app, registry, _ = build(**{"jobs.reaper_batch": "2"})
    with time_machine.travel(T0, tick=False) as clock:
        lost = [queue(registry, run_in_request, f"lost{i}@example.com") for i in range(5)]
        running = [queue(registry, run_in_request, f"running{i}@example.com") for i in range(3)]
        registry["huey"].flush()
        for notification_id in running:
            claim(registry, run_in_request, notification_id)
        clock.shift(registry.settings["jobs.lost_after"] + 1)
        assert run_task_now(registry, reap) == 8
        assert run_task_now(registry, reap) == 0
        assert drain(registry["huey"]) >= 8
    assert {load(registry, run_in_request, n).status for n in lost + running} == {"succeeded"}


def test_a_job_claimed_before_leases_existed_is_recovered_by_its_claim_time(build, run_in_request):
    from sqlalchemy import update

    app, registry, _ = build()
    lease = registry.settings["jobs.lease_seconds"]
    with time_machine.travel(T0, tick=False) as clock:
        notification_id = queue(registry, run_in_request)
        registry["huey"].flush()
        claim(registry, run_in_request, notification_id)
        run_in_request(lambda request: request.db.execute(
            update(Notification).where(Notification.id == notification_id).values(lease_until=None)), registry)
        clock.shift(lease - 1)
        assert run_task_now(registry, reap) == 0
        clock.shift(2)
        assert run_task_now(registry, reap) == 1


def test_the_reaper_thread_takes_a_lapsed_lease_back_within_seconds(build, run_in_request):
    """Real time: a job left running by a dead worker, a one-second lease and
    a reaper every second: back in the queue in about two seconds."""
    app, registry, _ = build(**{"jobs.lease_seconds": "1", "jobs.reap_interval": "1"})
    notification_id = queue(registry, run_in_request)
    registry["huey"].flush()
    claim(registry, run_in_request, notification_id)
    started = time.monotonic()
    reaper = start_reaper(registry)
    try:
        while load(registry, run_in_request, notification_id).status == "running":
            assert time.monotonic() - started < 10, "not recovered within 10 s"
            time.sleep(0.05)
        recovered = time.monotonic() - started
    finally:
        reaper.stop()
    assert 0.9 < recovered < 5
    assert len(registry["huey"].pending()) == 1


def test_a_stopping_worker_releases_the_jobs_it_still_holds(build, run_in_request):
    """What a worker does when its grace period is over: the job it still
    runs goes back to pending, due now, lease cleared, queued again; its next
    attempt knows the last one's outcome is unknown."""
    from guestguard.notifications.services import begin_attempt
    from guestguard.tasks import RELEASED, hold_lease, release_held_jobs, was_interrupted

    app, registry, provider = build()
    notification_id = queue(registry, run_in_request)
    registry["huey"].flush()
    attempt = run_in_request(lambda request: begin_attempt(request.ctx, notification_id), registry)
    held = registry["jobs.held"]
    worker = types.SimpleNamespace(registry=registry)  # all hold_lease needs of a task's context
    with hold_lease(worker, Notification, notification_id, attempt.claimed_at):
        assert list(held) == [(Notification, notification_id, attempt.claimed_at)]
        assert release_held_jobs(registry) == 1
        row = load(registry, run_in_request, notification_id)
        assert (row.status, row.claimed_at, row.lease_until) == ("pending", None, None)
        assert row.last_error.startswith(RELEASED) and was_interrupted(row)
        assert len(registry["huey"].pending()) == 1, "queued again for another worker"
        assert release_held_jobs(registry) == 0, "a claim already given back is not released twice"
    assert len(held) == 0
    drain(registry["huey"])
    row = load(registry, run_in_request, notification_id)
    assert (row.status, row.attempts) == ("succeeded", 2)
    assert len(provider.sent) == 1


def test_a_claim_the_reaper_took_back_is_not_released(build, run_in_request):
    from guestguard.tasks import HeldClaims, release_held_jobs

    app, registry, _ = build()
    notification_id = queue(registry, run_in_request)
    registry["huey"].flush()
    stale = claim(registry, run_in_request, notification_id) - dt.timedelta(seconds=1)
    registry["jobs.held"].add(Notification, notification_id, stale)  # an older claim of the same job
    assert release_held_jobs(registry) == 0
    assert load(registry, run_in_request, notification_id).status == "running"
    assert registry["huey"].pending() == []
    claims = HeldClaims()
    claims.add(Notification, notification_id, stale)
    claims.discard(Notification, notification_id, stale + dt.timedelta(seconds=1))
    assert len(claims) == 1, "only the claim that was added is discarded"


def test_jobs_claimed_together_are_claimed_once_renewed_together_and_a_worker_dying_mid_batch_loses_none(
        build, run_in_request):
    """A batch's claim takes each pending job once (a second claim of the
    same ids gets none); one renewal keeps every lease; when the worker stops
    renewing, the reaper takes every job of the batch back and each is then
    delivered once."""
    from guestguard.tasks import claim_jobs, renew_leases

    app, registry, provider = build()
    lease = registry.settings["jobs.lease_seconds"]
    with time_machine.travel(T0, tick=False) as clock:
        ids = [queue(registry, run_in_request, f"guest{n}@example.com") for n in range(3)]
        registry["huey"].flush()
        claimed = run_in_request(lambda request: [job.id for job in claim_jobs(request.ctx, Notification, ids)],
                                 registry)
        assert claimed == ids
        assert run_in_request(lambda request: claim_jobs(request.ctx, Notification, ids), registry) == []
        claimed_at = load_claim(registry, run_in_request, ids[0])
        clock.shift(lease * 2 / 3)
        assert renew_leases(registry, Notification, ids, claimed_at) == 3
        clock.shift(lease * 2 / 3)
        assert run_task_now(registry, reap) == 0, "renewed together, none is taken"
        clock.shift(lease + 1)  # the worker died mid-batch
        assert run_task_now(registry, reap) == 3
        assert renew_leases(registry, Notification, ids, claimed_at) == 0
        drain(registry["huey"])
    assert sorted(message.recipient for message in provider.sent) == [f"guest{n}@example.com" for n in range(3)]


def load_claim(registry, run_in_request, notification_id):
    return run_in_request(lambda request: request.db.get(Notification, notification_id).claimed_at, registry)
