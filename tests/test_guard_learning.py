"""What the guard learns: each workspace's sensitivity (relaxed, normal,
strict) moving the rules' thresholds, a dismissed pattern staying quiet for
the same devices, and a guest's devices learned over their whole history.
Through the real application, clients told apart as production does (the
test app trusts the proxy at 10.0.0.1)."""
import datetime as dt

import pytest
import time_machine
from prometheus_client import REGISTRY
from sqlalchemy import select

from guestguard.audit.models import AuditEvent
from guestguard.guard.sensitivity import shifted
from guestguard.testing import (
    IPHONE,
    LINUX,
    MAC,
    WINDOWS,
    add_guest,
    csrf,
    event_host,
    issue,
    session_bearer,
    signed_in,
)

EVENT = {"name": "Harvest Supper", "status": "published", "starts_at": "2030-06-21T19:00:00",
         "timezone": "Europe/London", "default_plus_ones": 1}
PROXY = "10.0.0.1"
PHONE = ("Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
         "Chrome/121.0 Mobile Safari/537.36")  # a partner's phone, its model named
HOME, MOBILE, OFFICE = "81.2.69.160", "148.252.1.10", "198.51.100.20"
START = dt.datetime(2030, 1, 10, 18, tzinfo=dt.UTC)


@pytest.fixture
def app(make_app):
    return make_app({"app.trusted_proxies": PROXY})


@pytest.fixture
def host(app, run_in_request):
    return event_host(app, run_in_request, EVENT)


@pytest.fixture
def token(app, host):
    return issue(app, host, add_guest(app, host))["token"]


def use(app, token, ip, agent, *, plus_ones=None, status="*"):
    """Open the invitation (or, with ``plus_ones``, answer yes) from ``ip`` on ``agent``."""
    headers, environ = {"X-Forwarded-For": ip, "User-Agent": agent}, {"REMOTE_ADDR": PROXY}
    if plus_ones is None:
        return app.get(f"/access/{token}", headers=headers, extra_environ=environ, status=status)
    return app.post(f"/rsvp/{token}", {"response": "yes", "plus_ones": str(plus_ones)}, headers=headers,
                    extra_environ=environ, status=status)


def flags(app, host, **query):
    ada = session_bearer(app.app.registry, "ada@example.com")  # fresh: the clock may have moved
    return app.get(f"{host['url']}/flags", params=query, headers=ada).json["flags"]


def guard_url(host):
    return f"/api/v1/workspaces/{host['workspace']}/guard"


# --- sensitivity ----------------------------------------------------------------------


def test_thresholds_move_by_a_third_and_never_below_their_least():
    assert [shifted(3, s) for s in ("relaxed", "normal", "strict")] == [4, 3, 2]
    assert [shifted(2, s) for s in ("relaxed", "normal", "strict")] == [3, 2, 1]
    assert [shifted(10, s, least=2) for s in ("relaxed", "normal", "strict")] == [13, 10, 7]
    assert shifted(1, "strict") == 1 and shifted(2, "strict", least=2) == 2


def test_sensitivity_is_normal_until_an_admin_sets_it_and_a_repeat_changes_nothing(app, host, run_in_request):
    got = app.get(guard_url(host), headers=host["sam"]).json  # door staff may read it
    assert got["sensitivity"] == "normal" and set(got["choices"]) == {"relaxed", "normal", "strict"}
    for _ in range(2):
        put = app.put_json(guard_url(host), {"sensitivity": "strict"}, headers=host["ada"]).json
        assert put["sensitivity"] == "strict"
    assert app.get(guard_url(host), headers=host["ada"]).json["sensitivity"] == "strict"
    audits = run_in_request(lambda r: list(r.db.scalars(select(AuditEvent.details).where(
        AuditEvent.action == "workspace.guard_sensitivity_set"))))
    assert audits == [{"sensitivity": "strict", "previous": "normal"}], "set once, however often sent"
    app.put_json(guard_url(host), {"sensitivity": "strict"}, headers=host["sam"], status=403)


@pytest.mark.parametrize("body", [{"sensitivity": "paranoid"}, {"sensitivity": ""}, {}, {"sensitivity": 3},
                                  {"sensitivity": "strict" * 1000}])
def test_a_sensitivity_other_than_the_three_is_refused_naming_the_field(app, host, body):
    refused = app.put_json(guard_url(host), body, headers=host["ada"], status=422).json["error"]
    assert "sensitivity" in refused["fields"]
    assert app.get(guard_url(host), headers=host["ada"]).json["sensitivity"] == "normal", "nothing stored"


def test_the_settings_page_sets_it_for_owners_and_admins_only(app, host, run_in_request):
    ada = signed_in(app, run_in_request, "ada@example.com")
    settings = f"/workspaces/{host['workspace']}/settings"
    form = ada.get(settings).forms["guard-form"]
    assert form["sensitivity"].value == "normal"
    form["sensitivity"] = "relaxed"
    page = form.submit(status=303).follow()
    assert "Shared-link detection is now relaxed." in page.text
    assert page.forms["guard-form"]["sensitivity"].value == "relaxed"
    refused = ada.post(f"/workspaces/{host['workspace']}/guard",
                       {"csrf_token": csrf(page), "sensitivity": "loose"}, status=400)
    assert "Choose relaxed, normal or strict." in refused.text
    assert app.get(guard_url(host), headers=host["ada"]).json["sensitivity"] == "relaxed"
    ada.post(f"/workspaces/{host['workspace']}/guard", {"sensitivity": "strict"}, status=400)  # no CSRF token
    sam = signed_in(app, run_in_request, "sam@example.com")
    assert "guard-form" not in sam.get(settings).forms, "door staff are not offered it"


@pytest.mark.parametrize("sensitivity, networks, flagged", [
    ("normal", 3, False), ("strict", 3, True), ("normal", 4, True), ("relaxed", 4, False), ("relaxed", 5, True)])
def test_sensitivity_moves_when_a_spread_of_networks_is_flagged(app, host, token, sensitivity, networks, flagged):
    app.put_json(guard_url(host), {"sensitivity": sensitivity}, headers=host["ada"])
    for n in range(networks):
        use(app, token, f"203.0.{n}.1", WINDOWS)
    assert ("networks" in {f["rule"] for f in flags(app, host)}) is flagged


@pytest.mark.parametrize("sensitivity, people, flagged", [
    ("normal", 2, False), ("strict", 2, True), ("normal", 3, True), ("relaxed", 3, False), ("relaxed", 4, True)])
def test_sensitivity_moves_how_many_people_make_a_flag(app, host, token, sensitivity, people, flagged):
    app.put_json(guard_url(host), {"sensitivity": sensitivity}, headers=host["ada"])
    clients = ((HOME, IPHONE), (OFFICE, LINUX), ("192.0.2.33", MAC), ("100.64.7.1", PHONE))
    for ip, agent in clients[:people]:
        use(app, token, ip, agent)
    found = [f for f in flags(app, host) if f["rule"] == "devices"]
    assert bool(found) is flagged
    if flagged:
        assert found[0]["evidence"].startswith(f"opened by {people} different people")


# --- a dismissed pattern ----------------------------------------------------------------


def test_a_dismissed_pattern_stays_quiet_for_the_same_device_and_returns_for_a_new_one(app, host, token):
    for n in range(4):
        use(app, token, f"203.0.{n}.1", WINDOWS)  # one laptop through four networks in a minute
    (flag,) = flags(app, host)
    app.post_json(f"{host['url']}/flags/{flag['id']}/dismiss", {}, headers=host["ada"])
    assert flag["details"]["devices_seen"] == ["Chrome on Windows"]
    quieted = REGISTRY.get_sample_value("guard_findings_dismissed_before_total", {"rule": "networks"}) or 0
    for n in range(4, 9):
        use(app, token, f"203.0.{n}.1", WINDOWS)  # the same laptop, five more networks: stronger, not new
    assert flags(app, host, status="open") == []
    assert REGISTRY.get_sample_value("guard_findings_dismissed_before_total", {"rule": "networks"}) == quieted + 5
    use(app, token, "192.0.2.33", MAC)  # a device the host has not judged
    (again,) = flags(app, host, status="open")
    assert again["rule"] == "networks" and again["id"] != flag["id"]
    assert again["details"]["devices_seen"] == ["Chrome on Windows", "Safari on Mac OS X"]
    assert [f["status"] for f in flags(app, host)] == ["open", "dismissed"], "newest first"


def test_a_dismissal_quiets_the_guest_across_a_reissued_link(app, host, token):
    for n in range(4):
        use(app, token, f"203.0.{n}.1", WINDOWS)
    (flag,) = flags(app, host)
    app.post_json(f"{host['url']}/flags/{flag['id']}/dismiss", {}, headers=host["ada"])
    new = issue(app, host, {"id": flag["guest_id"]})["token"]
    for n in range(5):
        use(app, new, f"203.0.{10 + n}.1", WINDOWS)  # the same laptop, on the new link
    assert flags(app, host, status="open") == []


# --- devices learned over the guest's history --------------------------------------------


def home_week(app, token, clock):
    """The guest's first week: their phone, their laptop and their partner's
    phone, all at home."""
    for ip, agent in ((HOME, IPHONE), ("81.2.69.161", WINDOWS), ("81.2.69.162", PHONE)):
        use(app, token, ip, agent)
    clock.shift(dt.timedelta(days=8))


def test_the_guests_own_devices_seen_last_week_are_still_the_guest(app, host, token):
    with time_machine.travel(START, tick=False) as clock:
        home_week(app, token, clock)
        # A week later, out and about: three devices on three networks in an
        # afternoon would be three people, but each was seen at home before.
        use(app, token, MOBILE, IPHONE)
        use(app, token, OFFICE, WINDOWS)
        use(app, token, "100.64.7.1", PHONE)
        use(app, token, OFFICE, WINDOWS, plus_ones=1)  # the answer, from the laptop at work
        assert flags(app, host) == []
        # New devices still count: two strangers make three parties.
        use(app, token, "192.0.2.33", MAC)
        use(app, token, "203.0.113.50", LINUX)
        (flag,) = [f for f in flags(app, host) if f["rule"] == "devices"]
        assert flag["evidence"].startswith("opened by 3 different people")


def test_a_friend_who_opened_a_forwarded_copy_last_week_is_not_learned(app, host, token):
    with time_machine.travel(START, tick=False) as clock:
        use(app, token, HOME, IPHONE)  # the guest
        clock.shift(dt.timedelta(days=2))
        use(app, token, OFFICE, LINUX)  # a friend, elsewhere, days later
        clock.shift(dt.timedelta(days=6))
        use(app, token, OFFICE, LINUX, plus_ones=1)  # the friend answers, bringing someone
        (flag,) = flags(app, host)
        assert flag["rule"] == "rsvp_device"


# --- the same model of phone in another home ------------------------------------------------


@pytest.fixture
def homes_app(make_app, tmp_path):
    """The guard reading a network database that knows two home broadbands and a carrier."""
    from guestguard.guard.evaluation import NetworkRecord, write_network_database

    path = tmp_path / "networks.mmdb"
    write_network_database([NetworkRecord("86.150.37.0/24", 2856, "GB", "Cable/DSL", "BT"),
                            NetworkRecord("82.38.190.0/24", 5089, "GB", "Cable/DSL", "Virgin Media"),
                            NetworkRecord("148.252.0.0/16", 206067, "GB", "Cellular", "Three UK")], path)
    return make_app({"app.trusted_proxies": PROXY, "guard.network_databases": str(path)})


@pytest.fixture
def homes(homes_app, run_in_request):
    host = event_host(homes_app, run_in_request, EVENT)
    return host, issue(homes_app, host, add_guest(homes_app, host))["token"]


def test_the_same_phone_model_answering_from_another_home_is_flagged(homes_app, homes):
    host, token = homes
    use(homes_app, token, "86.150.37.112", IPHONE)                  # the guest, at home
    use(homes_app, token, "82.38.190.44", IPHONE)                   # a friend's identical iPhone, elsewhere
    use(homes_app, token, "82.38.190.44", IPHONE, plus_ones=1)      # who answers, bringing someone
    (flag,) = flags(homes_app, host)
    assert flag["rule"] == "rsvp_device" and flag["score"] == 45
    assert flag["evidence"].startswith("answered with 1 plus-one from Virgin Media broadband (GB), another home "
                                       "than the one where the invitation was first opened (BT broadband (GB)), "
                                       "on the same model of device (an iPhone (iOS 17))")


def test_the_guests_phone_answering_from_mobile_data_or_a_home_of_theirs_is_not(homes_app, homes):
    host, token = homes
    use(homes_app, token, "86.150.37.112", IPHONE)
    use(homes_app, token, "148.252.1.10", IPHONE, plus_ones=1)      # on the train: not a home
    use(homes_app, token, "82.38.190.9", WINDOWS)                   # the guest's laptop at their other home
    use(homes_app, token, "82.38.190.44", IPHONE, plus_ones=1)      # so the phone there is the guest's too
    use(homes_app, token, "86.150.37.112", IPHONE, plus_ones=1)     # and at home, of course
    assert flags(homes_app, host) == []
