"""The operators' suppression API: platform admins list, add and lift,
through the service the command uses, audited; nobody else reaches it."""
import pytest
from sqlalchemy import select

from guestguard.audit.models import AuditEvent
from guestguard.notifications.services import queue_notification
from guestguard.notifications.suppression import STOP, suppress
from guestguard.testing import bearer_for, create_user, scalar

URL = "/api/v1/suppressions"


@pytest.fixture
def operator(app, run_in_request):
    def make(request):
        create_user(request, "ops@example.com").role = "admin"
        create_user(request, "host@example.com")
    run_in_request(make, app.app.registry)
    return bearer_for(app, "ops@example.com")


def audit(app, run_in_request, action):
    return run_in_request(lambda r: [(e.actor_user_id, e.details) for e in r.db.scalars(
        select(AuditEvent).where(AuditEvent.action == action))], app.app.registry)


def test_an_operator_adds_lists_and_lifts_and_each_change_is_audited(app, run_in_request, operator):
    added = app.post_json(URL, {"channel": "email", "address": " Ada@Example.COM "}, headers=operator, status=201)
    entry = added.json["suppression"]
    assert (entry["address"], entry["reason"], entry["source"], entry["scope"]) == (
        "ada@example.com", "operator", "operator", "everywhere")
    assert "operator blocked" in entry["reason_text"]
    again = app.post_json(URL, {"channel": "email", "address": "ada@example.com"}, headers=operator, status=200)
    assert again.json["suppression"]["id"] == entry["id"], "adding twice lists once"

    listed = app.get(URL, {"channel": "email", "address": "ADA@example.com"}, headers=operator).json
    assert [s["id"] for s in listed["suppressions"]] == [entry["id"]]

    # A message to the address now ends suppressed, visibly.
    notification = run_in_request(lambda r: queue_notification(
        r.ctx, channel="email", recipient="ada@example.com", template="test_message",
        context={"base_url": "x"}), app.app.registry)
    assert scalar(app, run_in_request, select(type(notification).status).where(
        type(notification).id == notification.id)) == "suppressed"

    lifted = app.post_json(f"{URL}/lift", {"channel": "email", "address": "ada@example.com"}, headers=operator)
    assert lifted.json == {"lifted": 1}
    assert app.post_json(f"{URL}/lift", {"channel": "email", "address": "ada@example.com"},
                         headers=operator).json == {"lifted": 0}, "lifting twice is harmless"
    assert app.get(URL, headers=operator).json["suppressions"] == []
    [(actor, details)] = audit(app, run_in_request, "suppression.added")
    assert str(actor) and details["reason"] == "operator"
    assert len(audit(app, run_in_request, "suppression.lifted")) == 1


def test_lifting_a_stop_made_by_a_text_reply(app, run_in_request, operator):
    run_in_request(lambda r: suppress(r.ctx, "sms", "+442079460958", STOP, source="twilio"), app.app.registry)
    [entry] = app.get(URL, {"channel": "sms"}, headers=operator).json["suppressions"]
    assert (entry["reason"], entry["source"]) == ("stop", "twilio")
    lifted = app.post_json(f"{URL}/lift", {"channel": "sms", "address": "+44 20 7946 0958"}, headers=operator)
    assert lifted.json["lifted"] == 1


@pytest.mark.parametrize("body, field", [
    ({"channel": "email", "address": "not an address"}, "address"),
    ({"channel": "sms", "address": "12"}, "address"),
    ({"channel": "push", "address": "x"}, "channel"),
    ({"channel": "email"}, "address"),
    ({"channel": "email", "address": "a@example.com", "extra": 1}, "extra"),
])
def test_bad_input_is_refused_naming_the_field(app, operator, body, field):
    refused = app.post_json(URL, body, headers=operator, status=422).json["error"]
    assert field in refused["fields"]
    assert app.get(URL, headers=operator).json["suppressions"] == []


def test_a_bad_query_is_refused_naming_the_parameter(app, operator):
    assert "limit" in app.get(URL, {"limit": "0"}, headers=operator, status=400).json["error"]["message"]
    refused = app.get(URL, {"address": "not an address"}, headers=operator, status=422).json["error"]
    assert "address" in refused["fields"]


def test_hosts_and_anonymous_callers_are_refused(app, run_in_request, operator):
    host = bearer_for(app, "host@example.com")
    for method, path in (("GET", URL), ("POST", URL), ("POST", f"{URL}/lift")):
        body = {"channel": "email", "address": "ada@example.com"} if method == "POST" else None
        forbidden = app.request(path, method=method, headers=host, json=body, expect_errors=True)
        assert forbidden.status_int == 403 and forbidden.json["error"]["required"] == "platform.operate"
        assert app.request(path, method=method, json=body, expect_errors=True).status_int == 401
    assert app.get(URL, headers=operator).json["suppressions"] == [], "nothing was added"
