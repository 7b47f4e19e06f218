"""Duplicating an event: a draft with the same details, look, questions and
capacity, its times moved with the start, and if asked its guest list —
never the guests' links, answers, invitations or flags."""
import datetime as dt
import io
import uuid

import pytest
from PIL import Image
from sqlalchemy import func, select

from guestguard.audit.models import AuditEvent
from guestguard.events import services
from guestguard.events.models import Event, EventCover, Guest, InvitationLink
from guestguard.testing import add_guest, clicks, csrf, event_host, issue, main_text, scalar, signed_in

EVENT = {"name": "Lantern Supper", "status": "published", "starts_at": "2030-08-14T19:30:00",
         "ends_at": "2030-08-14T23:00:00", "rsvp_deadline": "2030-08-07T12:00:00", "timezone": "Europe/London",
         "venue": "Quay Street Gardens", "host_name": "Hana Host", "theme_colour": "#6a1b9a", "capacity": 40,
         "default_plus_ones": 1, "ask_plus_one_names": True, "host_message": "Music until late.",
         "questions": [{"label": "Which main course?", "kind": "choice", "required": True,
                        "choices": ["Fish", "Beef"]}]}


@pytest.fixture
def app(make_app):
    return make_app({"db.pool_size": "6"})


@pytest.fixture
def host(app, run_in_request):
    return event_host(app, run_in_request, EVENT)


def duplicate(app, host, body, status=201, headers=None):
    return app.post_json(f"{host['url']}/duplicate", body, headers=headers or host["ada"], status=status)


def guests_of(app, run_in_request, event_id):
    return run_in_request(lambda r: [(g.name, g.email, g.phone, g.plus_ones_allowed, g.group_name, g.tags, g.notes,
                                      g.response, g.invited_at, g.opened_at, g.open_flags, g.answers)
                                     for g in r.db.scalars(select(Guest).where(Guest.event_id == event_id)
                                                           .order_by(Guest.name))], app.app.registry)


def jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (800, 400), (200, 120, 60)).save(out, "JPEG")
    return out.getvalue()


def test_a_copy_is_a_draft_with_the_details_moved_to_its_start_and_the_guests_without_their_answers(
        app, run_in_request, host):
    grace = add_guest(app, host, name="Grace Hopper", email="grace@example.com", group="Family", tags=["vip"],
                      notes="Allergic to nuts", plus_ones_allowed=2)
    add_guest(app, host, name="Alan Turing", email=None, phone="+12125550123")
    token = issue(app, host, grace)["token"]
    app.get(f"/access/{token}")
    app.post_json(f"/api/v1/rsvp/{token}", {"response": "yes", "plus_ones": 1, "plus_one_names": ["Bob"],
                                            "answers": {host["event"]["questions"][0]["id"]: "Fish"}}, status=200)
    run_in_request(lambda request: services.set_cover(
        request.ctx, request.db.get(Event, uuid.UUID(host["event"]["id"])), jpeg()), app.app.registry)

    copy = duplicate(app, host, {"name": "Lantern Supper 2031", "starts_at": "2031-08-13T19:30:00",
                                 "with_guests": True}).json["event"]
    assert copy["id"] != host["event"]["id"] and copy["status"] == "draft"
    assert copy["name"] == "Lantern Supper 2031"
    assert copy["starts_at"].startswith("2031-08-13T")
    assert copy["ends_at"].startswith("2031-08-13T") and copy["rsvp_deadline"].startswith("2031-08-06T")
    source = app.get(host["url"], headers=host["ada"]).json["event"]
    for field in ("venue", "timezone", "host_name", "theme_colour", "capacity", "default_plus_ones",
                  "ask_plus_one_names", "host_message", "questions"):
        assert copy[field] == source[field], field
    assert copy["cover_url"] and copy["cover_url"] != source["cover_url"]
    assert copy["headcount"]["guests"] == 2 and copy["headcount"]["invited"] == 0
    copied = guests_of(app, run_in_request, uuid.UUID(copy["id"]))
    assert copied == [
        ("Alan Turing", None, "+12125550123", 1, "", [], "", None, None, None, 0, {}),
        ("Grace Hopper", "grace@example.com", None, 2, "Family", ["vip"], "Allergic to nuts", None, None, None, 0, {}),
    ]
    assert scalar(app, run_in_request, select(func.count()).select_from(InvitationLink).join(
        Guest, Guest.id == InvitationLink.guest_id).where(Guest.event_id == uuid.UUID(copy["id"]))) == 0
    assert scalar(app, run_in_request, select(func.count()).select_from(EventCover)) == 2
    # the original is as it was
    assert source["status"] == "published" and source["headcount"]["yes"] == 1
    audit = scalar(app, run_in_request, select(AuditEvent.details).where(AuditEvent.action == "event.duplicated"))
    assert audit == {"source_id": host["event"]["id"], "guests": 2}


def test_times_move_with_the_start_and_a_copy_without_guests_has_none(app, run_in_request, host):
    add_guest(app, host)
    copy = duplicate(app, host, {"starts_at": "2030-09-14T19:30:00"}).json["event"]
    assert copy["name"] == "Lantern Supper" and copy["headcount"]["guests"] == 0
    assert copy["ends_at"].startswith("2030-09-14T") and copy["rsvp_deadline"].startswith("2030-09-07T")
    same = duplicate(app, host, {}, status=201).json["event"]  # another start: another copy
    assert dt.datetime.fromisoformat(same["starts_at"]) == dt.datetime.fromisoformat(host["event"]["starts_at"])
    assert same["id"] != copy["id"]


def test_a_repeated_or_simultaneous_copy_is_made_once(app, run_in_request, host):
    body = {"name": "Twice", "with_guests": False}
    first = duplicate(app, host, body).json["event"]
    again = duplicate(app, host, body, status=200).json["event"]
    assert again["id"] == first["id"]
    answers = clicks(app, [lambda client: client.post_json(
        f"{host['url']}/duplicate", {"name": "At once"}, headers=host["ada"], expect_errors=True)] * 4)
    assert sorted(answer.status_int for answer in answers) == [200, 200, 200, 201]
    assert scalar(app, run_in_request, select(func.count()).select_from(Event).where(Event.name == "At once")) == 1


@pytest.mark.parametrize("body, field, words", [
    ({"starts_at": "2030-13-01T19:30:00"}, "starts_at", ""),
    ({"name": "x" * 201}, "name", "at most 200"),
    ({"name": "   "}, "name", ""),
    ({"starts_at": "tomorrow"}, "starts_at", ""),
    ({"with_guests": "maybe"}, "with_guests", ""),
])
def test_bad_input_names_its_field_and_copies_nothing(app, run_in_request, host, body, field, words):
    refused = duplicate(app, host, body, status=422).json["error"]
    assert field in refused["fields"] and words in refused["fields"][field]
    assert scalar(app, run_in_request, select(func.count()).select_from(Event)) == 1


def test_only_editors_of_the_workspace_may_copy(app, run_in_request, host):
    refused = duplicate(app, host, {}, status=403, headers=host["sam"]).json["error"]
    assert refused["required"] == "events.edit"
    duplicate(app, host, {}, status=404, headers=host["eve"])
    assert scalar(app, run_in_request, select(func.count()).select_from(Event)) == 1


def test_the_duplicate_form(app, run_in_request, host):
    add_guest(app, host)
    ada = signed_in(app, run_in_request, "ada@example.com")
    page = ada.get(f"/events/{host['event']['id']}").click("Duplicate")
    form = page.forms["duplicate-form"]
    assert form["name"].value == "Lantern Supper" and form["starts_at"].value == "2030-08-14T19:30"
    form["starts_at"], form["name"] = "not a time", ""
    refused = form.submit(status=400)
    assert [item.get_text(strip=True) for item in refused.html.select(".error-summary li")] == [
        "Name is required.", "Start must be a date and time, like 2030-06-21 19:00."]
    form = refused.forms["duplicate-form"]
    form["name"], form["starts_at"], form["with_guests"] = "Lantern Supper II", "2030-09-14T19:30", True
    made = form.submit().follow()
    assert "“Lantern Supper II” was created as a draft with its 1 guest (none invited yet)." in main_text(made)
    assert "Grace Hopper" in main_text(made)
    again = ada.post(f"/events/{host['event']['id']}/duplicate",
                     {"csrf_token": csrf(page), "name": "Lantern Supper II", "starts_at": "2030-09-14T19:30",
                      "with_guests": "on"}).follow()
    assert "was already copied moments ago" in main_text(again)


def test_a_copy_counts_against_the_plan_like_any_event(make_app, run_in_request):
    app = make_app({"billing.enforce": "true"})  # the Free plan: one event a month
    host = event_host(app, run_in_request, {**EVENT, "theme_colour": ""})  # no branding on Free
    refused = duplicate(app, host, {"name": "Second"}, status=402).json["error"]
    assert refused["code"] == "plan_limit" and refused["meter"] == "events"
    assert scalar(app, run_in_request, select(func.count()).select_from(Event)) == 1
