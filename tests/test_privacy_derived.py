"""Privacy in the derived stores: forgetting a guest and erasing an account
delete the rate limiter's buckets that count those people (by invitation
link, account, API key, or hashed email address), in the real Redis of
GG_TEST_REDIS_URL (and in the in-process store); a store that is away
leaves the erasure done and the buckets to expire with their window. The
providers' reports about their messages go from the webhook inbox too."""
import datetime as dt
import hashlib
import json
import logging

import pytest
import redis
import time_machine
from sqlalchemy import select

from guestguard.accounts.models import User
from guestguard.notifications.delivery import advance_delivery
from guestguard.notifications.models import Notification
from guestguard.plugins import hookimpl
from guestguard.privacy.jobs import FORGOTTEN_NAME
from guestguard.privacy.tasks import erase_deleted_accounts
from guestguard.ratelimit.service import email_digest
from guestguard.tasks import run_task_now
from guestguard.testing import TEST_PASSWORD, add_guest, event_host, free_port, in_request, issue, scalar
from guestguard.webhooks import receive
from guestguard.webhooks.models import InboxEntry

EVENT = {"name": "Midsummer Gala", "status": "published", "starts_at": "2030-06-21T19:00:00",
         "timezone": "Europe/London"}


def digest(token: str) -> str:
    """What the link policies count a token by."""
    return hashlib.sha256(token.encode()).hexdigest()[:32]


@pytest.fixture(params=["redis", "memory"])
def store(request, redis_url):
    """Where the limiter counts: the real Redis, or this process."""
    if request.param == "memory":
        return "memory://"
    if not redis_url:
        pytest.skip("GG_TEST_REDIS_URL is not set")
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match="LIMITS:*"):
        client.delete(key)
    client.close()
    return redis_url


class Relay:
    """A provider's webhook handler: each report says a message (by the
    console provider's id for it) was delivered."""

    provider = "relay"

    def handle(self, ctx, webhook):
        return advance_delivery(ctx, "console", json.loads(webhook.body)["message_id"], "delivered")

    @hookimpl
    def register_webhook_handlers(self, settings):
        return [self]


@pytest.fixture
def app(make_app, store, tmp_path):
    return make_app({"ratelimit.url": store, "privacy.export_dir": str(tmp_path / "exports")},
                    plugins=[("relay", Relay())])


def invite_and_report(app, host, guest) -> str:
    """Email the guest their invitation and have the provider report it
    delivered; the report's inbox event id."""
    app.post_json(f"{host['url']}/guests/{guest['id']}/send", {}, headers=host["ada"], status=202)

    def report(request):
        message = request.db.scalar(select(Notification.id).where(Notification.about["guest_id"].as_string()
                                                                  == guest["id"]))
        event_id = f"report-{message}"
        receive(request.ctx, "relay", event_id, json.dumps({"message_id": f"console-{message}"}))
        return event_id

    return in_request(app.app.registry, report)


def reports(app) -> dict[str, bool]:
    """Every report in the inbox: whether it names the message it was about."""
    return dict(in_request(app.app.registry, lambda request: request.db.execute(
        select(InboxEntry.event_id, InboxEntry.notification_id.is_not(None))).all()))


def buckets(app) -> list[str]:
    """Every bucket the limiter holds, as the store names it."""
    return sorted(app.app.registry["ratelimit"]._bucket_keys())


def naming(app, needle: str) -> list[str]:
    return [key for key in buckets(app) if needle in key]


def use_link(app, token: str) -> None:
    app.get(f"/access/{token}")
    app.post(f"/rsvp/{token}", {"response": "yes", "plus_ones": "0"}, status=303)


def test_forgetting_a_guest_deletes_the_buckets_of_their_links(app, run_in_request):
    host = event_host(app, run_in_request, EVENT)
    grace, alan = add_guest(app, host), add_guest(app, host, name="Alan Turing", email="alan@example.com")
    old = issue(app, host, grace)["token"]
    use_link(app, old)
    new = issue(app, host, grace)["token"]  # the first link revoked: its buckets still name her
    use_link(app, new)
    kept = issue(app, host, alan)["token"]
    use_link(app, kept)
    assert naming(app, digest(old)) and len(naming(app, digest(new))) == 2 and len(naming(app, digest(kept))) == 2
    graces, alans = invite_and_report(app, host, grace), invite_and_report(app, host, alan)
    assert reports(app) == {graces: True, alans: True}
    before = buckets(app)

    forgotten = app.post_json(f"{host['url']}/guests/{grace['id']}/forget", {}, headers=host["ada"]).json
    assert forgotten["guest"]["name"] == FORGOTTEN_NAME
    assert naming(app, digest(old)) == [] and naming(app, digest(new)) == []
    assert reports(app) == {alans: True}, "the provider's report about her message went"
    # Nothing else went: Alan's, the host's, the addresses'.
    assert buckets(app) == [key for key in before if digest(old) not in key and digest(new) not in key]
    assert len(naming(app, digest(kept))) == 2


def test_erasing_an_account_deletes_its_buckets_and_its_guests(app, run_in_request):
    host = event_host(app, run_in_request, EVENT)
    # Eve signs in (counted by her address), makes an event and a guest
    # (counted by her account) whose link is used.
    login = app.post_json("/api/v1/auth/login", {"email": "eve@example.com", "password": TEST_PASSWORD}).json
    eve = {"Authorization": f"Bearer {login['access_token']}"}
    workspace = app.get("/api/v1/workspaces", headers=eve).json["workspaces"][0]["id"]
    event = app.post_json("/api/v1/events", {"workspace_id": workspace, **EVENT}, headers=eve).json["event"]
    eves = {"url": f"/api/v1/events/{event['id']}", "ada": eve}
    gus = add_guest(app, eves, name="Gus Guest", email="gus@example.com")
    token = issue(app, eves, gus)["token"]
    use_link(app, token)
    gus_report = invite_and_report(app, eves, gus)
    grace_report = invite_and_report(app, host, add_guest(app, host))
    assert reports(app) == {gus_report: True, grace_report: True}
    # Ada, who stays, is counted too.
    app.post_json("/api/v1/events", {"workspace_id": host["workspace"], **EVENT}, headers=host["ada"])
    eve_id = scalar(app, run_in_request, select(User.id).where(User.email == "eve@example.com"))
    ada_id = scalar(app, run_in_request, select(User.id).where(User.email == "ada@example.com"))
    assert naming(app, f"user:{eve_id}") and naming(app, email_digest("eve@example.com"))
    assert naming(app, digest(token)) and naming(app, f"user:{ada_id}")

    app.delete_json("/api/v1/me", {"password": TEST_PASSWORD}, headers=eve, status=202)
    assert naming(app, f"user:{eve_id}"), "kept while the deletion can be cancelled"
    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(days=30, minutes=1)):
        assert run_task_now(app.app.registry, erase_deleted_accounts) == 1
    assert naming(app, f"user:{eve_id}") == []
    assert naming(app, email_digest("eve@example.com")) == []
    assert naming(app, digest(token)) == []
    assert naming(app, f"user:{ada_id}"), "another account's buckets stay"
    assert reports(app) == {grace_report: True}, "the reports about her workspace's messages went"


def test_a_forget_while_the_store_is_away_is_done_and_says_so(make_app, run_in_request, caplog):
    app = make_app({"ratelimit.url": f"redis://127.0.0.1:{free_port()}/0"})
    host = event_host(app, run_in_request, EVENT)
    grace = add_guest(app, host)
    issue(app, host, grace)
    with caplog.at_level(logging.WARNING, logger="guestguard.privacy"):
        forgotten = app.post_json(f"{host['url']}/guests/{grace['id']}/forget", {}, headers=host["ada"]).json
    assert forgotten["guest"]["name"] == FORGOTTEN_NAME
    assert "the rate-limit counters of erased people could not be deleted (ConnectionError)" in caplog.text
    assert "grace" not in caplog.text.lower()
    # Forgotten for good: forgetting again answers the same.
    again = app.post_json(f"{host['url']}/guests/{grace['id']}/forget", {}, headers=host["ada"]).json
    assert again == forgotten


def test_a_forget_that_rolls_back_deletes_no_bucket(app, run_in_request):
    from guestguard.privacy.services import forget_guest

    host = event_host(app, run_in_request, EVENT)
    grace = add_guest(app, host)
    token = issue(app, host, grace)["token"]
    use_link(app, token)

    def forget_then_fail(request):
        import uuid

        forget_guest(request.ctx, uuid.UUID(grace["id"]))
        raise RuntimeError("the request failed after the forget")

    with pytest.raises(RuntimeError):
        run_in_request(forget_then_fail, app.app.registry)
    assert len(naming(app, digest(token))) == 2
    assert app.get(f"/access/{token}").status_int == 200, "the guest and their link are still there"



def test_retention_deletes_the_buckets_of_every_guest_it_anonymizes(app, run_in_request):
    from guestguard.privacy.retention import months_before
    from guestguard.privacy.tasks import apply_retention

    host = event_host(app, run_in_request, EVENT)
    tokens = []
    for n in range(3):
        guest = add_guest(app, host, name=f"Guest {n}", email=f"guest{n}@example.com")
        tokens.append(issue(app, host, guest)["token"])
        use_link(app, tokens[-1])
    assert all(len(naming(app, digest(token))) == 2 for token in tokens)
    start = dt.datetime(2030, 6, 21, 18, tzinfo=dt.UTC)
    with time_machine.travel(months_before(start, -18) + dt.timedelta(days=1), tick=False):
        assert run_task_now(app.app.registry, apply_retention) == 1
    assert [naming(app, digest(token)) for token in tokens] == [[], [], []]
