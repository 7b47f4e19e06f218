"""Every route of the privacy area."""
from __future__ import annotations

from guestguard.events.resources import guest_factory

ROUTES = (
    ("api_guest_forget", "/api/v1/events/{event_id}/guests/{guest_id}/forget", guest_factory),
)


def includeme(config) -> None:
    config.add_routes(ROUTES)
