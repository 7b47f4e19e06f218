"""Queries and renderings only the host pages need: the dashboard's events,
a guest's answer history and the headcount chart (times read through
``guestguard.timefmt``). Read-only; changes go through ``services``."""
from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from xml.sax.saxutils import escape

from sqlalchemy import func, select

from guestguard.events.models import Event, Guest, Rsvp
from guestguard.events.services import Headcount

DASHBOARD_UPCOMING = 100
DASHBOARD_PAST = 10


# --- the dashboard -------------------------------------------------------------


def upcoming_events(db, workspace_ids: Iterable[uuid.UUID], now: dt.datetime,
                    limit: int = DASHBOARD_UPCOMING) -> list[Event]:
    """Events not yet over (or over within the last day, still counting),
    soonest first, in one query."""
    ids = list(workspace_ids)
    if not ids:
        return []
    ends = func.coalesce(Event.ends_at, Event.starts_at)
    return list(db.scalars(
        select(Event)
        .where(Event.workspace_id.in_(ids), Event.deleted_at.is_(None), ends >= now)
        .order_by(Event.starts_at, Event.id).limit(limit)))


def past_events(db, workspace_ids: Iterable[uuid.UUID], now: dt.datetime,
                limit: int = DASHBOARD_PAST) -> list[Event]:
    """The most recent events that are over, latest first."""
    ids = list(workspace_ids)
    if not ids:
        return []
    ends = func.coalesce(Event.ends_at, Event.starts_at)
    return list(db.scalars(
        select(Event)
        .where(Event.workspace_id.in_(ids), Event.deleted_at.is_(None), ends < now)
        .order_by(Event.starts_at.desc(), Event.id).limit(limit)))


def answers(db, guest_id: uuid.UUID, limit: int = 20) -> list[Rsvp]:
    """A guest's answers, latest first."""
    return list(db.scalars(select(Rsvp).where(Rsvp.guest_id == guest_id)
                           .order_by(Rsvp.created_at.desc(), Rsvp.id).limit(limit)))


def question_answers(db, event_id: uuid.UUID) -> list:
    """Name, answer and answers to the questions of the guests who said yes
    or maybe, by name, in one query (for ``questions.rollup``)."""
    return list(db.execute(select(Guest.name, Guest.response, Guest.answers)
                           .where(Guest.event_id == event_id, Guest.response.in_(("yes", "maybe")))
                           .order_by(Guest.name, Guest.id)))


# --- the headcount chart -------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    key: str
    label: str
    colour: str


BARS = (
    Bar("yes", "Yes", "#1c6b3a"),
    Bar("maybe", "Maybe", "#8a5a00"),
    Bar("no", "No", "#b3261e"),
    Bar("pending", "No answer", "#5a6472"),
)
CHART_WIDTH, ROW, LABEL_WIDTH, COUNT_WIDTH = 360, 28, 88, 44


def headcount_summary(counts: Headcount) -> str:
    """The chart in words: its alternative text."""
    parts = ", ".join(f"{getattr(counts, bar.key)} {bar.label.lower()}" for bar in BARS)
    return (f"{parts}; expected headcount {counts.expected} including plus-ones; "
            f"{counts.invited} of {counts.guests} invited, {counts.opened} opened")


def headcount_svg(event_name: str, counts: Headcount) -> str:
    """A horizontal bar per answer, with its count: static, no script, no
    style element, so it renders under the site's CSP, also when opened
    on its own."""
    values = [getattr(counts, bar.key) for bar in BARS]
    biggest = max(values) or 1
    track = CHART_WIDTH - LABEL_WIDTH - COUNT_WIDTH
    height = ROW * len(BARS) + 8
    rows = []
    for index, (bar, value) in enumerate(zip(BARS, values, strict=False)):
        y = 4 + index * ROW
        width = round(track * value / biggest) if value else 0
        rows.append(
            f'<g><text x="{LABEL_WIDTH - 8}" y="{y + 18}" text-anchor="end" fill="#1d2430">{bar.label}</text>'
            f'<rect x="{LABEL_WIDTH}" y="{y + 4}" width="{track}" height="{ROW - 8}" rx="3" fill="#f4f6f9"/>'
            + (f'<rect x="{LABEL_WIDTH}" y="{y + 4}" width="{max(width, 3)}" height="{ROW - 8}" rx="3" '
               f'fill="{bar.colour}"/>' if value else "")
            + f'<text x="{LABEL_WIDTH + track + 8}" y="{y + 18}" fill="#1d2430" font-weight="600">{value}</text></g>')
    title = escape(f"Answers for {event_name}")
    desc = escape(headcount_summary(counts))
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-labelledby="t d" '
        f'width="{CHART_WIDTH}" height="{height}" viewBox="0 0 {CHART_WIDTH} {height}" '
        f'font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif" font-size="14">'
        f'<title id="t">{title}</title><desc id="d">{desc}</desc>'
        + "".join(rows) + "</svg>\n")
