"""Every route of the privacy area."""
from __future__ import annotations

from guestguard.events.resources import guest_factory
from guestguard.workspaces.resources import workspace_factory

ROUTES = (
    ("api_guest_forget", "/api/v1/events/{event_id}/guests/{guest_id}/forget", guest_factory),
    ("api_me_data_export", "/api/v1/me/data-export", None),
    ("api_workspace_retention", "/api/v1/workspaces/{workspace_id}/retention", workspace_factory),
    # The account page's button, and the emailed link (views.py).
    ("account_data_export", "/account/data-export", None),
    ("data_export_download", "/account/data-exports/{export_id}/{token}", None),
    ("account_delete", "/account/delete", None),
    ("account_deletion_cancel", "/account/deletion/cancel/{token}", None),
)


def includeme(config) -> None:
    config.add_routes(ROUTES)
