"""The door's routes: its page for phones and its API."""
from __future__ import annotations

from guestguard.events.resources import event_factory

ROUTES = (
    ("event_door", "/events/{event_id}/door", event_factory),
    ("event_door_checkin", "/events/{event_id}/door/checkin", event_factory),
    ("event_door_undo", "/events/{event_id}/door/undo", event_factory),
    ("api_checkins", "/api/v1/events/{event_id}/checkins", event_factory),
    ("api_checkin", "/api/v1/events/{event_id}/checkins/{scan_id}", event_factory),
    ("api_door_guests", "/api/v1/events/{event_id}/door/guests", event_factory),
    ("api_door_decode", "/api/v1/events/{event_id}/door/decode", event_factory),
    ("access_pass", "/access/{token}/pass.svg", None),
)


def includeme(config) -> None:
    config.add_routes(ROUTES)
