"""The billing journey in a browser, on a desktop and a 390 px phone: a
Free workspace's second event meets the upgrade prompt (402), the billing
page, Checkout at the local stand-in for Stripe, back to the plan upgraded,
cancel at period end and its undo. Every page is scanned by axe-core and
photographed (var/screenshots/billing/)."""
from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from importlib.metadata import entry_points

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

import guestguard_stripe
from guestguard.accounts.models import WEB
from guestguard.accounts.services import login
from guestguard.events.models import Event
from guestguard.testing import TEST_PASSWORD, AppFactory, create_user, in_request, session_bearer, settings_for
from guestguard.workspaces.services import create_workspace
from guestguard_stripe.testing import StripeStub

from .conftest import Site

pytestmark = [pytest.mark.browser, pytest.mark.one_pass("sqlite")]
DEVICES = ("desktop", "phone")
PLUGINS = [] if any(p.name == "stripe" for p in entry_points(group="guestguard")) else [("stripe", guestguard_stripe)]


@pytest.fixture(scope="module")
def stub() -> Iterator[StripeStub]:
    server = StripeStub()
    yield server
    server.close()


@pytest.fixture(scope="module")
def site(module_db_url, stub) -> Iterator[Site]:
    """The application with plan limits on and Stripe (the stand-in) as its billing backend."""
    from waitress.server import create_server

    factory = AppFactory(settings_for(module_db_url))
    holder = create_server(lambda environ, start_response: [], host="127.0.0.1", port=0)
    port = holder.effective_port
    holder.close()
    url = f"http://127.0.0.1:{port}"
    client = factory({"app.base_url": url, "billing.enforce": "true", "billing.backend": "stripe",
                      "stripe.secret_key": "sk_test_browser", "stripe.webhook_secrets": stub.secret,
                      "stripe.api_base": stub.url, "stripe.max_retries": "0",
                      "guard.stream.max_streams": "64", "guard.stream.max_per_holder": "16"}, plugins=PLUGINS)
    server = create_server(client.app, host="127.0.0.1", port=port, threads=8)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield Site(url, client)
    server.close()
    thread.join(timeout=5)
    factory.close()


def owner(site, page) -> str:
    """A new owner with a workspace holding one event (Free's one for the month), signed in on ``page``."""
    email = f"host-{uuid.uuid4().hex[:8]}@example.com"

    def make(request):
        user = create_user(request, email, "Ada")
        return str(create_workspace(request.ctx, user, "Gala team").id)

    workspace = in_request(site.registry, make)
    site.client.post_json("/api/v1/events", {"workspace_id": workspace, "name": "First", "timezone": "Europe/London",
                                             "starts_at": "2030-06-21T19:00:00"},
                          headers=session_bearer(site.registry, email), status=201)
    session = in_request(site.registry, lambda request: login(request.ctx, email=email, password=TEST_PASSWORD,
                                                              kind=WEB))
    page.context.add_cookies([{"name": "gg_session", "value": session.cookie_token, "url": site.url}])
    return workspace


def check(page, axe, shoot, device, name):
    axe(page)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{page.url} is {overflow} px wider than the {device} screen"
    shoot(page, f"billing/{name}-{device}")


@pytest.mark.parametrize("device", DEVICES)
def test_from_the_upgrade_prompt_through_checkout_to_a_cancelled_and_kept_plan(device, site, stub, browse, axe,
                                                                              shoot):
    page = browse(device)
    workspace = owner(site, page)
    page.goto(f"/workspaces/{workspace}/events/new")
    page.locator("#event-name").fill("Second")
    page.locator("#event-starts-at").fill("2030-07-01T19:00")
    page.locator("#event-timezone").fill("Europe/London")
    with page.expect_navigation() as navigation:
        page.get_by_role("button", name="Create event").click()
    answer = navigation.value
    assert answer.status == 402
    expect(page.get_by_role("heading", name="Your plan's limit is reached")).to_be_visible()
    check(page, axe, shoot, device, "limit-402")

    page.get_by_role("link", name="See plans and upgrade").click()
    expect(page.get_by_role("heading", name="Your plan: Free")).to_be_visible()
    check(page, axe, shoot, device, "page-free")

    page.get_by_role("button", name="Start Pro").click()
    page.get_by_role("button", name="Pay").click()  # the stand-in's Checkout page
    page.wait_for_url(f"**/workspaces/{workspace}/billing")
    expect(page.get_by_text("your plan is active")).to_be_visible()
    expect(page.get_by_role("heading", name="Your plan: Pro")).to_be_visible()
    expect(page.get_by_text("trialing")).to_be_visible()
    check(page, axe, shoot, device, "page-pro")

    page.get_by_role("button", name="Cancel at the end of the period").click()
    expect(page.get_by_text("you keep your plan until then").first).to_be_visible()
    check(page, axe, shoot, device, "page-cancelled")
    page.get_by_role("button", name="Keep my subscription").click()
    expect(page.get_by_role("button", name="Cancel at the end of the period")).to_be_visible()


@pytest.mark.parametrize("device", DEVICES)
def test_a_full_guest_list_buys_personal_for_its_event(device, site, stub, browse, axe, shoot):
    page = browse(device)
    workspace = owner(site, page)
    event_id = in_request(site.registry, lambda request: str(request.db.scalar(
        select(Event.id).where(Event.workspace_id == uuid.UUID(workspace)))))
    page.goto(f"/events/{event_id}/edit")
    expect(page.locator("#branding-plan")).to_be_visible()
    check(page, axe, shoot, device, "event-branding-free")
    # The prompt of a full guest list names the way out for this one event.
    page.goto(f"/workspaces/{workspace}/billing?event_id={event_id}")
    assert page.get_by_label("For the event").input_value() == event_id
    check(page, axe, shoot, device, "page-personal-offer")
    page.get_by_role("button", name="Buy for this event").click()
    page.get_by_role("button", name="Pay").click()  # the stand-in's Checkout page
    page.wait_for_url(f"**/workspaces/{workspace}/billing")
    expect(page.get_by_text("the event has its own plan now")).to_be_visible()
    expect(page.get_by_role("heading", name="Events on their own plan")).to_be_visible()
    expect(page.get_by_text("0 of 500 guests")).to_be_visible()
    expect(page.get_by_role("heading", name="Your plan: Free")).to_be_visible()
    check(page, axe, shoot, device, "page-personal-bought")
    page.goto(f"/events/{event_id}/edit")
    assert page.locator("#branding-plan").count() == 0, "the event bought on Personal has branding"
