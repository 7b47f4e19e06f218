"""The webhook inbox: provider calls stored raw, deduplicated and processed
by the worker with the handler each provider's plugin registers."""
from __future__ import annotations

from huey import crontab

from guestguard.plugins import WebhookHandler, by_name, collect
from guestguard.webhooks.models import InboxEntry
from guestguard.webhooks.services import RETRY_BACKOFF, InvalidWebhook, Received, receive
from guestguard.webhooks.tasks import process_webhook, purge_processed_webhooks

__all__ = ["InvalidWebhook", "Received", "receive"]


def includeme(config) -> None:
    registry = config.registry
    registry["webhooks.handlers"] = by_name(
        collect(registry["plugins"].hook.register_webhook_handlers(settings=config.get_settings())),
        WebhookHandler, "webhook handler", key="provider")
    config.add_task(process_webhook, in_transaction=False)
    config.add_durable_job(InboxEntry, process_webhook, max_attempts=len(RETRY_BACKOFF) + 1)
    config.add_periodic_task(purge_processed_webhooks, crontab(minute="47", hour="3"), in_transaction=False)
