"""Every route of the events area: host pages, the events API, invitation
links and the guest's pages."""
from __future__ import annotations

from guestguard.events.resources import event_factory, guest_factory
from guestguard.workspaces.resources import workspace_factory

ROUTES = (
    # Host pages (views.py).
    ("dashboard", "/dashboard", None),
    ("event_new", "/workspaces/{workspace_id}/events/new", workspace_factory),
    ("event_page", "/events/{event_id}", event_factory),
    ("event_edit", "/events/{event_id}/edit", event_factory),
    ("event_guests_new", "/events/{event_id}/guests/new", event_factory),
    ("event_guest", "/events/{event_id}/guests/{guest_id}", guest_factory),
    ("event_headcount_svg", "/events/{event_id}/headcount.svg", event_factory),
    ("event_send", "/events/{event_id}/send-invitations", event_factory),
    ("event_send_test", "/events/{event_id}/send-test", event_factory),
    ("event_duplicate", "/events/{event_id}/duplicate", event_factory),
    ("event_alerts", "/events/{event_id}/answer-alerts", event_factory),
    ("event_invitation_preview", "/events/{event_id}/invitation-preview", event_factory),
    ("event_guest_send", "/events/{event_id}/guests/{guest_id}/send", guest_factory),
    # Under the event: the guest it names is removed (or purged, when too late).
    ("event_guest_restore", "/events/{event_id}/guests/{guest_id}/restore", event_factory),
    ("event_cover_upload", "/events/{event_id}/cover", event_factory),
    ("event_questions", "/events/{event_id}/questions", event_factory),
    # Events and guest lists (api.py).
    ("api_events", "/api/v1/events", None),
    ("api_event", "/api/v1/events/{event_id}", event_factory),
    ("api_event_duplicate", "/api/v1/events/{event_id}/duplicate", event_factory),
    ("api_event_alerts", "/api/v1/events/{event_id}/answer-alerts/me", event_factory),
    ("api_guests", "/api/v1/events/{event_id}/guests", event_factory),
    ("api_guest", "/api/v1/events/{event_id}/guests/{guest_id}", guest_factory),
    ("api_guest_restore", "/api/v1/events/{event_id}/guests/{guest_id}/restore", event_factory),
    # Invitation links (links_api.py) and the guest's side (guest_views.py).
    ("api_guest_tokens", "/api/v1/events/{event_id}/guests/{guest_id}/tokens", guest_factory),
    ("api_guest_send", "/api/v1/events/{event_id}/guests/{guest_id}/send", guest_factory),
    ("api_event_send", "/api/v1/events/{event_id}/send-invitations", event_factory),
    ("api_access", "/api/v1/access/{token}", None),
    ("api_rsvp", "/api/v1/rsvp/{token}", None),
    ("access", "/access/{token}", None),
    ("access_ics", "/access/{token}/event.ics", None),
    ("rsvp", "/rsvp/{token}", None),
    # A cover image: public at an unguessable address (branding.py).
    ("event_cover", "/covers/{cover_id}/{signature}.jpg", None),
)


def includeme(config) -> None:
    config.add_routes(ROUTES)
    config.accept_uploads("event_cover_upload")
    config.allow_large_body("event_cover_upload", "covers.max_bytes")
