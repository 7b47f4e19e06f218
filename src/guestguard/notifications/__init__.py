"""Notifications: providers chosen in settings, the outbox table, rendering
and the dispatch task."""
from __future__ import annotations

import logging
from pathlib import Path

from pyramid.settings import asbool

from guestguard.notifications.breaker import make_breakers
from guestguard.notifications.channels import index_channels
from guestguard.notifications.models import Notification
from guestguard.notifications.rendering import MessageRenderer
from guestguard.notifications.services import RETRY_BACKOFF, finish_given_up
from guestguard.notifications.tasks import dispatch_notification
from guestguard.plugins import NotificationProvider, by_name, chosen, collect
from guestguard.settings import SettingsError
from guestguard.workspaces.resources import workspace_factory

log = logging.getLogger(__name__)
# The development provider: it keeps messages for /dev/outbox and sends nothing.
CONSOLE = "console"


def select_providers(settings, providers: list[NotificationProvider], channels=("email", "sms", "push"),
                     role: str = "provider") -> dict[str, NotificationProvider]:
    """Pick the provider (``role`` "provider") or the fallback ("fallback")
    of each channel named in settings; raise SettingsError naming the
    setting when the choice is not available."""
    indexed = by_name(providers, NotificationProvider, "notification provider")
    selected: dict[str, NotificationProvider] = {}
    for channel in channels:
        key = f"notifications.{channel}.{role}"
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
    if role == "provider":
        for channel in ("email", "sms"):
            if channel not in selected:
                log.warning("no provider sends %s (notifications.%s.provider is empty): sending %s is refused",
                            channel, channel, channel)
    return selected


def select_fallbacks(settings, providers, channels, primary) -> dict[str, NotificationProvider]:
    """The fallback of each channel that names one; SettingsError for a
    fallback without a provider, or the provider itself."""
    fallbacks = select_providers(settings, providers, channels, role="fallback")
    for channel, fallback in fallbacks.items():
        key = f"notifications.{channel}.fallback"
        if channel not in primary:
            raise SettingsError(f"setting {key!r}: {channel} has no provider to fall back from")
        if primary[channel] is fallback:
            raise SettingsError(f"setting {key!r}: the fallback must differ from the provider")
    return fallbacks


def includeme(config) -> None:
    registry = config.registry
    settings = config.get_settings()
    plugins = registry["plugins"].hook
    channels = index_channels(collect(plugins.register_notification_channels()))
    registry["notifications.channels"] = channels
    providers = collect(plugins.register_notification_providers(settings=settings))
    registry["notifications.providers_by_name"] = {p.name: p for p in providers}
    registry["notifications.providers"] = select_providers(settings, providers, channels)
    registry["notifications.fallbacks"] = select_fallbacks(settings, providers, channels,
                                                           registry["notifications.providers"])
    registry["notifications.breakers"] = make_breakers(settings)
    # The pages' compiled templates cache (jinja2.bytecode_caching), for messages too.
    registry["notifications.renderer"] = MessageRenderer(
        Path(settings["app.templates_dir"]), reload=asbool(settings.get("pyramid.reload_templates", False)),
        bytecode_cache=config.get_jinja2_environment(".jinja2").bytecode_cache)
    config.include(".tasks")
    config.add_durable_job(Notification, dispatch_notification,
                           max_attempts=len(RETRY_BACKOFF) + 1, on_give_up=finish_given_up)
    config.add_route("unsubscribe", "/unsubscribe/{token}")
    # Operators only (platform.operate, granted on the root to platform admins).
    config.add_route("api_suppressions", "/api/v1/suppressions")
    config.add_route("api_suppressions_lift", "/api/v1/suppressions/lift")
    config.add_route("api_workspace_deliveries", "/api/v1/workspaces/{workspace_id}/deliveries",
                     factory=workspace_factory)
    config.scan(".pages")
    config.scan(".api")
    config.scan(".suppression_api")
    if settings["app.env"] == "development":
        config.add_route("dev_outbox", "/dev/outbox")
        config.scan(".views")
