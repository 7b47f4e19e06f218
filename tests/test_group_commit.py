"""Group commit: the worker's threads that claim or record at the same
moment share one transaction; each still gets its own result, one bad item
holds back no other, and a thread never waits for work it does not need."""
from __future__ import annotations

import functools
import threading
import time

import pytest
from sqlalchemy import exc as sa_exc, func, select

from guestguard.group_commit import GroupCommit
from guestguard.plugins import hookimpl
from guestguard.testing import together

THREADS = 6


def at_once(count, call):
    """``call(n)`` from ``count`` threads started together; their results and errors by n."""
    outcomes = dict(enumerate(together([functools.partial(call, n) for n in range(count)], timeout=30)))
    return ({n: outcome for n, outcome in outcomes.items() if not isinstance(outcome, Exception)},
            {n: outcome for n, outcome in outcomes.items() if isinstance(outcome, Exception)})


def wait_until(done, seconds=10):
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def held_first(group_commit, total):
    """Make the first group wait until ``total`` items are handed in, so the
    threads that come meanwhile form the second group."""
    work, first = group_commit.work, threading.Event()

    def held(ctx, items):
        if not first.is_set():
            first.set()
            wait_until(lambda: len(items) + len(group_commit._waiting) == total)
        return work(ctx, items)

    group_commit.work = held


def test_threads_at_once_share_a_group_and_each_gets_its_own_result():
    groups = []

    def work(ctx, items):
        groups.append((threading.get_ident(), list(items)))
        return [item * 10 for item in items]

    commit = GroupCommit("test", work)
    held_first(commit, THREADS)
    results, errors = at_once(THREADS, lambda n: commit.run(None, n))
    assert errors == {}
    assert results == {n: n * 10 for n in range(THREADS)}
    assert len(groups) == 2 and sum(len(items) for _, items in groups) == THREADS
    assert (commit.groups, commit.items) == (2, THREADS)
    # The first leader did its own item only; a thread of the second group led it.
    assert groups[0][0] != groups[1][0]


def test_a_thread_alone_does_its_item_at_once():
    commit = GroupCommit("test", lambda ctx, items: [ctx + item for item in items])
    assert [commit.run(1, n) for n in range(3)] == [1, 2, 3]
    assert (commit.groups, commit.items) == (3, 3)


def test_one_bad_item_fails_alone_and_the_others_are_done():
    calls = []

    def work(ctx, items):
        calls.append(list(items))
        if "bad" in items:
            raise ValueError("bad item")
        return [item.upper() for item in items]

    commit = GroupCommit("test", work)
    held_first(commit, THREADS)
    items = ["first", "bad", *[f"ok{n}" for n in range(THREADS - 2)]]
    results, errors = at_once(THREADS, lambda n: commit.run(None, items[n]))
    assert set(errors) == {1} and isinstance(errors[1], ValueError)
    assert results == {n: items[n].upper() for n in range(THREADS) if n != 1}
    failed = next(group for group in calls if "bad" in group)
    assert len(failed) > 1 and sorted(map(len, calls)).count(1) >= len(failed), "done again one by one"
    assert all(len(group) == 1 for group in calls[calls.index(failed) + 1:])


class Stopped(BaseException):
    """What stops a thread outright (a signal's exception), not an error of the work."""


def test_a_leader_stopped_while_redoing_each_alone_leaves_no_thread_waiting():
    def work(ctx, items):
        if len(items) > 1:
            raise ValueError("the group fails")
        if items == ["stop"]:
            raise Stopped()
        return [item.upper() for item in items]

    commit = GroupCommit("test", work)
    held_first(commit, THREADS)
    items = ["first", "stop", *[f"ok{n}" for n in range(THREADS - 2)]]
    outcomes = together([functools.partial(commit.run, None, item) for item in items], timeout=30)
    # Every thread came back (together fails on one still waiting): the one
    # that met the stop went with it, each other item was done or told why not.
    answered = [outcome for outcome in outcomes if outcome is not None]
    assert len(answered) >= THREADS - 2
    assert all(outcome == item.upper() or isinstance(outcome, RuntimeError)
               for outcome, item in zip(outcomes, items, strict=True) if outcome is not None)


def test_the_database_away_fails_the_group_without_trying_each_alone():
    calls = []

    def work(ctx, items):
        calls.append(list(items))
        if len(calls) > 1:
            raise sa_exc.TimeoutError("no connection came free")
        return list(items)

    commit = GroupCommit("test", work)
    held_first(commit, THREADS)
    results, errors = at_once(THREADS, lambda n: commit.run(None, n))
    assert len(calls) == 2, "not tried again one by one"
    assert len(results) == len(calls[0]) and len(errors) == len(calls[1]) > 1
    assert all(isinstance(error, sa_exc.TimeoutError) for error in errors.values())


def test_work_that_comes_back_to_its_own_group_commit_is_done_alone():
    """A commit that runs a task at once (immediate mode) which needs the
    same step again: done alone in that thread, not waiting for itself."""
    commit = GroupCommit("test", lambda ctx, items: [
        commit.run(ctx, item - 1) if item > 0 else "bottom" for item in items])
    assert commit.run(None, 3) == "bottom"


# --- the outbox's claims and records -----------------------------------------------


class GatedProvider:
    """Sends only once every thread is sending, so they all reach the
    record step together."""

    name = "gated"
    channels = ("email",)

    def __init__(self, count):
        self.barrier = threading.Barrier(count)
        self.lock = threading.Lock()
        self.sent = []

    def send(self, message):
        self.barrier.wait(10)
        with self.lock:
            self.sent.append(message.recipient)
        return f"gated-{message.notification_id}"

    @hookimpl
    def register_notification_providers(self, settings):
        return [self]


@pytest.fixture
def outbox(make_app, run_in_request):
    from guestguard.notifications.services import queue_notification

    provider = GatedProvider(THREADS)
    app = make_app({"huey.immediate": "false", "notifications.email.provider": "gated"},
                   plugins=[("gated", provider)])
    registry = app.app.registry

    def queue(recipient):
        return run_in_request(lambda request: queue_notification(
            request.ctx, channel="email", recipient=recipient, template="test_message",
            context={"base_url": "https://gg.example"}, workspace_id=None).id, registry)

    ids = [queue(f"guest{n}@example.com") for n in range(THREADS)]
    registry["huey"].flush()
    return registry, provider, ids


def test_concurrent_deliveries_record_together_and_each_message_goes_once(outbox, run_in_request):
    from guestguard.domain import DomainEventRow
    from guestguard.notifications.models import Notification
    from guestguard.notifications.tasks import dispatch_notification
    from guestguard.tasks import run_task_now

    registry, provider, ids = outbox
    records = registry["notifications.records"]
    held_first(records, THREADS)
    _, errors = at_once(THREADS, lambda n: run_task_now(registry, dispatch_notification, ids[n]))
    assert errors == {}
    assert sorted(provider.sent) == sorted(f"guest{n}@example.com" for n in range(THREADS))
    assert (records.groups, records.items) == (2, THREADS), "the outcomes of the threads at once in one transaction"
    rows = run_in_request(lambda request: {row.id: (row.status, row.attempts, row.provider_message_id)
                                           for row in request.db.scalars(select(Notification))}, registry)
    assert rows == {notification_id: ("succeeded", 1, f"gated-{notification_id}") for notification_id in ids}
    sent_events = run_in_request(lambda request: request.db.scalar(
        select(func.count()).select_from(DomainEventRow).where(DomainEventRow.name == "notification.sent")), registry)
    assert sent_events == THREADS


def test_one_message_dispatched_twice_in_one_group_is_sent_once(make_app, run_in_request):
    """A message whose task runs twice at once (the reaper's and the
    original) with both claims in one group: claimed once, sent once."""
    from guestguard.notifications.models import Notification
    from guestguard.notifications.services import queue_notification
    from guestguard.notifications.tasks import dispatch_notification
    from guestguard.tasks import run_task_now

    provider = GatedProvider(1)
    app = make_app({"huey.immediate": "false", "notifications.email.provider": "gated"},
                   plugins=[("gated", provider)])
    registry = app.app.registry
    first, twice = (run_in_request(lambda request, to=to: queue_notification(
        request.ctx, channel="email", recipient=to, template="test_message",
        context={"base_url": "https://gg.example"}).id, registry) for to in ("bob@example.com", "ada@example.com"))
    registry["huey"].flush()
    claims = registry["notifications.claims"]
    held_first(claims, 3)
    threads = [threading.Thread(target=run_task_now, args=(registry, dispatch_notification, first))]
    threads[0].start()
    wait_until(lambda: claims._leading)
    threads += [threading.Thread(target=run_task_now, args=(registry, dispatch_notification, twice))
                for _ in range(2)]
    for thread in threads[1:]:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert claims.groups == 2, "the two claims of one message were one group"
    assert sorted(provider.sent) == ["ada@example.com", "bob@example.com"]
    row = run_in_request(lambda request: request.db.get(Notification, twice), registry)
    assert (row.status, row.attempts) == ("succeeded", 1)
