"""The host's flag panel on a guest's page, with the evidence the guard
writes when it knows networks by operator and country: a link pasted into a
WhatsApp group (a scenario of the guard's corpus) replayed through the
invitation pages, then the guest's page on a desktop and a 390 px phone,
scanned by axe-core and photographed under var/screenshots/guard/."""
from __future__ import annotations

import datetime as dt
import re

import pytest
import time_machine
from playwright.sync_api import expect

from guestguard.guard.evaluation import load_corpus, write_network_database
from guestguard.guard.signals import signals_from
from guestguard.testing import bearer_for, create_team, in_request

pytestmark = [pytest.mark.browser, pytest.mark.one_pass("sqlite")]

DEVICES = ("desktop", "phone")


@pytest.fixture(scope="module")
def flagged(site, tmp_path_factory):
    """Ada's event; Grace's link went round a WhatsApp group an hour ago (the
    guard reading the corpus's network database); Alan's was only opened
    by him. The paths of their pages."""
    corpus = load_corpus()
    database = tmp_path_factory.mktemp("networks") / "networks.mmdb"
    write_network_database(corpus.networks, database)
    site.registry["guard.signals"] = signals_from({"guard.network_databases": (str(database),),
                                                   "guard.published_ranges": ""})
    client = site.client
    workspace = in_request(site.registry, create_team)
    ada = bearer_for(client, "ada@example.com")
    event = client.post_json("/api/v1/events", {
        "workspace_id": workspace, "name": "Midsummer Gala", "starts_at": "2030-06-21T19:00:00",
        "timezone": "Europe/London", "status": "published", "default_plus_ones": 1}, headers=ada).json["event"]
    url = f"/api/v1/events/{event['id']}"
    grace, alan = client.post_json(f"{url}/guests", [
        {"name": "Grace Hopper", "email": "grace@example.com", "phone": "+44 7400 123456"},
        {"name": "Alan Turing", "email": "alan@example.com"}], headers=ada).json["guests"]
    (scenario,) = [s for s in corpus.scenarios if s.name == "whatsapp-group"]
    start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    with time_machine.travel(start, tick=False) as clock:
        ada = bearer_for(client, "ada@example.com")
        token = client.post_json(f"{url}/guests/{grace['id']}/tokens", {}, headers=ada).json["token"]
        for step in scenario.steps:
            clock.move_to(start + step.at)
            environ, headers = {"REMOTE_ADDR": step.ip}, {"User-Agent": step.user_agent}
            if step.action == "view":
                client.get(f"/access/{token}", headers=headers, extra_environ=environ)
            else:
                client.post(f"/rsvp/{token}", {"response": "yes", "plus_ones": str(step.plus_ones)},
                            headers=headers, extra_environ=environ, status=303)
    flags = client.get(f"{url}/flags", headers=bearer_for(client, "ada@example.com")).json["flags"]
    assert {f["rule"] for f in flags} >= {"networks", "devices", "link_preview"}
    return {"grace": f"/events/{event['id']}/guests/{grace['id']}",
            "alan": f"/events/{event['id']}/guests/{alan['id']}"}


def signed_in_as_ada(site, page) -> None:
    from guestguard.accounts.models import WEB
    from guestguard.accounts.services import login
    from guestguard.testing import TEST_PASSWORD

    session = in_request(site.registry, lambda request: login(request.ctx, email="ada@example.com",
                                                              password=TEST_PASSWORD, kind=WEB))
    page.context.add_cookies([{"name": "gg_session", "value": session.cookie_token, "url": site.url}])


@pytest.mark.parametrize("device", DEVICES)
def test_the_flag_panel_names_operators_and_places_and_what_to_do(device, flagged, site, browse, axe, shoot):
    page = browse(device)
    signed_in_as_ada(site, page)
    assert page.goto(flagged["grace"]).status == 200
    panel = page.locator("section.flags")
    text = panel.inner_text()
    assert "Possible sharing" in text and "Grace Hopper sees nothing of this." in text
    assert "Pasted into a chat or post" in text and "After a WhatsApp preview" in text
    assert re.search(r"Opened from \d+ different networks in \d countries", text)
    assert "BT broadband (GB)" in text, "operators and places, not address ranges"
    assert not re.search(r"\d+\.\d+\.\d+\.\d+|Mozilla/", text), "no addresses or user agents in the panel's words"
    assert "Ask the guest" in text
    assert panel.get_by_role("button", name=re.compile("^Dismiss")).count() == panel.locator("li.flag-open").count() > 0
    assert panel.get_by_role("button", name="Revoke link and send a new one").count() == 1
    assert text.count("Ask the guest") == 1, "the advice every flag shares is said once"
    axe(page)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the guest's page is {overflow} px wider than the {device} screen"
    full = shoot(page, f"guard/flag-panel-{device}")
    panel.screenshot(path=str(full.with_name(f"flag-panel-{device}-panel.png")))


@pytest.mark.parametrize("device", DEVICES)
def test_dismissing_from_the_panel_says_when_it_comes_back(device, flagged, site, browse, axe, shoot):
    page = browse(device)
    signed_in_as_ada(site, page)
    page.goto(flagged["grace"])
    before = page.locator("li.flag-open").count()
    page.locator("li.flag-open").first.get_by_role("button", name=re.compile("^Dismiss")).click()
    expect(page.locator("main")).to_contain_text(
        "Flag dismissed. It comes back only if a device it did not include uses the link.")
    expect(page.locator("li.flag-open")).to_have_count(before - 1)
    assert page.locator("li.flag-dismissed").count() >= 1
    axe(page)
    shoot(page, f"guard/flag-dismissed-{device}")


def test_a_guest_nobody_flagged_shows_no_panel(flagged, site, browse):
    page = browse("desktop")
    signed_in_as_ada(site, page)
    page.goto(flagged["alan"])
    assert page.locator("section.flags").count() == 0
