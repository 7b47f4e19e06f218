"""The host's and the guest's whole journey through the JSON API."""
import datetime as dt
import re

import time_machine

from guestguard.testing import bearer_for, create_host


def test_create_invite_open_answer_change_and_count(app, run_in_request):
    workspace_id = run_in_request(lambda r: create_host(r, "Gala team"), app.app.registry)
    host = bearer_for(app, "ada@example.com")
    event = app.post_json("/api/v1/events", {
        "workspace_id": workspace_id, "name": "Midsummer Gala", "starts_at": "2030-06-21T19:00:00",
        "timezone": "Europe/London", "default_plus_ones": 1, "status": "published"}, headers=host).json["event"]
    guests_url = f"/api/v1/events/{event['id']}/guests"
    guests = app.post_json(guests_url, [{"name": "Grace", "email": "grace@example.com"},
                                        {"name": "Alan", "email": "alan@example.com"}], headers=host).json["guests"]
    sent = app.post(f"/api/v1/events/{event['id']}/send-invitations", headers=host, status=202).json
    assert sent["queued"] == 2
    outbox = app.app.registry["notifications.providers_by_name"]["console"].messages
    links = {message.recipient: re.search(r"/access/(\S+)", message.text).group(1) for _, message in outbox}
    assert set(links) == {"grace@example.com", "alan@example.com"}

    def headcount():
        return app.get(f"/api/v1/events/{event['id']}", headers=host).json["event"]["headcount"]

    assert headcount()["invited"] == 2 and headcount()["opened"] == 0
    page = app.get(f"/api/v1/access/{links['grace@example.com']}").json
    assert "Grace" in str(page) and "Midsummer Gala" in str(page)
    assert headcount()["opened"] == 1
    app.post_json(f"/api/v1/rsvp/{links['grace@example.com']}", {"response": "yes", "plus_ones": 1})
    assert (headcount()["yes"], headcount()["expected"]) == (1, 2)
    app.post_json(f"/api/v1/rsvp/{links['grace@example.com']}", {"response": "no"})
    counts = headcount()
    assert (counts["yes"], counts["no"], counts["expected"], counts["pending"]) == (0, 1, 0, 1)
    grace = app.get(f"{guests_url}/{guests[0]['id']}", headers=host).json["guest"]
    assert (grace["response"], grace["plus_ones_coming"]) == ("no", 0)
    # a revoked link stops working at once
    app.delete(f"{guests_url}/{guests[1]['id']}/tokens", headers=host, status=204)
    app.get(f"/api/v1/access/{links['alan@example.com']}", status=404)


def test_the_host_sends_invitations_from_the_pages(app, run_in_request):
    from guestguard.accounts.models import WEB
    from guestguard.accounts.services import login
    from guestguard.testing import TEST_PASSWORD

    workspace_id = run_in_request(lambda r: create_host(r, "Gala team"), app.app.registry)
    host = bearer_for(app, "ada@example.com")
    event = app.post_json("/api/v1/events", {"workspace_id": workspace_id, "name": "Gala", "status": "published",
                                             "starts_at": "2030-06-21T19:00:00", "timezone": "UTC"},
                          headers=host).json["event"]
    guests = app.post_json(f"/api/v1/events/{event['id']}/guests",
                           [{"name": "Grace", "email": "grace@example.com"}, {"name": "Nobody"}],
                           headers=host).json["guests"]
    cookie = run_in_request(lambda r: login(r.ctx, email="ada@example.com", password=TEST_PASSWORD, kind=WEB),
                            app.app.registry).cookie_token
    app.set_cookie("gg_session", cookie)
    page = app.get(f"/events/{event['id']}").click("Send invitations…")  # the preview first
    form = page.forms["send-form"]
    done = form.submit(status=303).follow()
    assert "1 invitation on the way." in done.text and "Not sent to Nobody" in done.text
    outbox = app.app.registry["notifications.providers_by_name"]["console"].messages
    assert [m.recipient for _, m in outbox] == ["grace@example.com"]
    again = form.submit(status=303).follow()
    assert "No invitations sent." in again.text and "Not sent to Nobody" in again.text
    guest_page = app.get(f"/events/{event['id']}/guests/{guests[0]['id']}")
    resend = next(f for f in guest_page.forms.values() if f.action.endswith("/send"))
    # Moments after the first, "send again" leaves the link just emailed alone.
    assert "sent to Grace moments ago" in resend.submit(status=303).follow().text
    assert len(outbox) == 1
    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=61)):
        assert "Invitation sent to Grace by email." in resend.submit(status=303).follow().text
    assert len(outbox) == 2


def _host_event(app, run_in_request, **fields):
    workspace_id = run_in_request(create_host, app.app.registry)
    host = bearer_for(app, "ada@example.com")
    body = {"workspace_id": workspace_id, "name": "Gala", "starts_at": "2030-06-21T19:00:00",
            "timezone": "UTC", **fields}
    return app.post_json("/api/v1/events", body, headers=host).json["event"], host


def test_odd_cursors_limits_and_query_strings_are_400s(app, run_in_request):
    import base64
    import json

    event, host = _host_event(app, run_in_request)
    url = f"/api/v1/events/{event['id']}/guests"
    for values in (["x", 123], ["2030-01-01T00:00:00+00:00", 5], [None, None]):
        cursor = base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")
        assert app.get(f"{url}?after={cursor}", headers=host, status=400).json["error"]["code"] == "invalid_cursor"
        app.get(f"/api/v1/events?after={cursor}", headers=host, status=400)
    app.get(f"{url}?limit=%C2%B2", headers=host, status=400)
    app.get(f"{url}?q=%ff", headers=host, status=400)


def test_drafts_are_not_sent(app, run_in_request):
    event, host = _host_event(app, run_in_request)
    app.post_json(f"/api/v1/events/{event['id']}/guests", {"name": "Grace", "email": "g@example.com"},
                  headers=host)
    refused = app.post(f"/api/v1/events/{event['id']}/send-invitations", headers=host, status=409)
    assert refused.json["error"]["code"] == "event_not_published"


def test_fewer_seats_lower_the_headcount(app, run_in_request):
    event, host = _host_event(app, run_in_request, status="published", default_plus_ones=3)
    guest = app.post_json(f"/api/v1/events/{event['id']}/guests", {"name": "Grace"}, headers=host).json["guest"]
    token = app.post(f"/api/v1/events/{event['id']}/guests/{guest['id']}/tokens", headers=host).json["token"]
    app.post_json(f"/api/v1/rsvp/{token}", {"response": "yes", "plus_ones": 3})
    app.patch_json(f"/api/v1/events/{event['id']}/guests/{guest['id']}", {"plus_ones_allowed": 1}, headers=host)
    counts = app.get(f"/api/v1/events/{event['id']}", headers=host).json["event"]["headcount"]
    assert counts["expected"] == 2


def test_the_calendar_uid_ignores_the_host_header(app, run_in_request):
    event, host = _host_event(app, run_in_request, status="published")
    guest = app.post_json(f"/api/v1/events/{event['id']}/guests", {"name": "Grace"}, headers=host).json["guest"]
    token = app.post(f"/api/v1/events/{event['id']}/guests/{guest['id']}/tokens", headers=host).json["token"]
    ics = app.get(f"/access/{token}/event.ics", headers={"Host": "evil;x,y:80"}).text
    unfolded = ics.replace("\r\n ", "")
    uid = next(line for line in unfolded.splitlines() if line.startswith("UID:"))
    assert uid.endswith("@guestguard.test") and "evil" not in ics
