"""A Personal purchase refunded in full, or disputed, takes Personal back
from its event (and the event counts against the month's events again); a
dispute won gives both back. Through the real stripe SDK and the stand-in,
webhooks signed as Stripe signs them, retried and in every order."""
from __future__ import annotations

import datetime as dt
import itertools
import uuid

import pytest
from pyramid.scripting import prepare
from sqlalchemy import func, select

from guestguard.billing.services import events_to_buy
from guestguard.db import utcnow
from guestguard.testing import in_request

from .conftest import PLUGINS, stripe_settings
from .test_stripe_billing import EVENT, api, billing, deliver, guests, new_owner


@pytest.fixture
def app(make_app, stub):
    return make_app(stripe_settings(stub), plugins=PLUGINS)


def new_event(app, team, status=201) -> dict:
    answer = app.post_json("/api/v1/events", {"workspace_id": team["workspace"], **EVENT}, headers=team["ada"],
                           status=status)
    return answer.json.get("event", {})


def start_personal(app, team, event) -> str:
    link = app.post_json(api(team, "/checkout"), {"plan": "personal", "event_id": event["id"]},
                         headers=team["ada"]).json
    assert link["kind"] == "checkout"
    return link["url"].rsplit("/", 1)[1]


def pay(stub, session_id) -> tuple[dict, str]:
    """Pay the session at Stripe: its checkout.session.completed event and its charge."""
    completed = stub.complete(session_id)
    intent = stub.sessions[session_id]["payment_intent"]
    charge_id = next(c["id"] for c in stub.charges.values() if c.get("payment_intent") == intent)
    return completed, charge_id


def on_personal(app, team) -> list[str]:
    return [event["event_id"] for event in billing(app, team)["events"]]


def events_used(app, team) -> int:
    return billing(app, team)["usage"]["events"]["used"]


def audited(app, team, action) -> int:
    from guestguard.audit.models import AuditEvent

    return in_request(app.app.registry, lambda r: r.db.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.workspace_id == uuid.UUID(team["workspace"]), AuditEvent.action == action)))


def to_buy(app, team) -> list[str]:
    return in_request(app.app.registry, lambda r: [str(found.id) for found in events_to_buy(
        r.ctx, uuid.UUID(team["workspace"]))])


def bought(app, stub, email="ada@example.com") -> tuple[dict, dict, str]:
    """A Free workspace whose one event of the month is bought Personal."""
    team = new_owner(app, email)
    party = new_event(app, team)
    completed, charge_id = pay(stub, start_personal(app, team, party))
    deliver(app, stub, completed)
    assert (on_personal(app, team), events_used(app, team)) == ([party["id"]], 0)
    return team, party, charge_id


def test_a_full_refund_takes_personal_and_the_returned_event_back(app, stub):
    team, party, charge_id = bought(app, stub)
    headers = team["ada"]
    app.post_json(f"/api/v1/events/{party['id']}/guests", guests(40), headers=headers, status=201)
    # A partial refund leaves the purchase standing.
    deliver(app, stub, stub.refund(charge_id, 500))
    assert (on_personal(app, team), events_used(app, team)) == ([party["id"]], 0)
    app.post_json(f"/api/v1/events/{party['id']}/guests", guests(20, 40), headers=headers, status=201)
    refunded = stub.refund(charge_id)
    for event in (refunded, refunded, {**refunded, "id": refunded["id"] + "_again"}):  # retried, and said twice
        deliver(app, stub, event)
    assert on_personal(app, team) == [] and to_buy(app, team) == [party["id"]]
    assert events_used(app, team) == 1, "the event counts against the month's events again, once"
    over = app.post_json(f"/api/v1/events/{party['id']}/guests", guests(1, 60), headers=headers, status=402)
    assert (over.json["error"]["limit"], over.json["error"]["plan"]) == (50, "Free")
    app.patch_json(f"/api/v1/events/{party['id']}", {"theme_colour": "#6a1b9a"}, headers=headers, status=402)
    new_event(app, team, status=402)
    assert audited(app, team, "billing.event_plan_revoked") == 1
    # Nothing stays bought: the event can be bought again.
    assert start_personal(app, team, party)


def test_a_dispute_takes_personal_back_until_it_is_won(app, stub):
    team, party, charge_id = bought(app, stub)
    disputed = stub.dispute(charge_id)
    deliver(app, stub, disputed)
    assert (on_personal(app, team), events_used(app, team)) == ([], 1)
    app.patch_json(f"/api/v1/events/{party['id']}", {"theme_colour": "#6a1b9a"}, headers=team["ada"], status=402)
    won = stub.close_dispute(disputed["data"]["object"]["id"], won=True)
    for event in (won, disputed, won):  # the created event retried after the win changes nothing
        deliver(app, stub, event)
    assert (on_personal(app, team), events_used(app, team)) == ([party["id"]], 0)
    app.patch_json(f"/api/v1/events/{party['id']}", {"theme_colour": "#6a1b9a"}, headers=team["ada"])
    assert (audited(app, team, "billing.event_plan_revoked"), audited(app, team, "billing.event_plan_restored")) \
        == (1, 1)
    other, lost_party, other_charge = bought(app, stub, "bea@example.com")
    disputed = stub.dispute(other_charge)
    deliver(app, stub, disputed)
    deliver(app, stub, stub.close_dispute(disputed["data"]["object"]["id"], won=False))
    assert (on_personal(app, other), events_used(app, other), to_buy(app, other)) == ([], 1, [lost_party["id"]])


def test_refunding_one_of_two_payments_for_an_event_leaves_it_bought(app, stub):
    team = new_owner(app)
    party = new_event(app, team)
    first, second = start_personal(app, team, party), start_personal(app, team, party)
    (paid_first, charge_first), (paid_second, charge_second) = pay(stub, first), pay(stub, second)
    deliver(app, stub, paid_first)
    deliver(app, stub, paid_second)
    deliver(app, stub, stub.refund(charge_second))  # the payment made twice, given back
    assert (on_personal(app, team), events_used(app, team)) == ([party["id"]], 0)
    deliver(app, stub, stub.refund(charge_first))
    assert (on_personal(app, team), events_used(app, team)) == ([], 1)


def happenings(stub, charge_id, story: str) -> list[dict]:
    if story == "refunded":
        return [stub.refund(charge_id)]
    disputed = stub.dispute(charge_id)
    return [disputed, stub.close_dispute(disputed["data"]["object"]["id"], won=story == "won")]


@pytest.mark.parametrize("story, stands", [("refunded", False), ("won", True), ("lost", False)])
def test_webhooks_in_any_order_and_repeated_reach_the_same_state(app, stub, story, stands):
    for number in range(2 if story == "refunded" else 6):  # every order of the webhooks
        team = new_owner(app, f"owner{number}@example.com")
        party = new_event(app, team)
        completed, charge_id = pay(stub, start_personal(app, team, party))
        sequence = [completed, *happenings(stub, charge_id, story)]
        order = list(itertools.permutations(sequence))[number]
        for event in (*order, *order):
            deliver(app, stub, event)
        assert on_personal(app, team) == ([party["id"]] if stands else []), order
        assert events_used(app, team) == (0 if stands else 1), order
        assert audited(app, team, "billing.event_plan_revoked") <= 1


def test_a_refund_seen_while_stripe_is_down_changes_nothing_until_it_is_retried(app, stub):
    from guestguard.webhooks.models import InboxEntry
    from guestguard.webhooks.tasks import process_webhook

    team, party, charge_id = bought(app, stub)
    refunded = stub.refund(charge_id)
    stub.down = True
    deliver(app, stub, refunded)  # stored and answered 200; its processing fails
    stub.down = False
    entry = in_request(app.app.registry, lambda r: r.db.scalar(select(InboxEntry).where(
        InboxEntry.event_id == refunded["id"])))
    assert (entry.processed_at, entry.last_error.split(":")[0]) == (None, "BillingUnavailable")
    assert (on_personal(app, team), events_used(app, team)) == ([party["id"]], 0)
    # The retry's time comes: the worker processes the stored webhook again.
    in_request(app.app.registry, lambda r: r.db.execute(InboxEntry.__table__.update().where(
        InboxEntry.id == entry.id).values(next_attempt_at=utcnow() - dt.timedelta(seconds=1))))
    with prepare(registry=app.app.registry) as env:
        process_webhook(env["request"], entry.id)
    assert (on_personal(app, team), events_used(app, team)) == ([], 1)
    assert audited(app, team, "billing.event_plan_revoked") == 1
