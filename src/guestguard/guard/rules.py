"""The built-in access rules, registered through ``register_access_rules``
like any plugin's. Thresholds come from the ``guard.*`` settings.

Rules count only uses a person drove (``automated`` ones are link previews
and crawlers), and the rules about spread (networks, devices) fire only when
the use brings something new, so a guest reloading the page from the same
phone adds nothing.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from guestguard.accounts.devices import IMESSAGE, classify
from guestguard.plugins import AccessHistory, AccessRule, AccessUse, Finding, by_name, collect, hookimpl
from guestguard.settings import SettingsError

SHOWN = 5  # networks or devices named in one finding's evidence


def duration(delta: dt.timedelta) -> str:
    """"40 minutes", "2 hours", "3 days": how long a spread of uses took."""
    seconds = max(0, int(delta.total_seconds()))
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size * (2 if unit != "minute" else 1):
            count = round(seconds / size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return "a minute"


def listed(values: list[str]) -> str:
    shown = ", ".join(values[:SHOWN])
    return shown + (f" and {len(values) - SHOWN} more" if len(values) > SHOWN else "")


def distinct(uses: list[AccessUse], key: str) -> list[str]:
    """Values of ``key`` in order of first appearance."""
    seen: dict[str, None] = {}
    for use in uses:
        value = getattr(use, key)
        if value:
            seen.setdefault(value, None)
    return list(seen)


def spread(uses: list[AccessUse]) -> dt.timedelta:
    return uses[-1].at - uses[0].at if uses else dt.timedelta(0)


class Spread:
    """More than ``threshold`` distinct values of ``field`` among a token's
    uses within the window: networks (``networks``) or kinds of device
    (``devices``). Fires when the use brings a value not seen before."""

    def __init__(self, name: str, field: str, threshold: int, window: dt.timedelta, base_score: int,
                 evidence: str):
        self.name, self.field, self.threshold, self.window = name, field, threshold, window
        self.base_score, self.evidence = base_score, evidence

    def evaluate(self, history: AccessHistory) -> Finding | None:
        use = history.use
        value = getattr(use, self.field)
        if use.automated or not value:
            return None
        uses = history.since(self.window)
        values = distinct(uses, self.field)
        if len(values) <= self.threshold or value in distinct(uses[:-1], self.field):
            return None
        count = len(values)
        return Finding(
            score=min(100, self.base_score + 15 * (count - self.threshold - 1)),
            evidence=self.evidence.format(count=count, span=duration(spread(uses)), values=listed(values)),
            details={f"{self.field}s": values, "window_hours": self.window.total_seconds() / 3600})


class RevokedLink:
    """A link that was replaced or revoked is still being used: someone kept
    a copy the guest no longer needs."""

    name = "revoked_link"

    def evaluate(self, history: AccessHistory) -> Finding | None:
        use = history.use
        if use.outcome != "revoked" or use.automated:
            return None
        after = ""
        if history.link_revoked_at is not None:
            after = f" {duration(use.at - history.link_revoked_at)} after it was replaced or revoked"
        return Finding(
            score=60,
            evidence=f"an old link was used{after}, from network {use.network or 'unknown'} ({use.device})",
            details={"network": use.network, "device": use.device, "kind": use.kind})


class RsvpDevice:
    """The answer came from another device than the first open (and, unless
    ``same_network_ok`` is off, from another network too)."""

    name = "rsvp_device"

    def __init__(self, same_network_ok: bool):
        self.same_network_ok = same_network_ok

    def evaluate(self, history: AccessHistory) -> Finding | None:
        use = history.use
        if use.kind != "rsvp" or use.outcome != "ok" or use.automated:
            return None
        first = history.first_open  # a query: only for answers
        if first is None:
            return None
        if use.device == first.device:
            return None
        if self.same_network_ok and use.network == first.network:
            return None
        return Finding(
            score=35,
            evidence=(f"answered from {use.device} on network {use.network or 'unknown'}; the invitation "
                      f"was first opened from {first.device} on network {first.network or 'unknown'}"),
            details={"answer_device": use.device, "answer_network": use.network,
                     "first_device": first.device, "first_network": first.network})


class Burst:
    """More than ``opens`` page views within ``window``."""

    name = "burst"

    def __init__(self, opens: int, window: dt.timedelta):
        self.opens, self.window = opens, window

    def evaluate(self, history: AccessHistory) -> Finding | None:
        use = history.use
        if use.kind != "view" or use.automated:
            return None
        views = [u for u in history.since(self.window) if u.kind == "view"]
        if len(views) <= self.opens:
            return None
        return Finding(
            score=min(100, 30 + 5 * (len(views) - self.opens - 1)),
            evidence=f"opened {len(views)} times within {duration(spread(views))}",
            details={"opens": len(views), "window_minutes": self.window.total_seconds() / 60})


class LinkPreview:
    """A chat or social service fetched a preview of the link: it was pasted
    into a conversation or a post. Apple's Messages is left out: it also
    previews links the guest receives by text message."""

    name = "link_preview"

    def evaluate(self, history: AccessHistory) -> Finding | None:
        use = history.use
        if not use.automated:
            return None
        service = classify(use.user_agent).previewer
        if service is None or service == IMESSAGE:
            return None
        return Finding(
            score=40,
            evidence=f"{service} fetched a preview of the link: it was likely pasted into a {service} "
                     "conversation or post",
            details={"service": service})


def builtin_rules(settings: Mapping[str, Any]) -> list:
    hours = dt.timedelta(hours=1)
    return [
        Spread("networks", "network", settings["guard.networks.threshold"],
               settings["guard.networks.window_hours"] * hours, 45,
               "used from {count} different networks within {span} ({values})"),
        Spread("devices", "device", settings["guard.devices.threshold"],
               settings["guard.devices.window_hours"] * hours, 35,
               "opened on {count} kinds of device within {span} ({values})"),
        RevokedLink(),
        RsvpDevice(settings["guard.rsvp_device.same_network_ok"]),
        Burst(settings["guard.burst.opens"], dt.timedelta(minutes=settings["guard.burst.window_minutes"])),
        LinkPreview(),
    ]


def history_window(settings: Mapping[str, Any]) -> dt.timedelta:
    """How far back the rules see: the longest window a built-in rule uses."""
    return max(dt.timedelta(hours=settings["guard.networks.window_hours"]),
               dt.timedelta(hours=settings["guard.devices.window_hours"]),
               dt.timedelta(minutes=settings["guard.burst.window_minutes"]))


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
