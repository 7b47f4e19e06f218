"""How times read, everywhere: the host's pages, the guest's pages, emails,
text messages and the calendar file.

**One clock per event.** Every time of an event, wherever a host or a
guest reads it (pages, emails, text messages, reminders, the calendar
file's description, the door), is written by ``time_of_day``: "7:00 pm" or
"19:00", as people tell the time in the country of the event's time zone
(``twelve_hour``: CLDR's short time format, as babel has it — the United
States, Canada, Australia, India 12-hour; the United Kingdom, Ireland,
Germany, France, Japan 24-hour). A zone in no country (UTC) reads 24-hour.

Two voices, both in the event's own time zone (London times shown):

- **The host's pages**: short words —
  ``when`` "Sat 21 Jun 2030, 19:00 BST", ``short_when`` "Sat 21 Jun, 19:00"
  (the activity feed; ``static/activity.js`` writes the same, told the
  event's clock by the page), ``span`` "Sat 21 Jun 2030, 19:00 BST – 23:30",
  ``day_month`` "21 Jun".
- **What guests read**: words in full —
  ``long_when`` "Saturday 21 June 2030, 19:00 BST", ``long_span``
  "Saturday 21 June 2030, 19:00 – 23:30 BST", and ``text_when``
  "Sat 21 Jun 2030, 19:00 BST" for text messages. A New York event reads
  "Saturday 21 June 2030, 7:00 pm EDT" in both voices' clocks.

Account and workspace pages show times in UTC (``date``, ``utc_minute``,
``utc_when``, ``utc_second``, ``full_date``) and how long ago (``ago``).

**Zone names.** The zone's abbreviation where the tz database has one
("BST", "CET", "EST", "IST"). Where it has only a number (America/Sao_Paulo
says "-03", Asia/Colombo "+0530"), the offset reads "UTC−03:00",
"UTC+05:30": with a real minus sign (U+2212), as typography wants, except
in text messages, which keep the ASCII hyphen ("UTC-03:00") so they stay in
the GSM alphabet and are not sent at half the length per part.

**Refusals.** An unknown zone raises ``UnknownZone`` (a ``ValueError``):
never a silent fallback to UTC. A naive datetime raises ``ValueError``:
every stored time is aware (``db.UTCDateTime``), so a naive one is a bug.
``None`` reads as "" (an event without an end, a guest who never opened).

``FILTERS`` are the Jinja2 filters of the same names, registered on the
pages' environment (``web.py``) and the messages' (``notifications``); they
also take ISO 8601 strings with an offset, the form times take in a
notification's stored context, and ``event_span`` / ``event_long_span``
take an event.
"""
from __future__ import annotations

import datetime as dt
import functools
import zoneinfo
from collections.abc import Callable
from importlib import resources
from typing import Any

UTC = dt.UTC
MINUS = "\u2212"


class UnknownZone(ValueError):
    """A time-zone name the tz database does not know."""


# --- zones -----------------------------------------------------------------------


@functools.cache
def iana_zone_names() -> frozenset[str]:
    """The IANA database's zone names, as the tzdata package lists them
    (whatever the machine's /usr/share/zoneinfo holds besides: "localtime",
    "posix/…", "right/…"), less "Factory", which is no place."""
    listed = resources.files("tzdata").joinpath("zones").read_text(encoding="utf-8").split()
    return frozenset(listed) - {"Factory"}


@functools.cache
def zone_countries() -> dict[str, str]:
    """Zone name -> the ISO 3166 code of the country it is in, from the
    IANA database's zone.tab (zones such as UTC are in no country)."""
    table = resources.files("tzdata").joinpath("zoneinfo", "zone.tab").read_text(encoding="utf-8")
    found: dict[str, str] = {}
    for line in table.splitlines():
        if line and not line.startswith("#"):
            country, _, name, *_ = line.split("\t")
            found[name] = country
    return found


@functools.cache
def country_names() -> dict[str, str]:
    """ISO 3166 code -> the country's name, from the IANA database's iso3166.tab."""
    table = resources.files("tzdata").joinpath("zoneinfo", "iso3166.tab").read_text(encoding="utf-8")
    return dict(line.split("\t", 1) for line in table.splitlines() if line and not line.startswith("#"))


def zone_country(name: str) -> str | None:
    """The country of the zone ``name`` ("Europe/London" -> "GB"), or None."""
    return zone_countries().get(name)


@functools.cache
def place_zones() -> tuple[str, ...]:
    """The zones a host picks from, by name: "UTC" and every zone named
    after a place ("Europe/London"), without the database's aliases kept for
    old systems ("US/Eastern", "Etc/GMT+5"); any zone name is accepted."""
    return ("UTC", *sorted(name for name in zone_countries()))


def zone(name: str) -> zoneinfo.ZoneInfo:
    """The IANA zone ``name``; UnknownZone for anything else."""
    if not isinstance(name, str) or name not in iana_zone_names():
        raise UnknownZone(f"unknown time zone {name!r}")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        raise UnknownZone(f"unknown time zone {name!r}") from None


def _aware(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"a time without a zone cannot be shown: {moment.isoformat()}")
    return moment


def in_zone(moment: dt.datetime | None, timezone: str) -> dt.datetime | None:
    """``moment`` as wall-clock time in ``timezone``; None stays None."""
    if moment is None:
        return None
    return _aware(moment).astimezone(zone(timezone))


def offset(moment: dt.datetime, *, plain: bool = False) -> str:
    """"UTC+05:30", "UTC−03:00" (U+2212, or "-" with ``plain``: the GSM alphabet has no U+2212), "UTC"."""
    delta = _aware(moment).utcoffset()
    minutes = round(delta.total_seconds() / 60)
    if minutes == 0:
        return "UTC"
    sign = "+" if minutes > 0 else ("-" if plain else MINUS)
    hours, minutes = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours:02d}:{minutes:02d}"


def zone_label(moment: dt.datetime, *, plain: bool = False) -> str:
    """"BST", "CEST", "UTC"... or the offset where the zone's name is a number."""
    name = _aware(moment).tzname() or ""
    if not name or name[:1] in "+-" or name[:1].isdigit():
        return offset(moment, plain=plain)
    return name


# --- pieces ------------------------------------------------------------------------


# The countries (ISO 3166 codes) whose main language reads the time on a
# 12-hour clock: CLDR's short time format for the country ("und_US": "h:mm a")
# has an "h" or "K" hour outside quotes. A table rather than babel at each
# new country: babel keeps every locale it loads, some 1 MiB each and 6 MiB
# for the first with its global data, in every process that asked.
# tests/test_timefmt.py checks the table against babel for every country of
# the zone database.
TWELVE_HOUR_COUNTRIES = frozenset({
    "AE", "AG", "AL", "AS", "AU", "BB", "BD", "BH", "BM", "BN", "BO", "BS", "BT", "CA", "CO", "CR",
    "CU", "CY", "DJ", "DM", "DO", "DZ", "EC", "EG", "EH", "ER", "ET", "FJ", "FM", "GD", "GH", "GM",
    "GR", "GT", "GU", "GY", "HK", "HN", "IN", "IQ", "JM", "JO", "KH", "KI", "KN", "KP", "KR", "KW",
    "KY", "LB", "LC", "LR", "LS", "LY", "MH", "MO", "MP", "MR", "MW", "MX", "MY", "NA", "NI", "NZ",
    "OM", "PA", "PE", "PG", "PH", "PK", "PR", "PS", "PW", "QA", "SA", "SB", "SD", "SG", "SL", "SO",
    "SS", "SV", "SY", "SZ", "TC", "TD", "TN", "TO", "TT", "TW", "UM", "US", "VC", "VE", "VG", "VI",
    "VU", "WS", "YE",
})


def twelve_hour(timezone: str) -> bool:
    """Whether people in the country of ``timezone`` read the time on a
    12-hour clock ("h:mm a" for en_US, "HH:mm" for en_GB, de_DE, fr_FR).
    False for a zone in no country (UTC)."""
    return zone_country(timezone) in TWELVE_HOUR_COUNTRIES


def time_of_day(local: dt.datetime) -> str:
    """The one way an event's time of day reads: ``local`` (in the event's
    zone, as ``in_zone`` gives it) on the clock of the zone's country —
    "7:00 pm" or "19:00"."""
    key = getattr(local.tzinfo, "key", None)
    return clock(local) if key and twelve_hour(key) else clock24(local)


def hour_cycle(timezone: str) -> str:
    """The event's clock as ``Intl.DateTimeFormat``'s ``hourCycle`` ("h12"
    or "h23"), for the pages' scripts to write times as ``time_of_day`` does."""
    return "h12" if twelve_hour(timezone) else "h23"


def clock(moment: dt.datetime) -> str:
    """"7:00 pm"."""
    hour = moment.hour % 12 or 12
    return f"{hour}:{moment:%M} {'am' if moment.hour < 12 else 'pm'}"


def clock24(moment: dt.datetime) -> str:
    """"19:00"."""
    return f"{moment:%H:%M}"


def long_date(moment: dt.date) -> str:
    """"Saturday 21 June 2030"."""
    return f"{moment:%A} {moment.day} {moment:%B %Y}"


def short_date(moment: dt.date) -> str:
    """"Sat 21 Jun 2030"."""
    return f"{moment:%a} {moment.day} {moment:%b %Y}"


def in_event_zone(format_local: Callable[[dt.datetime], str]) -> Callable[[dt.datetime | None, str], str]:
    """A formatter of ``(moment, timezone)`` from one of the local time:
    no moment reads as ""."""

    @functools.wraps(format_local)
    def formatter(moment: dt.datetime | None, timezone: str) -> str:
        local = in_zone(moment, timezone)
        return "" if local is None else format_local(local)

    return formatter


# --- the host's pages ------------------------------------------------------------------


@in_event_zone
def when(local: dt.datetime) -> str:
    """"Sat 21 Jun 2030, 19:00 BST" (London), "Sat 21 Jun 2030, 7:00 pm EDT" (New York)."""
    return f"{short_date(local)}, {time_of_day(local)} {zone_label(local)}"


@in_event_zone
def short_when(local: dt.datetime) -> str:
    """"Sat 21 Jun, 19:00": the activity feed's times."""
    return f"{local:%a} {local.day} {local:%b}, {time_of_day(local)}"


@in_event_zone
def day_month(local: dt.datetime) -> str:
    """"21 Jun"."""
    return f"{local.day} {local:%b}"


def span(starts: dt.datetime | None, ends: dt.datetime | None, timezone: str) -> str:
    """"Sat 21 Jun 2030, 19:00 BST – 23:30": the end's date left out when
    it is the same day."""
    start = when(starts, timezone)
    if starts is None or ends is None:
        return start
    a, b = in_zone(starts, timezone), in_zone(ends, timezone)
    if a.date() == b.date():
        return f"{start} – {time_of_day(b)}"
    return f"{start} – {when(ends, timezone)}"


@in_event_zone
def form_value(local: dt.datetime) -> str:
    """The value of a datetime-local input: wall-clock time in the zone."""
    return f"{local:%Y-%m-%dT%H:%M}"


def from_form(value: str, timezone: str) -> dt.datetime:
    """A datetime-local input's value ("2030-06-21T19:00") as an aware time
    in ``timezone``; ValueError when it is not a date and time. A value that
    carries its own offset keeps it."""
    moment = dt.datetime.fromisoformat(value)
    if moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=zone(timezone))


# --- what guests read --------------------------------------------------------------------


# Every guest's page of an event reads its deadline (twice, while answers
# are open): worked out once per instant and zone, as ``long_span`` is. The
# text depends on nothing else (a time without a zone is refused, uncached).
@functools.lru_cache(maxsize=1024)
@in_event_zone
def long_when(local: dt.datetime) -> str:
    """"Saturday 21 June 2030, 19:00 BST" (London), "…, 7:00 pm EDT" (New York)."""
    return f"{long_date(local)}, {time_of_day(local)} {zone_label(local)}"


@in_event_zone
def text_when(local: dt.datetime) -> str:
    """"Sat 21 Jun 2030, 19:00 BST", for text messages (ASCII offsets)."""
    return f"{short_date(local)}, {time_of_day(local)} {zone_label(local, plain=True)}"


# Each guest's page of an event reads the same span: worked out once.
@functools.lru_cache(maxsize=1024)
def long_span(starts: dt.datetime | None, ends: dt.datetime | None, timezone: str) -> str:
    """"Saturday 21 June 2030, 19:00 – 23:30 BST"; the zone named at
    both ends when it changes in between, the dates when the day does."""
    start, end = in_zone(starts, timezone), in_zone(ends, timezone)
    if start is None or end is None:
        return long_when(starts, timezone)
    if end.date() == start.date():
        if zone_label(start) == zone_label(end):
            return f"{long_date(start)}, {time_of_day(start)} – {time_of_day(end)} {zone_label(end)}"
        return (f"{long_date(start)}, {time_of_day(start)} {zone_label(start)} – "
                f"{time_of_day(end)} {zone_label(end)}")
    return f"{long_when(starts, timezone)} – {long_when(ends, timezone)}"


# --- in UTC, and how long ago ---------------------------------------------------------------


def _utc(moment: dt.datetime) -> dt.datetime:
    return _aware(moment).astimezone(UTC)


def date(moment: dt.datetime | dt.date | None) -> str:
    """"21 Jun 2030" (a datetime's UTC date)."""
    if moment is None:
        return ""
    if isinstance(moment, dt.datetime):
        moment = _utc(moment)
    return f"{moment.day} {moment:%b %Y}"


def full_date(moment: dt.datetime | dt.date | None) -> str:
    """"1 June 2030" (a datetime's UTC date)."""
    if moment is None:
        return ""
    if isinstance(moment, dt.datetime):
        moment = _utc(moment)
    return f"{moment.day} {moment:%B %Y}"


def utc_minute(moment: dt.datetime | None) -> str:
    """"2030-06-21 19:00 UTC"."""
    return f"{_utc(moment):%Y-%m-%d %H:%M} UTC" if moment is not None else ""


def utc_second(moment: dt.datetime | None) -> str:
    """"2030-06-21 19:00:05 UTC"."""
    return f"{_utc(moment):%Y-%m-%d %H:%M:%S} UTC" if moment is not None else ""


def utc_when(moment: dt.datetime | None) -> str:
    """"21 Jun 2030, 19:00 UTC"."""
    if moment is None:
        return ""
    moment = _utc(moment)
    return f"{moment.day} {moment:%b %Y}, {clock24(moment)} UTC"


def ago(moment: dt.datetime | None, now: dt.datetime | None = None) -> str:
    """"just now", "1 minute ago", "3 hours ago", "2 days ago"."""
    if moment is None:
        return ""
    now = now if now is not None else dt.datetime.now(UTC)
    seconds = max(0, int((_aware(now) - _aware(moment)).total_seconds()))
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'} ago"
    return "just now"


# --- Jinja2 filters ----------------------------------------------------------------------------


def as_moment(value: Any) -> dt.datetime | None:
    """A datetime, or an ISO 8601 string with an offset (as times are kept in
    a notification's context), as an aware datetime; None and "" as None."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if not isinstance(value, dt.datetime):
        raise TypeError(f"not a time: {value!r}")
    return _aware(value)


def _zoned(formatter: Callable[..., str]) -> Callable[..., str]:
    def apply(value: Any, timezone: str) -> str:
        return formatter(as_moment(value), timezone)
    apply.__doc__ = formatter.__doc__
    return apply


def _spanned(formatter: Callable[..., str]) -> Callable[..., str]:
    def apply(starts: Any, ends: Any, timezone: str) -> str:
        return formatter(as_moment(starts), as_moment(ends), timezone)
    apply.__doc__ = formatter.__doc__
    return apply


def _plain(formatter: Callable[..., str]) -> Callable[..., str]:
    def apply(value: Any) -> str:
        return formatter(value if isinstance(value, dt.date) and not isinstance(value, dt.datetime)
                         else as_moment(value))
    apply.__doc__ = formatter.__doc__
    return apply


def event_span(event) -> str:
    """The host's reading of an event's time (``span`` in its zone)."""
    return span(event.starts_at, event.ends_at, event.timezone)


def event_long_span(event) -> str:
    """The guest's reading of an event's time (``long_span`` in its zone)."""
    return long_span(event.starts_at, event.ends_at, event.timezone)


FILTERS: dict[str, Callable[..., str]] = {
    "when": _zoned(when), "short_when": _zoned(short_when), "day_month": _zoned(day_month),
    "form_value": _zoned(form_value), "long_when": _zoned(long_when), "text_when": _zoned(text_when),
    "span": _spanned(span), "long_span": _spanned(long_span),
    "event_span": event_span, "event_long_span": event_long_span, "hour_cycle": hour_cycle,
    "date": _plain(date), "full_date": _plain(full_date), "utc_minute": _plain(utc_minute),
    "utc_second": _plain(utc_second), "utc_when": _plain(utc_when),
    "ago": lambda value, now=None: ago(as_moment(value), now),
}


def add_filters(env) -> None:
    """Register ``FILTERS`` on a Jinja2 environment."""
    env.filters.update(FILTERS)
