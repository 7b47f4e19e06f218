"""Every page, as the person it is for sees it, on a desktop and a 390 px
phone: axe-core finds no violation, nothing is wider than the screen, and a
full-page screenshot is kept under var/screenshots/pages/ to look at."""
from __future__ import annotations

import re

import pytest

from guestguard.accounts.models import WEB
from guestguard.accounts.services import login
from guestguard.testing import TEST_PASSWORD, bearer_for, create_team, in_request

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
    events, grace = f"/events/{event['id']}", guests[0]["id"]
    spaces = f"/workspaces/{workspace}"
    return {
        "host": {
            "dashboard": "/dashboard", "account": "/account", "workspace": spaces,
            "workspace-settings": f"{spaces}/settings", "members": f"{spaces}/members",
            "api-keys": f"{spaces}/api-keys", "workspace-new": "/workspaces/new",
            "event-new": f"{spaces}/events/new", "event": events, "event-edit": f"{events}/edit",
            "guest-new": f"{events}/guests/new", "guest": f"{events}/guests/{grace}",
            "event-answered-yes": f"{events}?response=yes", "not-found": "/events/no-such-event",
        },
        "public": {
            "home": "/", "signup": "/signup", "login": "/login", "forgot-password": "/forgot-password",
            "resend-verification": "/verify-email", "privacy": "/privacy", "terms": "/terms",
            "invitation": f"/access/{token}", "invitation-unknown": "/access/not-a-real-link",
            "unsubscribe": unsubscribe, "reset-link-invalid": "/reset-password/not-a-real-token",
        },
    }


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
        assert page.locator(".error-summary").is_visible(), f"{name} shows no errors for an empty form"
        check(page, axe, shoot, device, f"host-{name}-errors")
    page = browse(device)
    page.goto("/signup")
    page.get_by_role("button", name="Create account").click()
    page.wait_for_load_state()
    check(page, axe, shoot, device, "public-signup-errors")


@pytest.mark.parametrize("device", DEVICES)
def test_every_page_anyone_sees(device, world, browse, axe, shoot):
    page = browse(device)
    for name, path in world["public"].items():
        answer = page.goto(path)
        assert answer.status == REFUSING.get(name, 200), (name, answer.status)
        check(page, axe, shoot, device, f"public-{name}")
