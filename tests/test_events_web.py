"""The host's event pages through the real app, as a browser uses them:
cookie sessions, forms with their CSRF tokens, redirects with flash
messages; the guest list's search, filter and paging; the headcount chart."""
import re
import uuid
import xml.etree.ElementTree as ET

import pytest
from sqlalchemy import func, select

from guestguard.events.models import Event, Guest
from guestguard.testing import create_team, csrf, main_text, new_client, session_bearer, signed_in

# In one pass only when make test runs both: pages, forms and rules whose outcome the backend does not change
# (docs/testing.md, "Two passes at once").
pytestmark = pytest.mark.one_pass("sqlite")


# --- people, browsers, events --------------------------------------------------


@pytest.fixture
def host(app, run_in_request):
    """Ada owns "Gala team", where Sam is door staff; Eve has only her own
    workspace."""
    return {"workspace": run_in_request(create_team), "ada": session_bearer(app.app.registry, "ada@example.com")}


EVENT = {"name": "Midsummer Gala", "starts_at": "2030-06-21T19:00:00", "ends_at": "2030-06-21T23:30:00",
         "timezone": "Europe/London", "venue": "Kew Gardens", "default_plus_ones": 1,
         "rsvp_deadline": "2030-06-01T12:00:00", "host_message": "Dress: summer best."}


def api_event(app, host, **changes):
    body = {"workspace_id": host["workspace"], **EVENT, **changes}
    return app.post_json("/api/v1/events", body, headers=host["ada"], status=201).json["event"]["id"]


def api_guests(app, host, event_id, guests):
    return [guest["id"] for guest in app.post_json(
        f"/api/v1/events/{event_id}/guests", guests, headers=host["ada"], status=201).json["guests"]]


def answer(run_in_request, guest_id, response, plus_ones=0, opened=True):
    """Record a guest's answer directly: the RSVP pages are another test's."""
    from guestguard.db import utcnow

    def set_answer(request):
        guest = request.db.get(Guest, uuid.UUID(guest_id))
        guest.response, guest.plus_ones_coming, guest.responded_at = response, plus_ones, utcnow()
        guest.invited_at = utcnow()
        if opened:
            guest.opened_at = utcnow()
    run_in_request(set_answer)


def tally(page, scope=None):
    """{label: number} of the first tally on the page."""
    root = page.html.select_one(scope) if scope else page.html
    found = root.find("dl", class_="tally")
    return {div.dt.get_text(strip=True): int(div.dd.get_text(strip=True)) for div in found.find_all("div")}


def guest_names(page):
    return [a.get_text(strip=True) for a in page.html.select(".guest-list .row-title a")]


def field_error(page, name):
    field = page.html.find(attrs={"name": name})
    assert field.get("aria-invalid") == "true", f"{name} is not marked invalid"
    return page.html.find(id=field["aria-describedby"].split()[-1]).get_text(" ", strip=True)


def count_events(run_in_request):
    return run_in_request(lambda r: r.db.scalar(select(func.count()).select_from(Event)))


def fill(form, **values):
    for name, value in values.items():
        form[name] = value
    return form


# --- creating an event -------------------------------------------------------------


def test_creating_an_event_through_the_form(app, run_in_request, host):
    ada = signed_in(app, run_in_request, "ada@example.com")
    dashboard = ada.get("/dashboard")
    new_url = f"/workspaces/{host['workspace']}/events/new"
    assert dashboard.html.find("a", href=new_url) is not None
    form = ada.get(new_url).forms["event-form"]
    assert form["timezone"].value == "UTC" and form["status"].value == "draft"
    fill(form, name="Midsummer Gala", venue="Kew Gardens", starts_at="2030-06-21T19:00",
         ends_at="2030-06-21T23:30", timezone="Europe/London", rsvp_deadline="2030-06-01T12:00",
         default_plus_ones="2", host_message="Dress: summer best.", status="published")
    created = form.submit(status=303)
    event_id = re.fullmatch(r"http://guestguard.test/events/([0-9a-f-]{36})", created.location).group(1)
    page = created.follow()
    text = main_text(page)
    assert "Event “Midsummer Gala” created." in text
    assert page.html.find("h1").get_text(" ", strip=True) == "Midsummer Gala Published"
    assert "Fri 21 Jun 2030, 19:00 BST – 23:30 (Europe/London)" in text  # in the event's zone
    assert "Sat 1 Jun 2030, 12:00 BST" in text and "Kew Gardens" in text and "Dress: summer best." in text
    assert "2 per guest" in text and "No guests yet." in text

    def stored(request):
        event = request.db.get(Event, uuid.UUID(event_id))
        return event.starts_at.isoformat(), event.default_plus_ones, event.status
    assert run_in_request(stored) == ("2030-06-21T18:00:00+00:00", 2, "published")


def test_a_start_in_the_past_is_saved_with_a_warning(app, run_in_request, host):
    ada = signed_in(app, run_in_request, "ada@example.com")
    form = ada.get(f"/workspaces/{host['workspace']}/events/new").forms["event-form"]
    fill(form, name="Last year's party", starts_at="2020-06-21T19:00", timezone="Europe/London")
    page = form.submit(status=303).follow()
    note = page.html.select_one(".flash-info").get_text(" ", strip=True)
    assert note == "Note: it starts in the past (Sunday 21 June 2020, 19:00 BST). If that is a typo, edit the start."
    assert "Event “Last year's party” created." in main_text(page)
    form = page.click("Edit event").forms["event-form"]
    form["starts_at"] = "2031-06-21T19:00"
    assert not form.submit().follow().html.select_one(".flash-info")


@pytest.mark.parametrize("changes, field, message", [
    ({"name": "  "}, "name", "Name is required."),
    ({"ends_at": "2030-06-21T18:00"}, "ends_at", "End must be after the start."),
    ({"timezone": "Mars/Olympus_Mons"}, "timezone", "Time zone is not a time zone we know"),
    ({"starts_at": ""}, "starts_at", "Start is required."),
    ({"starts_at": "tomorrow evening"}, "starts_at", "Start must be a date and time"),
    ({"rsvp_deadline": "2030-07-01T12:00"}, "rsvp_deadline", "RSVP deadline must not be after the start."),
    ({"default_plus_ones": "-1"}, "default_plus_ones", "Plus-ones per guest must be greater than or equal to 0"),
])
def test_bad_event_input_is_shown_next_to_the_field_and_stores_nothing(
        app, run_in_request, host, changes, field, message):
    ada = signed_in(app, run_in_request, "ada@example.com")
    before = count_events(run_in_request)
    form = ada.get(f"/workspaces/{host['workspace']}/events/new").forms["event-form"]
    fill(form, name="Gala", starts_at="2030-06-21T19:00", ends_at="2030-06-21T23:00", timezone="Europe/London")
    fill(form, **changes)
    refused = form.submit(status=400)
    assert field_error(refused, field).startswith("Error: " + message)
    assert refused.html.find("title").get_text().startswith("Error: ")
    assert message in refused.html.find(class_="error-summary").get_text(" ", strip=True)
    # what was typed comes back
    assert refused.forms["event-form"]["venue"].value == ""
    assert refused.forms["event-form"]["timezone"].value == changes.get("timezone", "Europe/London")
    assert count_events(run_in_request) == before


def test_the_new_event_form_suggests_every_place_and_starts_in_the_workspaces_zone(app, run_in_request, host):
    ada = signed_in(app, run_in_request, "ada@example.com")
    new = f"/workspaces/{host['workspace']}/events/new"
    first = ada.get(new).forms["event-form"]
    assert first["timezone"].value == "UTC"  # before its first event; the page's script puts the browser's
    api_event(app, host, timezone="Asia/Kolkata")
    page = ada.get(new)
    assert page.forms["event-form"]["timezone"].value == "Asia/Kolkata"
    zones = [option["value"] for option in page.html.select("#event-zones option")]
    assert {"UTC", "Europe/London", "America/Argentina/Buenos_Aires", "Pacific/Chatham"} <= set(zones)
    assert "US/Eastern" not in zones and "Etc/GMT+5" not in zones and len(zones) > 300
    assert page.html.find("input", id="event-timezone").has_attr("data-browser-zone")
    edit = ada.get(f"/events/{api_event(app, host)}/edit")
    assert not edit.html.find("input", id="event-timezone").has_attr("data-browser-zone")


def test_every_problem_of_the_event_form_shows_at_once(app, run_in_request, host):
    ada = signed_in(app, run_in_request, "ada@example.com")
    form = ada.get(f"/workspaces/{host['workspace']}/events/new").forms["event-form"]
    fill(form, name="", starts_at="2030-06-21T19:00", ends_at="2030-06-21T18:00", timezone="Europe/London")
    refused = form.submit(status=400)
    summary = [li.get_text(strip=True) for li in refused.html.select(".error-summary li")]
    assert summary == ["Name is required.", "End must be after the start."]
    assert count_events(run_in_request) == 0


# --- the event page ------------------------------------------------------------------


def test_the_event_page_shows_the_headcount_chart_and_the_guests(app, run_in_request, host):
    event_id = api_event(app, host)
    ids = api_guests(app, host, event_id, [
        {"name": "Grace Hopper", "email": "grace@example.com", "plus_ones_allowed": 2, "group": "Family",
         "tags": ["vip"]},
        {"name": "Alan Turing", "phone": "+44 20 7946 0958"},
        {"name": "Barbara Liskov"}, {"name": "Edsger Dijkstra"}, {"name": "Katherine Johnson"},
    ])
    answer(run_in_request, ids[0], "yes", plus_ones=2)
    answer(run_in_request, ids[1], "yes")
    answer(run_in_request, ids[2], "maybe")
    answer(run_in_request, ids[3], "no", opened=False)
    ada = signed_in(app, run_in_request, "ada@example.com")
    page = ada.get(f"/events/{event_id}")
    assert tally(page) == {"Expected": 4, "Yes": 2, "Maybe": 1, "No": 1, "No answer": 1}
    assert "5 guests on the list: 4 invited, 3 opened their invitation, 1 not yet." in main_text(page)
    chart = page.html.find("img", class_="headcount-chart")
    assert chart["src"].startswith(f"/events/{event_id}/headcount.svg?v=")
    assert chart["alt"] == ("Chart of the answers: 2 yes, 1 maybe, 1 no, 1 no answer; expected headcount 4 "
                            "including plus-ones; 4 of 5 invited, 3 opened.")
    assert guest_names(page) == ["Alan Turing", "Barbara Liskov", "Edsger Dijkstra", "Grace Hopper",
                                 "Katherine Johnson"]
    rows = {row.find(class_="row-title").a.get_text(strip=True): row.get_text(" ", strip=True)
            for row in page.html.select(".guest-list .row")}
    assert "Yes +2" in rows["Grace Hopper"] and "2 of 2 plus-ones" in rows["Grace Hopper"]
    assert "Family" in rows["Grace Hopper"] and "vip" in rows["Grace Hopper"]
    assert "grace@example.com" in rows["Grace Hopper"] and "+442079460958" in rows["Alan Turing"]
    assert "Maybe" in rows["Barbara Liskov"] and "Opened" in rows["Barbara Liskov"]
    assert "No " in rows["Edsger Dijkstra"] and rows["Edsger Dijkstra"].endswith("Sent")
    assert "No answer" in rows["Katherine Johnson"] and "Not invited" in rows["Katherine Johnson"]
    assert page.html.find("a", string="Add a guest") and page.html.find("a", string="Edit event")
    assert page.headers["Cache-Control"] == "no-store"

    svg = ada.get(f"/events/{event_id}/headcount.svg")
    assert svg.content_type == "image/svg+xml"
    assert "script-src 'self'" in svg.headers["Content-Security-Policy"]
    root = ET.fromstring(svg.body)
    ns = "{http://www.w3.org/2000/svg}"
    assert root.get("role") == "img" and root.get("aria-labelledby") == "t d"
    assert root.find(ns + "title").text == "Answers for Midsummer Gala"
    assert root.find(ns + "desc").text.startswith("2 yes, 1 maybe, 1 no, 1 no answer")
    labels = [text.text for text in root.iter(ns + "text")]
    assert labels == ["Yes", "2", "Maybe", "1", "No", "1", "No answer", "1"]
    assert b"<script" not in svg.body and b"<style" not in svg.body and b"style=" not in svg.body


def test_the_live_parts_render_alone_and_follow_the_answers(app, run_in_request, host):
    event_id = api_event(app, host)
    [grace] = api_guests(app, host, event_id, [{"name": "Grace Hopper", "email": "grace@example.com"}])
    ada = signed_in(app, run_in_request, "ada@example.com")
    page = ada.get(f"/events/{event_id}")
    before = ada.get(f"/events/{event_id}", {"live": "1"})
    assert "<html" not in before.text and "activity-feed" not in before.text
    assert [part["id"] for part in before.html.find_all(id=True, recursive=False)] == [
        "headcount", "rollup", "flag-notice", "guest-rows"]
    for part in ("headcount", "guest-rows"):  # the same markup the page shows
        assert str(before.html.find(id=part)) == str(page.html.find(id=part))
    assert before.headers["Cache-Control"] == "no-store"

    answer(run_in_request, grace, "yes")
    after = ada.get(f"/events/{event_id}", {"live": "1"})
    assert tally(after) == {"Expected": 1, "Yes": 1, "Maybe": 0, "No": 0, "No answer": 0}
    assert "Yes" in after.html.select_one(".guest-list .row").get_text(" ", strip=True)
    chart = lambda part: part.html.find("img", class_="headcount-chart")["src"]  # noqa: E731
    assert chart(after) != chart(before)  # a new address: the browser fetches the new chart

    stranger = new_client(app.app)
    stranger.get(f"/events/{event_id}", {"live": "1"}, status=302)
    eve = signed_in(app, run_in_request, "eve@example.com")
    assert "Grace" not in eve.get(f"/events/{event_id}", {"live": "1"}, status=404).text


def test_the_chart_escapes_the_event_name_and_draws_empty_events(app, run_in_request, host):
    event_id = api_event(app, host, name="Tom & Jerry's <party>")
    ada = signed_in(app, run_in_request, "ada@example.com")
    root = ET.fromstring(ada.get(f"/events/{event_id}/headcount.svg").body)
    assert root.find("{http://www.w3.org/2000/svg}title").text == "Answers for Tom & Jerry's <party>"
    assert [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")][1::2] == ["0", "0", "0", "0"]


def test_searching_filtering_and_paging_the_guest_list(app, run_in_request, host):
    event_id = api_event(app, host)
    ids = api_guests(app, host, event_id, [
        {"name": f"Guest {number:02d}", "email": f"guest{number:02d}@example.com"} for number in range(60)])
    for guest_id in ids[:3]:
        answer(run_in_request, guest_id, "yes")
    answer(run_in_request, ids[10], "no", opened=False)
    ada = signed_in(app, run_in_request, "ada@example.com")

    first = ada.get(f"/events/{event_id}")
    assert guest_names(first) == [f"Guest {number:02d}" for number in range(50)]
    second = first.click("Next page")
    assert guest_names(second) == [f"Guest {number:02d}" for number in range(50, 60)]
    assert second.html.find("a", rel="next") is None
    assert second.html.find("a", string="First page")["href"] == f"/events/{event_id}"

    search = first.forms["guest-search"]
    search["q"] = "guest1"  # matches emails and names, case-insensitively
    found = search.submit()
    assert guest_names(found) == [f"Guest {number}" for number in range(10, 20)]
    assert "Showing guests matching “guest1”" in main_text(found)

    # the chips keep the search, and the search keeps the chip
    chips = {chip.get_text(" ", strip=True): chip for chip in found.html.select(".chips a")}
    assert list(chips) == ["Everyone 60", "Yes 3", "No 1", "No answer 56", "Not invited 56",
                           "Not opened 1"]
    no = found.click(href=re.escape(chips["No 1"]["href"]) + "$")
    assert guest_names(no) == ["Guest 10"]
    assert no.html.select_one('.chips a[aria-current="page"]').get_text(" ", strip=True) == "No 1"
    assert "Showing guests matching “guest1” who answered no" in main_text(no)
    search = no.forms["guest-search"]
    search["q"] = "guest0"
    assert guest_names(search.submit()) == []
    assert guest_names(ada.get(f"/events/{event_id}", {"response": "not_opened"})) == ["Guest 10"]
    assert guest_names(ada.get(f"/events/{event_id}", {"response": "not_invited"}))[:2] == ["Guest 03", "Guest 04"]
    assert guest_names(ada.get(f"/events/{event_id}", {"response": "yes"})) == ["Guest 00", "Guest 01", "Guest 02"]
    pending = ada.get(f"/events/{event_id}", {"response": "pending"})
    assert len(guest_names(pending)) == 50
    assert guest_names(pending.click("Next page")) == [f"Guest {number}" for number in range(54, 60)]
    nobody = ada.get(f"/events/{event_id}", {"q": "zebra"})
    assert guest_names(nobody) == [] and "No guests match “zebra”" in main_text(nobody)
    unknown = ada.get(f"/events/{event_id}", {"response": "<script>"})  # an unknown filter shows everyone
    assert len(guest_names(unknown)) == 50 and "<script>" not in unknown.text

    broken = ada.get(f"/events/{event_id}", {"after": "not-a-cursor"}, status=400)
    assert "That page of the guest list is no longer valid" in main_text(broken)
    assert tally(broken)["Yes"] == 3  # the rest of the page still works


# --- guests --------------------------------------------------------------------------


def test_adding_guests_through_the_form(app, run_in_request, host):
    event_id = api_event(app, host, default_plus_ones=1)
    ada = signed_in(app, run_in_request, "ada@example.com")
    form = ada.get(f"/events/{event_id}").click("Add a guest", index=0).forms["guest-form"]
    assert form["plus_ones_allowed"].value == "1"  # the event's default
    fill(form, name="Grace Hopper", email="Grace@Example.com", phone="+1 202 555 0143", group="Navy",
         tags="vip, speaker, vip", notes="Bring the nanosecond wire.")
    added = form.submit("then", value="done", status=303)
    page = added.follow()
    assert "Grace Hopper was added to the guest list." in main_text(page)
    assert guest_names(page) == ["Grace Hopper"]

    guest = run_in_request(lambda r: r.db.scalar(select(Guest)))
    assert (guest.email, guest.phone, guest.tags, guest.group_name, guest.plus_ones_allowed) == (
        "grace@example.com", "+12025550143", ["vip", "speaker"], "Navy", 1)

    form = ada.get(f"/events/{event_id}/guests/new").forms["guest-form"]
    fill(form, name="Someone Else", email="grace@example.com")
    duplicate = form.submit("then", value="done", status=409)
    assert field_error(duplicate, "email") == "Error: This email is already on the list as Grace Hopper."
    link = duplicate.html.find("a", string=re.compile("open Grace Hopper’s details"))
    assert link["href"] == f"/events/{event_id}/guests/{guest.id}"
    assert duplicate.forms["guest-form"]["name"].value == "Someone Else"

    form = duplicate.forms["guest-form"]
    fill(form, name="", email="not-an-email", phone="12", plus_ones_allowed="21")
    refused = form.submit("then", value="done", status=400)
    assert field_error(refused, "name") == "Error: Name is required."
    assert "Error: Email" in field_error(refused, "email") or "email address" in field_error(refused, "email")
    assert field_error(refused, "plus_ones_allowed").startswith("Error: Plus-ones allowed must be less than")

    form = refused.forms["guest-form"]
    fill(form, name="Alan", email="", phone="12", plus_ones_allowed="0")
    bad_phone = form.submit("then", value="done", status=400)
    assert field_error(bad_phone, "phone").startswith("Error: Phone is not")

    form = bad_phone.forms["guest-form"]
    fill(form, phone="")
    another = form.submit("then", value="another", status=303)
    assert another.location.endswith(f"/events/{event_id}/guests/new")
    assert run_in_request(lambda r: r.db.scalar(select(func.count()).select_from(Guest))) == 2


def test_a_guests_page_shows_the_answer_and_edits_or_removes_them(app, run_in_request, host):
    event_id = api_event(app, host)
    grace, alan = api_guests(app, host, event_id, [
        {"name": "Grace Hopper", "email": "grace@example.com", "plus_ones_allowed": 2},
        {"name": "Alan Turing", "email": "alan@example.com"}])
    answer(run_in_request, grace, "yes", plus_ones=1)
    ada = signed_in(app, run_in_request, "ada@example.com")
    page = ada.get(f"/events/{event_id}").click("Grace Hopper")
    text = main_text(page)
    assert "Yes, bringing 1 plus-one" in text and "2 allowed" in text and "Sent " in text

    form = page.forms["guest-form"]
    fill(form, name="Grace B. Hopper", tags="navy", email="alan@example.com")
    taken = form.submit(status=409)
    assert field_error(taken, "email") == "Error: This email is already on the list as Alan Turing."
    assert run_in_request(lambda r: r.db.get(Guest, uuid.UUID(grace)).name) == "Grace Hopper"

    form = taken.forms["guest-form"]
    form["email"] = ""
    saved = form.submit(status=303).follow()
    assert "Grace B. Hopper’s details were saved." in main_text(saved)
    guest = run_in_request(lambda r: r.db.get(Guest, uuid.UUID(grace)))
    stored = (guest.name, guest.email, guest.tags)
    assert stored == ("Grace B. Hopper", None, ["navy"])

    removed = saved.forms["confirm-remove-form"].submit(status=303)
    assert removed.location.endswith(f"/events/{event_id}")
    assert guest_names(removed.follow()) == ["Alan Turing"]
    ada.get(f"/events/{event_id}/guests/{grace}", status=404)


# --- editing and deleting an event -----------------------------------------------------


def test_editing_and_deleting_an_event(app, run_in_request, host):
    event_id = api_event(app, host)
    ada = signed_in(app, run_in_request, "ada@example.com")
    form = ada.get(f"/events/{event_id}").click("Edit event").forms["event-form"]
    assert form["starts_at"].value == "2030-06-21T19:00"  # in the event's zone
    assert form["rsvp_deadline"].value == "2030-06-01T12:00"
    form["ends_at"] = "2030-06-21T18:00"
    refused = form.submit(status=400)
    assert field_error(refused, "ends_at") == "Error: End must be after the start."
    form = refused.forms["event-form"]
    fill(form, ends_at="", venue="The Orangery", status="published", timezone="America/New_York")
    page = form.submit(status=303).follow()
    text = main_text(page)
    assert "Event “Midsummer Gala” saved." in text
    assert "Fri 21 Jun 2030, 7:00 pm EDT (America/New_York)" in text and "The Orangery" in text

    deleted = page.click("Edit event").forms["confirm-delete-form"].submit(status=303)
    assert deleted.location == "http://guestguard.test/dashboard"
    assert "Event “Midsummer Gala” was deleted." in main_text(deleted.follow())
    ada.get(f"/events/{event_id}", status=404)
    assert run_in_request(lambda r: r.db.get(Event, uuid.UUID(event_id)).deleted_at) is not None


def test_zones_without_an_abbreviation_read_as_an_offset(app, run_in_request, host):
    """São Paulo's tz name is "-03": the pages say "UTC−03:00" (a real minus)."""
    event_id = api_event(app, host, timezone="America/Sao_Paulo", rsvp_deadline=None)
    grace, = api_guests(app, host, event_id, [{"name": "Grace"}])
    answer(run_in_request, grace, "yes")
    ada = signed_in(app, run_in_request, "ada@example.com")
    text = main_text(ada.get(f"/events/{event_id}"))
    assert "Fri 21 Jun 2030, 19:00 UTC\u221203:00 – 23:30 (America/Sao_Paulo)" in text
    assert "-03" not in text
    guest_page = main_text(ada.get(f"/events/{event_id}/guests/{grace}"))
    assert "UTC\u221203:00" in guest_page and "-03" not in guest_page


# --- the dashboard -------------------------------------------------------------------


def test_the_dashboard_lists_upcoming_events_with_headcounts(app, run_in_request, host):
    later = api_event(app, host, name="Winter Ball", starts_at="2031-01-10T20:00:00", ends_at=None,
                      rsvp_deadline=None)
    sooner = api_event(app, host)
    api_event(app, host, name="Last year", starts_at="2020-06-21T19:00:00", ends_at=None, rsvp_deadline=None)
    gone = api_event(app, host, name="Deleted")
    app.delete(f"/api/v1/events/{gone}", headers=host["ada"], status=204)
    grace, _ = api_guests(app, host, sooner, [{"name": "Grace"}, {"name": "Alan"}])
    answer(run_in_request, grace, "yes", plus_ones=1)

    ada = signed_in(app, run_in_request, "ada@example.com")
    page = ada.get("/account").click("Dashboard")
    assert page.html.find("a", attrs={"aria-current": "page"}, string="Dashboard")
    section = next(s for s in page.html.select("section.workspace-events") if "Gala team" in s.h2.get_text())
    cards = section.find("ul", class_="event-cards", recursive=False).find_all("li", recursive=False)
    assert [card.h3.get_text(strip=True) for card in cards] == ["Midsummer Gala", "Winter Ball"]
    assert cards[0].h3.a["href"] == f"/events/{sooner}" and cards[1].h3.a["href"] == f"/events/{later}"
    counts = {div.dt.get_text(strip=True): div.dd.get_text(strip=True) for div in cards[0].select(".tally div")}
    assert counts == {"Yes": "1", "Maybe": "0", "No": "0", "No answer": "1", "Expected, with plus-ones": "2"}
    assert "Fri 21 Jun 2030, 19:00 BST – 23:30 · Kew Gardens" in cards[0].get_text(" ", strip=True)
    assert "2 guests · 1 invited · 1 opened" in cards[0].get_text(" ", strip=True)
    assert "Past events (1)" in section.get_text(" ", strip=True)
    assert "Deleted" not in page.text
    assert section.select_one(".section-head a.button").get_text(" ", strip=True) == "New event in Gala team"
    assert section.select_one(".section-head a.button")["href"] == f"/workspaces/{host['workspace']}/events/new"

    sam = signed_in(app, run_in_request, "sam@example.com")
    staff_page = sam.get("/dashboard")
    section = next(s for s in staff_page.html.select("section.workspace-events") if "Gala team" in s.h2.get_text())
    assert "Midsummer Gala" in section.get_text() and section.select_one(".section-head a.button") is None
    own = next(s for s in staff_page.html.select("section.workspace-events") if "Gala team" not in s.h2.get_text())
    assert own.select_one(".section-head a.button") is not None  # his personal workspace


def test_an_empty_dashboard_explains_what_to_do(app, run_in_request, host):
    eve = signed_in(app, run_in_request, "eve@example.com")
    page = eve.get("/dashboard")
    assert "No events yet" in main_text(page)
    start = page.html.find("a", string="Create your first event")["href"]
    assert re.fullmatch(r"/workspaces/[0-9a-f-]{36}/events/new", start)
    assert eve.get(start).forms["event-form"]
    anonymous = new_client(app.app).get("/dashboard", status=302)
    assert "/login?next=%2Fdashboard" in anonymous.location


# --- who may do what -------------------------------------------------------------------


def test_staff_see_the_event_but_cannot_change_it(app, run_in_request, host):
    event_id = api_event(app, host)
    (grace,) = api_guests(app, host, event_id, [{"name": "Grace"}])
    sam = signed_in(app, run_in_request, "sam@example.com")
    page = sam.get(f"/events/{event_id}")
    assert guest_names(page) == ["Grace"]
    assert page.html.find("a", string="Add a guest") is None and page.html.find("a", string="Edit event") is None
    guest_page = sam.get(f"/events/{event_id}/guests/{grace}")
    assert "guest-form" not in guest_page.forms and "confirm-remove-form" not in guest_page.forms
    sam.get(f"/events/{event_id}/headcount.svg", status=200)
    token = csrf(page)
    for url, body in [
        (f"/events/{event_id}/edit", {"name": "Mine now"}),
        (f"/events/{event_id}/edit", {"action": "delete", "confirm": "yes"}),
        (f"/events/{event_id}/guests/new", {"name": "Gatecrasher"}),
        (f"/events/{event_id}/guests/{grace}", {"name": "Renamed"}),
        (f"/events/{event_id}/guests/{grace}", {"action": "delete", "confirm": "yes"}),
        (f"/events/{event_id}/guests/{grace}", {"action": "revoke", "confirm": "yes"}),
        (f"/workspaces/{host['workspace']}/events/new", {"name": "Staff party", "starts_at": "2030-01-01T10:00",
                                                         "timezone": "UTC"}),
    ]:
        refused = sam.post(url, {"csrf_token": token, **body}, status=403)
        assert "events.edit" in refused.text or "guests.edit" in refused.text
    for url in (f"/events/{event_id}/edit", f"/events/{event_id}/guests/new",
                f"/workspaces/{host['workspace']}/events/new"):
        sam.get(url, status=403)
    assert count_events(run_in_request) == 1
    assert run_in_request(lambda r: r.db.get(Guest, uuid.UUID(grace)).name) == "Grace"


def test_outsiders_get_the_not_found_page_everywhere(app, run_in_request, host):
    event_id = api_event(app, host)
    (grace,) = api_guests(app, host, event_id, [{"name": "Grace"}])
    eve = signed_in(app, run_in_request, "eve@example.com")
    eve.extra_environ["HTTP_X_REQUEST_ID"] = "same-request-id"  # the footer shows it
    token = csrf(eve.get("/dashboard"))
    missing = str(uuid.UUID(int=1))
    urls = [f"/events/{event_id}", f"/events/{event_id}/edit", f"/events/{event_id}/guests/new",
            f"/events/{event_id}/guests/{grace}", f"/events/{event_id}/headcount.svg",
            f"/workspaces/{host['workspace']}/events/new"]
    for url in urls:
        fake = url.replace(event_id, missing).replace(host["workspace"], missing)
        assert eve.get(url, status=404).body == eve.get(fake, status=404).body
        assert eve.post(url, {"csrf_token": token, "name": "x"}, status=404).body == \
            eve.post(fake, {"csrf_token": token, "name": "x"}, status=404).body
    eve.get("/workspaces/not-a-uuid/events/new", status=404)
    anonymous = new_client(app.app)
    for url in urls:
        assert "/login" in anonymous.get(url, status=302).location
    assert count_events(run_in_request) == 1
