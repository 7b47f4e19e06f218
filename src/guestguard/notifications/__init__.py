"""Notifications: providers chosen in settings, the outbox table, rendering
and the dispatch task."""
from __future__ import annotations

import logging
from pathlib import Path

from guestguard.notifications.models import CHANNELS, Notification
from guestguard.notifications.rendering import MessageRenderer
from guestguard.notifications.services import RETRY_BACKOFF, drop_secrets
from guestguard.notifications.tasks import dispatch_notification
from guestguard.plugins import NotificationProvider, by_name, chosen, collect
from guestguard.settings import SettingsError
from guestguard.workspaces.resources import workspace_factory

log = logging.getLogger(__name__)
# The development provider: it keeps messages for /dev/outbox and sends nothing.
CONSOLE = "console"


def select_providers(settings, providers: list[NotificationProvider]) -> dict[str, NotificationProvider]:
    """Pick the provider for each channel named in settings; raise
    SettingsError naming the setting when the choice is not available."""
    indexed = by_name(providers, NotificationProvider, "notification provider")
    selected: dict[str, NotificationProvider] = {}
    for channel in CHANNELS:
        key = f"notifications.{channel}.provider"
        name = settings.get(key)
        if not name:
            continue
        provider = chosen(indexed, key, name, "provider")
        if channel not in provider.channels:
            raise SettingsError(f"setting {key!r}: provider {name!r} does not send {channel}")
        if name == CONSOLE and settings["app.env"] == "production":
            raise SettingsError(f"setting {key!r}: the console provider only keeps messages in memory and "
                                f"sends nothing; in production name a real provider, or leave it empty so "
                                f"{channel} is refused")
        selected[channel] = provider
    for channel in ("email", "sms"):
        if channel not in selected:
            log.warning("no provider sends %s (notifications.%s.provider is empty): sending %s is refused",
                        channel, channel, channel)
    return selected


def includeme(config) -> None:
    registry = config.registry
    settings = config.get_settings()
    providers = collect(registry["plugins"].hook.register_notification_providers(settings=settings))
    registry["notifications.providers_by_name"] = {p.name: p for p in providers}
    registry["notifications.providers"] = select_providers(settings, providers)
    registry["notifications.renderer"] = MessageRenderer(Path(settings["app.templates_dir"]))
    config.add_task(dispatch_notification, in_transaction=False)
    config.add_durable_job(Notification, dispatch_notification,
                           max_attempts=len(RETRY_BACKOFF) + 1, on_give_up=drop_secrets)
    config.add_route("unsubscribe", "/unsubscribe/{token}")
    config.add_route("api_workspace_deliveries", "/api/v1/workspaces/{workspace_id}/deliveries",
                     factory=workspace_factory)
    config.scan(".pages")
    config.scan(".api")
    if settings["app.env"] == "development":
        config.add_route("dev_outbox", "/dev/outbox")
        config.scan(".views")
