"""Sending invitations is safe to click twice at once and to repeat: sends to
one event run one at a time and each guest is invited once, with one live
link that works. On SQLite, and on PostgreSQL where the clicks really race."""
import datetime as dt
import re
import threading

import pytest
import time_machine
from sqlalchemy import func, select

from guestguard.events.models import BulkAction, InvitationLink
from guestguard.testing import add_guest, event_host, new_client, outbox, scalar

EVENT = {"name": "Harvest Supper", "status": "published", "starts_at": "2030-09-20T19:00:00",
         "timezone": "Europe/London"}
GUESTS = 200
CLICKS = 20


@pytest.fixture
def app(make_app):
    # Every click holds a connection while it waits for the one before.
    return make_app({"db.pool_size": str(CLICKS + 2), "ratelimit.enabled": "false"})


@pytest.fixture
def host(app, run_in_request):
    return event_host(app, run_in_request, EVENT)


def add_many(app, host, count: int) -> list[dict]:
    body = [{"name": f"Guest {n:03}", "email": f"guest{n:03}@example.com"} for n in range(count)]
    added = []
    for start in range(0, count, 100):
        added += app.post_json(f"{host['url']}/guests", body[start:start + 100], headers=host["ada"],
                               status=201).json["guests"]
    return added


def at_once(app, count: int, call) -> list:
    """``call(client)`` from ``count`` threads released together, each with a
    client of its own; their answers (or what they raised)."""
    barrier = threading.Barrier(count)
    answers: list = [None] * count

    def click(n: int) -> None:
        client = new_client(app.app)
        barrier.wait()
        try:
            answers[n] = call(client)
        except Exception as exc:  # reported by the assertions below
            answers[n] = exc

    threads = [threading.Thread(target=click, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return answers


def tokens_of(app) -> dict[str, list[str]]:
    """The links emailed so far, by recipient, oldest first."""
    sent: dict[str, list[str]] = {}
    for _, message in reversed(outbox(app)):
        sent.setdefault(message.recipient, []).append(re.search(r"/access/(\S+)", message.text).group(1))
    return sent


def test_twenty_send_all_clicks_at_once_invite_each_guest_once_with_a_working_link(app, host, run_in_request):
    add_many(app, host, GUESTS)
    answers = at_once(app, CLICKS, lambda client: client.post_json(
        f"{host['url']}/send-invitations", {}, headers=host["ada"], status=202).json)
    assert [answer for answer in answers if not isinstance(answer, dict)] == []
    assert sorted(answer["queued"] for answer in answers) == [0] * (CLICKS - 1) + [GUESTS]
    assert len({answer["batch_id"] for answer in answers}) == CLICKS

    sent = tokens_of(app)
    assert len(sent) == GUESTS
    assert all(len(links) == 1 for links in sent.values())
    for links in list(sent.values())[::10]:
        assert app.get(f"/api/v1/access/{links[0]}").json["guest"]["name"].startswith("Guest ")
    live = scalar(app, run_in_request, select(func.count()).select_from(InvitationLink)
                  .where(InvitationLink.revoked_at.is_(None)))
    revoked = scalar(app, run_in_request, select(func.count()).select_from(InvitationLink)
                     .where(InvitationLink.revoked_at.is_not(None)))
    assert (live, revoked) == (GUESTS, 0)
    batches = run_in_request(lambda request: tuple(request.db.execute(
        select(func.count(), func.sum(BulkAction.queued))).one()), app.app.registry)
    assert batches == (CLICKS, GUESTS)


def test_a_repeated_send_all_invites_only_guests_added_since(app, host, run_in_request):
    add_many(app, host, 3)
    first = app.post_json(f"{host['url']}/send-invitations", {}, headers=host["ada"], status=202).json
    add_guest(app, host, name="Late Larry", email="larry@example.com")
    again = app.post_json(f"{host['url']}/send-invitations", {}, headers=host["ada"], status=202).json
    assert (first["queued"], again["queued"]) == (3, 1)
    assert first["batch_id"] != again["batch_id"]
    assert sorted(tokens_of(app)) == ["guest000@example.com", "guest001@example.com", "guest002@example.com",
                                      "larry@example.com"]


def test_two_clicks_on_send_for_one_guest_send_one_message_whose_link_works(app, host, run_in_request):
    guest = add_guest(app, host)
    answers = at_once(app, 2, lambda client: client.post_json(
        f"{host['url']}/guests/{guest['id']}/send", {}, headers=host["ada"], status=202).json)
    assert sorted(answer["queued"] for answer in answers) == [False, True]
    [token] = tokens_of(app)["grace@example.com"]
    assert app.get(f"/api/v1/access/{token}").json["guest"]["name"] == "Grace Hopper"


def test_send_again_after_a_minute_sends_a_fresh_link(app, host):
    guest = add_guest(app, host)
    with time_machine.travel(dt.datetime.now(dt.UTC), tick=False) as clock:
        first = app.post_json(f"{host['url']}/guests/{guest['id']}/send", {}, headers=host["ada"], status=202).json
        clock.shift(dt.timedelta(seconds=59))
        soon = app.post_json(f"{host['url']}/guests/{guest['id']}/send", {}, headers=host["ada"], status=202).json
        assert (first["queued"], soon["queued"]) == (True, False)
        assert soon["invited_at"] == first["invited_at"]
        clock.shift(dt.timedelta(seconds=2))
        later = app.post_json(f"{host['url']}/guests/{guest['id']}/send", {}, headers=host["ada"], status=202).json
    assert later["queued"] is True
    old, new = tokens_of(app)["grace@example.com"]
    app.get(f"/api/v1/access/{old}", status=404)
    app.get(f"/api/v1/access/{new}", status=200)


def test_send_all_racing_single_sends_invites_each_guest_once(app, host):
    guests = add_many(app, host, 20)
    calls = [lambda client: client.post_json(f"{host['url']}/send-invitations", {}, headers=host["ada"],
                                             status=202).json]
    calls += [lambda client, guest=guest: client.post_json(f"{host['url']}/guests/{guest['id']}/send", {},
                                                           headers=host["ada"], status=202).json
              for guest in guests[:9]]
    order = iter(range(len(calls)))
    lock = threading.Lock()

    def next_call(client):
        with lock:
            n = next(order)
        return calls[n](client)

    answers = at_once(app, len(calls), next_call)
    assert [answer for answer in answers if not isinstance(answer, dict)] == []
    sent = tokens_of(app)
    assert len(sent) == 20 and all(len(links) == 1 for links in sent.values())


def test_a_send_alls_deliveries_go_a_batch_to_a_task_each_once_suppression_and_counts_kept(make_app, run_in_request):
    """120 invitations: a delivery task per batch of notifications.batch_size
    (25: four full batches and one of 20, each message in one); every
    message sent once, the one to a suppressed address ended suppressed;
    the day's counts and the delivery listener's feed items one per
    message."""
    from guestguard.activity.models import Activity
    from guestguard.notifications.models import DeliveryDay, Notification
    from guestguard.notifications.suppression import HARD_BOUNCE, suppress
    from guestguard.notifications.tasks import dispatch_notification, dispatch_notifications
    from guestguard.testing import drain

    app = make_app({"huey.immediate": "false", "ratelimit.enabled": "false"})
    host = event_host(app, run_in_request, EVENT)
    add_many(app, host, 120)
    registry = app.app.registry
    run_in_request(lambda request: suppress(request.ctx, "email", "guest007@example.com", HARD_BOUNCE,
                                            source="test"), registry)
    huey = registry["huey"]
    drain(huey)  # what adding the guests queued
    answer = app.post_json(f"{host['url']}/send-invitations", {}, headers=host["ada"], status=202).json
    assert answer["queued"] == 120
    queued = [huey.dequeue() for _ in range(huey.pending_count())]
    batches = [task.args[0] for task in queued if task.name.rpartition(".")[2] == dispatch_notifications.__name__]
    assert sorted(map(len, batches)) == [20, 25, 25, 25, 25]
    assert len({notification_id for batch in batches for notification_id in batch}) == 120
    assert not [task for task in queued if task.name.rpartition(".")[2] == dispatch_notification.__name__]
    for task in queued:
        huey.enqueue(task)
    while drain(huey):
        pass
    states = dict(run_in_request(lambda request: request.db.execute(
        select(Notification.status, func.count()).group_by(Notification.status)).all(), registry))
    assert states == {"succeeded": 119, "suppressed": 1}
    assert len(outbox(app)) == 119, "each message once"
    assert "guest007@example.com" not in {message.recipient for _, message in outbox(app)}
    day = run_in_request(lambda request: request.db.scalars(select(DeliveryDay)).one(), registry)
    assert (day.sent, day.suppressed) == (119, 1)
    items = scalar(app, run_in_request, select(func.count()).select_from(Activity).where(
        Activity.kind.in_(("notification.sent", "notification.suppressed"))))
    assert items == 120
