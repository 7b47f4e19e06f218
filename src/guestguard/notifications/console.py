"""The console notification provider, a default plugin: it logs that a
message went out and keeps the most recent ones in memory for the
development outbox page (``/dev/outbox``). Message bodies never reach the log:
they can carry links with tokens."""
from __future__ import annotations

import collections
import datetime as dt
import logging

from guestguard.plugins import OutgoingMessage, hookimpl

log = logging.getLogger(__name__)


class ConsoleProvider:
    name = "console"
    channels = ("email", "sms", "push")

    def __init__(self, keep: int):
        self.messages: collections.deque[tuple[dt.datetime, OutgoingMessage]] = (
            collections.deque(maxlen=keep))

    def send(self, message: OutgoingMessage) -> str:
        self.messages.appendleft((dt.datetime.now(dt.UTC), message))
        log.info("console provider delivered %s notification %s",
                 message.channel, message.notification_id)
        return f"console-{message.notification_id}"


@hookimpl
def register_notification_providers(settings):
    return [ConsoleProvider(settings["notifications.console.keep"])]
