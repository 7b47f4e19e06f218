"""Domain events: facts about the product (``guest.created``,
``rsvp.received``...) handed to plugins through the ``domain_event`` hook.

An event is queued when its transaction commits and delivered by a task, so
listeners never delay the response, run with a usable ``request.db`` inside
the task's own transaction, and hear nothing of a rolled-back request.
"""
from __future__ import annotations

import logging
import uuid
from typing import Any, Mapping

from guestguard.plugins import DomainEvent

log = logging.getLogger(__name__)


def emit(ctx, name: str, data: Mapping[str, Any],
         workspace_id: uuid.UUID | None = None) -> DomainEvent:
    """Announce ``name`` once the current transaction commits."""
    event = DomainEvent(name=name, data=dict(data), workspace_id=workspace_id)
    ctx.enqueue(deliver_domain_event, event)
    return event


def deliver_domain_event(request, event: DomainEvent) -> None:
    """Call every listener, each in a transaction of its own: one that raises
    is logged and rolled back, and the others still hear the event."""
    arguments = {"event": event, "request": request}
    for impl in request.registry["plugins"].hook.domain_event.get_hookimpls():
        try:
            with request.tm:
                # As pluggy would: a listener may take only the arguments it names.
                impl.function(*(arguments[name] for name in impl.argnames))
        except Exception:
            log.exception("plugin %s failed on domain event %s", impl.plugin_name, event.name)


def includeme(config) -> None:
    config.add_task(deliver_domain_event, in_transaction=False)
