"""Every route of the guard: the host's review pages and the flags API."""
from __future__ import annotations

from guestguard.events.resources import event_factory, guest_factory
from guestguard.guard.resources import flag_factory
from guestguard.workspaces.resources import workspace_factory

ROUTES = (
    # Host pages (views.py).
    ("event_flag_dismiss", "/events/{event_id}/flags/{flag_id}/dismiss", flag_factory),
    ("event_flag_reissue", "/events/{event_id}/flags/{flag_id}/reissue", flag_factory),
    ("workspace_guard", "/workspaces/{workspace_id}/guard", workspace_factory),
    # The API (api.py).
    ("api_flags", "/api/v1/events/{event_id}/flags", event_factory),
    ("api_flag_dismiss", "/api/v1/events/{event_id}/flags/{flag_id}/dismiss", flag_factory),
    ("api_flag_reissue", "/api/v1/events/{event_id}/flags/{flag_id}/reissue", flag_factory),
    ("api_guest_access", "/api/v1/events/{event_id}/guests/{guest_id}/access", guest_factory),
    ("api_workspace_guard", "/api/v1/workspaces/{workspace_id}/guard", workspace_factory),
)


def includeme(config) -> None:
    config.add_routes(ROUTES)
