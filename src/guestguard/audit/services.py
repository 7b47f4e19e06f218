from __future__ import annotations

import uuid
from typing import Any

from guestguard.audit.models import AuditEvent

SUCCESS, FAILURE = "success", "failure"


def actor_of(request) -> uuid.UUID | None:
    """The person behind a request, for audit rows: None for an API key, a
    guest's link or a task."""
    identity = request.identity
    return identity.user.id if identity is not None and identity.user is not None else None


def record(request, action: str, *, result: str = SUCCESS, actor_id: uuid.UUID | None = None,
           workspace_id: uuid.UUID | None = None, target_type: str | None = None,
           target_id: Any = None, **details: Any) -> AuditEvent:
    """Add an audit row to the current transaction. Details must never hold
    secrets: they are stored and shown as they are."""
    event = AuditEvent(
        actor_user_id=actor_id,
        workspace_id=workspace_id,
        action=action,
        target_type=target_type,
        target_id=str(target_id) if target_id is not None else None,
        result=result,
        request_id=getattr(request, "request_id", None),
        ip=request.client_ip,
        details={key: value for key, value in details.items() if value is not None},
    )
    request.db.add(event)
    return event
