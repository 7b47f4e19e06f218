"""What Amazon SES reports through SNS, applied to the notifications: the
inbox's handler for provider ``ses``.

Both shapes are read: configuration-set events (``eventType``) and identity
notifications (``notificationType``). Delivery: delivered. A permanent
bounce: bounced, and the address suppressed. A complaint: complained, and
the address suppressed. A transient (or undetermined) bounce is a soft
bounce: after a delivery it is an out-of-office reply and changes nothing;
otherwise it is counted, and the ``ses.soft_bounce_limit``-th soft bounce to
the address within ``ses.soft_bounce_window_hours`` makes that message
``failed`` (the address is not suppressed: a full mailbox empties). A
rejection by SES: failed. Other events (opens, clicks, delays) change
nothing and say so in the inbox's note.
"""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

from guestguard.notifications.delivery import BOUNCED, COMPLAINED, DELIVERED, FAILED, advance_delivery, soft_bounce
from guestguard.plugins import InboundWebhook
from guestguard_ses import sns

PROVIDER = "ses"


class NotAnSESEvent(ValueError):
    pass


def _timestamp(value: Any) -> dt.datetime | None:
    try:
        return sns.parse_timestamp(value)
    except sns.Refused:
        return None


def _words(*parts: Any) -> str:
    return ": ".join(str(part) for part in parts if part)


class SESEvents:
    provider = PROVIDER

    def __init__(self, policy: sns.Policy, confirm: Callable[[str], None], *, soft_bounce_window: dt.timedelta,
                 soft_bounce_limit: int):
        self.policy = policy
        self.confirm = confirm
        self.window = soft_bounce_window
        self.limit = soft_bounce_limit

    def handle(self, ctx, webhook: InboundWebhook) -> str:
        envelope = json.loads(webhook.body)  # verified before it was stored
        kind = envelope["Type"]
        if kind == "SubscriptionConfirmation":
            url = sns.check_amazon_url(envelope.get("SubscribeURL"), self.policy, "SubscribeURL")
            self.confirm(url)  # raises when Amazon did not take it: retried
            return f"subscription to {envelope['TopicArn']} confirmed"
        if kind == "UnsubscribeConfirmation":
            return f"{envelope['TopicArn']} says this endpoint was unsubscribed: nothing to do"
        try:
            event = json.loads(envelope["Message"])
            if not isinstance(event, dict):
                raise NotAnSESEvent
            name = event.get("eventType") or event.get("notificationType")
            message_id = event["mail"]["messageId"]
            if not isinstance(name, str) or not isinstance(message_id, str):
                raise NotAnSESEvent
        except (ValueError, KeyError, TypeError):
            return "not an Amazon SES event (a message published to the topic by hand?): ignored"
        return self.apply(ctx, name, message_id, event)

    def apply(self, ctx, name: str, message_id: str, event: dict) -> str:
        if name == "Delivery":
            delivery = event.get("delivery") or {}
            return advance_delivery(ctx, PROVIDER, message_id, DELIVERED, at=_timestamp(delivery.get("timestamp")))
        if name == "Bounce":
            bounce = event.get("bounce") or {}
            kind, subtype = bounce.get("bounceType"), bounce.get("bounceSubType")
            at = _timestamp(bounce.get("timestamp"))
            if kind == "Permanent":
                return advance_delivery(ctx, PROVIDER, message_id, BOUNCED, _words("hard bounce", subtype), at)
            return soft_bounce(ctx, PROVIDER, message_id, _words(kind or "Undetermined", subtype), at,
                               window=self.window, limit=self.limit)
        if name == "Complaint":
            complaint = event.get("complaint") or {}
            return advance_delivery(ctx, PROVIDER, message_id, COMPLAINED,
                                    _words("complaint", complaint.get("complaintFeedbackType")),
                                    _timestamp(complaint.get("timestamp")))
        if name in ("Reject", "Rendering Failure"):
            reason = (event.get("reject") or {}).get("reason") or name
            return advance_delivery(ctx, PROVIDER, message_id, FAILED, _words("rejected by Amazon SES", reason))
        return f"{name} event for {message_id}: nothing to update"
