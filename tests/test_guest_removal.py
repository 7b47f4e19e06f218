"""Removing a guest and undoing it: hidden at once everywhere, their link
dead, put back as they were within the undo window (with or without
JavaScript, twice at once, retried), refused clearly after it, and purged
with everything held about them by the worker."""
import datetime as dt
import uuid

import pytest
from sqlalchemy import func, select, update

from guestguard.activity.models import Activity
from guestguard.audit.models import AuditEvent
from guestguard.db import utcnow
from guestguard.events.models import Guest, InvitationLink, Rsvp
from guestguard.events.removals import purge_removed
from guestguard.guard.models import Flag
from guestguard.notifications.models import Notification
from guestguard.tasks import run_task_now
from guestguard.testing import add_guest, clicks, drain, event_host, inbox, issue, main_text, scalar, signed_in

EVENT = {"name": "Harbour Supper", "status": "published", "starts_at": "2030-08-14T19:30:00",
         "timezone": "Europe/London", "venue": "Quay Street", "default_plus_ones": 1}


@pytest.fixture
def app(make_app):
    return make_app({"db.pool_size": "6", "guests.undo_seconds": "10"})


@pytest.fixture
def host(app, run_in_request):
    return event_host(app, run_in_request, EVENT)


def every_row(app, run_in_request, guest_id):
    """The guest's row, removed or not, as the database holds it."""
    return run_in_request(lambda r: r.db.execute(select(Guest.__table__).where(
        Guest.__table__.c.id == uuid.UUID(guest_id))).first(), app.app.registry)


def age_removal(app, run_in_request, guest_id, seconds):
    """Pretend the guest was removed ``seconds`` ago."""
    table = Guest.__table__
    run_in_request(lambda r: r.db.execute(update(table).where(table.c.id == uuid.UUID(guest_id))
                                          .values(removed_at=utcnow() - dt.timedelta(seconds=seconds))),
                   app.app.registry)


def headcount(app, host):
    return app.get(host["url"], headers=host["ada"]).json["event"]["headcount"]


def listed(app, host):
    return [guest["name"] for guest in app.get(f"{host['url']}/guests", headers=host["ada"]).json["guests"]]


def restore(app, host, guest_id, status=200, headers=None):
    return app.post_json(f"{host['url']}/guests/{guest_id}/restore", {}, headers=headers or host["ada"],
                         status=status)


def test_a_removed_guest_is_hidden_everywhere_their_link_dies_and_undo_brings_both_back(
        app, run_in_request, host):
    grace = add_guest(app, host)
    add_guest(app, host, name="Alan Turing", email="alan@example.com")
    token = issue(app, host, grace)["token"]
    app.post_json(f"/api/v1/rsvp/{token}", {"response": "yes", "plus_ones": 1})
    before = headcount(app, host)
    assert (before["yes"], before["expected"], before["guests"]) == (1, 2, 2)

    app.delete(f"{host['url']}/guests/{grace['id']}", headers=host["ada"], status=204)
    gone = headcount(app, host)
    assert (gone["yes"], gone["expected"], gone["guests"]) == (0, 0, 1)
    assert listed(app, host) == ["Alan Turing"]
    app.get(f"{host['url']}/guests/{grace['id']}", headers=host["ada"], status=404)
    app.get(f"/access/{token}", status=404)
    app.post_json(f"/api/v1/rsvp/{token}", {"response": "no"}, status=404)
    sent = app.post_json(f"{host['url']}/send-invitations", {}, headers=host["ada"], status=202).json
    assert sent["queued"] == 1, "only Alan is written to"
    assert every_row(app, run_in_request, grace["id"]).removed_at is not None, "kept for the undo"

    back = restore(app, host, grace["id"]).json["guest"]
    assert (back["name"], back["response"], back["plus_ones_coming"]) == ("Grace Hopper", "yes", 1)
    assert headcount(app, host)["expected"] == 2
    assert sorted(listed(app, host)) == ["Alan Turing", "Grace Hopper"]
    assert app.get(f"/api/v1/access/{token}").json["guest"]["name"] == "Grace Hopper", "the same link works again"


def test_undo_twice_in_a_row_or_retried_restores_once(app, run_in_request, host):
    grace = add_guest(app, host)
    app.delete(f"{host['url']}/guests/{grace['id']}", headers=host["ada"], status=204)
    app.delete(f"{host['url']}/guests/{grace['id']}", headers=host["ada"], status=404)
    first = restore(app, host, grace["id"]).json
    assert restore(app, host, grace["id"]).json == first
    restored = scalar(app, run_in_request, select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "guest.restored"))
    assert restored == 1
    assert headcount(app, host)["guests"] == 1


@pytest.mark.one_pass("services")
def test_undo_clicked_at_once_from_four_places_restores_once(app, run_in_request, host):
    grace = add_guest(app, host)
    app.delete(f"{host['url']}/guests/{grace['id']}", headers=host["ada"], status=204)
    answers = clicks(app, [lambda client: client.post_json(
        f"{host['url']}/guests/{grace['id']}/restore", {}, headers=host["ada"], expect_errors=True)] * 4)
    assert [answer.status_int for answer in answers] == [200] * 4
    assert scalar(app, run_in_request, select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "guest.restored")) == 1
    assert listed(app, host) == ["Grace Hopper"]


def test_undo_after_the_window_is_refused_and_the_purge_erases_the_guest(app, run_in_request, host):
    grace = add_guest(app, host)
    token = issue(app, host, grace)["token"]
    app.post_json(f"/api/v1/rsvp/{token}", {"response": "yes", "dietary": "no nuts"})
    app.post_json(f"{host['url']}/send-invitations", {}, headers=host["ada"], status=202)
    app.delete(f"{host['url']}/guests/{grace['id']}", headers=host["ada"], status=204)
    registry = app.app.registry

    assert run_task_now(registry, purge_removed) == 0, "inside the window nothing is purged"
    age_removal(app, run_in_request, grace["id"], 11)
    late = restore(app, host, grace["id"], status=409).json["error"]
    assert late["code"] == "undo_expired"
    assert late["message"].startswith("Too late to undo: Grace Hopper was removed more than 10 seconds ago")

    assert run_task_now(registry, purge_removed) == 1
    assert every_row(app, run_in_request, grace["id"]) is None
    guest_id = uuid.UUID(grace["id"])
    for model in (InvitationLink, Rsvp, Activity):
        assert scalar(app, run_in_request, select(func.count()).select_from(model)
                      .where(model.guest_id == guest_id)) == 0, model.__name__
    kept = run_in_request(lambda r: r.db.execute(select(Notification.recipient, Notification.context)
                                                 .where(Notification.guest_id == guest_id)).all(), registry)
    assert kept and all(row == ("", {}) for row in kept), "messages to the guest keep no address"
    assert run_task_now(registry, purge_removed) == 0, "a second run finds nothing"
    assert restore(app, host, grace["id"], status=404).json["error"]["code"] == "not_found"


def test_the_address_of_a_removed_guest_is_free_and_undo_then_refuses_to_clash(app, run_in_request, host):
    grace = add_guest(app, host)
    app.delete(f"{host['url']}/guests/{grace['id']}", headers=host["ada"], status=204)
    again = add_guest(app, host, name="Grace B. Hopper")
    clash = restore(app, host, grace["id"], status=409).json["error"]
    assert clash["code"] == "conflict" and "Grace B. Hopper was added with the same email since" in clash["message"]
    assert listed(app, host) == ["Grace B. Hopper"] and again["email"] == "grace@example.com"


def test_a_place_freed_by_a_removal_goes_to_the_waitlist_and_undo_queues_behind(app, run_in_request, host):
    app.patch_json(host["url"], {"capacity": 1}, headers=host["ada"])
    grace, alan = add_guest(app, host), add_guest(app, host, name="Alan Turing", email="alan@example.com")
    for guest in (grace, alan):
        app.post_json(f"/api/v1/rsvp/{issue(app, host, guest)['token']}", {"response": "yes", "plus_ones": 0})
    assert headcount(app, host)["waitlisted"] == 1
    app.delete(f"{host['url']}/guests/{grace['id']}", headers=host["ada"], status=204)
    assert (headcount(app, host)["yes"], headcount(app, host)["waitlisted"]) == (1, 0), "Alan got the place"
    back = restore(app, host, grace["id"]).json["guest"]
    assert back["waitlisted_at"] is not None
    assert (headcount(app, host)["yes"], headcount(app, host)["waitlisted"]) == (1, 1)


def test_another_workspace_can_neither_remove_nor_restore(app, run_in_request, host):
    grace = add_guest(app, host)
    app.delete(f"{host['url']}/guests/{grace['id']}", headers=host["eve"], status=404)
    app.delete(f"{host['url']}/guests/{grace['id']}", headers=host["ada"], status=204)
    restore(app, host, grace["id"], status=404, headers=host["eve"])
    eve_event = app.post_json("/api/v1/events", {"workspace_id": app.get(
        "/api/v1/workspaces", headers=host["eve"]).json["workspaces"][0]["id"], **EVENT},
        headers=host["eve"]).json["event"]
    app.post_json(f"/api/v1/events/{eve_event['id']}/guests/{grace['id']}/restore", {}, headers=host["eve"],
                  status=404)
    restore(app, host, grace["id"], status=403, headers=host["sam"])
    assert every_row(app, run_in_request, grace["id"]).removed_at is not None


def test_the_feed_and_the_guard_hide_a_removed_guests_lines_and_flags(app, run_in_request, host):
    grace = add_guest(app, host)
    app.post_json(f"/api/v1/rsvp/{issue(app, host, grace)['token']}", {"response": "no"})

    def flag(request):
        request.db.add(Flag(workspace_id=uuid.UUID(host["workspace"]), event_id=uuid.UUID(host["event"]["id"]),
                            guest_id=uuid.UUID(grace["id"]), rule="networks", score=50, evidence="4 networks"))
    run_in_request(flag)

    def seen():
        items = app.get(f"{host['url']}/activity", headers=host["ada"]).json["items"]
        flags = app.get(f"{host['url']}/flags", headers=host["ada"]).json["flags"]
        return any("Grace Hopper" in item["summary"] for item in items), len(flags)

    assert seen() == (True, 1)
    app.delete(f"{host['url']}/guests/{grace['id']}", headers=host["ada"], status=204)
    assert seen() == (False, 0)
    summaries = [item["summary"] for item in app.get(f"{host['url']}/activity", headers=host["ada"]).json["items"]]
    assert "A guest was removed from the list" in summaries
    restore(app, host, grace["id"])
    assert seen() == (True, 1)


@pytest.mark.one_pass("sqlite")
def test_the_pages_offer_undo_after_removing_and_say_when_it_is_too_late(app, run_in_request, host):
    grace = add_guest(app, host)
    add_guest(app, host, name="Alan Turing", email="alan@example.com")
    ada = signed_in(app, run_in_request, "ada@example.com")
    page = ada.get(f"/events/{host['event']['id']}/guests/{grace['id']}")
    asked = page.forms["confirm-remove-form"]
    assert "You can undo this for 10 seconds" in main_text(page)
    removed = asked.submit(status=303).follow()
    assert "Grace Hopper was removed from the guest list." in main_text(removed)
    undo = removed.html.select_one("form.flash-undo")
    assert undo.button.get_text(strip=True) == "Undo: put Grace Hopper back"
    assert ada.get(removed.request.url).html.select_one("form.flash-undo") is None, "offered once"
    undo = f"undo-{grace['id']}"
    back = removed.forms[undo].submit(status=303).follow()
    assert "Grace Hopper is back on the guest list." in main_text(back)
    assert "Harbour Supper" in main_text(back)

    again = ada.get(f"/events/{host['event']['id']}/guests/{grace['id']}").forms["confirm-remove-form"]
    removed = again.submit(status=303).follow()
    age_removal(app, run_in_request, grace["id"], 11)
    late = removed.forms[undo].submit(status=303).follow()
    assert "Too late to undo: Grace Hopper was removed more than 10 seconds ago" in main_text(late)
    assert late.html.select_one(".flash-error") is not None
    run_task_now(app.app.registry, purge_removed)
    purged = removed.forms[undo].submit(status=303).follow()
    assert "no longer on the list and cannot be put back" in main_text(purged)


def test_a_message_still_queued_is_not_sent_to_a_removed_guest_and_is_sent_if_put_back_first(
        make_app, run_in_request):
    app = make_app({"huey.immediate": "false", "guests.undo_seconds": "10"})
    host = event_host(app, run_in_request, EVENT)
    grace, alan = add_guest(app, host), add_guest(app, host, name="Alan Turing", email="alan@example.com")
    for guest in (grace, alan):
        app.post_json(f"{host['url']}/guests/{guest['id']}/send", {}, headers=host["ada"], status=202)
        app.delete(f"{host['url']}/guests/{guest['id']}", headers=host["ada"], status=204)
    restore(app, host, alan["id"])  # put back before the worker got to the message
    drain(app.app.registry["huey"])
    assert inbox(app, "grace@example.com") == []
    assert len(inbox(app, "alan@example.com")) == 1
    status, error = run_in_request(lambda r: r.db.execute(
        select(Notification.status, Notification.last_error).where(
            Notification.guest_id == uuid.UUID(grace["id"]))).one(), app.app.registry)
    assert (status, error) == ("failed", "the guest was removed from the list")


def test_an_answer_that_reaches_the_guests_row_after_the_removal_is_refused(app, run_in_request, host):
    """The guest's page read the link before the host removed them; the
    answer, locking the row after the removal committed, is refused like a
    dead link, and so is the first open: nothing is written, no 500."""
    from guestguard.events.invitations import RsvpInput, record_open, submit_rsvp
    from guestguard.events.services import EventsError
    from guestguard.guard.access import look_up

    grace = add_guest(app, host)
    token = issue(app, host, grace)["token"]

    def answer_after_removal(request):
        found = look_up(request.db, token)
        request.db.execute(update(Guest.__table__).where(Guest.__table__.c.id == uuid.UUID(grace["id"]))
                           .values(removed_at=utcnow()))
        assert record_open(request.ctx, found.link, found.guest) is False
        with pytest.raises(EventsError) as refused:
            submit_rsvp(request.ctx, found.link, found.guest, found.event, RsvpInput(response="yes"), token)
        return refused.value.status

    assert run_in_request(answer_after_removal) == 404
    assert scalar(app, run_in_request, select(func.count()).select_from(Rsvp)) == 0
    assert scalar(app, run_in_request, select(func.count()).select_from(Activity)) == 0


def test_a_new_link_for_a_flag_whose_guest_was_removed_meanwhile_is_refused(app, run_in_request, host):
    from guestguard.events.models import Event
    from guestguard.events.services import EventsError
    from guestguard.guard.flags import reissue

    grace = add_guest(app, host)

    def removed_after_the_flag_was_read(request):
        flag = Flag(workspace_id=uuid.UUID(host["workspace"]), event_id=uuid.UUID(host["event"]["id"]),
                    guest_id=uuid.UUID(grace["id"]), rule="networks", score=50, evidence="4 networks")
        request.db.add(flag)
        request.db.flush()
        request.db.execute(update(Guest.__table__).where(Guest.__table__.c.id == flag.guest_id)
                           .values(removed_at=utcnow()))
        with pytest.raises(EventsError) as refused:
            reissue(request.ctx, flag, request.db.get(Event, flag.event_id))
        return refused.value.status, refused.value.code

    assert run_in_request(removed_after_the_flag_was_read) == (404, "not_found")
