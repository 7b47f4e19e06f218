"""Domain events: facts about the product (``guest.created``,
``rsvp.received``...) handed to plugins through the ``domain_event`` hook once
the transaction that caused them has committed."""
from __future__ import annotations

import logging
import uuid
from typing import Any, Mapping

from guestguard.plugins import DomainEvent

log = logging.getLogger(__name__)


def emit(request, name: str, data: Mapping[str, Any],
         workspace_id: uuid.UUID | None = None) -> DomainEvent:
    """Announce ``name`` after commit; nothing is announced on rollback. A
    plugin that raises is logged and the others still hear the event."""
    event = DomainEvent(name=name, data=dict(data), workspace_id=workspace_id)
    hook = request.registry["plugins"].hook.domain_event

    def after_commit(committed: bool) -> None:
        if not committed:
            return
        for impl in hook.get_hookimpls():
            try:
                impl.function(event=event, request=request)
            except Exception:
                log.exception("plugin %s failed on domain event %s", impl.plugin_name, name)

    request.tm.get().addAfterCommitHook(after_commit)
    return event


def includeme(config) -> None:
    config.add_request_method(emit, "emit")
