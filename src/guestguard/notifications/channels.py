"""The channels messages go out on. The core's three (email, SMS, push) are
declared through ``register_notification_channels`` like a plugin's, so a
plugin adds a channel (WhatsApp, a chat webhook) with no change here; this
module is a default plugin."""
from __future__ import annotations

from collections.abc import Iterable

from guestguard.plugins import NotificationChannel, hookimpl
from guestguard.settings import Setting, SettingsError, as_str

EMAIL = NotificationChannel("email", contact_field="email", label="email")
SMS = NotificationChannel("sms", contact_field="phone", quiet_hours=True, label="text messages")
PUSH = NotificationChannel("push", label="push notifications")
CORE_CHANNELS = (EMAIL, SMS, PUSH)
# The guest's fields a channel may take its address from.
CONTACT_FIELDS = ("email", "phone")


@hookimpl
def register_notification_channels():
    return list(CORE_CHANNELS)


def index_channels(channels: Iterable[object]) -> dict[str, NotificationChannel]:
    """The declared channels by name; SettingsError for a malformed one or a
    name declared twice."""
    indexed: dict[str, NotificationChannel] = {}
    for channel in channels:
        if not isinstance(channel, NotificationChannel):
            raise SettingsError(f"notification channel {channel!r} is not a NotificationChannel")
        if not channel.name.isascii() or not channel.name.replace("_", "").isalnum() or len(channel.name) > 16:
            raise SettingsError(f"notification channel name {channel.name!r}: use up to 16 letters, digits or _")
        if channel.contact_field and channel.contact_field not in CONTACT_FIELDS:
            raise SettingsError(f"notification channel {channel.name!r}: contact_field must be one of "
                                f"{', '.join(CONTACT_FIELDS)} (or empty)")
        if channel.name in indexed:
            raise SettingsError(f"two notification channels are named {channel.name!r}")
        indexed[channel.name] = channel
    return indexed


def channel_settings(channels: Iterable[NotificationChannel]) -> list[Setting]:
    """The provider and fallback settings of the channels plugins declare
    (the core's own are among the core settings, with their defaults)."""
    core = {channel.name for channel in CORE_CHANNELS}
    settings = []
    for channel in channels:
        if channel.name in core:
            continue
        settings += [
            Setting(f"notifications.{channel.name}.provider", as_str, "",
                    f"Provider that sends {channel.label or channel.name}; empty means none is sent."),
            Setting(f"notifications.{channel.name}.fallback", as_str, "",
                    f"Provider that sends {channel.label or channel.name} when the provider's circuit breaker "
                    "is open or a send fails transiently; empty means none."),
        ]
    return settings
