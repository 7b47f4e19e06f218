"""Personal invitation links, sending invitations, the guest's pages and RSVPs,
through the real application."""
import re

import pytest
import time_machine
from sqlalchemy import func, select

from guestguard.events.models import Guest, InvitationLink, Rsvp
from guestguard.testing import add_guest, event_host, issue, outbox, scalar as db_scalar

EVENT = {"name": "Midsummer Gala", "status": "published", "starts_at": "2030-06-21T19:00:00",
         "ends_at": "2030-06-21T23:30:00",
         "timezone": "Europe/London", "venue": "Kew Gardens, Richmond; TW9 3AE", "default_plus_ones": 1,
         "rsvp_deadline": "2030-06-01T12:00:00+00:00", "host_message": "Dress: summer best.\nNo gifts, please!",
         "description": "An evening of music under the stars, with dinner at eight."}
AFTER_DEADLINE = "2030-06-02T09:00:00+00:00"
GARBAGE = "not a token!"
UNKNOWN = "A" * 43


@pytest.fixture
def app(make_app, listener):
    return make_app(plugins=[("listener", listener)])


@pytest.fixture
def host(app, run_in_request):
    """Ada owns a workspace with an event; Sam is its door staff."""
    return event_host(app, run_in_request, EVENT)


def guest_row(app, run_in_request, guest_id):
    import uuid

    return run_in_request(lambda request: request.db.get(Guest, uuid.UUID(guest_id)), app.app.registry)


# --- links -------------------------------------------------------------------


def test_issue_a_link_and_reissue_revokes_the_old_one(app, host, run_in_request, listener):
    guest = add_guest(app, host)
    first = issue(app, host, guest)
    assert first["url"] == f"http://guestguard.test/access/{first['token']}"
    assert len(first["token"]) >= 43
    assert app.get(f"/api/v1/access/{first['token']}").json["guest"]["name"] == "Grace Hopper"
    # Only the hash is stored.
    assert db_scalar(app, run_in_request, select(func.count()).select_from(InvitationLink)
                     .where(InvitationLink.token_hash == first["token"])) == 0

    second = issue(app, host, guest)
    assert second["token"] != first["token"]
    app.get(f"/api/v1/access/{first['token']}", status=404)
    app.get(f"/api/v1/access/{second['token']}", status=200)
    assert listener.names("invitation.issued") == ["invitation.issued"] * 2

    app.delete(f"{host['url']}/guests/{guest['id']}/tokens", headers=host["ada"], status=204)
    app.get(f"/api/v1/access/{second['token']}", status=404)
    app.get(f"/access/{second['token']}", status=404)


def test_staff_cannot_issue_or_send(app, host):
    guest = add_guest(app, host)
    base = f"{host['url']}/guests/{guest['id']}"
    for url in (f"{base}/tokens", f"{base}/send", f"{host['url']}/send-invitations"):
        refused = app.post_json(url, {}, headers=host["sam"], status=403).json["error"]
        assert refused["required"] == "guests.edit"
    app.delete(f"{base}/tokens", headers=host["sam"], status=403)


def test_anonymous_cannot_issue(app, host):
    guest = add_guest(app, host)
    app.post_json(f"{host['url']}/guests/{guest['id']}/tokens", {}, status=401)


# --- sending -----------------------------------------------------------------


def test_send_one_by_email_then_sms(app, host, run_in_request, listener):
    guest = add_guest(app, host)
    sent = app.post_json(f"{host['url']}/guests/{guest['id']}/send", {}, headers=host["ada"], status=202).json
    assert sent["channel"] == "email" and sent["invited_at"]
    [(_, message)] = outbox(app)
    assert message.recipient == "grace@example.com"
    assert message.subject == "Ada invites you to Midsummer Gala"
    assert "Friday 21 June 2030, 19:00 – 23:30 BST" in message.text
    assert "Dress: summer best." in message.text and "Kew Gardens" in message.html
    token = re.search(r"http://guestguard\.test/access/(\S+)", message.text).group(1)
    assert f"/access/{token}" in message.html
    assert app.get(f"/api/v1/access/{token}").json["guest"]["name"] == "Grace Hopper"
    assert guest_row(app, run_in_request, guest["id"]).invited_at is not None

    phone_only = add_guest(app, host, name="Phil", email=None, phone="+44 20 7946 0958")
    sms = app.post(f"{host['url']}/guests/{phone_only['id']}/send", headers=host["ada"], status=202).json
    assert sms["channel"] == "sms"
    _, message = outbox(app)[0]
    assert message.channel == "sms" and message.recipient == "+442079460958"
    assert "Midsummer Gala" in message.text and "/access/" in message.text and len(message.text) < 200
    assert listener.names("invitation.sent") == ["invitation.sent"] * 2

    # Asking for a channel the guest cannot receive is a field error.
    refused = app.post_json(f"{host['url']}/guests/{phone_only['id']}/send", {"channel": "email"},
                            headers=host["ada"], status=422).json["error"]
    assert "channel" in refused["fields"]
    app.post_json(f"{host['url']}/guests/{phone_only['id']}/send", {"channel": "fax"},
                  headers=host["ada"], status=422)
    nobody = add_guest(app, host, name="Nobody", email=None)
    refused = app.post_json(f"{host['url']}/guests/{nobody['id']}/send", {}, headers=host["ada"], status=422)
    assert refused.json["error"]["code"] == "no_contact"


def test_send_all_invites_those_not_yet_invited_and_reports_the_rest(app, host):
    first = add_guest(app, host)
    add_guest(app, host, name="Linus", email="linus@example.com")
    add_guest(app, host, name="Phil", email=None, phone="+44 20 7946 0958")
    nobody = add_guest(app, host, name="Nobody", email=None)
    app.post_json(f"{host['url']}/guests/{first['id']}/send", {}, headers=host["ada"], status=202)

    result = app.post_json(f"{host['url']}/send-invitations", {}, headers=host["ada"], status=202).json
    assert result["queued"] == 2  # Linus and Phil: Grace already had hers
    assert result["skipped"] == [{"guest_id": nobody["id"], "name": "Nobody",
                                  "reason": "has no email address or phone number"}]
    assert len(outbox(app)) == 3
    again = app.post_json(f"{host['url']}/send-invitations", {}, headers=host["ada"], status=202).json
    assert again["queued"] == 0 and len(again["skipped"]) == 1
    headcount = app.get(host["url"], headers=host["ada"]).json["event"]["headcount"]
    assert (headcount["invited"], headcount["opened"], headcount["not_opened"]) == (3, 0, 3)


# --- the guest opens the invitation -------------------------------------------


def test_opening_the_invitation_records_the_first_open_only(app, host, run_in_request, listener):
    guest = add_guest(app, host)
    token = issue(app, host, guest)["token"]
    page = app.get(f"/access/{token}")
    assert "Grace Hopper" in page.text and "Friday 21 June 2030, 19:00 – 23:30 BST" in page.text
    assert "Dress: summer best." in page.text and "You and a guest" in page.text
    assert f'href="/access/{token}/event.ics"' in page.text
    assert page.headers["Cache-Control"] == "no-store" and page.headers["Referrer-Policy"] == "no-referrer"
    assert "Set-Cookie" not in page.headers
    assert "Log in" not in page.text  # guests get no account menu
    opened = guest_row(app, run_in_request, guest["id"]).opened_at
    assert opened is not None

    body = app.get(f"/api/v1/access/{token}")
    assert "Set-Cookie" not in body.headers and body.headers["Cache-Control"] == "no-store"
    data = body.json
    assert data["event"]["starts_at"] == "2030-06-21T19:00:00+01:00"
    assert data["event"]["ends_at"] == "2030-06-21T23:30:00+01:00"
    assert data["event"]["rsvp_deadline"] == "2030-06-01T13:00:00+01:00"
    assert data["guest"]["plus_ones_allowed"] == 1 and data["guest"]["response"] is None
    assert data["rsvp"] == {"open": True, "closes_at": "2030-06-01T13:00:00+01:00", "closed_reason": None}
    assert guest_row(app, run_in_request, guest["id"]).opened_at == opened
    assert listener.names("invitation.opened") == ["invitation.opened"]
    assert app.get(host["url"], headers=host["ada"]).json["event"]["headcount"]["opened"] == 1


def test_unusable_tokens_get_one_answer(app, host):
    guest = add_guest(app, host)
    revoked = issue(app, host, guest)["token"]
    issue(app, host, guest)
    headers = {"X-Request-ID": "same-request-1"}
    for method, template in (("GET", "/api/v1/access/{}"), ("POST", "/api/v1/rsvp/{}"),
                             ("GET", "/access/{}"), ("POST", "/rsvp/{}"), ("GET", "/access/{}/event.ics")):
        bodies = set()
        for token in (revoked, UNKNOWN, GARBAGE):
            app.reset()
            if method == "GET":
                response = app.get(template.format(token), headers=headers, status=404)
            elif template.startswith("/api/"):
                response = app.post_json(template.format(token), {"response": "yes"}, headers=headers,
                                         status=404)
            else:
                response = app.post(template.format(token), {"response": "yes"}, headers=headers, status=404)
            bodies.add(response.body)
            assert "Set-Cookie" not in response.headers
        assert len(bodies) == 1, template
        body = bodies.pop().decode()
        if template.startswith("/api/"):
            assert '"invalid_link"' in body
        else:
            assert "This invitation link is not valid" in body


def test_a_deleted_event_invalidates_its_links(app, host):
    token = issue(app, host, add_guest(app, host))["token"]
    app.delete(host["url"], headers=host["ada"], status=204)
    assert app.get(f"/api/v1/access/{token}", status=404).json["error"]["code"] == "invalid_link"


# --- RSVPs -------------------------------------------------------------------


def test_rsvp_change_and_idempotence(app, host, run_in_request, listener):
    guest = add_guest(app, host)
    token = issue(app, host, guest)["token"]
    answer = app.post_json(f"/api/v1/rsvp/{token}", {"response": "yes", "plus_ones": 1, "dietary": "vegetarian"})
    assert "Set-Cookie" not in answer.headers
    assert answer.json["recorded"] is True and answer.json["guest"]["response"] == "yes"
    row = guest_row(app, run_in_request, guest["id"])
    assert (row.response, row.plus_ones_coming) == ("yes", 1) and row.responded_at is not None
    headcount = app.get(host["url"], headers=host["ada"]).json["event"]["headcount"]
    assert (headcount["yes"], headcount["expected"]) == (1, 2)

    same = app.post_json(f"/api/v1/rsvp/{token}", {"response": "yes", "plus_ones": 1, "dietary": "vegetarian"})
    assert same.json["recorded"] is False
    assert db_scalar(app, run_in_request, select(func.count()).select_from(Rsvp)) == 1

    app.post_json(f"/api/v1/rsvp/{token}", {"response": "no", "plus_ones": 1})
    row = guest_row(app, run_in_request, guest["id"])
    assert (row.response, row.plus_ones_coming) == ("no", 0)  # no one comes with a no
    history = run_in_request(lambda r: [(x.response, x.plus_ones) for x in r.db.scalars(
        select(Rsvp).order_by(Rsvp.created_at))], app.app.registry)
    assert history == [("yes", 1), ("no", 0)]
    headcount = app.get(host["url"], headers=host["ada"]).json["event"]["headcount"]
    assert (headcount["yes"], headcount["no"], headcount["expected"]) == (0, 1, 0)
    assert listener.names("rsvp.") == ["rsvp.received", "rsvp.changed"]
    changed = listener.named("rsvp.changed")[-1]
    assert changed.data["previous"] == "yes" and changed.data["response"] == "no"


def test_rsvp_bad_input(app, host):
    token = issue(app, host, add_guest(app, host))["token"]
    refused = app.post_json(f"/api/v1/rsvp/{token}", {"response": "yes", "plus_ones": 2}, status=422)
    assert "plus_ones" in refused.json["error"]["fields"]
    assert "at most 1" in refused.json["error"]["fields"]["plus_ones"]
    refused = app.post_json(f"/api/v1/rsvp/{token}", {"response": "perhaps"}, status=422)
    assert "response" in refused.json["error"]["fields"]
    app.post_json(f"/api/v1/rsvp/{token}", {"response": "yes", "plus_ones": -1}, status=422)
    app.post(f"/api/v1/rsvp/{token}", "response=yes", status=415)


def test_a_refused_answer_is_never_cached(app, host):
    token = issue(app, host, add_guest(app, host))["token"]
    with time_machine.travel(AFTER_DEADLINE):
        refused = app.post_json(f"/api/v1/rsvp/{token}", {"response": "no"}, status=409)
    assert refused.json["error"]["code"] == "rsvp_closed"
    assert refused.headers["Cache-Control"] == "no-store"


def test_rsvp_after_the_deadline_is_refused(app, host):
    guest = add_guest(app, host)
    token = issue(app, host, guest)["token"]
    app.post_json(f"/api/v1/rsvp/{token}", {"response": "yes"})
    with time_machine.travel(AFTER_DEADLINE):
        refused = app.post_json(f"/api/v1/rsvp/{token}", {"response": "no"}, status=409).json["error"]
        assert refused["code"] == "rsvp_closed"
        assert app.get(f"/api/v1/access/{token}").json["rsvp"]["closed_reason"] == "rsvp_closed"
        page = app.get(f"/access/{token}")
        assert "Answers closed on Saturday 1 June 2030, 13:00 BST" in page.text
        assert "You said yes" in page.text and 'id="rsvp-form"' not in page.text
        posted = app.post(f"/rsvp/{token}", {"response": "no"}, status=409)
        assert "Answers closed on" in posted.text


def test_a_cancelled_event_takes_no_answers(app, host):
    token = issue(app, host, add_guest(app, host))["token"]
    app.patch_json(host["url"], {"status": "cancelled"}, headers=host["ada"])
    refused = app.post_json(f"/api/v1/rsvp/{token}", {"response": "yes"}, status=409).json["error"]
    assert refused["code"] == "event_cancelled"
    page = app.get(f"/access/{token}")
    assert "This event has been cancelled" in page.text and 'id="rsvp-form"' not in page.text
    refused = app.post_json(f"{host['url']}/send-invitations", {}, headers=host["ada"], status=409)
    assert refused.json["error"]["code"] == "event_cancelled"


# --- the web form ------------------------------------------------------------


def test_the_rsvp_form_end_to_end(app, host, run_in_request):
    guest = add_guest(app, host)
    token = issue(app, host, guest)["token"]
    page = app.get(f"/access/{token}")
    assert "<fieldset" in page.text and "<legend>Will you come?</legend>" in page.text
    form = page.forms["rsvp-form"]
    assert "csrf_token" not in form.fields  # the link is the credential, no session needed
    form["response"] = "yes"
    form["plus_ones"] = "1"
    form["dietary"] = "No nuts"
    form["message"] = "Can't wait!"
    done = form.submit(status=303)
    assert done.location.endswith(f"/access/{token}")
    assert done.headers["Cache-Control"] == "no-store" and done.headers["Referrer-Policy"] == "no-referrer"
    thanks = done.follow()
    assert "Thank you! We&#39;ve let your host know you&#39;re coming." in thanks.text or \
        "Thank you! We've let your host know you're coming." in thanks.text
    assert "You said yes, with 1 guest — you can change your answer until Saturday 1 June 2030, 13:00 BST" \
        in thanks.text
    row = guest_row(app, run_in_request, guest["id"])
    assert (row.response, row.plus_ones_coming) == ("yes", 1)
    latest = run_in_request(lambda r: r.db.scalar(select(Rsvp)), app.app.registry)
    assert (latest.dietary, latest.message) == ("No nuts", "Can't wait!")

    # The form comes back filled in; too many guests is an error next to the field.
    form = app.get(f"/access/{token}").forms["rsvp-form"]
    assert form["response"].value == "yes" and form["dietary"].value == "No nuts"
    form["plus_ones"] = "3"
    refused = form.submit(status=422)
    assert 'id="rsvp-plus-ones-error"' in refused.text and "at most 1" in refused.text
    # No answer chosen.
    app.reset()
    refused = app.post(f"/rsvp/{token}", {"dietary": "", "plus_ones": "5"}, status=422)
    assert "Choose yes, no or maybe." in refused.text and "at most 1" in refused.text
    assert "Set-Cookie" not in refused.headers


def test_the_form_works_without_cookies(app, host, run_in_request):
    guest = add_guest(app, host)
    token = issue(app, host, guest)["token"]
    app.reset()
    app.post(f"/rsvp/{token}", {"response": "maybe", "plus_ones": ""}, status=303)
    assert guest_row(app, run_in_request, guest["id"]).response == "maybe"


# --- calendar ----------------------------------------------------------------


def test_the_calendar_file(app, host):
    token = issue(app, host, add_guest(app, host))["token"]
    response = app.get(f"/access/{token}/event.ics")
    assert response.content_type == "text/calendar"
    assert response.headers["Cache-Control"] == "no-store"
    text = response.body.decode()
    lines = text.split("\r\n")
    assert lines[0] == "BEGIN:VCALENDAR" and lines[-2] == "END:VCALENDAR" and lines[-1] == ""
    assert "BEGIN:VEVENT" in lines and "END:VEVENT" in lines
    assert "DTSTART:20300621T180000Z" in lines and "DTEND:20300621T223000Z" in lines
    assert "SUMMARY:Midsummer Gala" in lines
    assert any(line.startswith("UID:") for line in lines) and any(line.startswith("DTSTAMP:") for line in lines)
    assert all(len(line.encode()) <= 75 for line in lines)
    unfolded = text.replace("\r\n ", "")
    assert "LOCATION:Kew Gardens\\, Richmond\\; TW9 3AE" in unfolded
    assert "Dress: summer best.\\nNo gifts\\, please!" in unfolded


def test_the_calendar_file_folds_long_lines_and_escapes_text(app, host):
    name = "Fête " + "é" * 80 + ", sous les étoiles; enfin"
    app.patch_json(host["url"], {"name": name, "description": "Line one\r\nline two\rthree, four; five\\six"},
                   headers=host["ada"])
    token = issue(app, host, add_guest(app, host))["token"]
    body = app.get(f"/access/{token}/event.ics").body
    bare = body.replace(b"\r\n", b"")
    assert body.endswith(b"\r\n") and b"\n" not in bare and b"\r" not in bare
    lines = body.split(b"\r\n")
    assert all(len(line) <= 75 for line in lines)  # octets
    assert all(line.decode("utf-8") for line in lines[:-1])  # no character split across lines
    assert any(line.startswith(b" ") for line in lines), "the long summary is folded"
    unfolded = body.decode().replace("\r\n ", "")
    assert "SUMMARY:Fête " + "é" * 80 + "\\, sous les étoiles\\; enfin\r\n" in unfolded
    assert ("DESCRIPTION:Line one\\nline two\\nthree\\, four\\; five\\\\six\\n\\nDress: summer best.\\nNo gifts"
            in unfolded)


def test_domain_events_of_the_whole_journey(app, host, listener):
    guest = add_guest(app, host)
    app.post_json(f"{host['url']}/guests/{guest['id']}/send", {}, headers=host["ada"], status=202)
    token = re.search(r"/access/(\S+)", outbox(app)[0][1].text).group(1)
    app.get(f"/access/{token}")
    app.post_json(f"/api/v1/rsvp/{token}", {"response": "maybe"})
    app.post_json(f"/api/v1/rsvp/{token}", {"response": "yes", "plus_ones": 1})
    journey = [(e.name, e.data.get("response")) for e in listener.events
               if e.name.startswith(("invitation.", "rsvp."))]
    assert journey == [("invitation.issued", None), ("invitation.sent", None), ("invitation.opened", None),
                       ("rsvp.received", "maybe"), ("rsvp.changed", "yes")]
    assert all(e.workspace_id is not None and e.data["guest_id"] == guest["id"] for e in listener.events
               if e.name.startswith(("invitation.", "rsvp.")))
    assert not any(token in repr(e.data) for e in listener.events)


def test_without_an_sms_provider_phone_only_guests_are_refused_clearly_and_skipped(make_app, run_in_request):
    app = make_app({"notifications.sms.provider": ""})
    host = event_host(app, run_in_request, EVENT)
    phil = add_guest(app, host, name="Phil", email=None, phone="+44 20 7946 0958")
    add_guest(app, host)
    refused = app.post_json(f"{host['url']}/guests/{phil['id']}/send", {}, headers=host["ada"], status=422).json
    assert refused["error"]["code"] == "channel_unavailable"
    assert refused["error"]["message"] == ("Phil has only a phone number, and text messages cannot be sent here: "
                                           "no provider is set up for them.")
    asked = app.post_json(f"{host['url']}/guests/{phil['id']}/send", {"channel": "sms"}, headers=host["ada"],
                          status=422).json["error"]
    assert asked["code"] == "channel_unavailable"
    assert asked["fields"] == {"channel": "text messages cannot be sent here"}
    sent = app.post_json(f"{host['url']}/send-invitations", {}, headers=host["ada"], status=202).json
    assert sent["queued"] == 1
    assert sent["skipped"] == [{"guest_id": phil["id"], "name": "Phil",
                                "reason": "can only be reached by a kind of message this GuestGuard cannot send"}]
    assert [message.recipient for _, message in outbox(app)] == ["grace@example.com"]


def test_a_draft_gets_no_links_and_links_wait_while_an_event_is_back_in_draft(app, host):
    guest = add_guest(app, host)
    token = issue(app, host, guest)["token"]
    app.patch_json(host["url"], {"status": "draft"}, headers=host["ada"])
    refused = app.post_json(f"{host['url']}/guests/{guest['id']}/tokens", {}, headers=host["ada"], status=409)
    assert refused.json["error"]["code"] == "event_not_published"

    seen = app.get(f"/api/v1/access/{token}").json["rsvp"]
    assert seen["open"] is False and seen["closed_reason"] == "event_not_published"
    answer = app.post_json(f"/api/v1/rsvp/{token}", {"response": "yes"}, status=409).json["error"]
    assert answer["code"] == "event_not_published"
    page = app.get(f"/access/{token}")
    assert "This invitation is not open yet" in page.text and 'id="rsvp-form"' not in page.text

    app.patch_json(host["url"], {"status": "published"}, headers=host["ada"])
    assert app.post_json(f"/api/v1/rsvp/{token}", {"response": "yes"}).json["recorded"] is True


def test_an_invitation_text_over_the_segment_cap_is_refused_before_a_link_is_issued(make_app, run_in_request):
    app = make_app({"notifications.sms.max_segments": "1"})
    host = event_host(app, run_in_request, {**EVENT, "name": "The Annual Midwinter Gala of the Society"})
    phil = add_guest(app, host, name="Phil", email=None, phone="+44 20 7946 0958")
    add_guest(app, host)

    refused = app.post_json(f"{host['url']}/guests/{phil['id']}/send", {}, headers=host["ada"], status=422).json
    assert refused["error"]["code"] == "message_too_long"
    assert refused["error"]["message"] == (
        "The text message inviting Phil would be too long: this text is 2 SMS segments long, the limit is 1. "
        "Shorten the event's name or send the invitation by email.")
    assert refused["error"]["fields"] == {"channel": "this text is 2 SMS segments long, the limit is 1"}
    links = db_scalar(app, run_in_request, select(func.count()).select_from(InvitationLink))
    assert links == 0, "no link was issued (nor the guest's earlier one revoked)"

    sent = app.post_json(f"{host['url']}/send-invitations", {}, headers=host["ada"], status=202).json
    assert sent["queued"] == 1
    assert sent["skipped"] == [{"guest_id": phil["id"], "name": "Phil",
                                "reason": "the invitation text would be over the limit of 1 SMS segments"}]
    assert [message.recipient for _, message in outbox(app)] == ["grace@example.com"]


def test_an_invitation_text_within_the_cap_is_measured_with_its_real_link(make_app, run_in_request):
    app = make_app({"notifications.sms.max_segments": "2"})
    host = event_host(app, run_in_request, {**EVENT, "name": "The Annual Midwinter Gala of the Society"})
    phil = add_guest(app, host, name="Phil", email=None, phone="+44 20 7946 0958")
    app.post_json(f"{host['url']}/guests/{phil['id']}/send", {}, headers=host["ada"], status=202)
    [(_, message)] = outbox(app)
    assert 160 < len(message.text.strip()) <= 306, "two segments, as the stand-in link measured"
