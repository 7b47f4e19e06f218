"""Every route of the activity area: the feed, stream tickets and the live stream."""
from __future__ import annotations

from guestguard.events.resources import event_factory

ROUTES = (
    ("api_stream_ticket", "/api/v1/auth/stream-ticket", None),
    ("api_activity", "/api/v1/events/{event_id}/activity", event_factory),
    ("activity_stream", "/events/{event_id}/activity/stream", None),
)


def includeme(config) -> None:
    config.add_routes(ROUTES)
