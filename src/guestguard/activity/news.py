"""What the host hears of a guest's doing (an invitation opened, an answer):
the audit row, the domain event and the activity item, written together.

A guest's answer is the busiest write there is, and these three rows are
most of its statements: on PostgreSQL they go in one statement (two
INSERTs as common table expressions of the third), elsewhere in three plain
INSERTs; neither waits for the unit of work's flush at commit. After the
commit, as for ``domain.emit`` and ``feed.add``, the event is delivered and
the item sent to the event's live streams."""
from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import bindparam, insert

from guestguard.activity.feed import item_out
from guestguard.activity.live import publish_after_commit
from guestguard.activity.models import Activity
from guestguard.audit.models import AuditEvent
from guestguard.audit.services import audit_row
from guestguard.db import Prepared, utcnow
from guestguard.domain import DomainEventRow, deliver_domain_events, event_row
from guestguard.tasks import enqueue_job_batched

SUMMARY_LIMIT = 500
# Each table's columns under a prefix of its own, so that one statement can
# carry the three rows' values.
_TABLES = {"audit": AuditEvent.__table__, "event": DomainEventRow.__table__, "item": Activity.__table__}


def _insert(prefix: str):
    table = _TABLES[prefix]
    return insert(table).values({column.name: bindparam(f"{prefix}_{column.name}", type_=column.type)
                                 for column in table.columns})


ONE_STATEMENT = Prepared(_insert("item").add_cte(_insert("audit").cte("audit_row"))
                         .add_cte(_insert("event").cte("event_row")))
EACH = [Prepared(_insert(prefix)) for prefix in _TABLES]


def tell_host(ctx, action: str, *, workspace_id: uuid.UUID, event_id: uuid.UUID, guest_id: uuid.UUID,
              details: dict[str, Any], payload: dict[str, Any], summary: str,
              data: dict[str, Any] | None = None) -> None:
    """Record ``action`` of the guest: audited (``details``, no actor: the
    guest has no account), a domain event (``payload``) and an item of the
    event's activity feed (``summary``, ``data``)."""
    now = utcnow()
    rows = {"audit": audit_row(ctx, action, now, None, workspace_id, "guest", guest_id, details),
            "event": event_row(action, payload, workspace_id, None),
            "item": {"id": uuid.uuid4(), "workspace_id": workspace_id, "event_id": event_id, "guest_id": guest_id,
                     "at": now, "kind": action, "summary": summary[:SUMMARY_LIMIT], "data": dict(data or {})}}
    values = {f"{prefix}_{name}": value for prefix, row in rows.items() for name, value in row.items()}
    if ctx.db.get_bind().dialect.name == "postgresql":
        ONE_STATEMENT.write(ctx.db, values)
    else:
        for statement in EACH:
            statement.write(ctx.db, values)
    enqueue_job_batched(ctx, DomainEventRow, rows["event"]["id"], deliver_domain_events)
    publish_after_commit(ctx, event_id, item_out(Activity(**rows["item"])).model_dump(mode="json"))
