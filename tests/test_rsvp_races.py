"""Many answers at once for one guest: each request is answered, none is a
5xx or a refusal caused by the others, and the guest's answer is one of
them. On PostgreSQL the answers really race."""
import threading

import pytest

from guestguard.testing import add_guest, event_host, issue, new_client

EVENT = {"name": "Gala", "status": "published", "starts_at": "2030-06-21T19:00:00", "timezone": "UTC"}
AT_ONCE = 20


@pytest.fixture
def app(make_app):
    return make_app({"ratelimit.rsvp": "1000/hour", "ratelimit.invitation_page": "1000/hour",
                     "db.pool_size": str(AT_ONCE + 2)})


def test_twenty_answers_at_once_for_one_guest_are_all_answered(app, run_in_request):
    host = event_host(app, run_in_request, EVENT)
    token = issue(app, host, add_guest(app, host))["token"]
    barrier = threading.Barrier(AT_ONCE)
    statuses: list[int] = []

    def answer(n: int) -> None:
        client = new_client(app.app, REMOTE_ADDR=f"198.51.100.{n + 1}")
        barrier.wait()
        response = client.post_json(f"/api/v1/rsvp/{token}", {"response": ("yes", "no", "maybe")[n % 3]},
                                    status="*")
        statuses.append(response.status_int)

    threads = [threading.Thread(target=answer, args=(n,)) for n in range(AT_ONCE)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(statuses) == [200] * AT_ONCE
    state = app.get(f"/api/v1/access/{token}").json["guest"]
    assert state["response"] in ("yes", "no", "maybe")


def test_the_same_answer_sent_at_once_is_recorded_and_confirmed_once(app, run_in_request):
    from sqlalchemy import func, select

    from guestguard.events.models import Rsvp
    from guestguard.notifications.models import Notification
    from guestguard.testing import scalar

    host = event_host(app, run_in_request, EVENT)
    token = issue(app, host, add_guest(app, host))["token"]
    barrier = threading.Barrier(8)
    recorded: list[bool] = []

    def answer(n: int) -> None:
        client = new_client(app.app, REMOTE_ADDR=f"198.51.100.{n + 1}")
        barrier.wait()
        recorded.append(client.post_json(f"/api/v1/rsvp/{token}", {"response": "yes"}).json["recorded"])

    threads = [threading.Thread(target=answer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(recorded) == [False] * 7 + [True]
    assert scalar(app, run_in_request, select(func.count()).select_from(Rsvp)) == 1
    assert scalar(app, run_in_request, select(func.count()).select_from(Notification).where(
        Notification.template == "rsvp_confirmation")) == 1, "one confirmation, however many clicks"
