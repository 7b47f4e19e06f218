"""The invitation guests get: who invites them, the event's colour and
cover image, one-tap answers in the email that record nothing by
themselves, a map link and add-to-calendar links, through the real app."""
import base64
import hashlib
import io
import itertools
import re
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image
from sqlalchemy import func, select, update

from guestguard.events import branding, outbound
from guestguard.events.models import Event, EventCover, Guest, Rsvp
from guestguard.testing import add_guest, csrf, event_host, issue, main_text, outbox, signed_in

# In one pass only when make test runs both: pages, forms and rules whose outcome the backend does not change
# (docs/testing.md, "Two passes at once").
pytestmark = pytest.mark.one_pass("sqlite")


EVENT = {"name": "Midsummer Gala", "status": "published", "starts_at": "2030-06-21T19:00:00",
         "ends_at": "2030-06-21T23:30:00", "timezone": "Europe/London", "venue": "Kew Gardens, Richmond",
         "host_message": "Dinner at eight.", "default_plus_ones": 1}


@pytest.fixture
def host(app, run_in_request):
    return event_host(app, run_in_request, EVENT)


def count(run_in_request, model, *where):
    return run_in_request(lambda request: request.db.scalar(select(func.count()).select_from(model).where(*where)))


def invited(app, host, **guest):
    """Send Grace her invitation; (message, token)."""
    guest = add_guest(app, host, **guest)
    app.post_json(f"{host['url']}/guests/{guest['id']}/send", {}, headers=host["ada"], status=202)
    message = outbox(app)[0][1]
    return message, re.search(r"/access/([A-Za-z0-9_-]+)", message.text).group(1)


# --- who invites ------------------------------------------------------------------


def test_the_host_name_defaults_to_the_creator_and_can_be_changed(app, host):
    assert host["event"]["host_name"] == "Ada"
    changed = app.patch_json(host["url"], {"host_name": "  Hana Host "}, headers=host["ada"]).json["event"]
    assert changed["host_name"] == "Hana Host"
    assert app.get(host["url"], headers=host["ada"]).json["event"]["host_name"] == "Hana Host"
    message, token = invited(app, host)
    assert message.subject == "Hana Host invites you to Midsummer Gala"
    assert "Hana Host invites you to Midsummer Gala." in message.text
    page = app.get(f"/access/{token}")
    assert page.html.find("h1").get_text(" ", strip=True) == "Hana Host invites you to Midsummer Gala"
    assert "A message from Hana Host" in page.text


def test_a_blank_host_name_reads_you_are_invited(app, host):
    app.patch_json(host["url"], {"host_name": None}, headers=host["ada"])
    message, token = invited(app, host)
    assert message.subject == "You're invited to Midsummer Gala"
    assert app.get(f"/access/{token}").html.find("h1").get_text(" ", strip=True) == "You’re invited to Midsummer Gala"


def test_an_api_key_event_names_the_workspace_owner(app, host):
    key = app.post_json(f"/api/v1/workspaces/{host['workspace']}/api-keys", {"name": "Zapier", "role": "admin"},
                        headers=host["ada"], status=201).json["api_key"]
    headers = {"Authorization": f"Bearer {key['secret']}"}
    made = app.post_json("/api/v1/events", {"workspace_id": host["workspace"], **EVENT}, headers=headers,
                         status=201).json["event"]
    assert made["host_name"] == "Ada"


def test_the_sms_names_the_host(app, host):
    guest = add_guest(app, host, name="Phil", email=None, phone="+44 20 7946 0958")
    app.post_json(f"{host['url']}/guests/{guest['id']}/send", {}, headers=host["ada"], status=202)
    assert outbox(app)[0][1].text.startswith("Phil, Ada invites you to Midsummer Gala on ")


@pytest.mark.parametrize("value", ["x" * 101, "Ada\x00", "\ud800"])
def test_a_host_name_too_long_or_not_text_is_refused(app, host, value):
    refused = app.patch_json(host["url"], {"host_name": value}, headers=host["ada"], expect_errors=True)
    assert refused.status_int in (400, 422)
    assert "host_name" in refused.json["error"]["fields"]
    assert app.get(host["url"], headers=host["ada"]).json["event"]["host_name"] == "Ada"


def test_the_guest_page_has_no_request_id_nor_link_to_our_home_page(app, host, run_in_request):
    _, token = invited(app, host)
    page = app.get(f"/access/{token}")
    assert "request" not in page.html.find("footer").get_text(" ", strip=True)
    assert page.html.find("a", class_="brand") is None
    # Host pages keep the request id, for support.
    browser = signed_in(app, run_in_request, "ada@example.com")
    assert "request " in browser.get(f"/events/{host['event']['id']}").html.find("footer").get_text()


def test_the_map_link_searches_openstreetmap_for_the_venue(app, host):
    _, token = invited(app, host)
    page = app.get(f"/access/{token}")
    found = page.html.select_one('a[href^="https://www.openstreetmap.org/"]')
    assert found.get_text(" ", strip=True) == "Open in a map (opens OpenStreetMap in a new tab)"
    link = found["href"]
    parts = urlsplit(link)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "www.openstreetmap.org", "/search")
    assert parse_qs(parts.query) == {"query": ["Kew Gardens, Richmond"]}
    assert outbound.map_url("  ") is None
    assert app.get(f"/api/v1/access/{token}").json["event"]["map_url"] == link


# --- one tap in the email ------------------------------------------------------------


def test_the_email_offers_one_tap_answers_that_only_preselect(app, host, run_in_request):
    message, token = invited(app, host)
    for answer in ("yes", "maybe", "no"):
        assert f"/access/{token}?answer={answer}" in message.html
        assert f"/access/{token}?answer={answer}" in message.text
    # A link scanner (or the guest) following every link records nothing.
    for answer in ("yes", "maybe", "no", "bogus", "\u00e9", ""):
        page = app.get(f"/access/{token}", {"answer": answer})
        checked = [radio["value"] for radio in page.html.select("input[name=response][checked]")]
        assert checked == ([answer] if answer in ("yes", "maybe", "no") else [])
    assert count(run_in_request, Rsvp) == 0
    assert count(run_in_request, Guest, Guest.response.is_not(None)) == 0
    # The page's POST records it.
    page = app.get(f"/access/{token}?answer=yes")
    assert "ticked the answer you chose in the email" in page.text
    form = page.forms["rsvp-form"]
    form["plus_ones"] = "1"
    form.submit().follow()
    assert count(run_in_request, Rsvp) == 1
    assert count(run_in_request, Guest, Guest.response == "yes") == 1
    # Later one-tap links show that choice, still recording nothing new.
    page = app.get(f"/access/{token}?answer=no")
    assert [radio["value"] for radio in page.html.select("input[name=response][checked]")] == ["no"]
    assert count(run_in_request, Rsvp) == 1


def test_a_retried_one_tap_answer_is_recorded_once(app, host, run_in_request):
    _, token = invited(app, host)
    for _ in range(3):
        app.post(f"/rsvp/{token}", {"response": "maybe"}, status=303)
    assert count(run_in_request, Rsvp) == 1


# --- calendars ----------------------------------------------------------------------


def test_calendar_links_and_the_ics_named_after_the_event(app, host):
    _, token = invited(app, host)
    page = app.get(f"/access/{token}")
    links = {a.get_text(" ", strip=True): a["href"] for a in page.html.select(".calendar-links a")}
    assert list(links) == ["Add to Google Calendar (opens in a new tab)", "Add to Outlook (opens in a new tab)",
                           "Add to Apple Calendar (.ics)"]
    google, outlook, ics = links.values()
    query = parse_qs(urlsplit(google).query)
    assert google.startswith("https://calendar.google.com/calendar/render?")
    assert query["action"] == ["TEMPLATE"] and query["text"] == ["Midsummer Gala"]
    assert query["dates"] == ["20300621T180000Z/20300621T223000Z"]
    assert query["location"] == ["Kew Gardens, Richmond"]
    query = parse_qs(urlsplit(outlook).query)
    assert outlook.startswith("https://outlook.live.com/calendar/0/action/compose?")
    assert query["subject"] == ["Midsummer Gala"]
    assert (query["startdt"], query["enddt"]) == (["2030-06-21T18:00:00Z"], ["2030-06-21T22:30:00Z"])
    # Other sites never learn the guest's personal link.
    assert token not in google and token not in outlook
    response = app.get(ics)
    assert response.headers["Content-Disposition"] == (
        "attachment; filename=\"Midsummer Gala.ics\"; filename*=UTF-8''Midsummer%20Gala.ics")
    unfolded = response.body.decode().replace("\r\n ", "")
    assert f"URL:http://guestguard.test/access/{token}\r\n" in unfolded
    assert f"Your invitation: http://guestguard.test/access/{token}" in unfolded
    assert "When: Friday 21 June 2030\\, 19:00 – 23:30 BST" in unfolded, "the event's zone and clock"


@pytest.mark.parametrize("name, plain, full", [
    ("Fête à l'été", "Fte  lt.ics", "F%C3%AAte%20%C3%A0%20l%27%C3%A9t%C3%A9.ics"),
    ('../../etc/passwd"\r\nX: y', "etcpasswdX y.ics", "etcpasswdX%20y.ics"),
    ("???", "invitation.ics", "invitation.ics"),
])
def test_the_calendar_file_name_is_safe(name, plain, full):
    from guestguard.events.guest_views import calendar_disposition

    disposition = calendar_disposition(name)
    assert disposition == f"attachment; filename=\"{plain}\"; filename*=UTF-8''{full}"
    assert "\r" not in disposition and "\n" not in disposition


# --- colour -------------------------------------------------------------------------


@pytest.mark.parametrize("given, stored", [("#1F5FBF", "#1f5fbf"), ("1f5fbf", "#1f5fbf"), ("#15b", "#1155bb"),
                                               ("", "")])
def test_theme_colours_are_normalized(app, host, given, stored):
    changed = app.patch_json(host["url"], {"theme_colour": given}, headers=host["ada"]).json["event"]
    assert changed["theme_colour"] == stored


@pytest.mark.parametrize("given", ["red", "#12345", "#1234567", "#ggg000", "rgb(0,0,0)", "#fff\x00", "\ud800"])
def test_a_colour_that_is_not_one_is_refused(app, host, given):
    refused = app.patch_json(host["url"], {"theme_colour": given}, headers=host["ada"], expect_errors=True)
    assert refused.status_int in (400, 422)
    assert "theme_colour" in refused.json["error"]["fields"]


def test_every_colour_gets_an_ink_readable_on_it():
    steps = range(0, 256, 15)
    for red, green, blue in itertools.product(steps, steps, steps):
        colour = f"#{red:02x}{green:02x}{blue:02x}"
        assert branding.contrast(colour, branding.ink_for(colour)) >= branding.AA_CONTRAST, colour
    assert branding.ink_for("#1f5fbf") == "#ffffff" and branding.ink_for("#ffd400") == "#000000"


def test_the_guest_page_wears_the_colour_under_its_csp(app, host):
    app.patch_json(host["url"], {"theme_colour": "#ffd400"}, headers=host["ada"])
    message, token = invited(app, host)
    page = app.get(f"/access/{token}")
    style = page.html.find("style").string
    assert style == ".invitation.themed{--theme:#ffd400;--theme-ink:#000000}"
    assert "themed" in page.html.find("article")["class"]
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    csp = page.headers["Content-Security-Policy"]
    assert f"style-src 'self' 'sha256-{digest}'" in csp and "unsafe-inline" not in csp
    assert "background:#ffd400;color:#000000" in message.html
    # Without a colour, the page has no style element and the site's policy.
    app.patch_json(host["url"], {"theme_colour": None}, headers=host["ada"])
    page = app.get(f"/access/{token}")
    assert page.html.find("style") is None and "sha256" not in page.headers["Content-Security-Policy"]


def test_the_event_form_edits_host_name_and_colour(app, host, run_in_request):
    browser = signed_in(app, run_in_request, "ada@example.com")
    event_id = host["event"]["id"]
    form = browser.get(f"/events/{event_id}/edit").forms["event-form"]
    assert form["host_name"].value == "Ada"
    form["host_name"] = "Hana Host"
    form["theme_colour"] = "purple"
    refused = form.submit(status=400)
    assert "Theme colour must be a colour written like #1f5fbf." in refused.text
    form = refused.forms["event-form"]
    form["theme_colour"] = "#6a1b9a"
    form.submit(status=303)
    event = app.get(host["url"], headers=host["ada"]).json["event"]
    assert (event["host_name"], event["theme_colour"]) == ("Hana Host", "#6a1b9a")
    new = browser.get(f"/workspaces/{host['workspace']}/events/new").forms["event-form"]
    assert new["host_name"].value == "Ada"


# --- the cover image ----------------------------------------------------------------


def image_bytes(size=(2400, 1200), fmt="JPEG", exif=True, mode="RGB") -> bytes:
    image = Image.new(mode, size, (200, 40, 90) if mode == "RGB" else (200, 40, 90, 128))
    out = io.BytesIO()
    extra = {}
    if exif and fmt == "JPEG":
        tags = Image.Exif()
        tags[0x010F] = "SecretCam"  # Make
        tags[0x8825] = {2: (51.0, 30.0, 0.0)}  # GPS latitude
        extra = {"exif": tags.tobytes(), "comment": b"hidden note"}
    image.save(out, fmt, **extra)
    return out.getvalue()


def upload(browser, event_id, data, name="cover.jpg", status=303):
    form = browser.get(f"/events/{event_id}/edit").forms["cover-form"]
    form["file"] = (name, data)
    return form.submit(status=status)


def test_a_cover_is_reencoded_without_metadata_and_served_with_care(app, host, run_in_request):
    browser = signed_in(app, run_in_request, "ada@example.com")
    event_id = host["event"]["id"]
    original = image_bytes()
    assert b"SecretCam" in original
    upload(browser, event_id, original)
    url = app.get(host["url"], headers=host["ada"]).json["event"]["cover_url"]
    assert re.fullmatch(r"http://guestguard\.test/covers/[0-9a-f-]{36}/[0-9a-f]{64}\.jpg", url)
    served = app.get(urlsplit(url).path)  # no session: public by its unguessable address
    assert served.content_type == "image/jpeg"
    assert served.headers["X-Content-Type-Options"] == "nosniff"
    assert served.headers["Cache-Control"] == "max-age=86400, public"
    assert b"SecretCam" not in served.body and b"hidden note" not in served.body
    image = Image.open(io.BytesIO(served.body))
    assert image.format == "JPEG" and image.size == (1600, 800)
    assert not image.getexif() and "comment" not in image.info
    # Guests see it on the page and in the email; the API says where it is.
    message, token = invited(app, host)
    assert f'src="{url}"' in app.get(f"/access/{token}").text and url in message.html
    assert app.get(f"/api/v1/access/{token}").json["event"]["cover_url"] == url


def test_a_replaced_or_removed_cover_stops_being_served(app, host, run_in_request):
    browser = signed_in(app, run_in_request, "ada@example.com")
    event_id = host["event"]["id"]
    upload(browser, event_id, image_bytes())
    first = urlsplit(app.get(host["url"], headers=host["ada"]).json["event"]["cover_url"]).path
    upload(browser, event_id, image_bytes(size=(800, 600), fmt="PNG", exif=False), name="cover.png")
    second = urlsplit(app.get(host["url"], headers=host["ada"]).json["event"]["cover_url"]).path
    assert first != second
    app.get(first, status=404)
    assert Image.open(io.BytesIO(app.get(second).body)).size == (800, 600)
    assert count(run_in_request, EventCover) == 1
    page = browser.get(f"/events/{event_id}/edit")
    page.forms["cover-form"].submit("action", value="remove", status=303)
    app.get(second, status=404)
    assert app.get(host["url"], headers=host["ada"]).json["event"]["cover_url"] is None
    # Removing again is no error.
    page.forms["cover-form"].submit("action", value="remove", status=303).follow()
    assert count(run_in_request, EventCover) == 0


def test_a_cover_of_a_deleted_event_is_gone(app, host, run_in_request):
    browser = signed_in(app, run_in_request, "ada@example.com")
    upload(browser, host["event"]["id"], image_bytes(size=(640, 480)))
    path = urlsplit(app.get(host["url"], headers=host["ada"]).json["event"]["cover_url"]).path
    app.delete(host["url"], headers=host["ada"], status=204)
    app.get(path, status=404)


def test_a_cover_address_cannot_be_guessed(app, host, run_in_request):
    browser = signed_in(app, run_in_request, "ada@example.com")
    upload(browser, host["event"]["id"], image_bytes(size=(640, 480)))
    path = urlsplit(app.get(host["url"], headers=host["ada"]).json["event"]["cover_url"]).path
    _, _, cover_id, signed = path.split("/")
    for wrong in (f"/covers/{cover_id}/{'0' * 64}.jpg", f"/covers/{uuid.uuid4()}/{signed}",
                  f"/covers/not-a-uuid/{signed}", f"/covers/{cover_id}/{signed[:-8]}.jpg"):
        assert app.get(wrong, status=404).headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("data, name, problem", [
    (b"", "empty.jpg", "The image is empty: choose an image file."),
    (b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>", "x.svg",
     "The image is not an image we can read: choose a JPEG, PNG, WebP or GIF file."),
    (b"GIF89a" + b"\x00" * 100, "broken.gif",
     "The image is not an image we can read: choose a JPEG, PNG, WebP or GIF file."),
])
def test_a_file_that_is_not_an_image_is_refused_on_the_form(app, host, run_in_request, data, name, problem):
    browser = signed_in(app, run_in_request, "ada@example.com")
    refused = upload(browser, host["event"]["id"], data, name=name, status=400)
    field = refused.html.find(id="cover-file")
    assert field["aria-invalid"] == "true"
    assert refused.html.find(id="cover-file-error").get_text(" ", strip=True) == f"Error: {problem}"
    assert count(run_in_request, EventCover) == 0


def test_a_decompression_bomb_is_refused_before_it_is_decoded():
    image = Image.new("1", (20000, 20000))
    out = io.BytesIO()
    image.save(out, "PNG")
    assert len(out.getvalue()) < 5 * 1024 * 1024
    with pytest.raises(branding.CoverRefused, match="too many pixels"):
        branding.reencode(out.getvalue(), max_bytes=5 * 1024 * 1024, max_width=1600)


def test_a_cover_too_large_is_refused(app, host, run_in_request):
    browser = signed_in(app, run_in_request, "ada@example.com")
    limit = 5 * 1024 * 1024
    refused = upload(browser, host["event"]["id"], b"\xff" * (limit + 1), name="big.jpg", status=400)
    assert refused.html.find(id="cover-file-error").get_text(" ", strip=True) == (
        "Error: The image is larger than 5 MB: choose a smaller image.")
    # Past the form's room the body is refused before it is read; other
    # forms keep the site's limit (2 MB).
    upload(browser, host["event"]["id"], b"\xff" * (limit + 200 * 1024), name="huge.jpg", status=413)
    page = browser.get(f"/events/{host['event']['id']}/edit")
    browser.post(f"/events/{host['event']['id']}/edit", {"csrf_token": csrf(page), "notes": "x" * (3 * 1024 * 1024)},
                 status=413)
    assert count(run_in_request, EventCover) == 0


def test_a_staff_member_cannot_change_the_cover(app, host, run_in_request):
    staff = signed_in(app, run_in_request, "sam@example.com")
    page = staff.get(f"/events/{host['event']['id']}", status=200)
    staff.post(f"/events/{host['event']['id']}/cover", {"csrf_token": csrf(page), "action": "remove"}, status=403)


def test_the_cover_form_needs_its_csrf_token(app, host, run_in_request):
    browser = signed_in(app, run_in_request, "ada@example.com")
    browser.post(f"/events/{host['event']['id']}/cover", {"action": "remove"}, status=400)
    assert count(run_in_request, Event, Event.cover_id.is_not(None)) == 0


# --- confirmations ----------------------------------------------------------------


def test_deleting_an_event_says_what_happens_and_needs_the_second_button(app, host, run_in_request):
    add_guest(app, host)
    browser = signed_in(app, run_in_request, "ada@example.com")
    edit = f"/events/{host['event']['id']}/edit"
    page = browser.get(edit)
    confirm = page.html.find("details", id="confirm-delete")
    assert confirm.summary.get_text(strip=True) == "Delete “Midsummer Gala”…" and not confirm.has_attr("open")
    words = confirm.find("ul").get_text(" ", strip=True)
    assert "its guest list (1 guest) disappear" in words and "Every invitation link stops working" in words
    # A POST without the confirmation (an old form, a forged click) deletes nothing: it asks.
    asked = browser.post(edit, {"csrf_token": csrf(page), "action": "delete"}, status=200)
    assert asked.html.find("details", id="confirm-delete").has_attr("open")
    assert app.get(host["url"], headers=host["ada"], status=200)
    page.forms["confirm-delete-form"].submit(status=303)
    app.get(host["url"], headers=host["ada"], status=404)
    # Sent twice (a double click): the event is gone, the second finds nothing.
    page.forms["confirm-delete-form"].submit(status=404)


def answered(app, host, run_in_request, answers):
    """Guests who answered (name: "yes" | "maybe" | "no" | None), added directly."""
    for name, answer in answers.items():
        guest = add_guest(app, host, name=name, email=f"{name.lower()}@example.com")
        if answer:
            run_in_request(lambda r, guest_id=guest["id"], answer=answer: r.db.execute(
                update(Guest).where(Guest.id == uuid.UUID(guest_id)).values(response=answer)))


def test_deleting_an_event_can_tell_the_guests_who_said_yes_or_maybe(app, host, run_in_request):
    answered(app, host, run_in_request, {"Yara": "yes", "Max": "maybe", "Noor": "no", "Pat": None})
    browser = signed_in(app, run_in_request, "ada@example.com")
    page = browser.get(f"/events/{host['event']['id']}/edit")
    form = page.forms["confirm-delete-form"]
    assert form["tell_guests"].checked  # offered, ticked
    label = page.html.find("details", id="confirm-delete").find("label", class_="checkbox").get_text(" ", strip=True)
    assert label == "Tell the 2 guests who said yes or maybe that it will not take place"
    done = form.submit(status=303).follow()
    assert "was deleted. 2 guests are being told it will not take place." in main_text(done)
    told = {message.recipient: message for _, message in outbox(app)}
    assert sorted(told) == ["max@example.com", "yara@example.com"]
    assert told["yara@example.com"].subject == "Cancelled: Midsummer Gala"
    assert "your invitation link no longer opens" in told["yara@example.com"].text
    assert "still works" not in told["yara@example.com"].text
    form.submit(status=404)  # a double click: the event is gone, nobody is told twice
    assert len(outbox(app)) == 2


def test_deleting_an_event_without_telling_sends_nothing(app, host, run_in_request):
    answered(app, host, run_in_request, {"Yara": "yes"})
    browser = signed_in(app, run_in_request, "ada@example.com")
    form = browser.get(f"/events/{host['event']['id']}/edit").forms["confirm-delete-form"]
    form["tell_guests"] = False
    assert "being told" not in main_text(form.submit(status=303).follow())
    assert list(outbox(app)) == []


def test_nobody_to_tell_is_said_and_not_offered(app, host, run_in_request):
    answered(app, host, run_in_request, {"Noor": "no"})
    page = signed_in(app, run_in_request, "ada@example.com").get(f"/events/{host['event']['id']}/edit")
    assert "tell_guests" not in page.forms["confirm-delete-form"].fields
    assert "Nobody has said yes or maybe, so there is nobody to tell." in main_text(page)


def test_withdrawing_a_link_and_removing_a_guest_are_confirmed(app, host, run_in_request):
    guest = add_guest(app, host)
    token = issue(app, host, guest)["token"]
    browser = signed_in(app, run_in_request, "ada@example.com")
    url = f"/events/{host['event']['id']}/guests/{guest['id']}"
    page = browser.get(url)
    revoke = page.html.find("details", id="confirm-revoke")
    assert "stops working at once" in revoke.get_text(" ", strip=True)
    browser.post(url, {"csrf_token": csrf(page), "action": "revoke"}, status=200)
    app.get(f"/access/{token}", status=200)
    done = page.forms["confirm-revoke-form"].submit(status=303).follow()
    assert "link was withdrawn" in done.text
    app.get(f"/access/{token}", status=404)
    assert done.html.find("details", id="confirm-revoke") is None  # no link left to withdraw
    again = page.forms["confirm-revoke-form"].submit(status=303).follow()
    assert "has no link in use" in again.text
    asked = browser.post(url, {"csrf_token": csrf(page), "action": "delete"}, status=200)
    assert asked.html.find("details", id="confirm-remove").has_attr("open")
    page.forms["confirm-remove-form"].submit(status=303)
    assert count(run_in_request, Guest) == 0
