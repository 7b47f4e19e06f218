"""What the host hears of a guest's doing (an invitation opened, an answer):
the audit row, the domain event and the activity item, written together.

A guest's answer is the busiest write there is, and these three rows are
most of its statements: on PostgreSQL they go in one statement (two
INSERTs as common table expressions of the third), elsewhere in three plain
INSERTs; neither waits for the unit of work's flush at commit. The writes
the news is about may go in the same statement (``Along``: an answer's row,
the guest's, the confirmation's outbox row), each one more common table
expression on PostgreSQL and its own statement, first, elsewhere. After the
commit, as for ``domain.emit`` and ``feed.add``, the event is delivered and
the item sent to the event's live streams."""
from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, bindparam, insert

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


def insert_row(table: Table, prefix: str):
    """An INSERT of every column of ``table``, each value named
    ``{prefix}_{column}``."""
    return insert(table).values({column.name: bindparam(f"{prefix}_{column.name}", type_=column.type)
                                 for column in table.columns})


def _insert(prefix: str):
    return insert_row(_TABLES[prefix], prefix)


class Along:
    """A write that goes with the host's news: ``statement`` (an INSERT or
    UPDATE whose values are all named ``{name}_...``, as ``insert_row``
    makes them) becomes the common table expression ``name`` of the news'
    statement on PostgreSQL, and runs alone before the news elsewhere.
    Built once per process, like the news' own statements."""

    __slots__ = ("alone", "name", "statement")

    def __init__(self, name: str, statement) -> None:
        self.name, self.statement, self.alone = name, statement, Prepared(statement)


def _one_statement(along: tuple[Along, ...]) -> Prepared:
    statement = _insert("item").add_cte(_insert("audit").cte("audit_row")).add_cte(_insert("event").cte("event_row"))
    for write in along:
        statement = statement.add_cte(write.statement.cte(write.name))
    return Prepared(statement)


ONE_STATEMENT = _one_statement(())
EACH = [Prepared(_insert(prefix)) for prefix in _TABLES]
# The news' statement with each combination of writes along, made on first use.
_WITH_ALONG: dict[tuple[str, ...], Prepared] = {}


def _statement_with(along: Sequence[Along]) -> Prepared:
    if not along:
        return ONE_STATEMENT
    key = tuple(write.name for write in along)
    statement = _WITH_ALONG.get(key)
    if statement is None:
        statement = _WITH_ALONG[key] = _one_statement(tuple(along))
    return statement


def tell_host(ctx, action: str, *, workspace_id: uuid.UUID, event_id: uuid.UUID, guest_id: uuid.UUID,
              details: dict[str, Any], payload: dict[str, Any], summary: str,
              data: dict[str, Any] | None = None,
              along: Sequence[tuple[Along, dict[str, Any]]] = ()) -> None:
    """Record ``action`` of the guest: audited (``details``, no actor: the
    guest has no account), a domain event (``payload``) and an item of the
    event's activity feed (``summary``, ``data``); ``along``, the writes it
    tells of, each with its values, in the same statement on PostgreSQL."""
    now = utcnow()
    rows = {"audit": audit_row(ctx, action, now, None, workspace_id, "guest", guest_id, details),
            "event": event_row(action, payload, workspace_id, None),
            "item": {"id": uuid.uuid4(), "workspace_id": workspace_id, "event_id": event_id, "guest_id": guest_id,
                     "at": now, "kind": action, "summary": summary[:SUMMARY_LIMIT], "data": dict(data or {})}}
    values = {f"{prefix}_{name}": value for prefix, row in rows.items() for name, value in row.items()}
    if ctx.db.get_bind().dialect.name == "postgresql":
        for _, write_values in along:
            values.update(write_values)
        _statement_with([write for write, _ in along]).write(ctx.db, values)
    else:
        for write, write_values in along:
            write.alone.write(ctx.db, write_values)
        for statement in EACH:
            statement.write(ctx.db, values)
    enqueue_job_batched(ctx, DomainEventRow, rows["event"]["id"], deliver_domain_events)
    publish_after_commit(ctx, event_id, item_out(Activity(**rows["item"])).model_dump(mode="json"))
