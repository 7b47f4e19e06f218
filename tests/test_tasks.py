"""Enqueued tasks run only after commit, in their own context; a real
consumer (SQLite queue, or Redis when GG_TEST_REDIS_URL is set) does the same."""
import logging
import time

import pytest

from guestguard.notifications.models import Notification
from guestguard.plugins import hookimpl
from guestguard.tasks import run_task_now


class Recorder:
    """A plugin with a route that stores a row, enqueues a task reading it
    back, and then fails when asked to."""

    def __init__(self):
        self.seen = []
        self.request_ids = []

    def observe(self, request, notification_id):
        from guestguard.audit.request_id import current_request_id

        row = request.db.get(Notification, notification_id)
        self.seen.append((notification_id, row.recipient if row else None,
                          request is not getattr(self, "web_request", None)))
        self.request_ids.append(current_request_id.get())

    @hookimpl
    def configure(self, config):
        config.add_task(self.observe)
        config.add_route("store_then_maybe_fail", "/api/v1/test/store")
        config.add_view(self.store, route_name="store_then_maybe_fail", renderer="json",
                        require_csrf=False)

    def store(self, request):
        self.web_request = request
        row = Notification(channel="email", recipient="guest@example.com", template="test_message")
        request.db.add(row)
        request.db.flush()
        request.ctx.enqueue(self.observe, row.id)
        assert self.seen == [], "the task must not run before commit"
        if request.params.get("fail"):
            raise RuntimeError("the request fails after enqueueing")
        return {"id": str(row.id)}


def count_rows(registry):
    from sqlalchemy import func, select

    with registry["db.engine"].connect() as connection:
        return connection.execute(select(func.count()).select_from(Notification)).scalar()


def test_task_of_a_committed_request_runs_after_commit_and_sees_the_rows(make_app):
    recorder = Recorder()
    app = make_app(plugins=[("recorder", recorder)])
    response = app.post("/api/v1/test/store")
    assert len(recorder.seen) == 1
    seen_id, recipient, own_context = recorder.seen[0]
    assert str(seen_id) == response.json["id"]
    assert recipient == "guest@example.com"
    assert own_context, "the task runs in its own request-like context"


def test_task_log_lines_carry_the_id_of_the_request_that_queued_it(make_app):
    recorder = Recorder()
    app = make_app(plugins=[("recorder", recorder)])
    app.post("/api/v1/test/store", headers={"X-Request-ID": "origin-request-1"})
    assert recorder.request_ids == ["origin-request-1"]


def test_task_of_a_failed_request_never_runs(make_app):
    recorder = Recorder()
    app = make_app(plugins=[("recorder", recorder)])
    app.post("/api/v1/test/store?fail=1", status=500)
    assert recorder.seen == []
    assert count_rows(app.app.registry) == 0


def test_enqueueing_an_unregistered_function_is_an_error(run_in_request):
    def not_a_task(request):
        pass

    with pytest.raises(LookupError, match="not a registered task"):
        run_in_request(lambda request: request.ctx.enqueue(not_a_task))


def test_run_task_now_runs_in_its_own_transaction(make_app, run_in_request):
    recorder = Recorder()
    app = make_app(plugins=[("recorder", recorder)])
    registry = app.app.registry
    row_id = run_in_request(_add_row, registry)
    run_task_now(registry, recorder.observe, row_id)
    assert recorder.seen[0][1] == "guest@example.com"


def _add_row(request):
    row = Notification(channel="email", recipient="guest@example.com", template="test_message")
    request.db.add(row)
    request.db.flush()
    return row.id


@pytest.fixture
def real_queue_settings(redis_url, tmp_path):
    """A queue a separate consumer reads: Redis when given, else SQLite."""
    url = redis_url or f"sqlite:///{tmp_path}/queue.sqlite"
    return {"huey.url": url, "huey.immediate": "false", "huey.name": f"test-{tmp_path.name}",
            "huey.workers": "1"}


def test_real_consumer_runs_the_task_after_commit(make_app, real_queue_settings):
    from guestguard.tasks import start_in_process_consumer

    recorder = Recorder()
    app = make_app(real_queue_settings, plugins=[("recorder", recorder)])
    registry = app.app.registry
    registry["huey"].flush()
    start_in_process_consumer(registry)
    response = app.post("/api/v1/test/store")
    app.post("/api/v1/test/store?fail=1", status=500)
    deadline = time.monotonic() + 15
    while not recorder.seen and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    assert [str(entry[0]) for entry in recorder.seen] == [response.json["id"]]
    assert recorder.seen[0][1] == "guest@example.com"
    registry["huey"].flush()


# --- periodic tasks: once per tick, however many workers queue them ---------------


class EveryMinute:
    """A plugin with a periodic task that counts its runs."""

    def __init__(self):
        self.runs = 0

    def tick(self, request):
        self.runs += 1

    @hookimpl
    def configure(self, config):
        from huey import crontab

        config.add_periodic_task(self.tick, crontab(minute="*"))


def schedulers(huey, count: int) -> list:
    """The periodic schedulers of ``count`` workers on one queue."""
    import threading

    from guestguard.tasks import ClusterScheduler

    return [ClusterScheduler(huey, threading.Event(), interval=1, periodic=True) for _ in range(count)]


@pytest.mark.one_pass("services")
def test_a_periodic_task_queued_by_two_workers_runs_once_per_tick(make_app, redis_url, tmp_path):
    import datetime as dt

    from prometheus_client import REGISTRY

    from guestguard.tasks import task_name
    from guestguard.testing import drain

    if not redis_url:
        pytest.skip("the claim of a tick lives in the Redis queue (GG_TEST_REDIS_URL)")
    counter = EveryMinute()
    app = make_app({"huey.url": redis_url, "huey.immediate": "false", "huey.name": f"ticks-{tmp_path.name}"},
                   plugins=[("every_minute", counter)])
    huey = app.app.registry["huey"]
    huey.flush()
    labels = {"task": task_name(counter.tick).removeprefix("guestguard."), "outcome": "skipped"}

    def skipped() -> float:
        return REGISTRY.get_sample_value("gg_task_runs_total", labels) or 0.0

    before = skipped()
    minute = dt.datetime(2031, 6, 1, 18, 0)
    try:
        for tick in (minute, minute, minute + dt.timedelta(minutes=1)):
            for scheduler in schedulers(huey, 2):
                scheduler.enqueue_periodic_tasks(tick + dt.timedelta(seconds=20))
            drain(huey)
    finally:
        huey.flush()
        huey.storage.conn.delete(*huey.storage.conn.keys(f"huey.ticks.{huey.storage.name}.*"))
    # Two ticks, each queued by two workers, one of them twice (a scheduler restarted within the minute).
    assert counter.runs == 2
    assert skipped() - before == 4


@pytest.mark.one_pass("sqlite")
def test_a_worker_that_cannot_reach_redis_runs_the_periodic_task_and_says_so(caplog):
    from huey import RedisHuey

    from guestguard.tasks import claim_tick
    from guestguard.testing import free_port

    huey = RedisHuey("ticks", url=f"redis://127.0.0.1:{free_port()}/0")
    assert claim_tick(huey, "guestguard.tasks.reap", "2031-06-01T18:00")
    assert "could not claim the 2031-06-01T18:00 tick of guestguard.tasks.reap (ConnectionError); running it" \
        in caplog.text


@pytest.mark.one_pass("sqlite")
def test_a_queue_outside_redis_serves_one_host_and_runs_every_copy(make_app, tmp_path):
    """SQLite and in-memory queues have one consumer (development): no claim."""
    import datetime as dt

    from guestguard.testing import drain

    counter = EveryMinute()
    app = make_app({"huey.url": f"sqlite:///{tmp_path}/queue.sqlite", "huey.immediate": "false"},
                   plugins=[("every_minute", counter)])
    huey = app.app.registry["huey"]
    for scheduler in schedulers(huey, 2):
        scheduler.enqueue_periodic_tasks(dt.datetime(2031, 6, 1, 18, 0, 20))
    assert drain(huey) >= 2
    assert counter.runs == 2


def test_a_periodic_task_run_by_hand_needs_no_claim(make_app):
    """``run_task_now`` (the CLI, tests) carries no tick: it always runs."""
    counter = EveryMinute()
    app = make_app(plugins=[("every_minute", counter)])
    run_task_now(app.app.registry, counter.tick)
    run_task_now(app.app.registry, counter.tick)
    assert counter.runs == 2


def test_an_argument_of_ours_this_version_does_not_know_is_dropped_not_passed_to_the_task(make_app, caplog):
    """A later release's web processes may queue tasks with an argument of
    ours that a worker of this release does not know yet."""
    from guestguard.tasks import task_name

    counter = EveryMinute()
    app = make_app(plugins=[("every_minute", counter)])
    app.app.registry["huey.tasks"][task_name(counter.tick)](_gg_from_a_later_release="x")
    assert counter.runs == 1
    assert "dropped _gg_from_a_later_release, an argument this version does not know" in caplog.text


def test_a_worker_whose_pool_cannot_give_each_thread_two_connections_says_so(caplog):
    """A bulk batch holds two connections while it sends: a worker starting
    with fewer than that for each of its threads (and the reaper's) warns."""
    from guestguard.tasks import warn_if_pool_too_small

    postgres = {"db.url": "postgresql+psycopg://gg@db/gg", "db.pool_size": 5, "db.max_overflow": 10}
    with caplog.at_level(logging.WARNING, logger="guestguard.tasks"):
        assert not warn_if_pool_too_small(postgres, 7)
        assert caplog.text == ""
        assert warn_if_pool_too_small(postgres, 8), "15 connections for 8 threads' 16"
        assert not warn_if_pool_too_small({**postgres, "db.url": "sqlite:///gg.db"}, 8), "SQLite has no pool size"
    assert [record.getMessage() for record in caplog.records] == [
        ("db.pool_size + db.max_overflow (15) should be above twice the worker's 8 threads (16): "
         "a bulk batch holds two connections while it sends")]
