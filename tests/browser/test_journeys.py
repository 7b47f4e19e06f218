"""The host's and the guest's journeys in a real browser: each page on the
way is scanned by axe-core and photographed, on a desktop and a phone."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

# The browser sees what the pages show, whatever the database: one pass is enough.
pytestmark = [pytest.mark.browser, pytest.mark.one_pass("sqlite")]

PASSWORD = "correct horse battery staple"


def sign_up(page, name: str, email: str, site, axe, shoot, label: str) -> None:
    page.goto("/signup")
    axe(page)
    shoot(page, f"{label}-signup")
    page.get_by_label("Your name").fill(name)
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label(re.compile("I accept the privacy policy")).check()
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    axe(page)
    shoot(page, f"{label}-signed-up")
    (message,) = site.messages_to(email)
    verify = re.search(r"https?://\S+/verify-email/\S+", message.text).group(0)
    page.goto(verify)  # in the browser that signed up, the link signs in
    expect(page.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()
    expect(page.get_by_text(f"Welcome to GuestGuard, {name}: your address is verified.")).to_be_visible()
    axe(page)
    shoot(page, f"{label}-verified")


def invitation_link(site, email: str) -> str:
    return re.search(r"https?://\S+/access/\S+", site.messages_to(email)[0].text).group(0)


def preview_test_and_send(host, site, email, axe, shoot, device) -> None:
    """From the event page: the send preview, a test to oneself, then the real thing."""
    host.get_by_role("link", name="Send invitations…").click()
    expect(host.get_by_text("1 guest not invited yet: 1 by email.")).to_be_visible()
    expect(host.locator(".preview-subject")).to_have_text("Subject: Hana Host invites you to Midsummer Gala")
    axe(host)
    shoot(host, f"host-{device}-send-preview")
    host.get_by_role("button", name="Send a test to me").click()
    expect(host.get_by_text("A test invitation is on its way to your email address.")).to_be_visible()
    tests = [message.subject for message in site.messages_to(email) if "[Test]" in message.subject]
    assert tests == ["[Test] Hana Host invites you to Midsummer Gala"]
    host.get_by_role("button", name="Send 1 invitation").click()


@pytest.mark.parametrize("device", ["desktop", "phone"])
def test_a_host_signs_up_creates_an_event_invites_and_watches_a_guest_answer(device, browse, site, axe, shoot):
    host = browse(device)
    email = f"hana-{device}@example.com"
    sign_up(host, "Hana Host", email, site, axe, shoot, f"host-{device}")
    axe(host)
    shoot(host, f"host-{device}-dashboard-empty")
    host.get_by_role("link", name="Create your first event").click()
    expect(host.get_by_role("heading", name="New event", level=1)).to_be_visible()
    axe(host)
    host.get_by_label("Name", exact=True).fill("Midsummer Gala")
    host.get_by_label("Venue").fill("The Old Library, Bristol")
    host.get_by_label("Start").fill("2030-06-21T19:00")
    host.get_by_label("Time zone").fill("Europe/London")
    host.get_by_label("Status").select_option(value="published")
    host.get_by_label("Message to guests").fill("Dinner at eight, dancing until late.")
    host.get_by_role("button", name="Create event").click()
    expect(host.get_by_role("heading", name="Midsummer Gala", level=1)).to_be_visible()
    axe(host)
    host.get_by_role("link", name="Add a guest").first.click()
    expect(host.get_by_label("Name")).to_be_visible()
    axe(host)
    guest_email = f"grace-{device}@example.com"
    host.get_by_label("Name").fill("Grace Hopper")
    host.get_by_label("Email").fill(guest_email)
    host.get_by_role("button", name="Add guest", exact=True).click()
    expect(host.get_by_role("link", name="Grace Hopper")).to_be_visible()
    preview_test_and_send(host, site, email, axe, shoot, device)
    expect(host.get_by_text("1 invitation on the way.")).to_be_visible()
    axe(host)
    shoot(host, f"host-{device}-event-invited")

    guest = browse("phone" if device == "desktop" else "desktop")
    guest.goto(invitation_link(site, guest_email))
    expect(guest.get_by_role("heading", name="Midsummer Gala")).to_be_visible()
    axe(guest)
    shoot(guest, f"guest-of-{device}-host-invitation")
    guest.get_by_label("Yes").check()
    guest.get_by_label("Dietary needs").fill("Vegetarian")
    guest.get_by_role("button", name="Send my answer").click()
    expect(guest.get_by_role("button", name="Update my answer")).to_be_visible()
    axe(guest)
    shoot(guest, f"guest-of-{device}-host-answered")

    # The host's page, open all along, shows the answer without a reload.
    expect(host.locator(".feed-item").filter(has_text="Grace Hopper answered yes")).to_be_visible(timeout=10_000)
    expect(host.locator('[data-count="yes"]')).to_have_text("1", timeout=10_000)
    expect(host.locator('[data-count="opened"]')).to_have_text("1")
    expect(host.locator('[data-count="pending"]')).to_have_text("0")
    row = host.locator(".guest-list .row").filter(has_text="Grace Hopper")
    expect(row.locator(".guest-invite")).to_have_text(re.compile(r"^Opened "), timeout=10_000)
    expect(row.locator(".guest-state")).to_contain_text("Yes")
    expect(host.locator(".chips")).to_contain_text("Yes 1")
    axe(host)
    shoot(host, f"host-{device}-event-live")


CSV = ("Full name,E-mail address,Mobile,Guests\r\n"
       "Grace Hopper,grace@example.com,,1\r\n"
       "Alan Turing,alan@example.com,+44 20 7946 0958,0\r\n"
       "Nobody,not-an-email,,0\r\n")


@pytest.mark.parametrize("device", ["desktop", "phone"])
def test_a_host_drops_a_spreadsheet_on_the_page_and_imports_it(device, browse, site, axe, shoot):
    host = browse(device)
    email = f"ines-{device}@example.com"
    sign_up(host, "Ines Host", email, site, axe, shoot, f"importer-{device}")
    host.get_by_role("link", name="Create your first event").click()
    host.get_by_label("Name", exact=True).fill("Spring Fair")
    host.get_by_label("Start").fill("2030-04-11T14:00")
    host.get_by_label("Time zone").fill("Europe/Lisbon")
    host.get_by_label("Status").select_option(value="published")
    host.get_by_role("button", name="Create event").click()
    event_url = host.url
    host.goto(event_url.rstrip("/") + "/import")
    # A file dropped on the zone, as a browser hands it over from the desktop.
    dropped = host.evaluate_handle("""text => {
        const transfer = new DataTransfer();
        transfer.items.add(new File([text], "guests.csv", {type: "text/csv"}));
        return transfer;
    }""", CSV)
    host.locator("[data-drop-zone]").dispatch_event("drop", {"dataTransfer": dropped})
    commit = host.get_by_role("button", name="Looks good — import 2 guests")
    expect(commit).to_be_visible()
    expect(host.get_by_text("not-an-email").first).to_be_visible()
    axe(host)
    shoot(host, f"importer-{device}-preview")
    commit.click()
    expect(host.get_by_role("status")).to_contain_text("Imported 2 guests")
    axe(host)
    shoot(host, f"importer-{device}-done")
    host.get_by_role("link", name="Back to the guest list").click()
    expect(host.get_by_role("link", name="Grace Hopper")).to_be_visible()
    expect(host.get_by_role("link", name="Alan Turing")).to_be_visible()
    expect(host.get_by_role("link", name="Nobody")).to_have_count(0)
