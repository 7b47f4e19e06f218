"""Every page, as the person it is for sees it, on a desktop and a 390 px
phone: axe-core finds no violation, nothing is wider than the screen, and a
full-page screenshot is kept under var/screenshots/pages/ to look at."""
from __future__ import annotations

import io
import re
import uuid

import pytest
from PIL import Image
from playwright.sync_api import expect

from guestguard.accounts.models import WEB
from guestguard.accounts.services import login
from guestguard.testing import REPO_ROOT, TEST_PASSWORD, bearer_for, create_team, in_request

# The browser sees what the pages show, whatever the database: one pass is enough.
pytestmark = [pytest.mark.browser, pytest.mark.one_pass("sqlite")]

DEVICES = ("desktop", "phone")
# Pages that answer with an error status, on purpose.
REFUSING = {"not-found": 404, "invitation-unknown": 404, "reset-link-invalid": 400}


@pytest.fixture(scope="module")
def world(site):
    """Ada's team with a published event, two guests (Grace invited and
    answered, Alan not invited yet); the paths of every page."""
    client = site.client
    workspace = in_request(site.registry, create_team)
    ada = bearer_for(client, "ada@example.com")
    event = client.post_json("/api/v1/events", {
        "workspace_id": workspace, "name": "Midsummer Gala", "venue": "The Old Library, Bristol",
        "starts_at": "2030-06-21T19:00:00", "timezone": "Europe/London", "status": "published",
        "default_plus_ones": 1, "host_message": "Dinner at eight, dancing until late."}, headers=ada).json["event"]
    guests = client.post_json(f"/api/v1/events/{event['id']}/guests", [
        {"name": "Grace Hopper", "email": "grace@example.com"}, {"name": "Alan Turing"}], headers=ada).json["guests"]
    client.post(f"/api/v1/events/{event['id']}/send-invitations", headers=ada, status=202)
    (invitation,) = site.messages_to("grace@example.com")
    token = re.search(r"/access/(\S+)", invitation.text).group(1)
    client.post_json(f"/api/v1/rsvp/{token}", {"response": "yes", "plus_ones": 1, "dietary": "Vegetarian",
                                               "message": "Wouldn't miss it!"})
    unsubscribe = re.search(r"/unsubscribe/\S+", invitation.text).group(0)
    themed, themed_token = themed_invitation(site, workspace, ada)
    events, grace = f"/events/{event['id']}", guests[0]["id"]
    spaces = f"/workspaces/{workspace}"
    return {
        "workspace": workspace,
        "host": {
            "dashboard": "/dashboard", "account": "/account", "workspace": spaces,
            "workspace-settings": f"{spaces}/settings", "members": f"{spaces}/members",
            "api-keys": f"{spaces}/api-keys", "workspace-new": "/workspaces/new",
            "event-new": f"{spaces}/events/new", "event": events, "event-edit": f"{events}/edit",
            "guest-new": f"{events}/guests/new", "guest": f"{events}/guests/{grace}",
            "guest-import": f"{events}/import", "send-invitations": f"{events}/send-invitations",
            "invitation-preview": f"/events/{themed}/invitation-preview",
            "event-answered-yes": f"{events}?response=yes", "not-found": "/events/no-such-event",
            "event-edit-cover": f"/events/{themed}/edit",
        },
        "public": {
            "home": "/", "signup": "/signup", "login": "/login", "forgot-password": "/forgot-password",
            "resend-verification": "/verify-email", "privacy": "/privacy", "terms": "/terms",
            "invitation": f"/access/{token}", "invitation-unknown": "/access/not-a-real-link",
            "invitation-themed": f"/access/{themed_token}",
            "invitation-one-tap": f"/access/{themed_token}?answer=yes",
            "unsubscribe": unsubscribe, "reset-link-invalid": "/reset-password/not-a-real-token",
        },
    }


def cover_image() -> bytes:
    """A warm evening gradient, as a host's photo would be."""
    image = Image.new("RGB", (1600, 700))
    top, bottom = (250, 170, 90), (120, 40, 110)
    for y in range(700):
        mix = y / 699
        image.paste(tuple(round(a + (b - a) * mix) for a, b in zip(top, bottom, strict=True)), (0, y, 1600, y + 1))
    out = io.BytesIO()
    image.save(out, "JPEG")
    return out.getvalue()


def themed_invitation(site, workspace: str, ada: dict) -> tuple[str, str]:
    """An event with a host name, a theme colour and a cover, and Linus
    invited to it: (event id, Linus's token)."""
    client = site.client
    event = client.post_json("/api/v1/events", {
        "workspace_id": workspace, "name": "Lantern Supper", "venue": "Quay Street Gardens, Bristol BS1 4DB",
        "starts_at": "2030-08-14T19:30:00", "ends_at": "2030-08-14T23:00:00", "timezone": "Europe/London",
        "status": "published", "default_plus_ones": 1, "host_name": "Hana Host", "theme_colour": "#6a1b9a",
        "capacity": 40, "ask_plus_one_names": True,
        "questions": [{"label": "Which main course?", "kind": "choice", "required": True,
                       "choices": ["Grilled fish", "Slow-cooked beef", "Roast squash (vegetarian)"]},
                      {"label": "Staying for the late music?", "kind": "yes_no"},
                      {"label": "A song you'd love to hear", "kind": "text"}],
        "host_message": "Long tables under the lanterns, food from the market, and music until late. "
                        "Bring someone you like!"}, headers=ada).json["event"]

    def with_cover(request):
        from guestguard.events import services
        from guestguard.events.models import Event

        services.set_cover(request.ctx, request.db.get(Event, uuid.UUID(event["id"])), cover_image())
    in_request(site.registry, with_cover)
    client.post_json(f"/api/v1/events/{event['id']}/guests", [{"name": "Linus Pauling", "email": "linus@example.com"}],
                     headers=ada)
    client.post(f"/api/v1/events/{event['id']}/send-invitations", headers=ada, status=202)
    (message,) = site.messages_to("linus@example.com")
    return event["id"], re.search(r"/access/([A-Za-z0-9_-]+)", message.text).group(1)


def signed_in_as_ada(site, page) -> None:
    session = in_request(site.registry, lambda request: login(request.ctx, email="ada@example.com",
                                                              password=TEST_PASSWORD, kind=WEB))
    page.context.add_cookies([{"name": "gg_session", "value": session.cookie_token, "url": site.url}])


def check(page, axe, shoot, device: str, name: str) -> None:
    axe(page)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{page.url} is {overflow} px wider than the {device} screen"
    shoot(page, f"pages/{name}-{device}")


@pytest.mark.parametrize("device", DEVICES)
def test_every_page_a_host_sees(device, world, site, browse, axe, shoot):
    page = browse(device)
    signed_in_as_ada(site, page)
    for name, path in world["host"].items():
        answer = page.goto(path)
        assert answer.status == REFUSING.get(name, 200), (name, answer.status)
        check(page, axe, shoot, device, f"host-{name}")


@pytest.mark.parametrize("device", DEVICES)
def test_every_form_with_its_errors(device, world, site, browse, axe, shoot):
    page = browse(device)
    signed_in_as_ada(site, page)
    for name in ("event-new", "guest-new"):
        page.goto(world["host"][name])
        page.locator("main form[method=post] button[type=submit]").first.click()
        page.wait_for_load_state()
        expect(page.locator(".error-summary"), f"{name} shows no errors for an empty form").to_be_visible()
        check(page, axe, shoot, device, f"host-{name}-errors")
    # The import's preview with errors next to the cells and the mapping above the columns.
    page.goto(world["host"]["guest-import"])
    page.set_input_files("#import-file", files=[{"name": "guests.csv", "mimeType": "text/csv", "buffer": (
        "Guest list\n\nFull name,E-mail address,Mobile,+1,Table,Order #\n"
        "Zoë Ångström,zoe@example.com,+44 7911 123456,1,Family,1001\n"
        "François Müller,francois@example,,0,Work,1002\n,nobody@example.com,,,,1003\n"
        "Phone Only,,+1 202 555 0143,25,Friends,1004\n").encode()}])
    page.get_by_role("button", name="Preview the import").click()
    expect(page.locator(".cell-error"), "the preview shows each error by its cell").to_have_count(3)
    check(page, axe, shoot, device, "host-guest-import-preview-errors")
    page = browse(device)
    page.goto("/signup")
    page.get_by_role("button", name="Create account").click()
    expect(page.locator(".error-summary")).to_be_visible()
    check(page, axe, shoot, device, "public-signup-errors")


@pytest.mark.parametrize("device", DEVICES)
def test_every_page_anyone_sees(device, world, browse, axe, shoot):
    page = browse(device)
    for name, path in world["public"].items():
        answer = page.goto(path)
        assert answer.status == REFUSING.get(name, 200), (name, answer.status)
        check(page, axe, shoot, device, f"public-{name}")


@pytest.mark.parametrize("device", DEVICES)
def test_the_invitation_email(device, world, site, browse, axe, shoot):
    """The email as a mail client shows it: its HTML on its own."""
    (message,) = site.messages_to("linus@example.com")
    page = browse(device)
    page.set_content(message.html, wait_until="load")
    assert page.evaluate("[...document.images].every(image => image.complete && image.naturalWidth > 0)")
    assert page.get_by_role("link", name="Yes", exact=True).get_attribute("href").endswith("?answer=yes#rsvp-title")
    # WCAG's rules; not the best practices about a page's landmarks: a mail
    # client shows the message inside its own page.
    result = page.evaluate("axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21aa']}})")
    assert not result["violations"], [violation["id"] for violation in result["violations"]]
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    shoot(page, f"pages/email-invitation-{device}")


@pytest.mark.parametrize("device, choice", [("desktop", "Maybe"), ("phone", "No")])
def test_one_tap_from_the_email_lands_ready_and_records_only_when_sent(device, choice, world, site, browse):
    # The invitation, the oldest message: each answer recorded since brought a confirmation.
    message = site.messages_to("linus@example.com")[-1]
    assert "invites you" in message.subject
    before = answers_of(site, "linus@example.com")
    page = browse(device)
    page.set_content(message.html, wait_until="load")
    page.get_by_role("link", name=choice, exact=True).click()
    page.wait_for_load_state()
    expect(page.locator(f"input[name=response][value={choice.lower()}]")).to_be_checked()
    expect(page.get_by_role("heading", name="Your answer")).to_be_visible()
    assert answers_of(site, "linus@example.com") == before
    page.screenshot(path=str(REPO_ROOT / "var" / "screenshots" / "pages" / f"guest-one-tap-landing-{device}.png"))
    if choice != "No":  # the host's required question
        page.get_by_label("Grilled fish").check()
    page.get_by_role("button", name=re.compile("my answer")).click()
    expect(page.locator(".current-answer")).to_contain_text(f"You said {choice.lower()}")
    assert answers_of(site, "linus@example.com") == [*before, choice.lower()]


def answers_of(site, email: str) -> list[str]:
    from sqlalchemy import select

    from guestguard.events.models import Guest, Rsvp

    return in_request(site.registry, lambda request: list(request.db.scalars(
        select(Rsvp.response).join(Guest, Guest.id == Rsvp.guest_id).where(Guest.email == email)
        .order_by(Rsvp.created_at, Rsvp.id))))


@pytest.mark.parametrize("device", DEVICES)
def test_the_confirmations_say_what_will_happen(device, world, site, browse, axe, shoot):
    page = browse(device)
    signed_in_as_ada(site, page)
    for name, opener in (("event-edit", "Delete “Midsummer Gala”…"), ("guest", "Remove Grace Hopper…")):
        page.goto(world["host"][name])
        page.get_by_text(opener, exact=True).click()
        button = page.get_by_role("button", name=re.compile("^Yes, (delete|remove)"))
        expect(button).to_be_visible()
        check(page, axe, shoot, device, f"host-{name}-confirm")


@pytest.mark.parametrize("device", DEVICES)
def test_removing_a_guest_offers_an_undo_that_puts_them_back(device, world, site, browse, axe, shoot):
    ada = bearer_for(site.client, "ada@example.com")
    events = world["host"]["event"]
    name = f"Ned Ludd ({device})"
    (ned,) = site.client.post_json(f"/api/v1{events}/guests", [{"name": name}], headers=ada).json["guests"]
    page = browse(device)
    signed_in_as_ada(site, page)
    page.goto(f"{events}/guests/{ned['id']}")
    page.get_by_text(f"Remove {name}…", exact=True).click()
    expect(page.get_by_text("You can undo this for 10 seconds afterwards", exact=False)).to_be_visible()
    page.get_by_role("button", name=f"Yes, remove {name}").click()
    undo = page.get_by_role("button", name=f"Undo: put {name} back")
    expect(undo).to_be_visible()
    check(page, axe, shoot, device, "host-event-undo")
    undo.click()
    expect(page.get_by_text(f"{name} is back on the guest list.")).to_be_visible()
    # Removed again and left alone, the offer goes when its window closes.
    page.get_by_text(f"Remove {name}…", exact=True).click()
    page.get_by_role("button", name=f"Yes, remove {name}").click()
    expect(page.get_by_role("button", name=f"Undo: put {name} back")).to_be_hidden(timeout=15_000)


@pytest.mark.parametrize("device", DEVICES)
def test_the_waitlist_journey(device, world, site, browse, axe, shoot):
    """One place left: Nia takes it, Omar joins the waitlist and is told
    when Nia can no longer come; each sees where they stand."""
    client = site.client
    workspace = world["workspace"]
    ada = bearer_for(client, "ada@example.com")
    event = client.post_json("/api/v1/events", {
        "workspace_id": workspace, "name": f"Tasting Menu ({device})", "starts_at": "2030-09-01T19:00:00",
        "timezone": "Europe/London", "status": "published", "capacity": 1, "host_name": "Hana Host"},
        headers=ada).json["event"]
    people = {name: f"{name.lower()}.{device}@example.com" for name in ("Nia", "Omar")}
    client.post_json(f"/api/v1/events/{event['id']}/guests",
                     [{"name": name, "email": email} for name, email in people.items()], headers=ada)
    client.post(f"/api/v1/events/{event['id']}/send-invitations", headers=ada, status=202)
    links = {name: re.search(r"/access/[A-Za-z0-9_-]+", site.messages_to(email)[0].text).group(0)
             for name, email in people.items()}
    nia, omar = browse(device), browse(device)
    for page, name in ((nia, "Nia"), (omar, "Omar")):
        page.goto(links[name])
        page.get_by_label("Yes, I'll be there").check()
        page.get_by_role("button", name="Send my answer").click()
        expect(page.locator(".current-answer")).to_contain_text("You said yes")
    expect(omar.locator(".current-answer")).to_contain_text("you're on the waitlist")
    expect(omar.locator(".current-answer")).to_contain_text("number 1 in line")
    check(omar, axe, shoot, device, "guest-waitlisted")
    nia.get_by_label("No, I can't come").check()
    nia.get_by_role("button", name="Update my answer").click()
    expect(nia.locator(".current-answer")).to_contain_text("You said no")
    (told, _) = site.messages_to(people["Omar"])[:2]
    assert told.subject == f"A place opened up: you're coming to Tasting Menu ({device})"
    omar.reload()
    assert omar.locator(".current-answer").inner_text().startswith("You said yes —")


def test_a_refused_stream_polls_without_saying_reconnecting(world, site, browse):
    """The server holds only so many streams; a page it turns away follows
    the feed by polling and says so, instead of "Reconnecting…" for ever."""
    refused = re.compile(r"^503 from \S+/activity/stream\?")
    page = browse("desktop", expected=refused)
    signed_in_as_ada(site, page)
    page.route(re.compile(r"/activity/stream\?"), lambda route: route.fulfill(
        status=503, content_type="application/json", body='{"error": {"code": "streams_full"}}'))
    page.add_init_script("""
        window.liveStates = [];
        document.addEventListener("DOMContentLoaded", () => {
          const status = document.getElementById("activity-status");
          new MutationObserver(() => window.liveStates.push(status.dataset.state))
            .observe(status, { attributes: true, attributeFilter: ["data-state"] });
        });""")
    page.goto(site.url + world["host"]["event"])
    status = page.locator("#activity-status")
    expect(status).to_have_attribute("data-state", "polling", timeout=10_000)
    expect(status).to_have_text("Updating every 15 seconds")
    page.wait_for_timeout(2_000)  # the old page said "Reconnecting…" here, and tried again and again
    assert page.evaluate("window.liveStates") == ["polling"]


def test_a_new_events_time_zone_starts_as_the_browsers(world, site, browse):
    page = browse("phone", timezone_id="Asia/Tokyo")
    signed_in_as_ada(site, page)
    page.goto(site.url + world["host"]["event-new"])
    expect(page.get_by_label("Time zone")).to_have_value("Asia/Tokyo")
    page.get_by_label("Time zone").fill("Europe/Lisbon")  # what the host types stays
    page.get_by_role("button", name="Create event").click()  # refused (no name): the typed zone comes back
    expect(page.get_by_label("Time zone")).to_have_value("Europe/Lisbon")


@pytest.mark.parametrize("device", DEVICES)
def test_the_privacy_section_and_the_export_email(device, world, site, browse, axe, shoot):
    """Ada asks for a copy of her data on her account page; the section says
    it is on its way, and the email that brings the link reads well."""
    page = browse(device)
    signed_in_as_ada(site, page)
    page.goto("/account")
    page.get_by_role("button", name="Email me a copy of my data").click()
    page.wait_for_url("**/account#privacy-title")
    section = page.locator("section", has=page.get_by_role("heading", name="Your data"))
    assert "we emailed ada@example.com a link" in section.inner_text().lower()
    check(page, axe, shoot, device, "host-account-privacy")
    section.screenshot(path=str(shoot(page, f"pages/host-account-privacy-section-{device}")))
    message = next(message for message in site.messages_to("ada@example.com") if "data is ready" in message.subject)
    mail = browse(device)  # as a mail client shows it: its HTML on its own
    mail.set_content(message.html, wait_until="load")
    assert mail.get_by_role("link", name="Download my data").get_attribute("href").startswith(
        f"{site.url}/account/data-exports/")
    result = mail.evaluate("axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21aa']}})")
    assert not result["violations"], [violation["id"] for violation in result["violations"]]
    assert mail.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    shoot(mail, f"pages/email-data-export-{device}")


def test_the_live_feed_writes_times_on_the_events_clock(world, site, browse):
    """A line the script adds reads as the server writes the ones it
    renders: a New York event on the 12-hour clock."""
    client, ada = site.client, bearer_for(site.client, "ada@example.com")
    event = client.post_json("/api/v1/events", {
        "workspace_id": world["workspace"], "name": "Brooklyn Picnic", "starts_at": "2030-07-04T12:00:00",
        "timezone": "America/New_York", "status": "published"}, headers=ada).json["event"]
    (guest,) = client.post_json(f"/api/v1/events/{event['id']}/guests", [{"name": "Rosa Parks"}],
                                headers=ada).json["guests"]
    token = client.post_json(f"/api/v1/events/{event['id']}/guests/{guest['id']}/tokens", {},
                             headers=ada).json["token"]
    client.post_json(f"/api/v1/rsvp/{token}", {"response": "maybe"})
    page = browse("desktop")
    signed_in_as_ada(site, page)
    page.goto(f"/events/{event['id']}")
    rendered = page.locator("#activity-feed .feed-when").first.inner_text()
    assert re.fullmatch(r"\w{3} \d{1,2} \w{3}, \d{1,2}:\d{2} [ap]m", rendered), rendered
    expect(page.locator("#activity-status")).to_have_attribute("data-state", re.compile("live|polling"))
    client.post_json(f"/api/v1/rsvp/{token}", {"response": "yes"})
    added = page.locator("#activity-feed .feed-item.is-new .feed-when")
    expect(added).to_have_count(1, timeout=20_000)
    assert re.fullmatch(r"\w{3} \d{1,2} \w{3}, \d{1,2}:\d{2} [ap]m", added.inner_text()), added.inner_text()
