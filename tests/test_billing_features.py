"""What a plan includes beyond counts: branding (a theme colour and a cover
image) only on paid plans, refused with 402 plan_limit naming the feature
on the API and shown on the form; what a downgrade leaves; and feature
flags refusing on the server, not only hiding buttons."""
from __future__ import annotations

import datetime as dt
import io
import uuid

import pytest
from PIL import Image
from sqlalchemy import func, select

from guestguard.billing import flags, services
from guestguard.events.models import Event, EventCover
from guestguard.plugins import SubscriptionState
from guestguard.testing import create_team, session_bearer, signed_in

EVENT = {"name": "Midsummer Gala", "starts_at": "2030-06-21T19:00:00", "ends_at": "2030-06-21T23:30:00",
         "timezone": "Europe/London"}
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


@pytest.fixture
def app(make_app, listener):
    return make_app({"billing.enforce": "true"}, plugins=[("listener", listener)])


@pytest.fixture
def team(app, run_in_request):
    registry = app.app.registry
    workspace_id = run_in_request(create_team, registry)
    return {"workspace": workspace_id, "ada": session_bearer(registry, "ada@example.com")}


def subscribe(run_in_request, workspace_id, status="active", price="price_pro_monthly"):
    state = SubscriptionState(workspace_id=uuid.UUID(workspace_id), customer_id="cus_1", subscription_id="sub_1",
                              price_id=price, status=status, period_start=NOW - dt.timedelta(days=1),
                              period_end=NOW + dt.timedelta(days=29))
    return run_in_request(lambda r: services.apply_subscription(r.ctx, state))


def new_event(app, team, status=201, **fields):
    return app.post_json("/api/v1/events", {"workspace_id": team["workspace"], **EVENT, **fields},
                         headers=team["ada"], status=status)


def cover_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (640, 320), (200, 40, 90)).save(out, "JPEG")
    return out.getvalue()


def upload(browser, event_id, status=303):
    form = browser.get(f"/events/{event_id}/edit").forms["cover-form"]
    form["file"] = ("cover.jpg", cover_bytes())
    return form.submit(status=status)


def test_free_has_no_branding_and_the_api_says_so_naming_the_feature(app, team, run_in_request, listener):
    refused = new_event(app, team, status=402, theme_colour="#6a1b9a").json["error"]
    assert (refused["code"], refused["feature"], refused["limit"], refused["used"]) == ("plan_limit", "branding",
                                                                                       0, 0)
    assert refused["upgrade_url"].endswith(f"/workspaces/{team['workspace']}/billing")
    assert refused["fields"] == {"theme_colour": refused["message"]}
    assert "Free plan does not include custom branding" in refused["message"]
    assert run_in_request(lambda r: r.db.scalar(select(func.count()).select_from(Event))) == 0
    event = new_event(app, team).json["event"]  # the refusal used up nothing: the month's event is still there
    url = f"/api/v1/events/{event['id']}"
    assert app.patch_json(url, {"theme_colour": "#123456"}, headers=team["ada"], status=402).json["error"][
        "feature"] == "branding"
    app.patch_json(url, {"theme_colour": None, "name": "Renamed"}, headers=team["ada"])  # clearing is allowed
    assert [e.data.get("feature") for e in listener.named("billing.limit_reached")] == ["branding", "branding"]


def test_the_cover_form_on_free_explains_and_stores_nothing(app, team, run_in_request):
    event_id = new_event(app, team).json["event"]["id"]
    browser = signed_in(app, run_in_request, "ada@example.com")
    page = browser.get(f"/events/{event_id}/edit")
    assert "does not include custom branding" in page.html.find(id="branding-plan").get_text()
    refused = upload(browser, event_id, status=402)
    error = refused.html.find(id="cover-file-error").get_text()
    assert "Free plan does not include custom branding" in error
    form = refused.forms["event-form"]
    form["theme_colour"] = "#6a1b9a"
    refused = form.submit(status=402)
    assert "does not include custom branding" in refused.html.find(class_="field-invalid").get_text()
    assert run_in_request(lambda r: r.db.scalar(select(func.count()).select_from(EventCover))) == 0
    assert run_in_request(lambda r: r.db.scalar(select(Event.theme_colour))) == ""


def test_a_paid_plan_brands_and_a_downgrade_keeps_what_was_set(app, team, run_in_request):
    subscribe(run_in_request, team["workspace"])
    event = new_event(app, team, theme_colour="#6a1b9a").json["event"]
    browser = signed_in(app, run_in_request, "ada@example.com")
    assert browser.get(f"/events/{event['id']}/edit").html.find(id="branding-plan") is None
    upload(browser, event["id"])
    subscribe(run_in_request, team["workspace"], status="canceled")
    url = f"/api/v1/events/{event['id']}"
    kept = app.get(url, headers=team["ada"]).json["event"]
    assert kept["theme_colour"] == "#6a1b9a" and kept["cover_url"]
    # Unchanged colour passes with other edits; a new one, or a new cover, waits for a paid plan.
    app.patch_json(url, {"theme_colour": "#6A1B9A", "venue": "Kew"}, headers=team["ada"])
    app.patch_json(url, {"theme_colour": "#000000"}, headers=team["ada"], status=402)
    upload(browser, event["id"], status=402)
    # Removing is always allowed.
    form = browser.get(f"/events/{event['id']}/edit").forms["cover-form"]
    form.submit("action", value="remove", status=303)
    assert app.get(url, headers=team["ada"]).json["event"]["cover_url"] is None


def test_a_copy_on_a_plan_without_branding_is_made_in_the_house_look(app, team, run_in_request):
    subscribe(run_in_request, team["workspace"])
    event = new_event(app, team, theme_colour="#6a1b9a").json["event"]
    upload(signed_in(app, run_in_request, "ada@example.com"), event["id"])
    copied = app.post_json(f"/api/v1/events/{event['id']}/duplicate", {"name": "Again"}, headers=team["ada"],
                           status=201).json["event"]
    assert copied["theme_colour"] == "#6a1b9a" and copied["cover_url"]
    subscribe(run_in_request, team["workspace"], status="canceled")
    run_in_request(lambda r: r.db.execute(services.UsageCounter.__table__.delete()))  # a new month on Free
    plain = app.post_json(f"/api/v1/events/{event['id']}/duplicate", {"name": "Plain"}, headers=team["ada"],
                          status=201).json["event"]
    assert (plain["theme_colour"], plain["cover_url"]) == ("", None)
    assert run_in_request(lambda r: r.db.scalar(select(func.count()).select_from(EventCover))) == 2


def test_branding_is_not_refused_with_enforcement_off(make_app, run_in_request):
    app = make_app({"billing.enforce": "false"})
    registry = app.app.registry
    workspace_id = run_in_request(create_team, registry)
    ada = session_bearer(registry, "ada@example.com")
    made = app.post_json("/api/v1/events", {"workspace_id": workspace_id, **EVENT, "theme_colour": "#15b"},
                         headers=ada, status=201).json["event"]
    assert made["theme_colour"] == "#1155bb"


__all__ = ["flags"]
