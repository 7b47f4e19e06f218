"""Events, guest lists, personal invitation links and RSVPs; the guard
(access log, rules and flags) and the hosts' activity feed."""
from __future__ import annotations

from huey import crontab

from guestguard.events.access import purge
from guestguard.events.api import ROUTES as API_ROUTES
from guestguard.events.flags import evaluate_pending, sweep_pending
from guestguard.events.guard_api import ROUTES as GUARD_ROUTES
from guestguard.events.live import make_broker
from guestguard.events.resources import event_factory, flag_factory, guest_factory
from guestguard.events.rules import history_window
from guestguard.plugins import AccessRule, by_name, collect
from guestguard.settings import SettingsError
from guestguard.workspaces.resources import workspace_factory

# Host pages (views.py).
HOST_ROUTES = (
    ("dashboard", "/dashboard", None),
    ("event_new", "/workspaces/{workspace_id}/events/new", workspace_factory),
    ("event_page", "/events/{event_id}", event_factory),
    ("event_edit", "/events/{event_id}/edit", event_factory),
    ("event_guests_new", "/events/{event_id}/guests/new", event_factory),
    ("event_guest", "/events/{event_id}/guests/{guest_id}", guest_factory),
    ("event_headcount_svg", "/events/{event_id}/headcount.svg", event_factory),
    ("event_send", "/events/{event_id}/send-invitations", event_factory),
    ("event_guest_send", "/events/{event_id}/guests/{guest_id}/send", guest_factory),
    ("event_flag_dismiss", "/events/{event_id}/flags/{flag_id}/dismiss", flag_factory),
    ("event_flag_reissue", "/events/{event_id}/flags/{flag_id}/reissue", flag_factory),
)

# Invitation links and the guest's side (links_api.py, guest_views.py).
INVITATION_ROUTES = (
    ("api_guest_tokens", "/api/v1/events/{event_id}/guests/{guest_id}/tokens", guest_factory),
    ("api_guest_send", "/api/v1/events/{event_id}/guests/{guest_id}/send", guest_factory),
    ("api_event_send", "/api/v1/events/{event_id}/send-invitations", event_factory),
    ("api_access", "/api/v1/access/{token}", None),
    ("api_rsvp", "/api/v1/rsvp/{token}", None),
    ("access", "/access/{token}", None),
    ("access_ics", "/access/{token}/event.ics", None),
    ("rsvp", "/rsvp/{token}", None),
)


def access_rules(settings, plugins) -> list[AccessRule]:
    """Every registered rule but those ``guard.rules_disabled`` names."""
    rules = by_name(collect(plugins.hook.register_access_rules(settings=settings)), AccessRule, "access rule")
    long = [name for name in rules if not isinstance(name, str) or not 0 < len(name) <= 64]
    if long:
        raise SettingsError(f"access rule names must be 1 to 64 characters: {', '.join(map(repr, long))}")
    unknown = set(settings["guard.rules_disabled"]) - set(rules)
    if unknown:
        raise SettingsError(f"setting 'guard.rules_disabled' names unknown access rules: {', '.join(sorted(unknown))}; "
                            f"available: {', '.join(sorted(rules))}")
    return [rule for name, rule in rules.items() if name not in settings["guard.rules_disabled"]]


def includeme(config) -> None:
    settings = config.get_settings()
    registry = config.registry
    registry["guard.rules"] = access_rules(settings, registry["plugins"])
    registry["guard.history_window"] = history_window(settings)
    registry["live.broker"] = make_broker(settings["guard.stream.url"])
    for name, pattern, factory in API_ROUTES + HOST_ROUTES + INVITATION_ROUTES + GUARD_ROUTES:
        config.add_route(name, pattern, factory=factory)
    config.add_task(evaluate_pending)
    config.add_periodic_task(sweep_pending, crontab(minute="*"))
    config.add_periodic_task(purge, crontab(minute="17", hour="3"), in_transaction=False)
    config.scan(".api")
    config.scan(".views")
    config.scan(".links_api")
    config.scan(".guest_views")
    config.scan(".guard_api")
    config.scan(".guard_views")
