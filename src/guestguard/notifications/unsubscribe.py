"""Unsubscribing from a workspace's messages to guests.

Every guest message (invitations, reminders, confirmations) carries a link
``/unsubscribe/{token}``, and email carries it also as ``List-Unsubscribe``
with ``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058), so a
mail client can unsubscribe with one POST, without a login or a CSRF token.
The token names the workspace, the channel and the address, encrypted (the
address does not appear in the link, nor in any log of it) and
authenticated with a key of its own derived from ``app.secret``; it does not
expire, so an old message still unsubscribes.
"""
from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from guestguard.keys import Unreadable, open_sealed, seal
from guestguard.notifications.suppression import UNSUBSCRIBE, suppress

PURPOSE = "notifications.unsubscribe"
CHANNELS = ("email", "sms")
# Longer than any token this module makes (a 320-character address encrypts
# to about 500): anything longer is refused before decryption is tried.
MAX_TOKEN = 700
ONE_CLICK = "List-Unsubscribe=One-Click"


@dataclass(frozen=True)
class Subscription:
    """Whose messages to whom: what an unsubscribe token names."""

    workspace_id: uuid.UUID
    channel: str
    address: str


def token_for(settings: Mapping[str, Any], subscription: Subscription) -> str:
    payload = (subscription.workspace_id.bytes + bytes([CHANNELS.index(subscription.channel)])
               + subscription.address.encode())
    return seal(settings, PURPOSE, payload).decode().rstrip("=")


def read_token(settings: Mapping[str, Any], token: object) -> Subscription | None:
    """What a token names; None for anything this module did not make."""
    if not isinstance(token, str) or not token.isascii() or not 0 < len(token) <= MAX_TOKEN:
        return None
    try:
        payload = open_sealed(settings, PURPOSE, token + "=" * (-len(token) % 4))
    except Unreadable:
        return None
    if len(payload) < 18 or payload[16] >= len(CHANNELS):
        return None
    return Subscription(uuid.UUID(bytes=payload[:16]), CHANNELS[payload[16]], payload[17:].decode())


def url_for(settings: Mapping[str, Any], subscription: Subscription) -> str:
    return f"{settings['app.base_url'].rstrip('/')}/unsubscribe/{token_for(settings, subscription)}"


def unsubscribe(ctx, subscription: Subscription) -> None:
    """List the address for the workspace's guest messages (once: a repeat
    changes nothing)."""
    suppress(ctx, subscription.channel, subscription.address, UNSUBSCRIBE, source="guest",
             workspace_id=subscription.workspace_id)


def masked(address: str) -> str:
    """The address as the confirmation page shows it: enough for its owner
    to recognise, little for anyone else who holds the link."""
    if "@" in address:
        local, _, domain = address.rpartition("@")
        return f"{local[:1]}{'•' * min(max(len(local) - 1, 1), 6)}@{domain}"
    return f"{'•' * max(len(address) - 4, 1)}{address[-4:]}"
