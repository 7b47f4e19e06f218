"""Reminders before an event on durable scheduled messages."""
from __future__ import annotations

from huey import crontab

from guestguard.events.resources import event_factory

ROUTES = (
    ("event_reminders", "/events/{event_id}/reminders", event_factory),
    ("event_reminder_test", "/events/{event_id}/reminders/test", event_factory),
    ("api_event_reminders", "/api/v1/events/{event_id}/reminders", event_factory),
    ("event_change_notice", "/events/{event_id}/change-notice", event_factory),
    ("api_event_change_notice", "/api/v1/events/{event_id}/change-notice", event_factory),
)


def includeme(config) -> None:
    from guestguard.reminders.services import dispatch

    config.add_routes(ROUTES)
    config.add_periodic_task(dispatch, crontab(minute="*"), in_transaction=False)
    config.scan(".views")
