"""Who fetched a link and from which network: programs by user agent and
by published ranges, networks from a MaxMind-format database (built here
with mmdb-writer) or address prefixes without one; the rules built on them,
through the real invitation pages; and refreshing the published ranges."""
import json

import pytest
from sqlalchemy import select

from guestguard.events.models import Guest
from guestguard.guard.evaluation import NetworkRecord, write_network_database
from guestguard.guard.models import AccessEntry
from guestguard.guard.signals import (
    CORPORATE,
    HOSTING,
    MAIL_SECURITY,
    MOBILE,
    PROGRAM,
    RELAY,
    RESIDENTIAL,
    NetworkDatabases,
    PublishedRanges,
    Signals,
    handset_of,
    phone_country,
    ranges_in,
    refresh_ranges,
)
from guestguard.settings import SettingsError
from guestguard.testing import add_guest, command_in_process, event_host, issue, scalar

# In one pass only when make test runs both: pages, forms and rules whose outcome the backend does not change
# (docs/testing.md, "Two passes at once").
pytestmark = pytest.mark.one_pass("sqlite")


PROXY = "10.0.0.1"
EVENT = {"name": "Midsummer Gala", "status": "published", "starts_at": "2030-06-21T19:00:00",
         "timezone": "Europe/London", "default_plus_ones": 2}
IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
          "Version/18.1 Mobile/15E148 Safari/604.1")
IPHONE_OUTLOOK = ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                  "Mobile/15E148")
EDGE = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/118.0.0.0 "
        "Safari/537.36 Edg/118.0.2088.76")
ANDROID = ("Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
           "SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36")
PIXEL = ("Mozilla/5.0 (Linux; Android 14; Pixel 8 Build/AP2A.240805.005; wv) AppleWebKit/537.36 (KHTML, like Gecko) "
         "Version/4.0 Chrome/131.0.6778.39 Mobile Safari/537.36")
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
NETWORKS = [
    NetworkRecord("172.56.0.0/14", 21928, "US", "Cellular", "T-Mobile USA"),
    NetworkRecord("86.128.0.0/10", 2856, "GB", "Cable/DSL", "BT"),
    NetworkRecord("62.172.0.0/16", 2856, "GB", "Corporate", "BT Business"),
    NetworkRecord("177.73.0.0/16", 26599, "BR", "Cable/DSL", "Vivo"),
    NetworkRecord("2600:1000::/24", 6167, "US", "Cellular", "Verizon Wireless"),
]
RANGES = [
    {"name": "Microsoft", "kind": "mail security", "service": "Microsoft Defender",
     "ranges": ["40.64.0.0/10", "40.94.29.0/24"]},
    {"name": "Zscaler", "kind": "corporate proxy", "ranges": ["165.225.0.0/17", "2a03:eec0::/32"]},
    {"name": "iCloud Private Relay", "kind": "privacy relay", "ranges": ["172.224.0.0/12"]},
    {"name": "DigitalOcean", "kind": "cloud", "ranges": ["167.99.0.0/16"]},
]


@pytest.fixture
def database(tmp_path):
    path = tmp_path / "networks.mmdb"
    write_network_database(NETWORKS, path)
    return str(path)


# --- published ranges and programs ----------------------------------------------------------


def test_published_ranges_find_the_most_specific_operator():
    ranges = PublishedRanges(RANGES)
    assert ranges.operator_of("40.94.29.33").service == "Microsoft Defender"
    assert ranges.operator_of("40.127.255.255").name == "Microsoft"
    assert ranges.operator_of("40.128.0.1") is None
    assert ranges.operator_of("::ffff:165.225.72.9").name == "Zscaler", "IPv4-mapped IPv6 is the IPv4 address"
    assert ranges.operator_of("2a03:eec0:1::5").name == "Zscaler"
    assert ranges.operator_of("not an address") is None and ranges.operator_of("") is None
    nested = PublishedRanges([{"name": "Wide", "kind": "cloud", "ranges": ["10.0.0.0/8"]},
                              {"name": "Narrow", "kind": "corporate proxy", "ranges": ["10.1.2.0/24"]}])
    assert nested.operator_of("10.1.2.3").name == "Narrow" and nested.operator_of("10.1.3.3").name == "Wide"
    assert PublishedRanges.load().operator_of("148.163.150.22").name == "Proofpoint"


def test_published_ranges_that_cannot_be_read_are_refused(tmp_path):
    with pytest.raises(SettingsError, match="has kind 'weather'"):
        PublishedRanges([{"name": "X", "kind": "weather", "ranges": []}])
    with pytest.raises(SettingsError, match="guard.published_ranges"):
        PublishedRanges.load(str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(SettingsError, match="guard.published_ranges"):
        PublishedRanges.load(str(tmp_path / "bad.json"))


@pytest.mark.parametrize("user_agent, ip, name, kind, expected, public", [
    (EDGE, "40.94.29.33", "Microsoft Defender", MAIL_SECURITY, True, False),  # Safe Links: a browser's user agent
    ("Mozilla/5.0", "172.225.46.61", "Apple Mail Privacy Protection", MAIL_SECURITY, True, False),
    ("Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)", "66.249.84.22",
     "Gmail's image proxy", MAIL_SECURITY, True, False),
    ("Barracuda Sentinel (EE)", "209.222.82.141", "Barracuda Email Protection", MAIL_SECURITY, True, False),
    ("WhatsApp/2.24.25.78 A", "86.150.1.2", "WhatsApp", "link preview", True, False),
    ("TelegramBot (like TwitterBot)", "149.154.161.208", "Telegram", "link preview", False, True),
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "66.249.66.1", "Googlebot",
     "crawler", False, True),
    ("python-requests/2.32.3", "86.150.1.2", "python-requests", PROGRAM, False, False),
    ("Mozilla/5.0", "86.150.1.2", "a program without a name", PROGRAM, False, False),
    (EDGE, "167.99.45.12", "a program on DigitalOcean servers", PROGRAM, False, False),
])
def test_programs_are_known_by_user_agent_and_address(user_agent, ip, name, kind, expected, public):
    fetcher = Signals(PublishedRanges(RANGES)).fetcher(user_agent, ip)
    assert (fetcher.name, fetcher.kind, fetcher.expected, fetcher.public) == (name, kind, expected, public)


def test_people_are_no_program_and_one_phones_browsers_are_one_device():
    signals = Signals(PublishedRanges(RANGES))
    for user_agent in (IPHONE, IPHONE_OUTLOOK, ANDROID, EDGE, ""):
        assert signals.fetcher(user_agent, "86.150.1.2") is None
    assert signals.fetcher(IPHONE, "165.225.72.9") is None, "a person behind the company's proxy"
    assert handset_of(IPHONE) == handset_of(IPHONE_OUTLOOK) == "an iPhone (iOS 18)"
    assert handset_of(ANDROID) == "a Samsung SM-S918B (Android 14)"
    assert handset_of(EDGE) == "Edge on Windows"


# --- networks -------------------------------------------------------------------------------


def test_a_network_database_makes_a_carriers_pool_one_network(database):
    signals = Signals(PublishedRanges(RANGES), NetworkDatabases([database]))
    first, second = signals.network("172.58.41.17"), signals.network("172.56.18.204")
    assert first.key == second.key == "as21928:US"
    assert (first.kind, first.operator, first.country, first.name) == (
        MOBILE, "T-Mobile USA", "US", "T-Mobile USA mobile network (US)")
    assert signals.network("2600:1003:b012::1").key == signals.network("2600:1012:b1c3::10").key
    home = signals.network("86.150.37.112")
    assert (home.key, home.kind, home.name) == ("86.150.37.0/24", RESIDENTIAL, "BT broadband (GB)")
    assert signals.network("62.172.138.35").kind == CORPORATE
    # Published pools are one network whatever the database says.
    assert signals.network("165.225.72.9").key == signals.network("165.225.104.31").key == "pool:Zscaler"
    assert signals.network("172.226.7.130").kind == RELAY
    assert signals.network("167.99.45.12").kind == HOSTING
    assert "operators from 1 network database" in signals.network_source


def test_without_a_database_a_network_is_the_addresss_prefix():
    signals = Signals(PublishedRanges(RANGES))
    assert signals.network("172.58.41.17").key == "172.58.41.0/24"
    assert signals.network("2600:1003:b012:4e1a::1").key == "2600:1003:b012::/48"
    assert signals.network("172.58.41.17").name == "an unknown network"
    assert "no network database configured" in signals.network_source


def test_a_network_database_that_cannot_be_opened_stops_startup(make_app, tmp_path):
    (tmp_path / "broken.mmdb").write_bytes(b"not a database")
    with pytest.raises(SettingsError, match="guard.network_databases"):
        make_app({"guard.network_databases": str(tmp_path / "broken.mmdb")})


def test_phone_numbers_give_their_country():
    assert phone_country("+44 20 7946 0958") == "GB"
    assert phone_country("+1 415 692 0000") == "US"
    assert phone_country("") == phone_country(None) == phone_country("not a number") == ""


# --- the rules on them, through the invitation pages ------------------------------------------------


@pytest.fixture
def app(make_app, database):
    return make_app({"app.trusted_proxies": PROXY, "guard.network_databases": database})


@pytest.fixture
def host(app, run_in_request):
    return event_host(app, run_in_request, EVENT)


def visit(app, token, ip, agent, status=200):
    return app.get(f"/access/{token}", headers={"X-Forwarded-For": ip, "User-Agent": agent},
                   extra_environ={"REMOTE_ADDR": PROXY}, status=status)


def flags_of(app, host):
    return app.get(f"{host['url']}/flags", headers=host["ada"]).json["flags"]


def test_a_mail_scanner_is_logged_as_a_program_and_is_not_the_first_open(app, host, run_in_request):
    guest = add_guest(app, host)
    token = issue(app, host, guest)["token"]
    visit(app, token, "40.94.29.33", EDGE)  # Defender Safe Links, with a browser's user agent
    assert scalar(app, run_in_request, select(Guest.opened_at)) is None
    assert scalar(app, run_in_request, select(AccessEntry.automated)) is True
    totals = app.get(f"{host['url']}/guests/{guest['id']}/access", headers=host["ada"]).json["totals"]
    assert totals["automated"] == 1 and totals["view"] == 0
    visit(app, token, "172.58.11.92", IPHONE_OUTLOOK)
    visit(app, token, "172.58.11.92", IPHONE)
    app.post(f"/rsvp/{token}", {"response": "yes", "plus_ones": "1"}, status=303,
             headers={"X-Forwarded-For": "172.56.7.211", "User-Agent": IPHONE}, extra_environ={"REMOTE_ADDR": PROXY})
    assert scalar(app, run_in_request, select(Guest.opened_at)) is not None
    assert flags_of(app, host) == [], "the scanner is not another device, nor the first open"


def test_a_program_fetching_again_and_again_is_flagged(app, host):
    guest = add_guest(app, host)
    token = issue(app, host, guest)["token"]
    for _ in range(5):
        visit(app, token, "167.99.45.12", "python-requests/2.32.3")
    assert flags_of(app, host) == []
    visit(app, token, "167.99.45.12", "python-requests/2.32.3")
    (flag,) = flags_of(app, host)
    assert flag["rule"] == "programs"
    assert flag["evidence"].startswith("a program (python-requests) fetched the link 6 times within ")
    assert flag["details"]["ips"] == ["167.99.45.12"]


def test_a_search_engine_fetching_the_link_says_it_is_public(app, host):
    guest = add_guest(app, host)
    token = issue(app, host, guest)["token"]
    visit(app, token, "66.249.66.1", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)")
    (flag,) = flags_of(app, host)
    assert flag["rule"] == "public_link" and "public web page" in flag["evidence"]


def test_a_first_open_abroad_from_the_guests_phone_is_flagged(app, host):
    away = add_guest(app, host, phone="+44 20 7946 0958")
    home = add_guest(app, host, name="Ada", email="ada.guest@example.com", phone="+44 20 7946 0959")
    visit(app, issue(app, host, away)["token"], "177.73.120.6", ANDROID)
    visit(app, issue(app, host, home)["token"], "86.150.37.112", ANDROID)
    (flag,) = flags_of(app, host)
    assert flag["rule"] == "first_open_elsewhere" and flag["guest_id"] == away["id"]
    assert flag["evidence"] == ("first opened in Brazil (Vivo broadband (BR)), but the guest's phone number is "
                                "from the United Kingdom: it may have been forwarded before the guest saw it")


def test_a_commuter_on_a_carriers_pool_is_one_network_and_a_chat_group_is_many(app, host):
    commuter = add_guest(app, host)
    token = issue(app, host, commuter)["token"]
    for ip in ("172.58.41.17", "172.56.18.204", "172.59.220.9", "172.58.133.61", "172.57.1.1"):
        visit(app, token, ip, IPHONE)
    assert flags_of(app, host) == []
    group = add_guest(app, host, name="Bea", email="bea@example.com")
    token = issue(app, host, group)["token"]
    visit(app, token, "86.150.37.12", IPHONE)
    visit(app, token, "86.150.37.12", "WhatsApp/2.24.24.75 i")  # the guest pastes it into a chat
    visit(app, token, "86.150.37.12", ANDROID)  # her partner at home: not a finding
    assert flags_of(app, host) == []
    for ip, agent in (("177.73.8.19", PIXEL), ("62.172.138.201", EDGE), ("2600:1017:b1a0::4", FIREFOX)):
        visit(app, token, ip, agent)
    rules = {flag["rule"]: flag for flag in flags_of(app, host)}
    assert set(rules) >= {"link_preview", "devices"}
    assert rules["link_preview"]["evidence"].startswith("after a WhatsApp preview, 3 new people opened the link in "
                                                        "3 countries")


# --- refreshing the published ranges -----------------------------------------------------------


def test_published_lists_are_read_in_each_operators_format():
    google = json.dumps({"prefixes": [{"ipv4Prefix": "66.249.64.0/19"}, {"ipv6Prefix": "2001:4860::/32"}]})
    assert ranges_in(google, "google") == ["66.249.64.0/19", "2001:4860::/32"]
    aws = json.dumps({"prefixes": [{"ip_prefix": "3.0.0.0/9"}], "ipv6_prefixes": [{"ipv6_prefix": "2600:1f00::/24"}]})
    assert ranges_in(aws, "aws") == ["3.0.0.0/9", "2600:1f00::/24"]
    microsoft = json.dumps([{"id": 1, "ips": ["40.92.0.0/15", "2a01:111:f400::/48"]}, {"id": 2}])
    assert ranges_in(microsoft, "microsoft-endpoints") == ["40.92.0.0/15", "2a01:111:f400::/48"]
    zscaler = json.dumps({"zscaler.net": {"continent : EMEA": {"city : London": [{"range": "147.161.128.0/17"}]}}})
    assert ranges_in(zscaler, "zscaler") == ["147.161.128.0/17"]
    relay = "172.224.226.0/27,GB,GB-EN,London,\n# comment\nnot-a-range,XX\n2a02:26f7:b3c0:4000::/64,GB,,,\n"
    assert ranges_in(relay, "csv") == ["172.224.226.0/27", "2a02:26f7:b3c0:4000::/64"]
    with pytest.raises(ValueError, match="unknown list format"):
        ranges_in("", "xml")


def test_a_refresh_keeps_an_operators_ranges_when_its_list_fails():
    data = {"operators": [
        {"name": "Google", "kind": "mail security", "ranges": ["66.249.64.0/19"],
         "sources": [{"url": "https://example.com/goog.json", "format": "google"}]},
        {"name": "Zscaler", "kind": "corporate proxy", "ranges": ["165.225.0.0/17"],
         "sources": [{"url": "https://example.com/down.json", "format": "zscaler"}]},
        {"name": "Barracuda", "kind": "mail security", "ranges": ["209.222.80.0/21"], "sources": []},
    ]}

    def fetch(url):
        if url.endswith("down.json"):
            raise OSError("connection refused")
        return json.dumps({"prefixes": [{"ipv4Prefix": "66.102.0.0/20"}]})

    fresh, report = refresh_ranges(data, fetch)
    assert [entry["ranges"] for entry in fresh["operators"]] == [["66.102.0.0/20"], ["165.225.0.0/17"],
                                                                 ["209.222.80.0/21"]]
    assert report == ["Google: 1 ranges", "Zscaler: kept 1 ranges (OSError: connection refused)",
                      "Barracuda: kept 1 ranges (no published list)"]
    assert data["operators"][0]["ranges"] == ["66.249.64.0/19"], "the input is left as it was"


def test_the_update_command_writes_the_configured_file(tmp_path, capsys):
    target = tmp_path / "ranges.json"
    ini = tmp_path / "guard.ini"
    ini.write_text(f"[app:main]\nuse = egg:guestguard\nguard.published_ranges = {target}\n")
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "goog.json").write_text(json.dumps({"prefixes": [{"ipv4Prefix": "66.102.0.0/20"}]}))
    assert command_in_process("guard", "update-ranges", str(ini), "--offline", str(lists)) == 0
    written = json.loads(target.read_text())
    google = next(entry for entry in written["operators"] if entry["name"] == "Google")
    assert google["ranges"] == ["66.102.0.0/20"]
    out = capsys.readouterr().out
    assert "Google: 1 ranges" in out and "Amazon Web Services: kept" in out
    assert PublishedRanges.load(str(target)).operator_of("66.102.8.19").name == "Google"
    # Without a file configured it says what to set and writes nothing.
    ini.write_text("[app:main]\nuse = egg:guestguard\n")
    assert command_in_process("guard", "update-ranges", str(ini)) == 2
    assert "set guard.published_ranges" in capsys.readouterr().err
