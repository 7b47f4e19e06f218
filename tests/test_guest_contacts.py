"""Guests' phone numbers are read in the country of the event's time zone
("07911 123457" for a London event), and no two guests of an event share a
phone number, as none share an email address."""
import pytest

from guestguard.testing import event_host, main_text, signed_in

EVENT = {"name": "Midsummer Gala", "status": "published", "starts_at": "2030-06-21T19:00:00",
         "timezone": "Europe/London"}


@pytest.fixture
def host(app, run_in_request):
    return event_host(app, run_in_request, EVENT)


def add(app, host, body, status=201):
    return app.post_json(f"{host['url']}/guests", body, headers=host["ada"], status=status)


@pytest.mark.parametrize("timezone, written, stored", [
    ("Europe/London", "07911 123457", "+447911123457"),
    ("Europe/Berlin", "030 901820", "+4930901820"),
    ("America/New_York", "(212) 555-0123", "+12125550123"),
    ("UTC", "(212) 555-0123", "+12125550123"),               # no country: guests.default_region (US)
    ("Europe/London", "+1 212 555 0123", "+12125550123"),    # a country code always wins
])
def test_a_number_without_its_country_code_is_read_in_the_events_country(app, host, timezone, written, stored):
    app.patch_json(host["url"], {"timezone": timezone}, headers=host["ada"])
    assert add(app, host, {"name": "Grace", "phone": written}).json["guest"]["phone"] == stored


def test_a_number_that_is_not_one_there_is_refused_naming_the_field(app, host):
    refused = add(app, host, {"name": "Grace", "phone": "555-0123"}, status=422).json["error"]
    assert refused["fields"] == {"phone": "is not a valid phone number (write it with its country code, "
                                          "like +44 20 7946 0958)"}


def test_two_guests_cannot_share_a_phone_number(app, host):
    first = add(app, host, {"name": "Grace", "phone": "07911 123457"}).json["guest"]
    refused = add(app, host, {"name": "Alan", "phone": "+44 7911 123457"}, status=409).json["error"]
    assert refused["message"] == "Grace is already on the list with this phone number."
    assert refused["existing_guest_id"] == first["id"]
    batch = add(app, host, [{"name": "Ada", "phone": "07911 123458"}, {"name": "Bob", "phone": "07911123458"},
                            {"name": "Cy", "phone": "07911123457"}], status=422).json["error"]
    assert batch["rows"] == {"1": {"phone": "is also in row 0"},
                             "2": {"phone": f"is already on the list as Grace (guest {first['id']})"}}
    other = add(app, host, {"name": "Dee", "phone": "07911 123459"}).json["guest"]
    moved = app.patch_json(f"{host['url']}/guests/{other['id']}", {"phone": "07911 123457"}, headers=host["ada"],
                           status=409).json["error"]
    assert moved["fields"] == {"phone": "is already on the list"}
    assert len(app.get(f"{host['url']}/guests", headers=host["ada"]).json["guests"]) == 2


def test_the_form_names_the_region_and_the_guest_who_has_the_number(app, run_in_request, host):
    add(app, host, {"name": "Grace Hopper", "phone": "07911 123457"})
    ada = signed_in(app, run_in_request, "ada@example.com")
    page = ada.get(f"/events/{host['event']['id']}/guests/new")
    assert "A number without + is read as a Britain (UK) number (+44)" in main_text(page)
    form = page.forms["guest-form"]
    form["name"], form["phone"] = "Alan Turing", "07911 123457"
    refused = form.submit(status=409)
    assert "This phone number is already on the list as Grace Hopper." in main_text(refused)
