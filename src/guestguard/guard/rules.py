"""The built-in access rules, registered through ``register_access_rules``
like any plugin's. Thresholds come from the ``guard.*`` settings.

The rules see each use with what ``guard.signals`` tells of it: whether a
program fetched it (and which), its network (a carrier's or a company
proxy's pool is one network) and the person's device. They count
**parties**: a person's own devices, and every device on one home network,
are one party, so a guest's phone, laptop and partner at home are one;
uses on a mobile, corporate or hosting network join a party only through
their device. Programs are never the guest: mail scanners and private-chat
previews are expected, public crawlers and previews mean the link is public,
and unknown programs fetching again and again are a finding of their own.

Evidence names operators, places and counts in words; addresses and user
agents stay in the details.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from guestguard.guard.sensitivity import shifted
from guestguard.guard.signals import CRAWLER, HOSTING, LINK_PREVIEW, RELAY, RESIDENTIAL, Network
from guestguard.plugins import AccessHistory, AccessRule, AccessUse, Finding, by_name, collect, hookimpl
from guestguard.settings import SettingsError

SHOWN = 4  # networks or devices named in one finding's evidence
ADVICE = "Ask the guest; if they did not mean to share it, revoke the link and send a new one."
COUNTRY_NAMES = {"GB": "the United Kingdom", "US": "the United States", "DE": "Germany", "FR": "France",
                 "PT": "Portugal", "IN": "India", "BR": "Brazil", "KE": "Kenya", "NG": "Nigeria", "AU": "Australia",
                 "RU": "Russia", "FI": "Finland", "NL": "the Netherlands", "ES": "Spain", "IT": "Italy",
                 "IE": "Ireland", "CA": "Canada"}


def duration(delta: dt.timedelta) -> str:
    """"40 minutes", "2 hours", "3 days": how long a spread of uses took."""
    seconds = max(0, int(delta.total_seconds()))
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size * (2 if unit != "minute" else 1):
            count = round(seconds / size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return "a minute"


def plural(count: int, word: str, words: str | None = None) -> str:
    return f"{count} {word if count == 1 else (words or word + 's')}"


def listed(values: Sequence[str]) -> str:
    """"A", "A and B", "A, B and 3 more"."""
    values = list(dict.fromkeys(values))
    if len(values) > SHOWN:
        return ", ".join(values[:SHOWN]) + f" and {len(values) - SHOWN} more"
    return values[0] if len(values) == 1 else ", ".join(values[:-1]) + " and " + values[-1]


def country(code: str) -> str:
    return COUNTRY_NAMES.get(code, code)


def spread(uses: list[AccessUse]) -> dt.timedelta:
    return uses[-1].at - uses[0].at if uses else dt.timedelta(0)


def where(use: AccessUse) -> Network:
    return use.where if isinstance(use.where, Network) else Network(use.network)


def countries(uses: Iterable[AccessUse]) -> list[str]:
    return list(dict.fromkeys(where(use).country for use in uses if where(use).country))


def place_words(uses: list[AccessUse]) -> str:
    """" in 3 countries", " in Brazil", or nothing without a network database."""
    found = countries(uses)
    if len(found) > 1:
        return f" in {len(found)} countries"
    return f" in {country(found[0])}" if found else ""


class Parties:
    """People's uses grouped into parties: uses on one device are one
    party, and so are uses on one home network (or, without a network
    database, one /24 or /48), and so are the guest's own devices learned
    from their earlier uses (``known``)."""

    GUEST = "guest"

    def __init__(self, uses: Iterable[AccessUse], known: Iterable[str] = ()):
        self.parent: dict[str, str] = {}
        for device in known:
            self.union(f"d:{device}", self.GUEST)
        for use in uses:
            if use.automated:
                continue
            device, network = f"d:{use.handset or use.device}", self.household(use)
            self.union(device, device)
            if network:
                self.union(device, network)

    @staticmethod
    def household(use: AccessUse) -> str:
        network = where(use)
        return f"n:{network.key}" if network.key and network.kind in (RESIDENTIAL, "") else ""

    def find(self, key: str) -> str:
        self.parent.setdefault(key, key)
        while self.parent[key] != key:
            self.parent[key] = self.parent[self.parent[key]]
            key = self.parent[key]
        return key

    def union(self, a: str, b: str) -> None:
        self.parent[self.find(a)] = self.find(b)

    def of(self, use: AccessUse) -> str:
        return self.find(f"d:{use.handset or use.device}")

    def count(self, uses: Iterable[AccessUse]) -> int:
        return len({self.of(use) for use in uses if not use.automated})


def people(uses: Iterable[AccessUse]) -> list[AccessUse]:
    return [use for use in uses if not use.automated]


def live(uses: Iterable[AccessUse]) -> list[AccessUse]:
    """People's uses of the link while it worked (a replaced link's later
    uses are the revoked_link rule's)."""
    return [use for use in people(uses) if use.outcome == "ok"]


def network_details(uses: Iterable[AccessUse]) -> list[dict[str, str]]:
    return [{"network": where(use).key, "operator": where(use).operator, "kind": where(use).kind,
             "country": where(use).country, "ip": use.ip, "device": use.handset or use.device,
             "user_agent": use.user_agent, "at": use.at.isoformat()} for use in uses]


class Networks:
    """People on more than ``threshold`` networks within ``window``; fires
    when the use brings a network not seen before. One device alone counts
    only within ``one_device``: a phone moving between networks over a day
    is a person moving; through several in minutes, it is not."""

    name = "networks"

    def __init__(self, threshold: int, window: dt.timedelta, one_device: dt.timedelta):
        self.threshold, self.window, self.one_device = threshold, window, one_device

    def evaluate(self, history: AccessHistory) -> Finding | None:
        use = history.use
        if use.automated or use.outcome != "ok" or not where(use).key:
            return None
        uses = live(history.since(self.window))
        if len({u.handset or u.device for u in uses}) == 1:
            uses = [u for u in uses if u.at >= use.at - self.one_device]
        keys = list(dict.fromkeys(where(u).key for u in uses if where(u).key))
        threshold = shifted(self.threshold, history.sensitivity)
        if len(keys) <= threshold or where(use).key in {where(u).key for u in uses[:-1]}:
            return None
        devices = len({u.handset or u.device for u in uses})
        named = [where(u).name for u in uses if where(u).operator]
        names = f": {listed(named)}" if named else ""
        score = min(100, 45 + 15 * (len(keys) - threshold - 1) + (10 if devices > 1 else 0))
        return Finding(
            score=score,
            evidence=(f"opened from {len(keys)} different networks{place_words(uses)} within "
                      f"{duration(spread(uses))}, on {plural(devices, 'device')}{names}"),
            details={"advice": ADVICE, "networks": keys, "uses": network_details(uses)[-20:],
                     "window_hours": self.window.total_seconds() / 3600})


class Devices:
    """More than ``threshold`` parties within ``window``; fires when the use
    is a new party."""

    name = "devices"

    def __init__(self, threshold: int, window: dt.timedelta):
        self.threshold, self.window = threshold, window

    def evaluate(self, history: AccessHistory) -> Finding | None:
        use = history.use
        if use.automated or use.outcome != "ok":
            return None
        uses = live(history.since(self.window))
        threshold = shifted(self.threshold, history.sensitivity)
        parties = Parties(uses)
        if parties.count(uses) <= threshold or parties.of(use) in {parties.of(u) for u in uses[:-1]}:
            return None
        # Only now the guest's devices from before the window (a query):
        # their own phone seen last week is still them.
        parties = Parties(uses, history.known_devices)
        before = {parties.of(u) for u in uses[:-1]}
        count = parties.count(uses)
        if count <= threshold or parties.of(use) in before:
            return None
        devices = list(dict.fromkeys(u.handset or u.device for u in uses))
        return Finding(
            score=min(100, 40 + 15 * (count - threshold - 1)),
            evidence=(f"opened by {count} different people within {duration(spread(uses))}"
                      f"{place_words(uses)}, on {listed(devices)} (devices that belong neither to one person "
                      f"nor to one household)"),
            details={"advice": ADVICE, "parties": count, "devices": devices, "uses": network_details(uses)[-20:],
                     "window_hours": self.window.total_seconds() / 3600})


def known_parties(history: AccessHistory) -> tuple[Parties, list[AccessUse]]:
    """Parties of the link's uses by people before ``use``, its first open included."""
    earlier = people(history.recent)
    first = history.first_open
    if first is not None and first.id not in {u.id for u in earlier}:
        earlier = [first, *earlier]
    return Parties([*earlier, history.use], history.known_devices), earlier


class RevokedLink:
    """A replaced or revoked link is used by someone who had not used it
    before: a copy went elsewhere. The guest clicking an old email on their
    own device is not a finding."""

    name = "revoked_link"

    def evaluate(self, history: AccessHistory) -> Finding | None:
        use = history.use
        if use.outcome != "revoked" or use.automated:
            return None
        parties, earlier = known_parties(history)
        if parties.of(use) == parties.find(Parties.GUEST) or (
                earlier and parties.of(use) in {parties.of(u) for u in earlier}):
            return None
        after = ""
        if history.link_revoked_at is not None:
            after = f" {duration(use.at - history.link_revoked_at)} after it was replaced"
        return Finding(
            score=70,
            evidence=(f"the old link was opened{after} by someone who had not used it before, on "
                      f"{use.handset or use.device} from {where(use).name}"),
            details={"advice": "The new link is not affected; ask the guest whether they passed the old one on.",
                     "network": where(use).key, "ip": use.ip, "device": use.device, "user_agent": use.user_agent,
                     "kind": use.kind})


class RsvpDevice:
    """An answer bringing plus-ones from another party than the one that
    first opened the invitation. With ``same_network_ok``, an answer from
    the first open's home network is the same party (on an office or a
    mobile network it is not: colleagues and strangers share those)."""

    name = "rsvp_device"

    def __init__(self, same_network_ok: bool):
        self.same_network_ok = same_network_ok

    def evaluate(self, history: AccessHistory) -> Finding | None:
        use = history.use
        if use.kind != "rsvp" or use.outcome != "ok" or use.automated or history.plus_ones <= 0:
            return None
        first = history.first_open  # a query: only for answers
        if first is None:
            return None
        if self.same_network_ok and where(use).key == where(first).key and Parties.household(use):
            return None
        parties, _ = known_parties(history)
        guests = plural(history.plus_ones, "plus-one")
        if parties.of(use) in (parties.of(first), parties.find(Parties.GUEST)):
            return self.another_home(history, first, guests)
        return Finding(
            score=min(100, 50 + 10 * history.plus_ones),
            evidence=(f"answered with {guests} on {use.handset or use.device} from {where(use).name}; the "
                      f"invitation was first opened on {first.handset or first.device} from {where(first).name}"),
            details={"advice": f"Check with the guest who is coming. {ADVICE}", "answer_device": use.device,
                     "answer_network": where(use).key, "answer_ip": use.ip,
                     "first_device": first.device, "first_network": where(first).key, "first_ip": first.ip,
                     "plus_ones": history.plus_ones})

    @staticmethod
    def another_home(history: AccessHistory, first: AccessUse, guests: str) -> Finding | None:
        """The same model of phone answering with plus-ones from another
        home broadband than the one the invitation was first opened on, and
        nothing else of the guest's ever seen there: likely a friend's phone
        of the same make, the link forwarded. Needs a network database (home
        broadband known as such); the guest answering from a hotel, an
        office or mobile data is not this."""
        use = history.use
        here, there = where(use), where(first)
        if not (here.kind == RESIDENTIAL and there.kind == RESIDENTIAL and here.key != there.key):
            return None
        device = use.handset or use.device
        if any(where(u).key == here.key and (u.handset or u.device) != device for u in people(history.recent)):
            return None  # another of the guest's devices is there too: a home of theirs
        return Finding(
            score=45,
            evidence=(f"answered with {guests} from {here.name}, another home than the one where the invitation "
                      f"was first opened ({there.name}), on the same model of device ({device}): possibly a friend "
                      "with the same phone, the link forwarded, or the guest away from home"),
            details={"advice": f"Check with the guest who is coming. {ADVICE}", "answer_device": use.device,
                     "answer_network": here.key, "answer_ip": use.ip, "first_device": first.device,
                     "first_network": there.key, "first_ip": first.ip, "plus_ones": history.plus_ones})


class Burst:
    """More than ``opens`` page views within ``window`` by more than one
    party (one person reloading while deciding is not a finding)."""

    name = "burst"

    def __init__(self, opens: int, window: dt.timedelta):
        self.opens, self.window = opens, window

    def evaluate(self, history: AccessHistory) -> Finding | None:
        use = history.use
        if use.kind != "view" or use.automated or use.outcome != "ok":
            return None
        views = [u for u in live(history.since(self.window)) if u.kind == "view"]
        opens = shifted(self.opens, history.sensitivity, least=2)
        if len(views) <= opens:
            return None
        parties = Parties(views).count(views)
        if parties < 2:
            return None
        return Finding(
            score=min(100, 30 + 5 * (len(views) - opens - 1) + 10 * (parties - 2)),
            evidence=f"opened {len(views)} times within {duration(spread(views))} by {parties} different people",
            details={"advice": ADVICE, "opens": len(views), "parties": parties,
                     "window_minutes": self.window.total_seconds() / 60})


class LinkPreview:
    """A chat or social service fetched a preview: a public post or a
    channel at once; a private chat (WhatsApp, Messages) only once more than
    ``new_parties`` new parties open the link after it (a guest sending it
    to their partner is not a finding)."""

    name = "link_preview"

    def __init__(self, new_parties: int, window: dt.timedelta):
        self.new_parties, self.window = new_parties, window

    def evaluate(self, history: AccessHistory) -> Finding | None:
        use = history.use
        fetcher = use.fetcher
        if fetcher is not None and fetcher.kind == LINK_PREVIEW and fetcher.public:
            return Finding(
                score=55,
                evidence=(f"{fetcher.name} fetched a preview of the link: it was posted on {fetcher.name} "
                          "(in a post, a channel or a group chat)"),
                details={"advice": ADVICE, "service": fetcher.name, "ip": use.ip, "user_agent": use.user_agent})
        if use.automated:
            return None
        uses = history.since(self.window, people_only=False)
        previews = [u for u in uses if u.fetcher is not None and u.fetcher.kind == LINK_PREVIEW]
        if not previews:
            return None
        preview = previews[0]
        before = [u for u in uses if u.at <= preview.at and not u.automated]
        after = [u for u in uses if u.at > preview.at and not u.automated]
        parties = Parties([*before, *after])
        sender = {parties.of(u) for u in before}
        if Parties.household(preview):  # the sender's phone fetched the preview from the sender's home
            sender.add(parties.find(Parties.household(preview)))
        new = {parties.of(u) for u in after} - sender
        threshold = shifted(self.new_parties, history.sensitivity)
        if len(new) <= threshold or parties.of(use) not in new:
            return None
        return Finding(
            score=min(100, 50 + 10 * (len(new) - threshold - 1)),
            evidence=(f"after a {preview.fetcher.name} preview, {len(new)} new people opened the link"
                      f"{place_words(after)} within {duration(spread(after))}: it was likely sent to a "
                      f"{preview.fetcher.name} group"),
            details={"advice": ADVICE, "service": preview.fetcher.name, "new_parties": len(new),
                     "uses": network_details(after)[-20:]})


class Programs:
    """Programs that are neither mail scanners nor previews nor public
    crawlers fetching the link more than ``threshold`` times within
    ``window``: someone is collecting it."""

    name = "programs"

    def __init__(self, threshold: int, window: dt.timedelta):
        self.threshold, self.window = threshold, window

    def evaluate(self, history: AccessHistory) -> Finding | None:
        use = history.use
        if use.fetcher is None or use.fetcher.expected or use.fetcher.public:
            return None
        fetches = [u for u in history.since(self.window, people_only=False)
                   if u.fetcher is not None and not u.fetcher.expected and not u.fetcher.public]
        threshold = shifted(self.threshold, history.sensitivity)
        if len(fetches) <= threshold:
            return None
        names = list(dict.fromkeys(u.fetcher.name for u in fetches))
        networks = list(dict.fromkeys(where(u).name for u in fetches))
        return Finding(
            score=min(100, 50 + 2 * (len(fetches) - threshold - 1)),
            evidence=(f"a program ({listed(names)}) fetched the link {len(fetches)} times within "
                      f"{duration(spread(fetches))} from {listed(networks)}: no mail service or chat app does "
                      "this, someone is collecting the link"),
            details={"advice": ADVICE, "programs": names, "fetches": len(fetches),
                     "ips": list(dict.fromkeys(u.ip for u in fetches)),
                     "user_agents": list(dict.fromkeys(u.user_agent for u in fetches))})


class PublicLink:
    """A search engine's or SEO crawler fetched the link: it is on a public page."""

    name = "public_link"

    def evaluate(self, history: AccessHistory) -> Finding | None:
        fetcher = history.use.fetcher
        if fetcher is None or fetcher.kind != CRAWLER or not fetcher.public:
            return None
        return Finding(
            score=60,
            evidence=(f"{fetcher.name}, a search engine's or a website's crawler, fetched the link: it is on a "
                      "public web page, where anyone can find it"),
            details={"advice": ADVICE, "crawler": fetcher.name, "ip": history.use.ip,
                     "user_agent": history.use.user_agent})


class FirstOpenElsewhere:
    """The invitation was first opened in another country than the guest's
    phone number's, on a home or office network (not roaming on mobile
    data): it was likely forwarded before the guest opened it. Needs a
    network database and the guest's phone number."""

    name = "first_open_elsewhere"

    def evaluate(self, history: AccessHistory) -> Finding | None:
        use = history.use
        if use.kind not in ("view", "rsvp") or use.outcome != "ok" or use.automated or not history.phone_country:
            return None
        network = where(use)
        # Roaming traffic leaves through the guest's home carrier, so a
        # foreign network is someone there; relays and servers say nothing.
        if not network.country or network.country == history.phone_country or network.kind in (HOSTING, RELAY):
            return None
        if history.first_open is not None or people(history.recent):
            return None
        return Finding(
            score=55,
            evidence=(f"first opened in {country(network.country)} ({network.name}), but the guest's phone "
                      f"number is from {country(history.phone_country)}: it may have been forwarded before the "
                      "guest saw it"),
            details={"advice": ADVICE, "country": network.country, "phone_country": history.phone_country, "ip": use.ip,
                     "network": network.key, "device": use.device})


def builtin_rules(settings: Mapping[str, Any]) -> list:
    hours = dt.timedelta(hours=1)
    devices_window = settings["guard.devices.window_hours"] * hours
    return [
        Networks(settings["guard.networks.threshold"], settings["guard.networks.window_hours"] * hours,
                 dt.timedelta(minutes=settings["guard.networks.one_device_minutes"])),
        Devices(settings["guard.devices.threshold"], devices_window),
        RevokedLink(),
        RsvpDevice(settings["guard.rsvp_device.same_network_ok"]),
        Burst(settings["guard.burst.opens"], dt.timedelta(minutes=settings["guard.burst.window_minutes"])),
        LinkPreview(settings["guard.previews.new_parties"], devices_window),
        Programs(settings["guard.programs.threshold"],
                 dt.timedelta(minutes=settings["guard.programs.window_minutes"])),
        PublicLink(),
        FirstOpenElsewhere(),
    ]


def history_window(settings: Mapping[str, Any]) -> dt.timedelta:
    """How far back the rules see: the longest window a built-in rule uses."""
    return max(dt.timedelta(hours=settings["guard.networks.window_hours"]),
               dt.timedelta(hours=settings["guard.devices.window_hours"]),
               dt.timedelta(minutes=settings["guard.burst.window_minutes"]),
               dt.timedelta(minutes=settings["guard.programs.window_minutes"]))


@hookimpl
def register_access_rules(settings):
    return builtin_rules(settings)


def access_rules(settings, plugins) -> list[AccessRule]:
    """Every registered rule but those ``guard.rules_disabled`` names."""
    rules = by_name(collect(plugins.hook.register_access_rules(settings=settings)), AccessRule, "access rule")
    long = [name for name in rules if not isinstance(name, str) or not 0 < len(name) <= 64]
    if long:
        raise SettingsError(f"access rule names must be 1 to 64 characters: {', '.join(map(repr, long))}")
    unknown = set(settings["guard.rules_disabled"]) - set(rules)
    if unknown:
        raise SettingsError(f"setting 'guard.rules_disabled' names unknown access rules: {', '.join(sorted(unknown))}; "
                            f"available: {', '.join(sorted(rules))}")
    return [rule for name, rule in rules.items() if name not in settings["guard.rules_disabled"]]
