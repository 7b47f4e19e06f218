"""The guard: the access log, the access rules and their flags, the host's
review, the activity feed, and retention, through the real application.

Clients are told apart the way production tells them: the test app trusts
the proxy at 10.0.0.1, whose X-Forwarded-For names each client."""
import datetime as dt
import logging
import uuid

import pytest
import time_machine
from sqlalchemy import func, insert, select

from guestguard.activity.models import Activity, StreamTicket
from guestguard.activity.stream import purge_tickets
from guestguard.events.models import Guest
from guestguard.guard.access import purge
from guestguard.guard.flags import HISTORY_LIMIT, history_of
from guestguard.guard.models import AccessEntry, AccessTally, Flag
from guestguard.plugins import Finding, hookimpl
from guestguard.tasks import run_task_now
from guestguard.testing import (
    ANDROID,
    IPHONE,
    LINUX,
    MAC,
    WINDOWS,
    add_guest,
    drain,
    event_host,
    issue,
    scalar,
    session_bearer,
)

EVENT = {"name": "Midsummer Gala", "status": "published", "starts_at": "2030-06-21T19:00:00",
         "timezone": "Europe/London", "default_plus_ones": 1}
PROXY = "10.0.0.1"
SLACK = "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"
IMESSAGE = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_1) AppleWebKit/601.2.4 (KHTML, like Gecko) "
            "Version/9.0.1 Safari/601.2.4 facebookexternalhit/1.1 Facebot Twitterbot/1.0")


class BrokenRule:
    name = "broken"

    def evaluate(self, history):
        raise RuntimeError("this rule is broken")


class EveryUse:
    """A plugin rule that finds something in every use: proves plugin rules
    run, get the history, and become flags."""

    name = "every_use"

    def __init__(self):
        self.histories = []

    def evaluate(self, history):
        _ = history.first_open  # read while the task's transaction is open
        self.histories.append(history)
        return Finding(score=5, evidence=f"seen {len(history.recent) + 1} uses", details={"n": 1})


class RulePlugin:
    def __init__(self, *rules):
        self.rules = list(rules)

    @hookimpl
    def register_access_rules(self, settings):
        return self.rules


@pytest.fixture
def app(make_app, listener):
    return make_app({"app.trusted_proxies": PROXY}, plugins=[("listener", listener)])


@pytest.fixture
def host(app, run_in_request):
    return event_host(app, run_in_request, EVENT)


def visit(app, token, ip, agent, path="/access/{}", status=200, **kwargs):
    environ = {"REMOTE_ADDR": PROXY}
    headers = {"X-Forwarded-For": ip, "User-Agent": agent}
    return app.get(path.format(token), headers=headers, extra_environ=environ, status=status, **kwargs)


def answer(app, token, ip, agent, response="yes", status=303, plus_ones=0):
    return app.post(f"/rsvp/{token}", {"response": response, "plus_ones": str(plus_ones)}, status=status,
                    headers={"X-Forwarded-For": ip, "User-Agent": agent}, extra_environ={"REMOTE_ADDR": PROXY})


def flags_of(app, host, **query):
    return app.get(f"{host['url']}/flags", params=query, headers=host["ada"]).json["flags"]


@pytest.fixture
def guest_link(app, host):
    guest = add_guest(app, host)
    return guest, issue(app, host, guest)["token"]


# --- the access log ------------------------------------------------------------------


def test_every_use_is_logged_with_address_device_and_outcome(app, host, guest_link, run_in_request):
    guest, token = guest_link
    visit(app, token, "203.0.113.7", IPHONE)
    visit(app, token, "203.0.113.7", IPHONE, path="/access/{}/event.ics")
    answer(app, token, "203.0.113.7", IPHONE)
    app.get(f"/api/v1/access/{token}", headers={"X-Forwarded-For": "203.0.113.7", "User-Agent": IPHONE},
            extra_environ={"REMOTE_ADDR": PROXY})
    entries = run_in_request(lambda r: list(r.db.scalars(select(AccessEntry).order_by(AccessEntry.at))),
                             app.app.registry)
    assert [(e.kind, e.outcome) for e in entries] == [("view", "ok"), ("calendar", "ok"), ("rsvp", "ok"),
                                                      ("view", "ok")]
    first = entries[0]
    assert (first.ip, first.network, first.device, first.automated) == (
        "203.0.113.7", "203.0.113.0/24", "Mobile Safari on iOS", False)
    assert first.user_agent == IPHONE
    assert str(first.guest_id) == guest["id"] and str(first.event_id) == host["event"]["id"]
    # The host reads the same through the API.
    body = app.get(f"{host['url']}/guests/{guest['id']}/access", headers=host["ada"]).json
    assert body["totals"] == {"view": 2, "rsvp": 1, "calendar": 1, "check_in": 0, "unusable": 0, "automated": 0}
    assert body["uses"][0]["device"] == "Mobile Safari on iOS"


def test_unusable_tokens_are_logged_with_their_outcome(app, host, guest_link, run_in_request):
    guest, old = guest_link
    issue(app, host, guest)  # replaces the link: the old one is revoked
    visit(app, old, "198.51.100.9", WINDOWS, status=404)
    visit(app, "B" * 43, "198.51.100.9", WINDOWS, status=404)
    app.delete(host["url"], headers=host["ada"], status=204)
    fresh = scalar(app, run_in_request, select(func.count()).select_from(AccessEntry))
    assert fresh == 2
    outcomes = run_in_request(lambda r: [(e.outcome, e.guest_id is not None) for e in r.db.scalars(
        select(AccessEntry).order_by(AccessEntry.at))], app.app.registry)
    assert outcomes == [("revoked", True), ("unknown", False)]


def test_a_deleted_events_link_has_expired(app, host, guest_link, run_in_request):
    guest, token = guest_link
    app.delete(host["url"], headers=host["ada"], status=204)
    visit(app, token, "198.51.100.9", WINDOWS, status=404)
    assert scalar(app, run_in_request, select(AccessEntry.outcome)) == "expired"


def test_too_many_unusable_links_from_one_address_are_refused(app, host, run_in_request):
    limit = 30  # ratelimit.invalid_link default: 30/hour
    for n in range(limit):
        visit(app, f"{n:02d}" + "C" * 41, "192.0.2.50", WINDOWS, status=404)
    visit(app, "D" * 43, "192.0.2.50", WINDOWS, status=429)
    visit(app, "D" * 43, "192.0.2.51", WINDOWS, status=404)  # another client is not affected
    assert scalar(app, run_in_request, select(func.count()).select_from(AccessEntry)) == limit + 1


def test_the_guard_can_be_switched_off(make_app, run_in_request):
    app = make_app({"app.trusted_proxies": PROXY, "guard.enabled": "false"})
    host = event_host(app, run_in_request, EVENT)
    guest = add_guest(app, host)
    token = issue(app, host, guest)["token"]
    for n in range(6):
        visit(app, token, f"203.0.{n}.1", WINDOWS)
    assert scalar(app, run_in_request, select(func.count()).select_from(AccessEntry)) == 0
    assert scalar(app, run_in_request, select(func.count()).select_from(Flag)) == 0


# --- the rules ---------------------------------------------------------------------------


def raised(rule: str) -> float:
    """guard_flags_raised_total for ``rule`` (this process)."""
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("guard_flags_raised_total", {"rule": rule}) or 0.0


def test_a_link_used_from_many_networks_and_devices_is_flagged_with_its_evidence(app, host, guest_link, listener):
    guest, token = guest_link
    counted = {rule: raised(rule) for rule in ("networks", "devices")}
    clients = [("203.0.113.5", IPHONE), ("198.51.100.20", WINDOWS), ("192.0.2.33", ANDROID),
               ("100.64.7.1", LINUX), ("172.16.9.9", MAC)]
    for ip, agent in clients:
        page = visit(app, token, ip, agent)
        assert "Grace Hopper" in page.text and "flag" not in page.text.lower(), "the guest sees nothing"
    flags = {flag["rule"]: flag for flag in flags_of(app, host)}
    assert set(flags) == {"networks", "devices"}
    networks = flags["networks"]
    assert networks["guest_id"] == guest["id"] and networks["status"] == "open"
    assert networks["evidence"].startswith("opened from 5 different networks within a minute, on 5 devices")
    # Addresses and user agents stay in the details, out of the words for the host.
    assert "203.0.113" not in networks["evidence"] and "Mozilla" not in networks["evidence"]
    assert networks["score"] == 70, "45 at the first network over 3, 15 more for the next, 10 for several devices"
    assert networks["details"]["networks"][0] == "203.0.113.0/24"
    assert networks["details"]["uses"][0]["ip"] == "203.0.113.5"
    assert networks["details"]["advice"].startswith("Ask the guest")
    devices = flags["devices"]
    assert devices["evidence"].startswith("opened by 5 different people within a minute, on an iPhone (iOS 17), ")
    assert "Chrome on Windows" in devices["evidence"]
    # One open flag per rule: later findings strengthen it instead of piling up.
    assert len(flags_of(app, host)) == 2
    flagged = listener.named("access.flagged")
    assert [event.data["rule"] for event in flagged] == ["devices", "networks"]
    assert flagged[0].data["guest_id"] == guest["id"] and "evidence" in flagged[0].data
    assert app.get(f"{host['url']}/guests/{guest['id']}", headers=host["ada"]).json["guest"]["open_flags"] == 2
    assert {rule: raised(rule) - before for rule, before in counted.items()} == {"networks": 1, "devices": 1}, \
        "each new flag counted once, not each time it was made stronger"


def test_a_guest_on_a_phone_and_a_laptop_at_home_is_not_flagged(app, host, guest_link, listener):
    guest, token = guest_link
    home_v4, mobile = "81.2.69.160", "148.252.1.10"
    visit(app, token, home_v4, IPHONE)          # the phone on home wifi
    visit(app, token, mobile, IPHONE)           # the same phone on the train
    visit(app, token, "81.2.69.161", WINDOWS)  # the laptop at home (the router's other address)
    visit(app, token, "2001:db8:1:2::10", WINDOWS)
    visit(app, token, "2001:db8:1:3::99", IPHONE)  # IPv6 addresses of the same home /48
    answer(app, token, "81.2.69.160", WINDOWS)  # answers from the laptop, at home
    visit(app, token, home_v4, IPHONE)
    assert flags_of(app, host) == []
    assert listener.named("access.flagged") == []
    assert listener.named("invitation.opened"), "the guest's first open is announced"


def test_an_answer_with_plus_ones_from_another_party_is_flagged(app, host, guest_link):
    guest, token = guest_link
    visit(app, token, "81.2.69.160", IPHONE)
    answer(app, token, "198.51.100.20", LINUX, plus_ones=1)
    (flag,) = flags_of(app, host)
    assert flag["rule"] == "rsvp_device" and flag["score"] == 60
    assert flag["evidence"] == ("answered with 1 plus-one on Firefox on Linux from an unknown network; the "
                                "invitation was first opened on an iPhone (iOS 17) from an unknown network")
    assert flag["details"]["answer_network"] == "198.51.100.0/24" and flag["details"]["plus_ones"] == 1


def test_an_answer_from_the_guests_own_laptop_or_without_plus_ones_is_not_flagged(app, host, guest_link):
    guest, token = guest_link
    visit(app, token, "81.2.69.160", IPHONE)
    answer(app, token, "198.51.100.20", LINUX)  # on the laptop at work, bringing nobody
    answer(app, token, "81.2.69.7", WINDOWS, plus_ones=1)  # at home, the first open's household
    assert flags_of(app, host) == []


def test_using_a_replaced_link_is_flagged(app, host, guest_link):
    guest, old = guest_link
    issue(app, host, guest)
    visit(app, old, "198.51.100.20", WINDOWS, status=404)
    (flag,) = flags_of(app, host)
    assert flag["rule"] == "revoked_link" and flag["guest_id"] == guest["id"]
    assert flag["evidence"].startswith("the old link was opened a minute after it was replaced by someone who "
                                       "had not used it before, on Chrome on Windows")
    assert flag["details"]["network"] == "198.51.100.0/24"


def test_the_guest_clicking_an_old_email_on_their_own_phone_is_not_flagged(app, host, guest_link):
    guest, old = guest_link
    visit(app, old, "81.2.69.160", IPHONE)
    issue(app, host, guest)
    visit(app, old, "148.252.1.10", IPHONE, status=404)  # the same phone, now on mobile data
    assert flags_of(app, host) == []


def test_a_burst_of_opens_by_several_people_is_flagged_and_one_reloading_is_not(app, host, guest_link):
    guest, token = guest_link
    for _ in range(11):
        visit(app, token, "81.2.69.160", IPHONE)  # the guest reloading while deciding
    assert flags_of(app, host) == []
    visit(app, token, "198.51.100.20", WINDOWS)
    (flag,) = flags_of(app, host)
    assert flag["rule"] == "burst" and flag["evidence"].startswith("opened 12 times within ")
    assert flag["evidence"].endswith("by 2 different people")


def test_a_chat_preview_is_flagged_and_is_no_open(app, host, guest_link, run_in_request):
    guest, token = guest_link
    visit(app, token, "54.1.2.3", SLACK)
    (flag,) = flags_of(app, host)
    assert flag["rule"] == "link_preview"
    assert flag["evidence"].startswith("Slack fetched a preview of the link")
    assert scalar(app, run_in_request, select(Guest.opened_at)) is None, "a preview is not the guest opening it"


def test_messages_previewing_a_text_message_is_not_flagged(app, host, guest_link):
    guest, token = guest_link
    visit(app, token, "17.1.2.3", IMESSAGE)
    assert flags_of(app, host) == []


def test_a_failing_rule_plugin_breaks_neither_the_page_nor_the_other_rules(make_app, run_in_request, caplog):
    every = EveryUse()
    app = make_app({"app.trusted_proxies": PROXY}, plugins=[("rules", RulePlugin(BrokenRule(), every))])
    host = event_host(app, run_in_request, EVENT)
    guest = add_guest(app, host)
    token = issue(app, host, guest)["token"]
    with caplog.at_level(logging.ERROR, logger="guestguard"):
        for n in range(5):
            assert "Grace Hopper" in visit(app, token, f"203.0.{n}.1", WINDOWS).text
    assert "access rule broken failed" in caplog.text and "this rule is broken" in caplog.text
    rules = sorted(flag["rule"] for flag in flags_of(app, host))
    assert rules == ["every_use", "networks"], "the built-in and the plugin rule still ran"
    last = every.histories[-1]
    assert len(last.recent) == 4 and last.use.network == "203.0.4.0/24"
    assert last.first_open is not None and last.first_open.network == "203.0.0.0/24"


def test_a_link_used_more_often_than_the_rules_see_is_read_no_further_than_they_see(make_app, run_in_request):
    """The rules see a use's latest HISTORY_LIMIT predecessors in the
    window; the history read for them stops there too, so a link opened
    thousands of times costs no more to judge than one opened a thousand."""
    every = EveryUse()
    app = make_app({"app.trusted_proxies": PROXY}, plugins=[("rules", RulePlugin(every))])
    host = event_host(app, run_in_request, EVENT)
    guest = add_guest(app, host)
    token = issue(app, host, guest)["token"]
    visit(app, token, "203.0.113.7", WINDOWS)
    first = every.histories[-1].use

    def judged_earlier(request):
        entry = request.db.get(AccessEntry, first.id)
        rows = [{"id": uuid.uuid4(), "link_id": entry.link_id, "guest_id": entry.guest_id,
                 "workspace_id": entry.workspace_id, "event_id": entry.event_id,
                 "at": entry.at - dt.timedelta(minutes=30) + dt.timedelta(seconds=n), "kind": entry.kind,
                 "outcome": entry.outcome, "ip": entry.ip, "network": entry.network, "user_agent": entry.user_agent,
                 "device": entry.device, "evaluated_at": entry.at} for n in range(HISTORY_LIMIT + 150)]
        request.db.execute(insert(AccessEntry), rows)
        return [row["id"] for row in rows], entry.link_id

    earlier, link_id = run_in_request(judged_earlier)
    visit(app, token, "203.0.113.7", WINDOWS)
    last = every.histories[-1]
    assert [use.id for use in last.recent] == [*earlier, first.id][-HISTORY_LIMIT:]
    window = app.app.registry["guard.history_window"]
    read = run_in_request(lambda request: history_of(request.db, link_id, last.use.at, last.use.at, window))
    assert [row.id for row in read] == [*earlier, first.id, last.use.id][-HISTORY_LIMIT - 1:]


def test_rules_can_be_switched_off_by_name_and_a_typo_stops_startup(make_app, run_in_request):
    app = make_app({"app.trusted_proxies": PROXY, "guard.rules_disabled": "networks, devices"})
    host = event_host(app, run_in_request, EVENT)
    guest = add_guest(app, host)
    token = issue(app, host, guest)["token"]
    for n in range(5):
        visit(app, token, f"203.0.{n}.1", [IPHONE, WINDOWS, ANDROID, LINUX, MAC][n])
    assert flags_of(app, host) == []
    from guestguard.settings import SettingsError

    with pytest.raises(SettingsError, match="unknown access rules: netwerks"):
        make_app({"guard.rules_disabled": "netwerks"})


def test_a_dismissed_flag_returns_only_with_a_device_it_did_not_include(app, host, guest_link):
    guest, token = guest_link
    for n in range(4):
        visit(app, token, f"203.0.{n}.1", WINDOWS)
    (flag,) = flags_of(app, host)
    dismissed = app.post_json(f"{host['url']}/flags/{flag['id']}/dismiss", {}, headers=host["ada"]).json
    assert dismissed["status"] == "dismissed" and dismissed["closed_at"]
    app.post_json(f"{host['url']}/flags/{flag['id']}/dismiss", {}, headers=host["ada"], status=409)
    visit(app, token, "203.0.3.1", WINDOWS)  # nothing new
    visit(app, token, "203.0.9.1", WINDOWS)  # a fifth network, the same laptop
    assert flags_of(app, host, status="open") == []
    visit(app, token, "203.0.10.1", LINUX)  # another device
    (again,) = flags_of(app, host, status="open")
    assert again["id"] != flag["id"] and again["score"] > flag["score"]
    assert [f["status"] for f in flags_of(app, host)] == ["open", "dismissed"], "newest first"


def test_revoke_and_reissue_sends_a_new_link_and_resolves_the_flags(app, host, guest_link, run_in_request):
    guest, token = guest_link
    app.patch_json(host["url"], {"status": "published"}, headers=host["ada"])
    for n in range(4):
        visit(app, token, f"203.0.{n}.1", WINDOWS)
    (flag,) = flags_of(app, host)
    body = app.post_json(f"{host['url']}/flags/{flag['id']}/reissue", {}, headers=host["ada"], status=202).json
    assert body == {"guest_id": guest["id"], "channel": "email", "resolved": [flag["id"]]}
    visit(app, token, "203.0.0.1", WINDOWS, status=404)  # the shared link no longer works, even for its user
    messages = [m for _, m in app.app.registry["notifications.providers_by_name"]["console"].messages]
    (sent,) = [m for m in messages if m.recipient == "grace@example.com"]
    new_token = sent.text.split("/access/")[1].split()[0]
    assert "Grace Hopper" in visit(app, new_token, "81.2.69.160", IPHONE).text
    assert [f["status"] for f in flags_of(app, host, rule="networks")] == ["resolved"]
    assert flags_of(app, host, status="open") == []
    # Someone new who got the shared link and tries it is noticed in turn.
    visit(app, token, "198.51.100.77", ANDROID, status=404)
    assert [f["rule"] for f in flags_of(app, host, status="open")] == ["revoked_link"]
    assert app.get(f"{host['url']}/guests/{guest['id']}", headers=host["ada"]).json["guest"]["open_flags"] == 1


def test_flags_are_filterable_and_paged(app, host, run_in_request):
    tokens = []
    for n in range(3):
        guest = add_guest(app, host, name=f"Guest {n}", email=f"g{n}@example.com")
        tokens.append((guest, issue(app, host, guest)["token"]))
    for guest, token in tokens:
        for n in range(4):
            visit(app, token, f"198.{n}.{len(guest['name'])}.1", WINDOWS)
    assert len(flags_of(app, host)) == 3
    first = app.get(f"{host['url']}/flags", params={"limit": 2}, headers=host["ada"]).json
    second = app.get(f"{host['url']}/flags", params={"limit": 2, "after": first["next"]}, headers=host["ada"]).json
    assert len(first["flags"]) == 2 and len(second["flags"]) == 1 and second["next"] is None
    assert {f["id"] for f in first["flags"] + second["flags"]} == {f["id"] for f in flags_of(app, host)}
    only = flags_of(app, host, guest_id=tokens[1][0]["id"])
    assert [f["guest_id"] for f in only] == [tokens[1][0]["id"]]
    assert flags_of(app, host, rule="burst") == [] and flags_of(app, host, status="dismissed") == []
    for bad in ({"status": "maybe"}, {"guest_id": "nope"}, {"after": "garbage"}):
        assert app.get(f"{host['url']}/flags", params=bad, headers=host["ada"], status=400).json["error"]
    flagged = app.get(f"{host['url']}/guests", params={"flagged": "true"}, headers=host["ada"]).json["guests"]
    assert len(flagged) == 3
    app.get(f"{host['url']}/guests", params={"flagged": "maybe"}, headers=host["ada"], status=400)


def test_staff_see_flags_but_cannot_act_on_them(app, host, guest_link):
    guest, token = guest_link
    for n in range(4):
        visit(app, token, f"203.0.{n}.1", WINDOWS)
    (flag,) = app.get(f"{host['url']}/flags", headers=host["sam"]).json["flags"]
    refused = app.post_json(f"{host['url']}/flags/{flag['id']}/dismiss", {}, headers=host["sam"], status=403).json
    assert refused["error"]["required"] == "guests.edit"
    assert app.get(f"{host['url']}/flags", headers=host["eve"], status=404)


# --- the activity feed -----------------------------------------------------------------------


def test_the_feed_lists_opens_answers_changes_flags_and_deliveries_in_order(app, host, guest_link):
    guest, _ = guest_link
    app.post_json(f"{host['url']}/guests/{guest['id']}/send", {}, headers=host["ada"], status=202)
    messages = [m for _, m in app.app.registry["notifications.providers_by_name"]["console"].messages]
    token = messages[-1].text.split("/access/")[1].split()[0]
    visit(app, token, "81.2.69.160", IPHONE)
    answer(app, token, "81.2.69.160", IPHONE, "maybe")
    answer(app, token, "81.2.69.160", IPHONE, "yes")
    for n in range(4):
        visit(app, token, f"203.0.{n}.1", IPHONE)
    items = app.get(f"{host['url']}/activity", headers=host["ada"]).json["items"]
    assert [item["kind"] for item in items] == [
        "notification.sent", "invitation.opened", "rsvp.received", "rsvp.changed", "access.flagged"]
    assert [item["summary"] for item in items][:4] == [
        "Invitation sent to Grace Hopper by email", "Grace Hopper opened the invitation",
        "Grace Hopper answered maybe", "Grace Hopper changed the answer from maybe to yes"]
    assert items[4]["summary"].startswith("Grace Hopper's link was flagged: opened from 4 different networks")
    assert all(item["guest_id"] == guest["id"] for item in items)
    # Keyset pages, both ways; the last id is where a poller continues.
    first = app.get(f"{host['url']}/activity", params={"limit": 2}, headers=host["ada"]).json
    assert first["more"] is True and first["next"] == items[1]["id"]
    rest = app.get(f"{host['url']}/activity", params={"after": first["next"]}, headers=host["ada"]).json
    assert [item["id"] for item in rest["items"]] == [item["id"] for item in items[2:]]
    idle = app.get(f"{host['url']}/activity", params={"after": items[-1]["id"]}, headers=host["ada"]).json
    assert idle == {"items": [], "next": items[-1]["id"], "more": False}
    newest = app.get(f"{host['url']}/activity", params={"order": "desc", "limit": 2}, headers=host["ada"]).json
    assert [item["kind"] for item in newest["items"]] == ["access.flagged", "rsvp.changed"]


def test_a_malformed_cursor_is_a_400(app, host):
    for cursor in ("garbage", "eyJhIjoxfQ", "W10"):
        body = app.get(f"{host['url']}/activity", params={"after": cursor}, headers=host["ada"], status=400).json
        assert body["error"]["code"] == "invalid_cursor"
    app.get(f"{host['url']}/activity", params={"order": "sideways"}, headers=host["ada"], status=400)


def test_a_failed_delivery_reaches_the_feed(make_app, run_in_request):
    app = make_app({"app.trusted_proxies": PROXY, "notifications.sms.provider": "console"})
    host = event_host(app, run_in_request, EVENT)
    guest = add_guest(app, host, email=None, phone="+442071838750")
    console = app.app.registry["notifications.providers_by_name"]["console"]
    from guestguard.plugins import PermanentDeliveryError

    original = console.send
    console.send = lambda message: (_ for _ in ()).throw(PermanentDeliveryError("number unreachable"))
    try:
        app.post_json(f"{host['url']}/guests/{guest['id']}/send", {}, headers=host["ada"], status=202)
    finally:
        console.send = original
    (item,) = app.get(f"{host['url']}/activity", headers=host["ada"]).json["items"]
    assert item["kind"] == "notification.failed"
    assert item["summary"] == "Invitation to Grace Hopper could not be sent by text message: number unreachable"


# --- retention -------------------------------------------------------------------------------


def test_the_log_is_purged_after_the_retention_period_and_its_counts_kept(app, host, guest_link, run_in_request):
    guest, token = guest_link
    start = dt.datetime(2030, 1, 10, 12, tzinfo=dt.UTC)
    with time_machine.travel(start, tick=False) as clock:
        visit(app, token, "81.2.69.160", IPHONE)
        visit(app, token, "81.2.69.160", IPHONE, path="/access/{}/event.ics")
        clock.shift(dt.timedelta(days=1))
        visit(app, token, "81.2.69.160", IPHONE)
        clock.shift(dt.timedelta(days=89))
        visit(app, token, "81.2.69.160", IPHONE)
        ada = session_bearer(app.app.registry, "ada@example.com")
        before = app.get(f"{host['url']}/guests/{guest['id']}/access", headers=ada).json["totals"]
        assert run_task_now(app.app.registry, purge) == 0, "no day is wholly past 90 days yet"
        clock.shift(dt.timedelta(days=1))
        assert run_task_now(app.app.registry, purge) == 2, "the first day, whole"
        clock.shift(dt.timedelta(days=1))
        assert run_task_now(app.app.registry, purge) == 1
        assert run_task_now(app.app.registry, purge) == 0, "nothing left to purge: nothing counted twice"
    after = app.get(f"{host['url']}/guests/{guest['id']}/access", headers=host["ada"]).json
    assert after["totals"] == before == {"view": 3, "rsvp": 0, "calendar": 1, "check_in": 0, "unusable": 0,
                                         "automated": 0}
    assert len(after["uses"]) == 1, "only the recent use keeps its address and browser"
    tallies = run_in_request(lambda r: sorted((t.day.isoformat(), t.kind, t.uses) for t in r.db.scalars(
        select(AccessTally))), app.app.registry)
    assert tallies == [("2030-01-10", "calendar", 1), ("2030-01-10", "view", 1), ("2030-01-11", "view", 1)]


def test_stream_tickets_are_purged_an_hour_after_they_expire(app, host, run_in_request):
    start = dt.datetime(2030, 1, 10, 12, tzinfo=dt.UTC)
    with time_machine.travel(start, tick=False) as clock:
        app.post_json("/api/v1/auth/stream-ticket", {"event_id": host["event"]["id"]},
                      headers=session_bearer(app.app.registry, "ada@example.com"), status=201)
        clock.shift(dt.timedelta(minutes=30))
        assert run_task_now(app.app.registry, purge_tickets) == 0, "expired, but not an hour ago"
        assert scalar(app, run_in_request, select(func.count()).select_from(StreamTicket)) == 1
        clock.shift(dt.timedelta(minutes=32))
        assert run_task_now(app.app.registry, purge_tickets) == 1
    assert scalar(app, run_in_request, select(func.count()).select_from(StreamTicket)) == 0


def test_activity_kinds_are_the_domain_events(app, host, guest_link, listener, run_in_request):
    guest, token = guest_link
    visit(app, token, "81.2.69.160", IPHONE)
    opened = listener.named("invitation.opened")
    assert [event.data["guest_id"] for event in opened] == [guest["id"]]
    kinds = run_in_request(lambda r: list(r.db.scalars(select(Activity.kind))), app.app.registry)
    assert kinds == ["invitation.opened"]


def test_the_database_keeps_one_open_flag_per_guest_link_and_rule(app, host, guest_link, run_in_request):
    """What two workers racing on one link meet: the second open flag is
    refused, dismissed ones may pile up."""
    from sqlalchemy.exc import IntegrityError

    from guestguard.events.models import InvitationLink

    guest, _ = guest_link

    def add(status):
        def insert(request):
            link_id = request.db.scalar(select(InvitationLink.id))
            request.db.add(Flag(workspace_id=uuid.UUID(host["workspace"]), event_id=uuid.UUID(host["event"]["id"]),
                                guest_id=uuid.UUID(guest["id"]),
                                link_id=link_id, rule="networks", score=50, evidence="e", status=status))
        run_in_request(insert, app.app.registry)

    add("dismissed")
    add("dismissed")
    add("open")
    with pytest.raises(IntegrityError):
        add("open")


# --- found in review -----------------------------------------------------------------------


class BadFindings:
    """Plugin rules whose findings cannot be stored."""

    def __init__(self):
        self.rules = []
        for name, finding in (("wordy_score", Finding(score="high", evidence="x")),
                              ("odd_details", Finding(score=5, evidence="x",
                                                      details={"when": dt.datetime.now(dt.UTC)})),
                              ("no_words", Finding(score=5, evidence="  ")),
                              ("not_a_finding", {"score": 5})):
            rule = type(name, (), {"name": name, "evaluate": lambda self, history, f=finding: f})()
            self.rules.append(rule)

    @hookimpl
    def register_access_rules(self, settings):
        return self.rules


def test_a_plugin_returning_a_bad_finding_spoils_no_other_rule(make_app, run_in_request, caplog):
    app = make_app({"app.trusted_proxies": PROXY}, plugins=[("bad", BadFindings())])
    host = event_host(app, run_in_request, EVENT)
    guest = add_guest(app, host)
    token = issue(app, host, guest)["token"]
    with caplog.at_level(logging.ERROR, logger="guestguard"):
        for n in range(4):
            visit(app, token, f"203.0.{n}.1", WINDOWS)
    assert [flag["rule"] for flag in flags_of(app, host)] == ["networks"]
    for name in ("wordy_score", "odd_details", "no_words", "not_a_finding"):
        assert f"access rule {name} failed" in caplog.text


def test_counts_of_previews_survive_the_purge_as_previews(app, host, guest_link, run_in_request):
    guest, token = guest_link
    with time_machine.travel(dt.datetime(2030, 1, 10, 12, tzinfo=dt.UTC), tick=False) as clock:
        visit(app, token, "81.2.69.160", IPHONE)
        visit(app, token, "54.1.2.3", SLACK)
        clock.shift(dt.timedelta(days=92))
        ada = session_bearer(app.app.registry, "ada@example.com")
        url = f"{host['url']}/guests/{guest['id']}/access"
        before = app.get(url, headers=ada).json["totals"]
        assert run_task_now(app.app.registry, purge) == 2
        assert app.get(url, headers=ada).json["totals"] == before
    assert before["view"] == 1 and before["automated"] == 1


def test_a_second_reissue_of_the_same_flag_sends_nothing(app, host, guest_link):
    guest, token = guest_link
    for n in range(4):
        visit(app, token, f"203.0.{n}.1", WINDOWS)
    (flag,) = flags_of(app, host)
    app.post_json(f"{host['url']}/flags/{flag['id']}/reissue", {}, headers=host["ada"], status=202)
    again = app.post_json(f"{host['url']}/flags/{flag['id']}/reissue", {}, headers=host["ada"], status=409).json
    assert again["error"]["code"] == "flag_not_open"
    console = app.app.registry["notifications.providers_by_name"]["console"]
    assert len(console.messages) == 1


def test_the_count_of_open_flags_follows_the_flags(app, host, guest_link):
    guest, token = guest_link
    for n, agent in enumerate((IPHONE, WINDOWS, ANDROID, LINUX)):
        visit(app, token, f"203.0.{n}.1", agent)
    networks, devices = sorted(flags_of(app, host), key=lambda flag: flag["rule"], reverse=True)
    guest_url = f"{host['url']}/guests/{guest['id']}"
    assert app.get(guest_url, headers=host["ada"]).json["guest"]["open_flags"] == 2
    app.post_json(f"{host['url']}/flags/{networks['id']}/dismiss", {}, headers=host["ada"])
    assert app.get(guest_url, headers=host["ada"]).json["guest"]["open_flags"] == 1
    app.post_json(f"{host['url']}/flags/{devices['id']}/dismiss", {}, headers=host["ada"])
    assert app.get(guest_url, headers=host["ada"]).json["guest"]["open_flags"] == 0


def test_nul_characters_in_queries_and_forms_are_refused_plainly(app, host, guest_link):
    for params in ({"rule": "a\x00b"}, {"q": "\x00"}):
        body = app.get(f"{host['url']}/flags", params=params, headers=host["ada"], status=400).json
        assert "NUL" in body["error"]["message"]
    guest, token = guest_link
    app.post(f"/rsvp/{token}", {"response": "yes", "message": "hi\x00"}, status=400)
    page = app.get(f"/access/{token}", headers={"User-Agent": "Mozilla\x00/5.0"})
    assert "Grace Hopper" in page.text


def test_uses_are_scored_in_batches_and_the_sweep_leaves_none_behind(make_app, run_in_request):
    from guestguard.guard.flags import evaluate_pending, sweep_pending

    app = make_app({"app.trusted_proxies": PROXY, "huey.immediate": "false"})
    host = event_host(app, run_in_request, EVENT)
    guest = add_guest(app, host)
    token = issue(app, host, guest)["token"]
    huey = app.app.registry["huey"]
    for n in range(6):
        visit(app, token, f"203.0.{n}.1", WINDOWS)
    batches = [task for task in huey.pending() if task.name == evaluate_pending.__name__]
    assert 1 <= len(batches) <= 2, "one task per half second, not one per use"
    drain(huey, dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1))
    (flag,) = flags_of(app, host)
    assert flag["rule"] == "networks" and flag["evidence"].startswith("opened from 6 different networks")
    pending = select(func.count()).select_from(AccessEntry).where(AccessEntry.evaluated_at.is_(None))
    assert scalar(app, run_in_request, pending) == 0

    def log_quietly(request):  # a use whose batch never came
        from guestguard.events.models import InvitationLink

        link = request.db.scalar(select(InvitationLink).where(InvitationLink.revoked_at.is_(None)))
        request.db.add(AccessEntry(workspace_id=link.workspace_id, event_id=link.event_id, guest_id=link.guest_id,
                                   link_id=link.id, kind="view", outcome="ok", ip="198.51.100.1",
                                   network="198.51.100.0/24", device="Chrome on Windows", user_agent=WINDOWS))

    run_in_request(log_quietly, app.app.registry)
    assert scalar(app, run_in_request, pending) == 1
    run_task_now(app.app.registry, sweep_pending)
    assert scalar(app, run_in_request, pending) == 0
    assert "7 different networks" in flags_of(app, host)[0]["evidence"]
