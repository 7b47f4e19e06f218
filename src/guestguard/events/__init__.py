"""Events, guest lists, personal invitation links and RSVPs."""
from __future__ import annotations

from guestguard.events.api import ROUTES as API_ROUTES


def includeme(config) -> None:
    for name, pattern, factory in API_ROUTES:
        config.add_route(name, pattern, factory=factory)
    config.scan(".api")
