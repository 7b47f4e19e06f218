from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import insert

from guestguard.audit.models import AuditEvent
from guestguard.db import utcnow

SUCCESS, FAILURE = "success", "failure"


def record(ctx, action: str, *, result: str = SUCCESS, actor_id: uuid.UUID | None = None,
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
        request_id=ctx.request_id,
        ip=ctx.client_ip,
        details={key: value for key, value in details.items() if value is not None},
    )
    ctx.db.add(event)
    return event


def record_many(ctx, action: str, targets: list[tuple[str, Any, dict[str, Any]]], *,
                actor_id: uuid.UUID | None = None, workspace_id: uuid.UUID | None = None) -> None:
    """``record`` for a bulk action: one row per (target type, target id,
    details), all of ``action`` by one actor in one workspace, in one
    multi-row INSERT."""
    if not targets:
        return
    now = utcnow()
    ctx.db.execute(insert(AuditEvent), [audit_row(ctx, action, now, actor_id, workspace_id, target_type, target_id,
                                                  details) for target_type, target_id, details in targets])


def audit_row(ctx, action: str, at, actor_id: uuid.UUID | None, workspace_id: uuid.UUID | None,
              target_type: str | None, target_id: Any, details: dict[str, Any]) -> dict[str, Any]:
    """Every column of a successful action's audit row."""
    return {"id": uuid.uuid4(), "created_at": at, "actor_user_id": actor_id, "workspace_id": workspace_id,
            "action": action, "target_type": target_type,
            "target_id": str(target_id) if target_id is not None else None, "result": SUCCESS,
            "request_id": ctx.request_id, "ip": ctx.client_ip,
            "details": {key: value for key, value in details.items() if value is not None}}
