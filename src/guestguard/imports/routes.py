"""Every route of the imports area. They are added before the events
area's, whose ``/guests/{guest_id}`` would otherwise take ``/guests/import``."""
from __future__ import annotations

from guestguard.events.resources import event_factory
from guestguard.imports.resources import import_factory

UPLOADS = ("api_guest_import_preview", "api_guest_import", "event_import")

ROUTES = (
    ("api_guest_import_preview", "/api/v1/events/{event_id}/guests/import/preview", event_factory),
    ("api_guest_import", "/api/v1/events/{event_id}/guests/import", event_factory),
    ("api_guest_import_template", "/api/v1/events/{event_id}/guests/import/template", event_factory),
    ("api_guest_export", "/api/v1/events/{event_id}/guests/export", event_factory),
    ("api_import", "/api/v1/events/{event_id}/imports/{import_id}", import_factory),
    ("api_import_errors", "/api/v1/events/{event_id}/imports/{import_id}/errors", import_factory),
    # The host's page (views.py).
    ("event_import", "/events/{event_id}/import", event_factory),
    ("event_import_commit", "/events/{event_id}/import/commit", event_factory),
    ("event_import_done", "/events/{event_id}/imports/{import_id}", import_factory),
    ("event_import_undo", "/events/{event_id}/imports/{import_id}/undo", import_factory),
)


def includeme(config) -> None:
    config.add_routes(ROUTES)
    config.accept_uploads(*UPLOADS)
