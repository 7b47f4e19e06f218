"""Billing through Stripe, end to end: the real stripe SDK against the local
stand-in (``guestguard_stripe.testing``), webhooks signed as Stripe signs
them, stored in the inbox and applied by the worker (immediate in tests)."""
from __future__ import annotations

import datetime as dt
import time
import uuid

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import func, select

from guestguard.billing.models import DunningNotice, Entitlement
from guestguard.testing import DomainEvents, create_user, in_request, inbox, session_bearer, signed_in
from guestguard.webhooks.models import InboxEntry
from guestguard.workspaces.services import create_workspace

from .conftest import PLUGINS, stripe_settings

EVENT = {"name": "Midsummer Gala", "starts_at": "2030-06-21T19:00:00", "ends_at": "2030-06-21T23:30:00",
         "timezone": "Europe/London"}


@pytest.fixture
def listener():
    return DomainEvents()


@pytest.fixture
def app(make_app, stub, listener):
    return make_app(stripe_settings(stub), plugins=[*PLUGINS, ("events", listener)])


def new_owner(app, email="ada@example.com") -> dict:
    registry = app.app.registry

    def make(request):
        user = create_user(request, email, email.split("@")[0].title())
        return str(create_workspace(request.ctx, user, f"{email} team").id)

    workspace_id = in_request(registry, make)
    return {"workspace": workspace_id, "ada": session_bearer(registry, email), "email": email}


def api(team, tail=""):
    return f"/api/v1/workspaces/{team['workspace']}/billing{tail}"


def checkout(app, team, plan="pro") -> str:
    link = app.post_json(api(team, "/checkout"), {"plan": plan}, headers=team["ada"]).json
    assert link["kind"] == "checkout"
    return link["url"].rsplit("/", 1)[1]


def deliver(app, stub, event, status=200, **sign):
    body, header = stub.signed(event, **sign)
    return app.post("/webhooks/stripe", body, headers={"Content-Type": "application/json",
                                                       "Stripe-Signature": header}, status=status)


def deliver_all(app, stub, events):
    return [deliver(app, stub, event).json["stored"] for event in events]


def billing(app, team) -> dict:
    return app.get(api(team), headers=team["ada"]).json


def test_free_workspace_upgrades_through_checkout_and_webhooks(app, stub, listener):
    team = new_owner(app)
    app.post_json("/api/v1/events", {"workspace_id": team["workspace"], **EVENT}, headers=team["ada"], status=201)
    app.post_json("/api/v1/events", {"workspace_id": team["workspace"], **EVENT}, headers=team["ada"], status=402)
    session_id = checkout(app, team)
    session = stub.sessions[session_id]
    assert (session["mode"], session["trial_days"], session["customer_email"]) == ("subscription", 14, team["email"])
    assert session["metadata"]["workspace_id"] == team["workspace"]
    before = len(stub.events)
    stub.complete(session_id)
    assert deliver_all(app, stub, stub.events[before:]) == [True, True, True]
    body = billing(app, team)
    assert (body["plan"], body["status"], body["usage"]["events"]["limit"]) == ("pro", "trialing", 10)
    assert body["trial_end"] is not None
    app.post_json("/api/v1/events", {"workspace_id": team["workspace"], **EVENT}, headers=team["ada"], status=201)
    # The same deliveries again: stored once, applied once.
    assert deliver_all(app, stub, stub.events[before:]) == [False, False, False]
    assert len(listener.named("billing.subscription_changed")) == 1
    # Subscribed now: checkout sends the owner to the portal, not to a second subscription.
    again = app.post_json(api(team, "/checkout"), {"plan": "business"}, headers=team["ada"]).json
    assert again["kind"] == "portal" and again["url"].endswith(stub.sessions[session_id]["customer"])


def test_the_success_page_reads_the_session_back_from_stripe(app, stub):
    team = new_owner(app)
    session_id = checkout(app, team)
    browser = signed_in(app, lambda f, r=None: in_request(app.app.registry, f), "ada@example.com")
    success = f"/workspaces/{team['workspace']}/billing/success?session_id={session_id}"
    browser.get(success + "&payment_status=paid", status=303)
    assert billing(app, team)["plan"] == "free", "an unpaid session applies nothing, whatever the query says"
    stub.complete(session_id)
    page = browser.get(success, status=303).follow()
    assert "your plan is active" in page.text
    assert billing(app, team)["plan"] == "pro"
    other = new_owner(app, "bea@example.com")
    foreign = checkout(app, other)
    stub.complete(foreign)
    browser.get(f"/workspaces/{team['workspace']}/billing/success?session_id={foreign}", status=404)
    browser.get(f"/workspaces/{team['workspace']}/billing/success?session_id=cs_999999", status=404)


def guests(n, start=0):
    return [{"name": f"Guest {i}", "email": f"guest{i}@example.com"} for i in range(start, start + n)]


def test_personal_is_paid_once_for_one_event(app, stub, listener):
    team = new_owner(app)
    headers = team["ada"]
    party = app.post_json("/api/v1/events", {"workspace_id": team["workspace"], **EVENT}, headers=headers,
                          status=201).json["event"]
    app.post_json("/api/v1/events", {"workspace_id": team["workspace"], **EVENT}, headers=headers, status=402)
    # Personal is bought for an event of this workspace, named.
    missing = app.post_json(api(team, "/checkout"), {"plan": "personal"}, headers=headers, status=422).json
    assert "event_id" in missing["error"]["fields"]
    other = new_owner(app, "bea@example.com")
    foreign = app.post_json("/api/v1/events", {"workspace_id": other["workspace"], **EVENT}, headers=other["ada"],
                            status=201).json["event"]
    refused = app.post_json(api(team, "/checkout"), {"plan": "personal", "event_id": foreign["id"]},
                            headers=headers, status=422).json["error"]
    assert refused["fields"] == {"event_id": "That is not an event of this workspace."}
    link = app.post_json(api(team, "/checkout"), {"plan": "personal", "event_id": party["id"]},
                         headers=headers).json
    session_id = link["url"].rsplit("/", 1)[1]
    session = stub.sessions[session_id]
    assert (session["mode"], session["metadata"]["event_id"], session["trial_days"]) == ("payment", party["id"], 0)
    completed = stub.complete(session_id)
    deliver(app, stub, completed)
    deliver(app, stub, {**completed, "id": "evt_other_delivery"})  # another event for the same payment
    body = billing(app, team)
    assert body["plan"] == "free", "the workspace stays on its plan: Personal belongs to the event"
    assert body["events"] == [{"event_id": party["id"], "name": "Midsummer Gala", "plan": "personal",
                               "guests": {"used": 0, "limit": 500}, "sms": {"used": 0, "limit": 100}}]
    assert len(listener.named("billing.subscription_changed")) == 1
    # The event has Personal's guests and branding; it no longer counts against Free's event.
    app.post_json(f"/api/v1/events/{party['id']}/guests", guests(60), headers=headers, status=201)
    app.patch_json(f"/api/v1/events/{party['id']}", {"theme_colour": "#6a1b9a"}, headers=headers)
    second = app.post_json("/api/v1/events", {"workspace_id": team["workspace"], **EVENT}, headers=headers,
                           status=201).json["event"]
    over = app.post_json(f"/api/v1/events/{second['id']}/guests", guests(51), headers=headers, status=402)
    assert (over.json["error"]["limit"], over.json["error"]["plan"]) == (50, "Free")
    app.patch_json(f"/api/v1/events/{second['id']}", {"theme_colour": "#6a1b9a"}, headers=headers, status=402)
    assert billing(app, team)["usage"]["events"] == {"used": 1, "limit": 1}
    # Bought already: nothing more to buy for it.
    again = app.post_json(api(team, "/checkout"), {"plan": "personal", "event_id": party["id"]}, headers=headers,
                          status=409).json["error"]
    assert again["code"] == "already_paid"


def test_the_billing_page_buys_personal_for_a_chosen_event(make_app, stub):
    app = make_app(stripe_settings(stub, **{"billing.plans.free": "events=2 guests=50 sms=0 billing=free"}),
                   plugins=PLUGINS)
    team = new_owner(app)
    party = app.post_json("/api/v1/events", {"workspace_id": team["workspace"], **EVENT}, headers=team["ada"],
                          status=201).json["event"]
    browser = signed_in(app, lambda f, r=None: in_request(app.app.registry, f), "ada@example.com")
    second = app.post_json("/api/v1/events", {"workspace_id": team["workspace"], **EVENT, "name": "Later",
                                              "starts_at": "2030-07-21T19:00:00", "ends_at": None},
                           headers=team["ada"], status=201).json["event"]
    # The 402 prompt of the event that is full leads here with that event chosen.
    page = browser.get(f"/workspaces/{team['workspace']}/billing?event_id={party['id']}")
    form = next(f for f in page.forms.values() if "event_id" in f.fields)
    assert form["event_id"].value == party["id"]
    assert [value for value, _, _ in form["event_id"].options] == [party["id"], second["id"]]
    paying = form.submit(status=303)
    session_id = paying.location.rsplit("/", 1)[1]
    stub.complete(session_id)
    done = browser.get(f"/workspaces/{team['workspace']}/billing/success?session_id={session_id}",
                       status=303).follow()
    assert "the event has its own plan now" in done.text
    listed = done.html.find(id="event-plans-title").find_parent("section").get_text(" ", strip=True)
    assert "Midsummer Gala" in listed and "0 of 500 guests" in listed
    left = next(f for f in done.forms.values() if "event_id" in f.fields)
    assert [value for value, _, _ in left["event_id"].options] == [second["id"]]


@pytest.mark.parametrize("change", ["forged", "stale", "missing", "unknown_secret"])
def test_a_webhook_that_is_not_genuine_and_fresh_is_refused_and_not_stored(app, stub, change):
    event = {"id": "evt_forged", "object": "event", "type": "customer.subscription.updated",
             "data": {"object": {"id": "sub_1"}}}
    body, header = stub.signed(event)
    if change == "forged":
        body = body.replace("sub_1", "sub_2")
    elif change == "stale":
        body, header = stub.signed(event, timestamp=int(time.time()) - 301)
    elif change == "unknown_secret":
        body, header = stub.signed(event, secret="whsec_someone_else")
    headers = {"Content-Type": "application/json"}
    if change != "missing":
        headers["Stripe-Signature"] = header
    refused = app.post("/webhooks/stripe", body, headers=headers, status=400).json["error"]
    assert refused["code"] == "invalid_signature"
    count = in_request(app.app.registry, lambda r: r.db.scalar(select(func.count()).select_from(InboxEntry)))
    assert count == 0


def test_both_secrets_are_accepted_during_a_rotation(make_app, stub):
    app = make_app(stripe_settings(stub, **{"stripe.webhook_secrets": f"whsec_next,{stub.secret}"}), plugins=PLUGINS)
    event = {"id": "evt_rotation", "object": "event", "type": "ping", "data": {"object": {}}}
    assert deliver(app, stub, event).json == {"stored": True}
    assert deliver(app, stub, {**event, "id": "evt_rotation_2"}, secret="whsec_next").json == {"stored": True}


def test_payment_failure_sends_dunning_once_per_attempt_then_recovers(app, stub):
    team = new_owner(app)
    session_id = checkout(app, team)
    stub.complete(session_id)
    browser = signed_in(app, lambda f, r=None: in_request(app.app.registry, f), "ada@example.com")
    browser.get(f"/workspaces/{team['workspace']}/billing/success?session_id={session_id}", status=303)
    subscription_id = stub.sessions[session_id]["subscription"]
    failed = stub.invoice(subscription_id, paid=False)
    deliver(app, stub, failed)
    deliver(app, stub, {**failed, "id": failed["id"] + "_again"})  # Stripe repeating the same attempt
    assert billing(app, team)["status"] == "past_due"
    assert billing(app, team)["plan"] == "pro", "the plan stays through the grace period"
    mails = [m for m in inbox(app, team["email"]) if "payment did not go through" in m.subject]
    assert len(mails) == 1 and "29.00 EUR" in mails[0].text
    second = stub.invoice(subscription_id, paid=False, invoice_id=failed["data"]["object"]["id"])
    deliver(app, stub, second)
    assert len([m for m in inbox(app, team["email"]) if "payment did not go through" in m.subject]) == 2
    deliver(app, stub, stub.invoice(subscription_id, paid=True, invoice_id=failed["data"]["object"]["id"]))
    body = billing(app, team)
    assert (body["plan"], body["status"]) == ("pro", "active")


def test_cancel_at_period_end_keeps_access_and_can_be_undone(app, stub):
    team = new_owner(app)
    session_id = checkout(app, team)
    for event in [stub.complete(session_id)]:
        deliver(app, stub, event)
    body = app.post_json(api(team, "/cancel"), {"cancel": True}, headers=team["ada"]).json["billing"]
    assert (body["plan"], body["cancel_at_period_end"]) == ("pro", True)
    subscription_id = stub.sessions[session_id]["subscription"]
    assert stub.subscriptions[subscription_id]["cancel_at_period_end"] is True
    body = app.post_json(api(team, "/cancel"), {"cancel": False}, headers=team["ada"]).json["billing"]
    assert body["cancel_at_period_end"] is False
    # The period ends with the cancellation in force: Stripe deletes the subscription.
    app.post_json(api(team, "/cancel"), {"cancel": True}, headers=team["ada"])
    deliver(app, stub, stub.set_status(subscription_id, "canceled"))
    assert billing(app, team)["plan"] == "free"


def test_a_plan_change_shows_the_proration_first(app, stub):
    team = new_owner(app)
    deliver(app, stub, stub.complete(checkout(app, team)))
    preview = app.post_json(api(team, "/preview"), {"plan": "business"}, headers=team["ada"]).json
    assert preview == {"plan": "business", "direction": "upgrade", "amount_due": 2000, "currency": "eur"}
    assert billing(app, team)["plan"] == "pro", "a preview changes nothing"
    changed = app.post_json(api(team, "/plan"), {"plan": "business"}, headers=team["ada"]).json["billing"]
    assert changed["plan"] == "business"


@pytest.mark.parametrize("fault", ["down", "slow"])
def test_stripe_down_or_slow_on_checkout_is_a_clear_503_with_nothing_written(app, stub, fault):
    team = new_owner(app)
    if fault == "down":
        stub.down = True
    else:
        stub.delay = 3  # past stripe.timeout (2 s)
    refused = app.post_json(api(team, "/checkout"), {"plan": "pro"}, headers=team["ada"], status=503).json["error"]
    assert refused["code"] == "billing_unavailable"
    count = in_request(app.app.registry, lambda r: r.db.scalar(select(func.count()).select_from(Entitlement)))
    assert count == 0


def test_reconciliation_repairs_a_snapshot_after_a_dropped_webhook(app, stub):
    from pyramid.scripting import prepare

    from guestguard.billing.tasks import reconcile_billing

    team = new_owner(app)
    session_id = checkout(app, team)
    deliver(app, stub, stub.complete(session_id))
    stub.set_status(stub.sessions[session_id]["subscription"], "canceled")  # its webhook is lost
    assert billing(app, team)["plan"] == "pro"
    with prepare(registry=app.app.registry) as env:
        assert reconcile_billing(env["request"]) == 1
    assert billing(app, team)["plan"] == "free"
    audited = in_request(app.app.registry, lambda r: r.db.scalar(select(func.count()).select_from(
        __import__("guestguard.audit.models", fromlist=["AuditEvent"]).AuditEvent).where(
        __import__("guestguard.audit.models", fromlist=["AuditEvent"]).AuditEvent.action == "billing.reconciled")))
    assert audited == 1


def test_a_webhook_for_a_deleted_workspace_is_answered_and_noted(app, stub):
    from guestguard.workspaces.models import Workspace

    team = new_owner(app)
    session_id = checkout(app, team)
    event = stub.complete(session_id)
    in_request(app.app.registry, lambda r: setattr(r.db.get(Workspace, uuid.UUID(team["workspace"])), "deleted_at",
                                                   dt.datetime.now(dt.UTC)))
    deliver(app, stub, event)
    entry = in_request(app.app.registry, lambda r: r.db.scalar(select(InboxEntry.note).where(
        InboxEntry.event_id == event["id"])))
    assert "no longer exists" in entry


def test_an_unknown_price_changes_no_plan(app, stub):
    team = new_owner(app)
    session_id = checkout(app, team)
    stub.sessions[session_id]["price"] = "price_nobody_sells"
    stub.complete(session_id)
    subscription = stub.subscriptions[stub.sessions[session_id]["subscription"]]
    deliver(app, stub, stub.set_status(subscription["id"], "active"))
    assert billing(app, team)["plan"] == "free"


SCENARIO = ("complete", "fail", "fail_again", "pay", "cancel_flag")


@pytest.mark.one_pass("sqlite")
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.permutations(range(9)), repeats=st.lists(st.integers(0, 8), max_size=4))
def test_shuffled_and_repeated_webhooks_reach_the_same_final_state(make_app, stub_server, order, repeats):
    stub = stub_server
    app = make_app(stripe_settings(stub), plugins=PLUGINS)
    team = new_owner(app, f"owner-{uuid.uuid4().hex[:8]}@example.com")
    session_id = checkout(app, team)
    before = len(stub.events)
    stub.complete(session_id)
    subscription_id = stub.sessions[session_id]["subscription"]
    failed = stub.invoice(subscription_id, paid=False)
    invoice_id = failed["data"]["object"]["id"]
    stub.invoice(subscription_id, paid=False, invoice_id=invoice_id)
    stub.invoice(subscription_id, paid=True, invoice_id=invoice_id)
    events = [e for e in stub.events[before:] if e["type"] != "customer.created"]
    events = events[:9]
    sent = [events[i] for i in order if i < len(events)] + [events[i] for i in repeats if i < len(events)]
    for event in sent:
        deliver(app, stub, event)
    body = billing(app, team)
    expected = stub.subscriptions[subscription_id]
    assert (body["plan"], body["status"], body["cancel_at_period_end"]) == (
        "pro", expected["status"], expected["cancel_at_period_end"])
    notices = in_request(app.app.registry, lambda r: sorted(r.db.execute(
        select(DunningNotice.invoice_id, DunningNotice.attempt).where(
            DunningNotice.workspace_id == uuid.UUID(team["workspace"]))).all()))
    # The invoice is paid by the time any of its failures is processed: nobody is dunned.
    assert notices == []


def notices(app, email) -> list[str]:
    """Subjects of the billing notices ``email`` got, oldest first."""
    return [m.subject for m in reversed(inbox(app, email)) if "payment did not go through" not in m.subject]


def mail(app, email, subject):
    return next(m for m in inbox(app, email) if m.subject == subject)


def test_trial_ending_refunds_and_disputes_email_the_owners_once_each(app, stub):
    from guestguard.audit.models import AuditEvent

    team = new_owner(app)
    session_id = checkout(app, team)
    deliver(app, stub, stub.complete(session_id))
    subscription = stub.subscriptions[stub.sessions[session_id]["subscription"]]
    ending = stub.trial_will_end(subscription["id"])
    assert [deliver(app, stub, ending).json["stored"] for _ in range(2)] == [True, False]  # Stripe retrying
    deliver(app, stub, {**ending, "id": ending["id"] + "_b"})  # another event saying the same
    day = dt.datetime.fromtimestamp(subscription["trial_end"], dt.UTC).strftime("%-d %B %Y")
    assert notices(app, team["email"]) == [f"Your GuestGuard trial ends on {day}"]
    trial_mail = mail(app, team["email"], f"Your GuestGuard trial ends on {day}")
    assert "charged for the first period" in trial_mail.text and "/billing" in trial_mail.text
    action = stub.invoice(subscription["id"], paid=False)["data"]["object"]
    deliver(app, stub, {"id": "evt_action", "object": "event", "type": "invoice.payment_action_required",
                        "data": {"object": action}})
    paid = stub.invoice(subscription["id"], paid=True)
    deliver(app, stub, paid)
    charge_id = stub.invoices[paid["data"]["object"]["id"]]["charge"]
    partial = stub.refund(charge_id, 900)
    deliver(app, stub, partial)
    deliver(app, stub, partial)
    deliver(app, stub, stub.refund(charge_id))
    disputed = stub.dispute(charge_id)
    for event in (disputed, disputed, {**disputed, "id": disputed["id"] + "_b"}):
        deliver(app, stub, event)
    # A trial notice arriving after the trial turned into a paid plan tells nobody.
    deliver(app, stub, {**ending, "id": ending["id"] + "_late"})
    assert notices(app, team["email"]) == [
        f"Your GuestGuard trial ends on {day}", "A refund of 9.00 EUR from GuestGuard",
        "A refund of 29.00 EUR from GuestGuard", "A payment to GuestGuard was disputed"]
    assert "9.00 EUR of a payment of 29.00 EUR" in mail(app, team["email"], "A refund of 9.00 EUR from GuestGuard").text
    assert "the whole payment" in mail(app, team["email"], "A refund of 29.00 EUR from GuestGuard").text
    assert "reason given: fraudulent" in mail(app, team["email"], "A payment to GuestGuard was disputed").text
    actions = in_request(app.app.registry, lambda r: sorted(set(r.db.scalars(select(AuditEvent.action).where(
        AuditEvent.workspace_id == uuid.UUID(team["workspace"]), AuditEvent.action.in_((
            "billing.trial_ending", "billing.payment_action_required", "billing.refunded",
            "billing.dispute_created", "billing.trial_ending_notice_sent", "billing.refunded_notice_sent",
            "billing.dispute_notice_sent")))))))
    assert actions == ["billing.dispute_created", "billing.dispute_notice_sent", "billing.payment_action_required",
                       "billing.refunded", "billing.refunded_notice_sent", "billing.trial_ending",
                       "billing.trial_ending_notice_sent"]
    stranger = stub._charge("cus_nobody", 500, "eur")
    deliver(app, stub, stub.refund(stranger["id"]))
    notes = in_request(app.app.registry, lambda r: list(r.db.scalars(select(InboxEntry.note).where(
        InboxEntry.event_id == stub.events[-1]["id"]))))
    assert notes == ["charge.refunded: no workspace has this customer"]


def test_a_notice_for_a_charge_stripe_does_not_have_sends_nothing(app, stub):
    team = new_owner(app)
    deliver(app, stub, stub.complete(checkout(app, team)))
    deliver(app, stub, {"id": "evt_forged_refund", "object": "event", "type": "charge.refunded",
                        "data": {"object": {"id": "ch_999999", "object": "charge", "amount_refunded": 100,
                                            "customer": stub.sessions[next(iter(stub.sessions))]["customer"]}}})
    assert notices(app, team["email"]) == []
