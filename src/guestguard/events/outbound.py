"""Addresses on other sites an invitation links to: a map search for the
venue, and Google's and Outlook's add-to-calendar pages. Built from the
event alone: never the guest's personal link, which those sites must not
learn (the .ics file, which the guest keeps, links back to the page)."""
from __future__ import annotations

import datetime as dt
import functools
from urllib.parse import urlencode

MAP_SEARCH = "https://www.openstreetmap.org/search"
GOOGLE_CALENDAR = "https://calendar.google.com/calendar/render"
OUTLOOK_CALENDAR = "https://outlook.live.com/calendar/0/action/compose"
DEFAULT_LENGTH = dt.timedelta(hours=2)
# Calendar pages take the details in the address: kept short enough for any browser.
DETAILS_LIMIT = 1000


@functools.lru_cache(maxsize=256)
def map_url(venue: str) -> str | None:
    """An OpenStreetMap search for the venue, or None without one; built
    once per process for each of the 256 venues seen last, like the
    calendar pages below."""
    venue = venue.strip()
    return f"{MAP_SEARCH}?{urlencode({'query': venue})}" if venue else None


def event_end(event) -> dt.datetime:
    return event.ends_at or event.starts_at + DEFAULT_LENGTH


def _details(event) -> str:
    return "\n\n".join(part for part in (event.description, event.host_message) if part)[:DETAILS_LIMIT]


def google_calendar_url(event) -> str:
    """Google Calendar's "add event" page, times in UTC (``…Z``)."""
    return _google_calendar_url(*_calendar_fields(event))


def outlook_calendar_url(event) -> str:
    """Outlook on the web's "new event" page, times in UTC with their offset."""
    return _outlook_calendar_url(*_calendar_fields(event))


# Every guest of an event gets the same two addresses: each is built once per
# process for what it is built from (quoting the details is most of a
# guest's page's own work otherwise), kept for the events seen lately.
CALENDAR_URLS_KEPT = 256


def _calendar_fields(event) -> tuple:
    return event.name, event.starts_at, event_end(event), _details(event), event.venue, event.timezone


@functools.lru_cache(maxsize=CALENDAR_URLS_KEPT)
def _google_calendar_url(name: str, starts_at: dt.datetime, ends_at: dt.datetime, details: str, venue: str,
                         timezone: str) -> str:
    def stamp(moment: dt.datetime) -> str:
        return moment.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")

    query = {"action": "TEMPLATE", "text": name, "dates": f"{stamp(starts_at)}/{stamp(ends_at)}",
             "details": details, "location": venue, "ctz": timezone}
    return f"{GOOGLE_CALENDAR}?{urlencode(query)}"


@functools.lru_cache(maxsize=CALENDAR_URLS_KEPT)
def _outlook_calendar_url(name: str, starts_at: dt.datetime, ends_at: dt.datetime, details: str, venue: str,
                          _timezone: str) -> str:
    def stamp(moment: dt.datetime) -> str:
        return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    query = {"path": "/calendar/action/compose", "rru": "addevent", "subject": name,
             "startdt": stamp(starts_at), "enddt": stamp(ends_at), "body": details, "location": venue}
    return f"{OUTLOOK_CALENDAR}?{urlencode(query)}"
