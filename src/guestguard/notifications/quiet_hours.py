"""Quiet hours: a text a host's guest gets is not sent at night.

Guest messages on a channel with quiet hours (SMS) go out only between
``notifications.quiet_hours.allowed_from`` and ``allowed_until`` in the
recipient's local time; outside them the message is deferred, never
dropped, to the next allowed minute. The recipient's zone comes from the
number (phonenumbers' time zones of its region and area code): one zone is
that zone; several — a country spanning zones, a number whose area code does
not say — or none known is the event's zone (the guest is likely near the
event), and UTC when the message has no event zone either.

``next_allowed`` is a pure function of its arguments, so it is tested fast
and exhaustively; the worker calls it just before sending.
"""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

UNKNOWN_ZONE = "Etc/Unknown"


def _zone(name: str | None) -> ZoneInfo | None:
    if not name or name == UNKNOWN_ZONE:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def recipient_zone(phone: str, event_zone: str | None) -> ZoneInfo:
    """Where the person with ``phone`` probably is: the number's one zone,
    else the event's, else UTC."""
    import phonenumbers
    from phonenumbers import timezone as number_zones

    try:
        zones = [name for name in number_zones.time_zones_for_number(phonenumbers.parse(phone, None))
                 if name != UNKNOWN_ZONE]
    except phonenumbers.NumberParseException:
        zones = []
    if len(zones) == 1 and (zone := _zone(zones[0])) is not None:
        return zone
    return _zone(event_zone) or ZoneInfo("UTC")


def _allowed(clock: dt.time, start: dt.time, end: dt.time) -> bool:
    if start < end:
        return start <= clock < end
    return clock >= start or clock < end  # a window across midnight (22:00 to 06:00)


def next_allowed(now: dt.datetime, phone: str, event_zone: str | None, *,
                 start: dt.time, end: dt.time) -> dt.datetime | None:
    """None when a text to ``phone`` may go out at ``now`` (aware, any
    zone); else the first minute (UTC) when it may."""
    if start == end:
        return None  # the window is the whole day
    zone = recipient_zone(phone, event_zone)
    local = now.astimezone(zone)
    if _allowed(local.timetz().replace(tzinfo=None), start, end):
        return None
    day = local.date() if local.time() < start else local.date() + dt.timedelta(days=1)
    # Wall-clock start of the window on that day; across a DST gap the zone
    # resolves a missing time forward, which is still inside the window.
    opens = dt.datetime.combine(day, start, tzinfo=zone)
    return opens.astimezone(dt.UTC)
