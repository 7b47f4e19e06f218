"""What the access rules know about one use beyond its row: who fetched
(a person, or which program: mail scanner, link preview, crawler, unknown
program), from which network (operator, connection type, country; a
carrier's or a company's pool is one network), and on which device.

Read in the worker from the logged user agent and address, never fetched
at request time:

- programs by user agent: the crawler-user-agents project's patterns (a
  maintained list, shipped as the ``crawler-user-agents`` package), the chat
  services' preview fetchers (``accounts.devices``), and user agents no
  browser sends;
- operators by address: ``published_ranges.json`` (or the file named by
  ``guard.published_ranges``), the ranges mail-security services, clouds,
  corporate proxies and privacy relays publish, refreshed by
  ``guestguard guard update-ranges``;
- networks: MaxMind-format databases (GeoLite2/GeoIP2 ASN, Country or City,
  Connection-Type; ``guard.network_databases``). Without one, a network is
  the address's /24 (IPv4) or /48 (IPv6), as before, and /readyz says so.
"""
from __future__ import annotations

import dataclasses
import functools
import ipaddress
import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from guestguard.accounts.devices import AUTOMATED_HINTS, IMESSAGE, classify, parse, user_agent_parser
from guestguard.settings import SettingsError

log = logging.getLogger(__name__)

# Kinds of program.
MAIL_SECURITY, LINK_PREVIEW, CRAWLER, PROGRAM = "mail security", "link preview", "crawler", "program"
# Kinds of network.
MOBILE, RESIDENTIAL, CORPORATE, HOSTING, RELAY = "mobile", "residential", "corporate", "hosting", "relay"
# Operators' kinds in the published ranges, and the network each makes.
RANGE_KINDS = {"mail security": HOSTING, "cloud": HOSTING, "corporate proxy": CORPORATE, "privacy relay": RELAY}
# GeoIP2 Connection-Type's and GeoIP2 ISP/Enterprise's words for a connection.
CONNECTION_TYPES = {"cellular": MOBILE, "cable/dsl": RESIDENTIAL, "corporate": CORPORATE, "satellite": RESIDENTIAL,
                    "hosting": HOSTING, "dialup": RESIDENTIAL}
# Chat services whose previews the sender's own app fetches (so they come
# from the sender's network), as opposed to a service's servers fetching
# for a post or a channel.
PRIVATE_CHATS = ("WhatsApp", IMESSAGE, "Signal", "Viber")
# crawler-user-agents tags of crawlers that index public pages.
PUBLIC_CRAWLER_TAGS = {"search-engine", "seo", "ads", "archiver", "aggregator", "feed-reader"}
BARE_USER_AGENT = re.compile(r"^Mozilla/\d\.\d$")
# Fetchers no pattern list names but that fetch links for mail services.
MAIL_FETCHERS = (("barracuda", "Barracuda Email Protection"), ("googleimageproxy", "Gmail's image proxy"),
                 ("yahoomailproxy", "Yahoo Mail's image proxy"), ("mimecast", "Mimecast URL Protect"),
                 ("proofpoint", "Proofpoint URL Defense"))


@dataclasses.dataclass(frozen=True)
class Fetcher:
    """A program that fetched the link: ``kind`` is mail security, link
    preview, crawler or program; ``expected`` when it is a service doing its
    usual work for the guest (a mail scanner, a preview in a private chat)."""

    name: str
    kind: str
    expected: bool
    public: bool = False      # its fetch means the link is on a public page, post or channel


@dataclasses.dataclass(frozen=True)
class Network:
    """Where a use came from. ``key`` is what counts as one network: a
    carrier's or a relay's or a company proxy's whole pool, else the
    address's /24 or /48."""

    key: str
    operator: str = ""
    kind: str = ""
    country: str = ""
    city: str = ""

    @property
    def name(self) -> str:
        """"Zscaler's corporate proxy", "EE's mobile network", "BT (GB)": a network in words."""
        if not self.operator:
            return "an unknown network"
        place = f" in {self.city}" if self.city else (f" ({self.country})" if self.country else "")
        kind = {MOBILE: "mobile network", CORPORATE: "corporate network", HOSTING: "servers",
                RELAY: "relay", RESIDENTIAL: "broadband"}.get(self.kind)
        return f"{self.operator} {kind}{place}" if kind else f"{self.operator}{place}"


# Every use of a token logs its network: a client's next requests come from
# the same address, which is parsed once.
@functools.lru_cache(maxsize=4096)
def prefix_of(ip: str) -> str:
    """The /24 of an IPv4 address, the /48 of an IPv6 one."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ""
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


# --- published ranges -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Operator:
    name: str
    kind: str
    service: str = ""


class PublishedRanges:
    """Operators' published ranges, looked up by address: one table per
    prefix length, the most specific range that holds the address wins."""

    def __init__(self, operators: Sequence[Mapping[str, Any]]):
        tables: dict[tuple[int, int], dict[int, Operator]] = {}
        for entry in operators:
            if entry.get("kind") not in RANGE_KINDS:
                raise SettingsError(f"published ranges: operator {entry.get('name')!r} has kind "
                                    f"{entry.get('kind')!r}; one of {', '.join(RANGE_KINDS)}")
            operator = Operator(str(entry["name"]), entry["kind"], str(entry.get("service", "")))
            for cidr in entry.get("ranges", ()):
                network = ipaddress.ip_network(cidr, strict=False)
                table = tables.setdefault((network.version, network.prefixlen), {})
                table.setdefault(int(network.network_address), operator)
        # Longest prefixes first, per IP version.
        self.tables = {version: [(bits, length, tables[version, length])
                                 for _, length in sorted((key for key in tables if key[0] == version),
                                                         key=lambda key: -key[1])]
                       for version, bits in ((4, 32), (6, 128))}
        self.size = sum(len(table) for table in tables.values())

    @classmethod
    def load(cls, path: str = "") -> PublishedRanges:
        """From ``path``, or the file shipped with the guard."""
        try:
            text = (Path(path).read_text() if path
                    else resources.files("guestguard.guard").joinpath("published_ranges.json").read_text())
            return cls(json.loads(text)["operators"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SettingsError(f"setting 'guard.published_ranges': cannot read {path or 'the built-in ranges'}: "
                                f"{exc}") from None

    def operator_of(self, ip: str) -> Operator | None:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return None
        if address.version == 6 and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        number = int(address)
        for bits, length, table in self.tables[address.version]:
            operator = table.get(number >> (bits - length) << (bits - length))
            if operator is not None:
                return operator
        return None


# --- refreshing them ---------------------------------------------------------------

FETCH_LIMIT = 50 * 1024 * 1024  # bytes one source may send


def ranges_in(text: str, kind: str) -> list[str]:
    """The CIDR ranges of one published list: ``google`` (goog.json,
    cloud.json), ``aws`` (ip-ranges.json), ``microsoft-endpoints``,
    ``zscaler`` (its JSON: ranges anywhere as "range" values), ``csv`` or
    ``text`` (a range first on each line)."""
    found: list[str] = []
    if kind == "google":
        for prefix in json.loads(text).get("prefixes", []):
            found += [prefix[key] for key in ("ipv4Prefix", "ipv6Prefix") if key in prefix]
    elif kind == "aws":
        data = json.loads(text)
        found += [p["ip_prefix"] for p in data.get("prefixes", [])]
        found += [p["ipv6_prefix"] for p in data.get("ipv6_prefixes", [])]
    elif kind == "microsoft-endpoints":
        for endpoint in json.loads(text):
            found += endpoint.get("ips", [])
    elif kind == "zscaler":
        def walk(value):
            if isinstance(value, dict):
                for key, item in value.items():
                    if key == "range" and isinstance(item, str):
                        found.append(item)
                    else:
                        walk(item)
            elif isinstance(value, list):
                for item in value:
                    walk(item)
        walk(json.loads(text))
    elif kind in ("csv", "text"):
        for line in text.splitlines():
            first = line.split(",")[0].strip()
            if first and not first.startswith("#"):
                found.append(first)
    else:
        raise ValueError(f"unknown list format {kind!r}")
    valid = []
    for cidr in found:
        try:
            valid.append(str(ipaddress.ip_network(cidr.strip(), strict=False)))
        except ValueError:
            continue
    return list(dict.fromkeys(valid))


def refresh_ranges(data: Mapping[str, Any], fetch) -> tuple[dict[str, Any], list[str]]:
    """``data`` (a published-ranges document) with each operator's ranges
    replaced by what its sources publish now (``fetch(url) -> text``). An
    operator whose source fails, or yields nothing, keeps its ranges; the
    second value says what happened to each, for the operator to read."""
    operators, report = [], []
    for published in data["operators"]:
        entry = dict(published)
        sources = entry.get("sources") or []
        if not sources:
            report.append(f"{entry['name']}: kept {len(entry.get('ranges', []))} ranges (no published list)")
        else:
            fresh: list[str] = []
            try:
                for source in sources:
                    fresh += ranges_in(fetch(source["url"]), source.get("format", "text"))
            except Exception as exc:  # one operator's outage must not stop the others' update
                report.append(f"{entry['name']}: kept {len(entry.get('ranges', []))} ranges ({type(exc).__name__}: "
                              f"{str(exc)[:200]})")
            else:
                if fresh:
                    entry["ranges"] = list(dict.fromkeys(fresh))
                    report.append(f"{entry['name']}: {len(entry['ranges'])} ranges")
                else:
                    report.append(f"{entry['name']}: kept {len(entry.get('ranges', []))} ranges (its list was empty)")
        operators.append(entry)
    PublishedRanges(operators)  # refuse to write what could not be read back
    return {**data, "operators": operators}, report


def fetch_url(url: str, timeout: float = 30.0) -> str:
    """GET ``url`` (https only), at most FETCH_LIMIT bytes."""
    import urllib.request

    if not url.startswith("https://"):
        raise ValueError(f"not an https address: {url}")
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - https only, checked above
        body = response.read(FETCH_LIMIT + 1)
    if len(body) > FETCH_LIMIT:
        raise ValueError(f"{url} sent more than {FETCH_LIMIT} bytes")
    return body.decode("utf-8", "replace")


def builtin_ranges() -> dict[str, Any]:
    return json.loads(resources.files("guestguard.guard").joinpath("published_ranges.json").read_text())


# --- network databases ------------------------------------------------------------


class NetworkDatabases:
    """MaxMind-format databases, their records for an address merged (an
    ASN database and a Country or City one, optionally Connection-Type)."""

    def __init__(self, paths: Iterable[str]):
        import maxminddb

        self.paths = tuple(paths)
        self.readers = []
        for path in self.paths:
            try:
                self.readers.append(maxminddb.open_database(path))
            except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
                raise SettingsError(f"setting 'guard.network_databases': cannot open {path}: {exc}") from None

    def record(self, ip: str) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for reader in self.readers:
            try:
                found = reader.get(ip)
            except ValueError:
                return {}
            if isinstance(found, dict):
                merged.update(found)
        return merged

    def close(self) -> None:
        for reader in self.readers:
            reader.close()


def _english(value: Any) -> str:
    if isinstance(value, dict):
        names = value.get("names")
        if isinstance(names, dict):
            return str(names.get("en", ""))
    return ""


# --- the signals ------------------------------------------------------------------


class Signals:
    """Who fetched and from which network, for the rules (cached per user
    agent and per address)."""

    def __init__(self, ranges: PublishedRanges, databases: NetworkDatabases | None = None):
        self.ranges, self.databases = ranges, databases
        self.fetcher = functools.lru_cache(maxsize=4096)(self._fetcher)
        self.network = functools.lru_cache(maxsize=16384)(self._network)

    @property
    def network_source(self) -> str:
        """What networks are told apart by, for /readyz and the docs."""
        if self.databases is None:
            return "address prefixes (/24, /48) and published ranges: no network database configured"
        return f"operators from {len(self.databases.paths)} network database(s) and published ranges"

    def _fetcher(self, user_agent: str, ip: str) -> Fetcher | None:
        device = classify(user_agent)
        if device.previewer is not None:
            private = device.previewer in PRIVATE_CHATS
            return Fetcher(device.previewer, LINK_PREVIEW, expected=private, public=not private)
        lowered = user_agent.lower()
        for needle, name in MAIL_FETCHERS:
            if needle in lowered:
                return Fetcher(name, MAIL_SECURITY, expected=True)
        listed = crawler_pattern(user_agent)
        if listed is not None:
            name, tags = listed
            if "social-preview" in tags:
                return Fetcher(name, LINK_PREVIEW, expected=False, public=True)
            public = bool(PUBLIC_CRAWLER_TAGS & set(tags))
            return Fetcher(name, CRAWLER if public else PROGRAM, expected=False, public=public)
        operator = self.ranges.operator_of(ip)
        if operator is not None and operator.kind == "mail security":
            return Fetcher(operator.service or operator.name, MAIL_SECURITY, expected=True)
        if BARE_USER_AGENT.match(user_agent.strip()):
            # A browser always names itself; Apple Mail Privacy Protection
            # fetches through its relays with just "Mozilla/5.0". (A request
            # with no user agent at all, an API client's, stays a person, as
            # the access log has always counted it.)
            if operator is not None and operator.kind == "privacy relay":
                return Fetcher("Apple Mail Privacy Protection", MAIL_SECURITY, expected=True)
            return Fetcher("a program without a name", PROGRAM, expected=False)
        if operator is not None and operator.kind == "cloud":
            return Fetcher(f"a program on {operator.name} servers", PROGRAM, expected=False)
        if device.automated or any(hint in lowered for hint in AUTOMATED_HINTS):
            return Fetcher(device.name, PROGRAM, expected=False)
        return None

    def _network(self, ip: str) -> Network:
        prefix = prefix_of(ip)
        operator = self.ranges.operator_of(ip)
        record = self.databases.record(ip) if self.databases is not None else {}
        country = str((record.get("country") or {}).get("iso_code", "")) if isinstance(record.get("country"),
                                                                                        dict) else ""
        city = _english(record.get("city"))
        if operator is not None:
            kind = RANGE_KINDS[operator.kind]
            return Network(f"pool:{operator.name}", operator.name, kind, country, "" if kind == RELAY else city)
        asn = record.get("autonomous_system_number")
        organization = str(record.get("autonomous_system_organization") or record.get("isp") or "")
        kind = CONNECTION_TYPES.get(str(record.get("connection_type", "")).lower(), "")
        if record.get("user_type") == "cellular":
            kind = MOBILE
        if asn and kind in (MOBILE, HOSTING):
            # A carrier's NAT pool or a cloud: all one network, per country.
            return Network(f"as{asn}:{country}", organization, kind, country, "" if kind == MOBILE else city)
        return Network(prefix, organization, kind, country, city)


@functools.cache
def _crawler_patterns() -> tuple[re.Pattern, list[tuple[str, tuple[str, ...]]]]:
    from crawleruseragents import CRAWLER_USER_AGENTS_DATA

    entries = [(entry["pattern"], tuple(entry.get("tags") or ())) for entry in CRAWLER_USER_AGENTS_DATA]
    combined = re.compile("|".join(f"(?:{pattern})" for pattern, _ in entries))
    return combined, entries


@functools.lru_cache(maxsize=4096)
def crawler_pattern(user_agent: str) -> tuple[str, tuple[str, ...]] | None:
    """The crawler-user-agents entry a user agent matches: its name as the
    user agent spells it, and its tags; None for none."""
    combined, entries = _crawler_patterns()
    found = combined.search(user_agent)
    if found is None:
        return None
    for pattern, tags in entries:
        match = re.search(pattern, user_agent)
        if match is not None:
            return match.group(0).rstrip("/ "), tags
    return None


def signals_from(settings: Mapping[str, Any]) -> Signals:
    """The signals the settings configure (read at startup: a file that
    cannot be read stops the app with a SettingsError)."""
    paths = settings["guard.network_databases"]
    _crawler_patterns()  # compiled now, not in a guest's request
    user_agent_parser()
    return Signals(PublishedRanges.load(settings["guard.published_ranges"]),
                   NetworkDatabases(paths) if paths else None)


@functools.lru_cache(maxsize=4096)
def handset_of(user_agent: str) -> str:
    """The device a person used, the browser set aside on phones and
    tablets (an in-app browser and Safari on one iPhone are one device):
    "iPhone on iOS 18", "Samsung SM-S918B on Android 14", and on computers
    the browser too ("Chrome on Windows": one computer's browsers are rarely
    several people)."""
    result = parse(user_agent)
    system = result.os.family if result.os else ""
    major = result.os.major if result.os and result.os.major else ""
    model = result.device.family if result.device else ""
    if system in ("iOS", "Android") and model:
        if model in ("K", "Generic Smartphone"):  # Chrome's reduced user agent names no model
            model = "Android phone"
        article = "an" if model[0] in "AEIOUi" else "a"
        return f"{article} {model} ({system} {major})".replace(" )", ")")
    return classify(user_agent).name


def enrich(signals: Signals, use):
    """``use`` (an AccessUse) with what the signals tell of it."""
    fetcher = signals.fetcher(use.user_agent, use.ip)
    return dataclasses.replace(use, automated=use.automated or fetcher is not None, fetcher=fetcher,
                               where=signals.network(use.ip) if use.ip else Network(use.network),
                               handset="" if fetcher else handset_of(use.user_agent))


def phone_country(phone: str | None) -> str:
    """The country of a phone number in international form ("GB"); empty
    when there is none or it cannot be read."""
    if not phone:
        return ""
    import phonenumbers

    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(phone, None)) or ""
    except phonenumbers.NumberParseException:
        return ""
