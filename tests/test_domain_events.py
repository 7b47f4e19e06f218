import datetime as dt
import threading
import uuid

import pytest
import time_machine
from sqlalchemy import select

from guestguard.domain import RETRY_BACKOFF, DomainEventDelivery, DomainEventRow, replay
from guestguard.plugins import hookimpl
from guestguard.tasks import reap, run_task_now
from guestguard.testing import drain, scripted


class Listener:
    def __init__(self, fail=False):
        self.events = []
        self.fail = fail

    @hookimpl
    def domain_event(self, event, request):
        if self.fail:
            raise RuntimeError("listener broke")
        self.events.append(event)


class EmittingRoute:
    @hookimpl
    def configure(self, config):
        config.add_route("emit", "/api/v1/test/emit")
        config.add_view(self.emit, route_name="emit", renderer="json", require_csrf=False)

    @staticmethod
    def emit(request):
        request.ctx.emit("guest.created", {"name": "Ada"})
        if request.params.get("fail"):
            raise RuntimeError("rolled back")
        return {}


def build(make_app, *listeners):
    plugins = [("route", EmittingRoute())]
    plugins += [(f"listener{i}", listener) for i, listener in enumerate(listeners)]
    return make_app(plugins=plugins)


def test_domain_events_reach_plugins_after_commit(make_app):
    listener = Listener()
    build(make_app, listener).post("/api/v1/test/emit")
    assert [(e.name, e.data) for e in listener.events] == [("guest.created", {"name": "Ada"})]
    assert listener.events[0].occurred_at.tzinfo is not None


def test_no_domain_event_for_a_rolled_back_request(make_app):
    listener = Listener()
    build(make_app, listener).post("/api/v1/test/emit?fail=1", status=500)
    assert listener.events == []


def test_a_failing_listener_affects_neither_the_request_nor_other_listeners(make_app, caplog):
    broken, healthy = Listener(fail=True), Listener()
    build(make_app, broken, healthy).post("/api/v1/test/emit", status=200)
    assert [e.name for e in healthy.events] == ["guest.created"]
    assert any("listener broke" in str(r.exc_info) for r in caplog.records if r.exc_info)


class DatabaseListener:
    """Listeners run inside the delivering task's transaction."""

    def __init__(self):
        self.counts = []

    @hookimpl
    def domain_event(self, event, request):
        from sqlalchemy import func, select

        from guestguard.notifications.models import Notification

        self.counts.append(request.db.scalar(select(func.count()).select_from(Notification)))


def test_listeners_can_use_the_database(make_app):
    listener = DatabaseListener()
    build(make_app, listener).post("/api/v1/test/emit")
    assert listener.counts == [0]


class MisspeltHook:
    @hookimpl
    def domain_evnet(self, event, request):
        pass


def test_a_plugin_with_a_misspelt_hook_is_skipped(make_app, caplog):
    app = make_app(plugins=[("misspelt", MisspeltHook())])
    assert app.app.registry["plugins"].get_plugin("misspelt") is None
    assert any("misspelt" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")


def test_a_plugin_with_a_misspelt_hook_stops_startup_when_strict(make_app):
    from guestguard.plugins import PluginLoadError

    with pytest.raises(PluginLoadError, match="domain_evnet"):
        make_app({"plugins.strict": "true"}, plugins=[("misspelt", MisspeltHook())])


class WritingListener:
    """Writes a row in its transaction, optionally failing afterwards."""

    def __init__(self, fail=False):
        self.fail = fail
        self.heard = 0

    @hookimpl
    def domain_event(self, event, request):
        from guestguard.notifications.models import Notification

        self.heard += 1
        request.db.add(Notification(channel="email", recipient=f"{id(self)}@example.com",
                                    template="test_message"))
        request.db.flush()
        if self.fail:
            raise RuntimeError("listener broke after writing")


class EventOnlyListener:
    def __init__(self):
        self.names = []

    @hookimpl
    def domain_event(self, event):
        self.names.append(event.name)


def test_each_listener_commits_or_rolls_back_on_its_own(make_app):
    from sqlalchemy import select

    from guestguard.notifications.models import Notification

    first, broken, last = WritingListener(), WritingListener(fail=True), WritingListener()
    app = build(make_app, first, broken, last)
    app.post("/api/v1/test/emit")
    assert (first.heard, broken.heard, last.heard) == (1, 1, 1)
    engine = app.app.registry["db.engine"]
    with engine.connect() as connection:
        recipients = set(connection.execute(select(Notification.recipient)).scalars())
    assert recipients == {f"{id(first)}@example.com", f"{id(last)}@example.com"}


def test_a_listener_may_take_only_the_event(make_app):
    listener = EventOnlyListener()
    build(make_app, listener).post("/api/v1/test/emit")
    assert listener.names == ["guest.created"]


# --- the outbox: rows, at least once, in order, retries, dead, replay ------------

T0 = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)


class Flaky:
    """Raises for the first ``failures`` calls (or always), then hears."""

    def __init__(self, failures=0, names=None):
        self.failures = failures
        self.calls = 0
        self.events = []
        self.names = names

    @hookimpl
    def domain_event(self, event, request):
        if self.names is not None and event.name not in self.names:
            return
        self.calls += 1
        if self.failures is None or self.calls <= self.failures:
            raise RuntimeError(f"{event.name} refused on call {self.calls}")
        self.events.append(event)


class Emitter:
    """A route emitting the events its query names, each about the guest
    given: /api/v1/test/emit-many?e=a:g1&e=b:g1&e=c:g2"""

    @hookimpl
    def configure(self, config):
        config.add_route("emit_many", "/api/v1/test/emit-many")
        config.add_view(self.emit, route_name="emit_many", renderer="json", require_csrf=False)

    @staticmethod
    def emit(request):
        ids = [str(request.ctx.emit(name, {"guest_id": guest}).id)
               for name, _, guest in (item.partition(":") for item in request.params.getall("e"))]
        return {"ids": ids}


def queued(make_app, *listeners, **settings):
    plugins = [("emitter", Emitter()), ("route", EmittingRoute())]
    plugins += [(f"listener{i}", listener) for i, listener in enumerate(listeners)]
    return make_app({"huey.immediate": "false", **settings}, plugins=plugins)


def rows(app):
    with scripted(app.app.registry) as env:
        request = env["request"]
        with request.tm:
            found = list(request.db.scalars(select(DomainEventRow).order_by(DomainEventRow.occurred_at)))
            request.db.expunge_all()
            return found


def deliveries(app):
    with scripted(app.app.registry) as env:
        request = env["request"]
        with request.tm:
            return sorted((str(d.event_id), d.listener, d.attempt)
                          for d in request.db.scalars(select(DomainEventDelivery)))


def test_an_event_is_a_row_of_the_emitting_transaction_and_plugins_get_its_id(make_app):
    listener = Listener()
    app = build(make_app, listener)
    app.post("/api/v1/test/emit")
    app.post("/api/v1/test/emit?fail=1", status=500)
    [row] = rows(app)
    assert (row.name, row.status, row.attempts, row.data) == ("guest.created", "delivered", 1, {"name": "Ada"})
    assert [e.id for e in listener.events] == [row.id]
    assert (listener.events[0].occurred_at, listener.events[0].aggregate) == (row.occurred_at, None)
    assert ("listener0", 1) in {(name, attempt) for _, name, attempt in deliveries(app)}


def test_the_aggregate_is_the_guest_else_the_event_else_the_notification():
    from guestguard.domain import aggregate_of

    assert aggregate_of({"event_id": "e1", "guest_id": "g1"}) == "guest:g1"
    assert aggregate_of({"event_id": "e1"}) == "event:e1"
    assert aggregate_of({"notification_id": "n1", "about": {"guest_id": "g1"}}) == "guest:g1"
    assert aggregate_of({"notification_id": "n1", "about": {}}) == "notification:n1"
    assert aggregate_of({"name": "Ada", "about": "not a mapping"}) is None


def test_a_listener_that_raised_is_retried_alone_on_the_backoff_schedule(make_app):
    flaky, healthy = Flaky(failures=2), Listener()
    app = queued(make_app, flaky, healthy)
    huey = app.app.registry["huey"]
    with time_machine.travel(T0, tick=False) as clock:
        app.post("/api/v1/test/emit")
        assert drain(huey) == 1
        [row] = rows(app)
        assert (row.status, row.attempts) == ("pending", 1)
        assert "listener0: RuntimeError" in row.last_error
        assert row.next_attempt_at == T0 + dt.timedelta(seconds=RETRY_BACKOFF[0])
        clock.shift(RETRY_BACKOFF[0])
        drain(huey)
        clock.shift(RETRY_BACKOFF[1])
        drain(huey)
    [row] = rows(app)
    assert (row.status, row.attempts, row.last_error) == ("delivered", 3, None)
    assert flaky.calls == 3 and len(flaky.events) == 1
    assert len(healthy.events) == 1, "a listener that has the event is not called again"
    assert [(name, attempt) for _, name, attempt in deliveries(app)
            if name.startswith("listener")] == [("listener0", 3), ("listener1", 1)]


def test_after_the_last_attempt_the_event_is_dead(make_app, caplog):
    broken = Flaky(failures=None)
    app = queued(make_app, broken)
    huey = app.app.registry["huey"]
    with time_machine.travel(T0, tick=False) as clock:
        app.post("/api/v1/test/emit")
        drain(huey)
        for wait in RETRY_BACKOFF:
            clock.shift(wait)
            drain(huey)
        clock.shift(3600)
        assert drain(huey) == 0
        assert run_task_now(app.app.registry, reap) == 0, "a dead event is not lost: the reaper leaves it"
    [row] = rows(app)
    assert (row.status, row.attempts) == ("dead", len(RETRY_BACKOFF) + 1)
    assert "listener0: RuntimeError" in row.last_error
    assert broken.calls == len(RETRY_BACKOFF) + 1
    assert any("is dead" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")


def test_events_of_one_aggregate_wait_for_the_earlier_ones(make_app):
    """g1's second event is not delivered while its first is being retried;
    g2's event is not held up by g1's."""
    flaky = Flaky(failures=1, names={"first"})
    order = Listener()
    app = queued(make_app, flaky, order)
    huey = app.app.registry["huey"]
    with time_machine.travel(T0, tick=False) as clock:
        app.post("/api/v1/test/emit-many?e=first:g1&e=second:g1&e=other:g2")
        drain(huey)
        assert [e.name for e in order.events] == ["first", "other"]
        assert {row.name: row.status for row in rows(app)} == {
            "first": "pending", "second": "pending", "other": "delivered"}
        clock.shift(RETRY_BACKOFF[0])
        drain(huey)
    assert [e.name for e in order.events] == ["first", "other", "second"]
    assert {row.status for row in rows(app)} == {"delivered"}


def test_events_emitted_in_one_transaction_keep_their_order_though_the_clock_stands_still(make_app):
    order = Listener()
    app = queued(make_app, order)
    with time_machine.travel(T0, tick=False):
        app.post("/api/v1/test/emit-many?" + "&".join(f"e=n{i}:g1" for i in range(5)))
        huey = app.app.registry["huey"]
        # Deliveries arrive in any order (here: newest first); the claim keeps the aggregate's.
        tasks = []
        while (task := huey.dequeue()) is not None:
            tasks.append(task)
        for task in reversed(tasks):
            huey.execute(task)
        drain(huey)
    assert [e.name for e in order.events] == [f"n{i}" for i in range(5)]
    assert len({row.occurred_at for row in rows(app)}) == 5


def test_a_dead_event_holds_its_aggregate_until_an_operator_replays_it(make_app, run_in_request):
    flaky = Flaky(failures=len(RETRY_BACKOFF) + 1, names={"first"})
    order = Listener()
    app = queued(make_app, flaky, order)
    registry = app.app.registry
    huey = registry["huey"]
    lost_after = registry.settings["jobs.lost_after"]
    with time_machine.travel(T0, tick=False) as clock:
        app.post("/api/v1/test/emit-many?e=first:g1&e=second:g1")
        drain(huey)
        for wait in RETRY_BACKOFF:
            clock.shift(wait)
            drain(huey)
        assert [(row.name, row.status) for row in rows(app)] == [("first", "dead"), ("second", "pending")]
        clock.shift(lost_after + 1)
        assert run_task_now(registry, reap) == 0, "an event waiting behind a dead one is not lost"
        assert order.events[0].name == "first" and [e.name for e in order.events] == ["first"]
        replayed = run_in_request(lambda request: [row.id for row in replay(request.ctx)], registry)
        assert len(replayed) == 1
        drain(huey)
    assert [(row.name, row.status) for row in rows(app)] == [("first", "delivered"), ("second", "delivered")]
    assert [e.name for e in order.events] == ["first", "second"], "the healthy listener heard 'first' once"
    assert len(flaky.events) == 1
    with pytest.raises(Exception, match="not dead"):
        run_in_request(lambda request: replay(request.ctx, replayed), registry)


def test_redis_down_when_the_event_is_emitted_loses_nothing(make_app, caplog):
    """The push after commit fails (the queue is unreachable): the answer is
    still 200, the row is there, and the reaper queues it once the queue is
    back."""
    listener = Listener()
    app = queued(make_app, listener)
    registry = app.app.registry
    huey = registry["huey"]

    def unreachable(*args, **kwargs):
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    with time_machine.travel(T0, tick=False) as clock:
        original, huey.storage.enqueue = huey.storage.enqueue, unreachable
        try:
            app.post("/api/v1/test/emit", status=200)
            app.post("/api/v1/test/emit", status=200)
            assert run_task_now(registry, reap) == 0
        finally:
            huey.storage.enqueue = original
        assert any("could not enqueue" in r.getMessage() for r in caplog.records)
        assert drain(huey) == 0 and listener.events == []
        assert [row.status for row in rows(app)] == ["pending", "pending"]
        clock.shift(registry.settings["jobs.lost_after"] + 1)
        assert run_task_now(registry, reap) == 2
        drain(huey)
    assert [row.status for row in rows(app)] == ["delivered", "delivered"]
    assert len(listener.events) == 2


class WorkerKilled(BaseException):
    """Stands for the process dying: nothing catches it."""


class Dies:
    def __init__(self):
        self.calls = 0

    @hookimpl
    def domain_event(self, event, request):
        self.calls += 1
        if self.calls == 1:
            raise WorkerKilled


def test_a_delivery_cut_short_resumes_with_the_listeners_that_lack_the_event(make_app):
    before, dies, after = Listener(), Dies(), Listener()
    app = queued(make_app, before, dies, after)
    registry = app.app.registry
    huey = registry["huey"]
    with time_machine.travel(T0, tick=False) as clock:
        app.post("/api/v1/test/emit")
        with pytest.raises(WorkerKilled):
            drain(huey)
        assert [row.status for row in rows(app)] == ["running"]
        clock.shift(registry.settings["jobs.lease_seconds"] + 1)
        assert run_task_now(registry, reap) == 1
        drain(huey)
    [row] = rows(app)
    assert (row.status, row.attempts) == ("delivered", 2)
    assert (len(before.events), dies.calls, len(after.events)) == (1, 2, 1)


def test_two_deliveries_of_one_event_at_once_call_each_listener_once(make_app, run_in_request):
    listener = Listener()
    app = queued(make_app, listener)
    registry = app.app.registry
    app.post("/api/v1/test/emit")
    registry["huey"].flush()
    [row] = rows(app)
    from guestguard.domain import deliver_domain_event

    barrier = threading.Barrier(4)

    def contend():
        barrier.wait()
        run_task_now(registry, deliver_domain_event, row.id)

    threads = [threading.Thread(target=contend) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(listener.events) == 1
    assert rows(app)[0].status == "delivered"


def test_an_event_queued_by_the_previous_release_is_still_delivered(make_app):
    from guestguard.domain import deliver_domain_event
    from guestguard.plugins import DomainEvent

    listener = Listener()
    app = queued(make_app, listener)
    run_task_now(app.app.registry, deliver_domain_event, DomainEvent(name="guest.created", data={}))
    assert [e.name for e in listener.events] == ["guest.created"]


def test_delivered_events_are_purged_after_the_retention(make_app, run_in_request):
    from guestguard.domain import purge_delivered

    app = queued(make_app, Flaky(failures=None, names={"stuck"}))
    registry = app.app.registry
    with time_machine.travel(T0, tick=False) as clock:
        app.post("/api/v1/test/emit-many?e=done:g1&e=stuck:g2")
        drain(registry["huey"])
        clock.shift(dt.timedelta(days=registry.settings["domain_events.retention_days"], seconds=1))
        assert run_task_now(registry, purge_delivered) == 1
    assert [row.name for row in rows(app)] == ["stuck"]
    assert all(event_id == str(rows(app)[0].id) for event_id, _, _ in deliveries(app))


def test_replaying_names_only_dead_events(make_app, run_in_request):
    from guestguard.domain import NotReplayable

    app = queued(make_app)
    with pytest.raises(NotReplayable, match="no domain event"):
        run_in_request(lambda request: replay(request.ctx, [uuid.uuid4()]), app.app.registry)


def test_data_that_is_not_json_is_refused_when_emitted(make_app, run_in_request):
    app = queued(make_app)
    with pytest.raises(TypeError, match="'guest.created': data must be JSON"):
        run_in_request(lambda request: request.ctx.emit("guest.created", {"guest_id": uuid.uuid4()}),
                       app.app.registry)
    assert rows(app) == []


class BatchListener:
    """Hears a batch at a time (``domain_events``); raises for a batch
    holding an event named in ``refuse``."""

    def __init__(self, refuse=()):
        self.batches = []
        self.refuse = set(refuse)

    @hookimpl
    def domain_events(self, events, request):
        if any(event.name in self.refuse for event in events):
            raise RuntimeError("refused")
        self.batches.append([event.name for event in events])


class BothHooks(BatchListener):
    """Implements both hooks: only the batch one is called."""

    @hookimpl
    def domain_event(self, event, request):
        raise AssertionError("a plugin with domain_events is not called per event")


def emit_many(app, names):
    app.post("/api/v1/test/emit-many?" + "&".join(f"e={name}:g-{name}" for name in names))
    while drain(app.app.registry["huey"]):
        pass


def test_a_batch_listener_hears_a_bulk_actions_events_a_batch_at_a_time(make_app):
    from guestguard.tasks import JOB_BATCH

    batched, both, single = BatchListener(), BothHooks(), Listener()
    app = queued(make_app, batched, both, single)
    names = [f"n{i}" for i in range(2 * JOB_BATCH + 20)]
    emit_many(app, names)
    for listener in (batched, both):
        assert sorted(map(len, listener.batches)) == [20, JOB_BATCH, JOB_BATCH]
        assert sorted(name for batch in listener.batches for name in batch) == sorted(names)
    assert sorted(event.name for event in single.events) == sorted(names), "per event for the others"
    assert {row.status for row in rows(app)} == {"delivered"}
    assert len([d for d in deliveries(app) if d[1].startswith("listener")]) == 3 * len(names)


def test_a_batch_that_raises_is_heard_again_event_by_event_and_only_the_refused_one_waits(make_app):
    listener = BatchListener(refuse={"bad"})
    app = queued(make_app, listener)
    emit_many(app, ["ok1", "bad", "ok2"])
    assert listener.batches == [["ok1"], ["ok2"]]
    assert {row.name: row.status for row in rows(app)} == {"ok1": "delivered", "bad": "pending", "ok2": "delivered"}
    assert next(row.last_error for row in rows(app) if row.name == "bad").startswith("listener0: RuntimeError")
