"""Events and guest lists through the JSON API."""
import contextlib

import pytest
from sqlalchemy import event as sa_event, func, select

from guestguard.events.models import Guest
from guestguard.testing import create_host, create_team, session_bearer


@pytest.fixture
def host(app, run_in_request):
    """Ada owns a workspace; Sam is its door staff; Eve has her own."""
    workspace_id = run_in_request(create_team, app.app.registry)
    return {"workspace": workspace_id,
            **{name: session_bearer(app.app.registry, f"{name}@example.com") for name in ("ada", "sam", "eve")}}


EVENT = {"name": "Midsummer Gala", "starts_at": "2030-06-21T19:00:00", "ends_at": "2030-06-21T23:30:00",
         "timezone": "Europe/London", "venue": "Kew Gardens", "default_plus_ones": 1,
         "rsvp_deadline": "2030-06-01T12:00:00+00:00", "host_message": "Dress: summer best."}


def create_event(app, host, **changes):
    body = {"workspace_id": host["workspace"], **EVENT, **changes}
    return app.post_json("/api/v1/events", body, headers=host["ada"], status=201).json["event"]


def event_of_new_host(app, run_in_request):
    """For apps with their own settings: a host, a workspace, an event."""
    workspace_id = run_in_request(create_host, app.app.registry)
    headers = session_bearer(app.app.registry, "ada@example.com")
    event = app.post_json("/api/v1/events", {"workspace_id": workspace_id, **EVENT}, headers=headers).json["event"]
    return event, headers


@contextlib.contextmanager
def counting_queries(app):
    statements = []
    engine = app.app.registry["db.engine"]

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    sa_event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        sa_event.remove(engine, "before_cursor_execute", count)


def test_create_read_update_delete_an_event(app, host):
    event = create_event(app, host)
    assert event["starts_at"] == "2030-06-21T19:00:00+01:00"  # wall-clock time in its zone
    assert event["status"] == "draft" and event["headcount"]["guests"] == 0
    url = f"/api/v1/events/{event['id']}"
    assert app.get(url, headers=host["sam"]).json["event"]["name"] == "Midsummer Gala"
    patched = app.patch_json(url, {"status": "published", "venue": "Kew"}, headers=host["ada"]).json["event"]
    assert (patched["status"], patched["venue"], patched["name"]) == ("published", "Kew", "Midsummer Gala")
    app.patch_json(url, {"name": "Staff cannot"}, headers=host["sam"], status=403)
    app.delete(url, headers=host["ada"], status=204)
    app.get(url, headers=host["ada"], status=404)


def test_listing_events_by_workspace_with_paging(app, host):
    for day in range(1, 6):
        create_event(app, host, name=f"Event {day}", starts_at=f"2030-07-0{day}T18:00:00",
                     ends_at=None, rsvp_deadline=None)
    first = app.get("/api/v1/events?limit=2", headers=host["ada"]).json
    assert [e["name"] for e in first["events"]] == ["Event 1", "Event 2"]
    second = app.get(f"/api/v1/events?limit=2&after={first['next']}", headers=host["ada"]).json
    assert [e["name"] for e in second["events"]] == ["Event 3", "Event 4"]
    narrowed = app.get(f"/api/v1/events?workspace_id={host['workspace']}", headers=host["sam"]).json
    assert len(narrowed["events"]) == 5
    foreign = app.get(f"/api/v1/events?workspace_id={host['workspace']}", headers=host["eve"]).json
    assert foreign == {"events": [], "next": None}
    bad = app.get("/api/v1/events?after=garbage", headers=host["ada"], status=400)
    assert bad.json["error"]["code"] == "invalid_cursor"


@pytest.mark.parametrize("changes, field", [
    ({"name": ""}, "name"),
    ({"timezone": "Mars/Olympus"}, "timezone"),
    ({"ends_at": "2030-06-21T18:00:00"}, "ends_at"),
    ({"rsvp_deadline": "2030-07-01T00:00:00"}, "rsvp_deadline"),
    ({"default_plus_ones": -1}, "default_plus_ones"),
    ({"status": "archived"}, "status"),
    ({"starts_at": "next tuesday"}, "starts_at"),
])
def test_bad_events_name_the_field(app, host, changes, field):
    body = {"workspace_id": host["workspace"], **EVENT, **changes}
    response = app.post_json("/api/v1/events", body, headers=host["ada"], status=422)
    assert field in response.json["error"]["fields"]


def test_events_go_only_where_the_caller_may_create_them(app, host):
    body = {"workspace_id": host["workspace"], **EVENT}
    app.post_json("/api/v1/events", body, headers=host["eve"], status=422)
    refused = app.post_json("/api/v1/events", body, headers=host["sam"], status=403)
    assert refused.json["error"]["required"] == "events.edit"


def test_an_update_cannot_end_before_the_start(app, host):
    event = create_event(app, host)
    response = app.patch_json(f"/api/v1/events/{event['id']}", {"ends_at": "2030-06-20T10:00:00"},
                              headers=host["ada"], status=422)
    assert "ends_at" in response.json["error"]["fields"]


def test_adding_guests_one_and_many(app, host):
    event = create_event(app, host)
    url = f"/api/v1/events/{event['id']}/guests"
    one = app.post_json(url, {"name": "Grace Hopper", "email": "Grace@Example.com", "phone": "+44 20 7946 0958",
                              "tags": ["family", " family ", "vip"]},
                        headers=host["ada"], status=201).json["guest"]
    assert one["email"] == "grace@example.com"
    assert one["plus_ones_allowed"] == 1  # the event's default
    assert one["tags"] == ["family", "vip"]
    assert one["phone"] == "+442079460958"
    many = app.post_json(url, [{"name": f"Guest {n}", "email": f"g{n}@example.com"} for n in range(50)],
                         headers=host["ada"], status=201).json["guests"]
    assert len(many) == 50


def test_phone_numbers_are_stored_in_e164(make_app, run_in_request):
    app = make_app({"guests.default_region": "GB"})
    event, headers = event_of_new_host(app, run_in_request)
    guest = app.post_json(f"/api/v1/events/{event['id']}/guests", {"name": "Grace", "phone": "020 7946 0958"},
                          headers=headers).json["guest"]
    assert guest["phone"] == "+442079460958"


def test_a_duplicate_email_names_the_existing_guest(app, host):
    event = create_event(app, host)
    url = f"/api/v1/events/{event['id']}/guests"
    first = app.post_json(url, {"name": "Grace", "email": "grace@example.com"}, headers=host["ada"]).json["guest"]
    again = app.post_json(url, {"name": "G. Hopper", "email": "GRACE@example.com"}, headers=host["ada"],
                          status=409).json["error"]
    assert again["existing_guest_id"] == first["id"]
    assert "Grace" in again["message"]


def test_a_batch_with_bad_rows_adds_nothing_and_lists_every_bad_row(app, host, run_in_request):
    event = create_event(app, host)
    url = f"/api/v1/events/{event['id']}/guests"
    app.post_json(url, {"name": "Grace", "email": "grace@example.com"}, headers=host["ada"])
    rows = [{"name": "Ok"}, {"name": ""}, {"name": "Bad mail", "email": "nope"},
            {"name": "Dup", "email": "grace@example.com"}, {"name": "Phone", "phone": "12"},
            {"name": "Twice", "email": "t@example.com"},
            {"name": "Twice again", "email": "t@example.com"}, {"name": "Plus", "plus_ones_allowed": 99}]
    error = app.post_json(url, rows, headers=host["ada"], status=422).json["error"]
    # Malformed rows are reported first; duplicates and phones once all rows are well formed.
    assert sorted(error["rows"], key=int) == ["1", "2", "7"]
    assert "name" in error["rows"]["1"] and "email" in error["rows"]["2"] and "plus_ones_allowed" in error["rows"]["7"]
    count = run_in_request(lambda r: r.db.scalar(select(func.count()).select_from(Guest)), app.app.registry)
    assert count == 1


def test_a_batch_checks_phones_and_duplicates_once_the_rows_are_well_formed(app, host, run_in_request):
    event = create_event(app, host)
    url = f"/api/v1/events/{event['id']}/guests"
    app.post_json(url, {"name": "Grace", "email": "grace@example.com"}, headers=host["ada"])
    rows = [{"name": "Ok"}, {"name": "Dup", "email": "grace@example.com"}, {"name": "Phone", "phone": "12"},
            {"name": "Twice", "email": "t@example.com"}, {"name": "Twice again", "email": "t@example.com"}]
    error = app.post_json(url, rows, headers=host["ada"], status=422).json["error"]
    assert set(error["rows"]) == {"1", "2", "4"}
    assert "already on the list as Grace" in error["rows"]["1"]["email"]
    assert "phone" in error["rows"]["2"]
    assert error["rows"]["4"]["email"] == "is also in row 3"
    count = run_in_request(lambda r: r.db.scalar(select(func.count()).select_from(Guest)), app.app.registry)
    assert count == 1


def test_a_batch_over_the_limit_is_refused(make_app, run_in_request):
    app = make_app({"guests.max_batch": "3"})
    event, headers = event_of_new_host(app, run_in_request)
    app.post_json(f"/api/v1/events/{event['id']}/guests", [{"name": "x"}] * 4, headers=headers, status=422)
    app.post_json(f"/api/v1/events/{event['id']}/guests", [], headers=headers, status=422)


def test_guest_update_and_delete(app, host):
    event = create_event(app, host)
    url = f"/api/v1/events/{event['id']}/guests"
    grace = app.post_json(url, {"name": "Grace", "email": "grace@example.com"}, headers=host["ada"]).json["guest"]
    ada = app.post_json(url, {"name": "Ada", "email": "ada2@example.com"}, headers=host["ada"]).json["guest"]
    patched = app.patch_json(f"{url}/{grace['id']}", {"notes": "Vegetarian", "plus_ones_allowed": 2},
                             headers=host["ada"]).json["guest"]
    assert (patched["notes"], patched["plus_ones_allowed"]) == ("Vegetarian", 2)
    app.patch_json(f"{url}/{grace['id']}", {"email": "ada2@example.com"}, headers=host["ada"], status=409)
    app.patch_json(f"{url}/{grace['id']}", {"phone": "not a phone"}, headers=host["ada"], status=422)
    app.patch_json(f"{url}/{grace['id']}", {"name": "Staff"}, headers=host["sam"], status=403)
    app.delete(f"{url}/{ada['id']}", headers=host["ada"], status=204)
    app.get(f"{url}/{ada['id']}", headers=host["ada"], status=404)
    # a guest id under another event is not found
    other = create_event(app, host, name="Other")
    app.get(f"/api/v1/events/{other['id']}/guests/{grace['id']}", headers=host["ada"], status=404)


def test_guest_list_search_filter_and_keyset_paging(app, host):
    event = create_event(app, host)
    url = f"/api/v1/events/{event['id']}/guests"
    app.post_json(url, [{"name": f"Guest {n:03}", "email": f"g{n}@example.com"} for n in range(120)],
                  headers=host["ada"])
    names, cursor = [], None
    while True:
        page = app.get(url + (f"?limit=50&after={cursor}" if cursor else "?limit=50"), headers=host["sam"]).json
        names += [g["name"] for g in page["guests"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert names == [f"Guest {n:03}" for n in range(120)]
    found = app.get(url + "?q=guest 11", headers=host["ada"]).json["guests"]
    assert [g["name"] for g in found] == [f"Guest {n}" for n in range(110, 120)]
    assert app.get(url + "?q=%_", headers=host["ada"]).json["guests"] == []
    assert len(app.get(url + "?response=pending&limit=500", headers=host["ada"]).json["guests"]) == 120
    assert app.get(url + "?response=yes", headers=host["ada"]).json["guests"] == []
    app.get(url + "?response=perhaps", headers=host["ada"], status=400)
    app.get(url + "?limit=501", headers=host["ada"], status=400)
    app.get(url + "?after=bm90IGpzb24", headers=host["ada"], status=400)


@pytest.mark.parametrize("guests", [10, 300])
def test_a_guest_page_costs_the_same_queries_whatever_the_list(app, host, guests):
    event = create_event(app, host)
    url = f"/api/v1/events/{event['id']}/guests"
    app.post_json(url, [{"name": f"Guest {n:04}"} for n in range(guests)], headers=host["ada"])
    app.get(url, headers=host["ada"])  # warm up
    with counting_queries(app) as statements:
        app.get(url + "?limit=500", headers=host["ada"])
    selects_of_guests = [s for s in statements if "FROM guests" in s]
    assert len(selects_of_guests) == 1
    # On PostgreSQL, two more scope the transaction (row-level security):
    # under the caller's own id to read their roles, then to their workspaces.
    scoping = [s for s in statements if "set_config('guestguard." in s]
    assert len(scoping) == (0 if app.app.registry["db.engine"].dialect.name == "sqlite" else 2), statements
    assert len(statements) - len(scoping) <= 5, statements  # identity, session, memberships, event, the page


def test_headcounts(app, host, run_in_request):
    event = create_event(app, host)
    url = f"/api/v1/events/{event['id']}/guests"
    guests = app.post_json(url, [{"name": f"G{n}"} for n in range(5)], headers=host["ada"]).json["guests"]

    def answer(request):
        import datetime as dt

        from guestguard.events.models import Guest as GuestRow

        rows = {g.name: g for g in request.db.scalars(select(GuestRow))}
        now = dt.datetime.now(dt.UTC)
        for name, response, plus in (("G0", "yes", 1), ("G1", "yes", 0), ("G2", "no", 0), ("G3", "maybe", 0)):
            rows[name].response, rows[name].plus_ones_coming = response, plus
        for name in ("G0", "G1", "G2", "G3", "G4"):
            rows[name].invited_at = now
        for name in ("G0", "G1", "G2"):
            rows[name].opened_at = now

    run_in_request(answer, app.app.registry)
    counts = app.get(f"/api/v1/events/{event['id']}", headers=host["ada"]).json["event"]["headcount"]
    assert counts == {"yes": 2, "no": 1, "maybe": 1, "pending": 1, "expected": 3, "invited": 5,
                      "opened": 3, "not_opened": 2, "guests": 5, "waitlisted": 0}
    assert len(guests) == 5


def test_null_for_a_guest_field_that_always_has_a_value_means_its_empty_value(app, host):
    """Found by the API fuzz: tags and plus_ones_allowed set to null were written as NULL (a 500)."""
    event = create_event(app, host)  # one plus-one by default
    url = f"/api/v1/events/{event['id']}/guests"
    grace = app.post_json(url, {"name": "Grace", "tags": None, "plus_ones_allowed": None, "notes": None},
                          headers=host["ada"], status=201).json["guest"]
    assert (grace["tags"], grace["plus_ones_allowed"], grace["notes"]) == ([], 1, "")
    app.patch_json(f"{url}/{grace['id']}", {"tags": ["vip"], "plus_ones_allowed": 3}, headers=host["ada"])
    patched = app.patch_json(f"{url}/{grace['id']}", {"tags": None, "plus_ones_allowed": None},
                             headers=host["ada"]).json["guest"]
    assert (patched["tags"], patched["plus_ones_allowed"]) == ([], 1)
    assert app.get(f"{url}/{grace['id']}", headers=host["ada"]).json["guest"] == patched


def test_only_iana_zone_names_are_accepted_for_an_event(app, run_in_request):
    from guestguard.testing import create_host, session_bearer

    workspace_id = run_in_request(create_host, app.app.registry)
    host = session_bearer(app.app.registry, "ada@example.com")
    for name in ("localtime", "posix/Europe/Paris", "Factory"):
        refused = app.post_json("/api/v1/events", {"workspace_id": workspace_id, "name": "Gala",
                                                   "starts_at": "2030-06-21T19:00:00", "timezone": name},
                                headers=host, status=422).json["error"]
        assert refused["fields"]["timezone"].startswith("is not a time zone we know"), name
