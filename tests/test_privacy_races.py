"""Privacy under concurrency, through the real application with a client per
thread: two forgets at once, a forget racing the guest's answer, two asks
for an export at once, a double-clicked account deletion, a deletion racing
a login. Each leaves exactly the state one of them would. Meant for
PostgreSQL (row locks between connections); on SQLite all but the forget
racing an answer pass through its one writer."""
import uuid

import pytest
from sqlalchemy import func, select

from guestguard.accounts.models import AuthSession, User, UserToken
from guestguard.audit.models import AuditEvent
from guestguard.events.models import Guest, Rsvp
from guestguard.guard.models import AccessEntry, AccessTally
from guestguard.privacy.deletion import CANCEL_PURPOSE
from guestguard.privacy.jobs import FORGOTTEN_NAME
from guestguard.privacy.models import DataExport
from guestguard.testing import (
    TEST_PASSWORD,
    add_guest,
    clicks,
    event_host,
    inbox,
    issue,
    new_client,
    scalar,
    session_bearer,
)

EVENT = {"name": "Midsummer Gala", "status": "published", "starts_at": "2030-06-21T19:00:00",
         "timezone": "Europe/London", "default_plus_ones": 1}
ROUNDS = 3


def count(app, run_in_request, model, *where) -> int:
    return scalar(app, run_in_request, select(func.count()).select_from(model).where(*where))


@pytest.fixture
def app(make_app, tmp_path):
    return make_app({"privacy.export_dir": str(tmp_path / "exports")})


@pytest.fixture
def host(app, run_in_request):
    return event_host(app, run_in_request, EVENT)


def forget(host, guest):
    return lambda client: client.post_json(f"{host['url']}/guests/{guest['id']}/forget", {},
                                           headers=host["ada"]).json


def test_two_forgets_at_once_forget_once(app, host, run_in_request):
    for n in range(ROUNDS):
        guest = add_guest(app, host, name=f"Grace {n}", email=f"grace{n}@example.com")
        token = issue(app, host, guest)["token"]
        app.get(f"/access/{token}")
        app.post(f"/rsvp/{token}", {"response": "yes", "plus_ones": "1"}, status=303)
        answers = clicks(app, [forget(host, guest), forget(host, guest)])
        assert [a for a in answers if not isinstance(a, dict)] == []
        assert answers[0] == answers[1], "both answer the one forgotten guest"
        assert answers[0]["guest"]["name"] == FORGOTTEN_NAME
        assert count(app, run_in_request, AuditEvent, AuditEvent.action == "guest.forgotten",
                     AuditEvent.target_id == guest["id"]) == 1
        # The link's uses (the page, the answer) are tallied once, not twice.
        assert scalar(app, run_in_request, select(func.sum(AccessTally.uses))
                      .where(AccessTally.guest_id == uuid.UUID(guest["id"]))) == 2
    headcount = app.get(host["url"], headers=host["ada"]).json["event"]["headcount"]
    assert (headcount["yes"], headcount["expected"], headcount["opened"]) == (ROUNDS, 2 * ROUNDS, ROUNDS), \
        "every forgotten yes (with a plus-one) and open still counts"


def test_a_forget_racing_the_guests_answer_leaves_nothing_of_them(app, host, run_in_request, db_url):
    if not db_url.startswith("postgresql"):
        # SQLite (development, one process) has no row locks: an answer that
        # read the link before the forget's commit fails on its foreign key.
        pytest.skip("row locks between connections: PostgreSQL")
    for n in range(ROUNDS * 2):
        guest = add_guest(app, host, name=f"Alan {n}", email=f"alan{n}@example.com")
        token = issue(app, host, guest)["token"]

        def answer(client, token=token):
            return client.post(f"/rsvp/{token}", {"response": "yes", "plus_ones": "0",
                                                 "message": "Alan here, 07700 900123"}, expect_errors=True).status_int

        status, forgotten = clicks(app, [answer, forget(host, guest)])
        assert isinstance(forgotten, dict) and forgotten["guest"]["name"] == FORGOTTEN_NAME, forgotten
        # Answered first (then forgotten: the answer stays a count) or
        # refused after the forget (the link is gone): never half of each.
        assert status in (303, 404, 410), status
        row = scalar(app, run_in_request, select(Guest).where(Guest.id == uuid.UUID(guest["id"])))
        assert (row.name, row.email, row.forgotten_at is not None) == (FORGOTTEN_NAME, None, True)
        assert row.response == ("yes" if status == 303 else None)
        assert count(app, run_in_request, Rsvp, Rsvp.guest_id == uuid.UUID(guest["id"])) == 0
        assert count(app, run_in_request, AccessEntry, AccessEntry.guest_id == uuid.UUID(guest["id"])) == 0


def test_two_asks_for_an_export_at_once_make_one_export_and_one_email(app, host, run_in_request):
    def ask(client):
        return client.post_json("/api/v1/me/data-export", {}, headers=host["ada"], status=202).json["export"]

    answers = clicks(app, [ask, ask])
    assert [a for a in answers if not isinstance(a, dict)] == []
    assert answers[0]["id"] == answers[1]["id"]
    assert count(app, run_in_request, DataExport) == 1
    assert len([m for m in inbox(app, "ada@example.com") if "data is ready" in m.subject]) == 1


@pytest.fixture
def eve(app, host):
    """Eve, who owns a workspace of her own only."""
    return session_bearer(app.app.registry, "eve@example.com")


def eve_id(app, run_in_request):
    return scalar(app, run_in_request, select(User.id).where(User.email == "eve@example.com"))


def test_a_double_clicked_deletion_deletes_once(app, eve, run_in_request):
    def delete(client):
        return client.delete_json("/api/v1/me", {"password": TEST_PASSWORD}, headers=eve).status_int

    assert clicks(app, [delete, delete]) == [202, 202]
    user_id = eve_id(app, run_in_request)
    assert count(app, run_in_request, UserToken, UserToken.user_id == user_id,
                 UserToken.purpose == CANCEL_PURPOSE) == 1
    assert count(app, run_in_request, DataExport, DataExport.user_id == user_id) == 1
    assert count(app, run_in_request, AuditEvent, AuditEvent.action == "account.deletion_requested",
                 AuditEvent.result == "success") == 1
    mails = [m.subject for m in inbox(app, "eve@example.com")]
    assert len([s for s in mails if "account is deleted" in s]) == 1
    assert len([s for s in mails if "data is ready" in s]) == 1


def test_a_login_racing_the_deletion_leaves_no_way_in(app, eve, run_in_request):
    """Whichever goes first, no session outlives the deletion: a login that
    came first is ended with the others, a later one is refused."""
    logins = []

    def login(client):
        answer = client.post_json("/api/v1/auth/login", {"email": "eve@example.com", "password": TEST_PASSWORD},
                                  expect_errors=True)
        logins.append(answer.status_int)
        return answer.json.get("access_token")

    def deletion(headers):
        return lambda client: client.delete_json("/api/v1/me", {"password": TEST_PASSWORD}, headers=headers,
                                                 expect_errors=True).status_int

    for _ in range(ROUNDS):
        token, deleted = clicks(app, [login, deletion(eve)])
        assert deleted == 202
        user_id = eve_id(app, run_in_request)
        assert count(app, run_in_request, AuthSession, AuthSession.user_id == user_id,
                     AuthSession.revoked_at.is_(None)) == 0
        if token is not None:
            app.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}, status=401)
        app.post_json("/api/v1/auth/login", {"email": "eve@example.com", "password": TEST_PASSWORD}, status=401)
        # Cancelled by its emailed link, ready for the next round.
        cancel_and_sign_in_again(app, run_in_request)
        eve = session_bearer(app.app.registry, "eve@example.com")
    assert set(logins) <= {200, 401}


def cancel_and_sign_in_again(app, run_in_request):
    from guestguard.testing import link

    (notice, *_) = [m for m in inbox(app, "eve@example.com") if "account is deleted" in m.subject]
    page = new_client(app.app).get(link(notice, "account/deletion/cancel"))
    page.forms["cancel-deletion-form"].submit(status=303)
