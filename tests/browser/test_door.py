"""The door on a phone: a camera fed a pass's QR code checks the guest in,
the flag warning shows, and another door's counter and the host's event page
count them in live; the guest's pass on their page."""
from __future__ import annotations

import io

import pytest
import segno
from PIL import Image
from playwright.sync_api import expect
from sqlalchemy import update

from guestguard.checkin import passes
from guestguard.events.models import Guest
from guestguard.testing import create_team, in_request, session_bearer

pytestmark = [pytest.mark.browser, pytest.mark.one_pass("sqlite")]

PASSWORD = "correct horse battery staple"


def log_in(page, email: str) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()


def camera_film(path, content: str) -> None:
    """A video file for Chromium's fake camera: frames of a QR code on a
    light background (Motion JPEG: JPEG frames one after the other)."""
    qr = segno.make_qr(content, error="m")
    buffer = io.BytesIO()
    qr.save(buffer, kind="png", scale=10, border=6)
    code = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    frame = Image.new("RGB", (640, 480), (236, 236, 230))
    frame.paste(code.resize((400, 400)), (120, 40))
    out = io.BytesIO()
    frame.save(out, "JPEG", quality=90)
    path.write_bytes(out.getvalue() * 30)


@pytest.fixture(scope="module")
def party(site):
    """Ada's event with Sam at the door, and Grace, who said yes and whose
    link the guard flagged."""
    registry = site.registry
    workspace_id = in_request(registry, create_team)
    ada = session_bearer(registry, "ada@example.com")
    client = site.client
    event = client.post_json("/api/v1/events", {
        "workspace_id": workspace_id, "name": "Midsummer Gala", "status": "published",
        "starts_at": "2030-06-21T19:00:00", "timezone": "Europe/London", "venue": "Kew Gardens",
        "rsvp_deadline": "2030-06-14T23:59:00", "answer_nudge": "2d"},
        headers=ada).json["event"]
    guest = client.post_json(f"/api/v1/events/{event['id']}/guests",
                             {"name": "Grace Hopper", "email": "grace@example.com", "plus_ones_allowed": 1},
                             headers=ada).json["guest"]
    token = client.post_json(f"/api/v1/events/{event['id']}/guests/{guest['id']}/tokens", {}, headers=ada).json["token"]
    client.post_json(f"/api/v1/rsvp/{token}", {"response": "yes", "plus_ones": 1})
    in_request(registry, lambda request: request.db.execute(update(Guest).values(open_flags=1)))
    return {"event": event, "token": token, "secret": passes.secret_for(registry.settings, token)}


def test_the_door_scans_a_pass_with_the_camera_and_warns_of_a_flag(site, browse, browse_filmed, axe, shoot, party,
                                                                   tmp_path):
    # The guest's pass, as the guest sees it on a phone.
    guest = browse("phone")
    guest.goto(f"/access/{party['token']}")
    expect(guest.get_by_role("heading", name="Your pass")).to_be_visible()
    guest.locator(".guest-pass").scroll_into_view_if_needed()
    axe(guest)
    shoot(guest, "door-guest-pass-phone")

    # The host watches the event page on a desktop.
    host = browse("desktop")
    log_in(host, "ada@example.com")
    host.goto(f"/events/{party['event']['id']}")
    expect(host.locator('[data-door="checked_in"]').first).to_have_text("0")
    expect(host.locator("#activity-status")).to_have_text("Live", timeout=10_000)

    # A second door, on another phone, waits with its counter.
    other_door = browse("phone")
    log_in(other_door, "sam@example.com")
    other_door.goto(f"/events/{party['event']['id']}/door")
    expect(other_door.locator("#door-live")).to_have_text("live", timeout=10_000)
    expect(other_door.locator(".door-counts")).to_contain_text("0 checked in of 2 expected")

    film = tmp_path / "pass.mjpeg"
    camera_film(film, party["secret"])
    door = browse_filmed(film, "phone")
    log_in(door, "sam@example.com")
    door.goto(f"/events/{party['event']['id']}/door")
    expect(door.get_by_role("heading", name="Door", level=1)).to_be_visible()
    axe(door)
    shoot(door, "door-phone-ready")
    door.get_by_role("button", name="Scan with the camera").click()
    expect(door.get_by_role("heading", name="Checked in: Grace Hopper with 1 guest.")).to_be_visible(timeout=20_000)
    expect(door.locator(".door-warning")).to_contain_text("1 open guard flag")
    expect(door.locator(".door-counts")).to_contain_text("2 checked in of 2 expected")
    axe(door)
    shoot(door, "door-phone-scan-flagged")

    # The other door's counter, and the host's page, count them in without a reload.
    expect(other_door.locator(".door-counts")).to_contain_text("2 checked in of 2 expected", timeout=10_000)
    axe(other_door)
    expect(host.locator('[data-door="checked_in"]').first).to_have_text("2", timeout=10_000)
    axe(host)
    shoot(host, "door-host-event-live-counts")


@pytest.fixture(scope="module")
def reminded(site, party):
    """The week-before reminder sent to Grace."""
    import datetime as dt

    from pyramid.scripting import prepare

    from guestguard.reminders import services

    starts = dt.datetime(2030, 6, 21, 18, 0, tzinfo=dt.UTC)
    with prepare(registry=site.registry) as env:
        assert services.dispatch(env["request"], now=starts - dt.timedelta(days=7)).sent == 1
    return party


@pytest.mark.parametrize("device", ["desktop", "phone"])
def test_the_event_page_shows_reminders_and_their_preview(device, browse, axe, shoot, reminded):
    party = reminded
    host = browse(device)
    log_in(host, "ada@example.com")
    host.goto(f"/events/{party['event']['id']}?preview=reminder#reminders")
    section = host.locator("#reminders")
    expect(section.get_by_role("heading", name="Preview, as Grace Hopper gets it")).to_be_visible()
    expect(section.locator("tbody tr").first).to_contain_text("7 days before")
    expect(section.locator("tbody tr").last).to_contain_text("please answer, 2 days before the RSVP deadline")
    expect(section.get_by_label('"Please answer" nudge before the RSVP deadline')).to_have_value("2d")
    axe(host)
    section.scroll_into_view_if_needed()
    section.screenshot(path=str(shoot(host, f"reminders-{device}-event-page").with_name(
        f"reminders-{device}-section.png")))
