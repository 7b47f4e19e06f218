"""Row-level security on PostgreSQL: which workspaces each transaction may see.

Every tenant table has a policy (migration 0028) reading four settings local
to the transaction (``set_config(..., true)``, so a connection handed to
another client by PgBouncer in transaction mode carries nothing over):

``guestguard.workspaces``
    the workspaces the actor may see, comma-separated;
``guestguard.user``
    the signed-in person: their own memberships (and those workspaces) are
    visible, which is how their roles are read before the scope is known;
``guestguard.lookup``
    one credential being looked up by its hash (an invitation link, an API
    key's lookup id, a workspace invitation, a stream ticket, a pass): only
    the row carrying it is visible until its workspace is opened;
``guestguard.scope``
    ``system`` for the worker's and the operator's work across workspaces.

A session carries its ``Scope`` in ``info``; it is set on the connection at
the start of every transaction and again whenever it changes mid-transaction.
Web requests start with no workspace at all (``NOBODY``) and get the
identity's workspaces from ``scope_tween_factory``; guest token paths open
the workspace of the credential they found (``open_credential``); tasks run
with the workspaces of whoever queued them (``stored``/``from_stored``);
periodic work, the reaper and the command line use ``SYSTEM``.

On SQLite none of this applies: nothing is sent, and the application's own
filters are the only ones (as on PostgreSQL they remain the first ones).
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import re
import uuid
from collections.abc import Iterator
from typing import Any

from pyramid.tweens import MAIN
from sqlalchemy import Uuid, bindparam, event, func, literal_column, select, text
from sqlalchemy.orm import Session

SCOPE_KEY = "rls.scope"
# Where ``db.connection_of`` keeps a session's own connection in its ``info``
# (defined here, as ``db`` imports this module).
OWN_CONNECTION = "db.own_connection"
SYSTEM_WORD = "system"


@dataclasses.dataclass(frozen=True)
class Scope:
    workspaces: frozenset[uuid.UUID] = frozenset()
    user_id: uuid.UUID | None = None
    system: bool = False

    def settings(self) -> dict[str, str]:
        return {
            "scope": SYSTEM_WORD if self.system else "",
            "workspaces": ",".join(sorted(str(workspace_id) for workspace_id in self.workspaces)),
            "user": str(self.user_id) if self.user_id else "",
        }

    def stored(self) -> dict[str, Any] | None:
        """What a task queued in this scope keeps to run in it: the
        workspaces and the person; None for the system scope or no workspace
        at all."""
        if self.system or not self.workspaces:
            return None
        return {"workspaces": sorted(str(workspace_id) for workspace_id in self.workspaces),
                "user": str(self.user_id) if self.user_id else None}


NOBODY = Scope()
SYSTEM = Scope(system=True)

APPLY = text("SELECT set_config('guestguard.scope', :scope, true), "
             "set_config('guestguard.workspaces', :workspaces, true), "
             "set_config('guestguard.user', :user, true)")
# APPLY for a psycopg cursor, with Scope.settings() (a hot path that skips
# SQLAlchemy's execution).
APPLY_DRIVER_SQL = ("SELECT set_config('guestguard.scope', %(scope)s, true), "
                    "set_config('guestguard.workspaces', %(workspaces)s, true), "
                    "set_config('guestguard.user', %(user)s, true)")


@functools.cache
def _open_statement():
    # Built at first use: ``db`` imports this module for the session's scope.
    from guestguard.db import Prepared

    # On the session's DBAPI connection (``db.Prepared``): it is the first
    # statement of every guest's request, and SQLAlchemy's execution of a
    # text statement (context, result object, column descriptions) cost
    # more CPU than the round trip itself.
    return Prepared(select(func.guestguard_open(bindparam("credentials"), bindparam("key_column"),
                                                bindparam("key"), type_=Uuid())))


def applies(db: Session) -> bool:
    return db.get_bind().dialect.name == "postgresql"


def scope_of(db: Session) -> Scope:
    return db.info.get(SCOPE_KEY, NOBODY)


def set_scope(db: Session, scope: Scope) -> None:
    """Make ``scope`` this session's, now (when a transaction is open) and at
    the start of each of its later transactions."""
    db.info[SCOPE_KEY] = scope
    if applies(db):
        from guestguard.db import open_connection

        connection = open_connection(db)
        if connection is not None:
            connection.execute(APPLY, scope.settings())


def keep_for_next(db: Session, scope: Scope) -> None:
    """Make ``scope`` this session's from its next transaction on, telling
    the current one nothing (it failed)."""
    db.info[SCOPE_KEY] = scope


def from_stored(stored: dict[str, Any] | None) -> Scope:
    """The scope a task runs in: the one it was queued in, or the system's
    for a task nobody's workspace queued (periodic work, the reaper, an
    anonymous request such as a provider's webhook)."""
    if not stored:
        return SYSTEM
    user = stored.get("user")
    return Scope(workspaces=frozenset(uuid.UUID(value) for value in stored["workspaces"]),
                 user_id=uuid.UUID(user) if user else None)


def open_workspace(db: Session, workspace_id: uuid.UUID) -> None:
    """Let this transaction see ``workspace_id`` as well (a workspace just
    created, the workspace an unsubscribe link names once its signature is
    checked)."""
    scope = scope_of(db)
    if scope.system or workspace_id in scope.workspaces:
        return
    set_scope(db, dataclasses.replace(scope, workspaces=scope.workspaces | {workspace_id}))


def open_credential(db: Session, column, value: str) -> uuid.UUID | None:
    """Look up the credential row whose ``column`` (a unique hash or lookup
    id of a table with ``workspace_id``) is ``value`` and open its workspace
    to this transaction: the workspace's id, or None when there is no such
    row. Only that row is visible while looking (``guestguard.lookup`` stays
    set until the transaction ends, showing that row alone). One statement
    (``guestguard_open``); nothing on SQLite."""
    if not applies(db):
        return None
    scope = scope_of(db)
    if scope.system:
        return None
    (workspace_id,) = _open_statement().first(db, {"credentials": column.table.name, "key_column": column.name,
                                                   "key": value})
    if workspace_id is not None:
        opened(db, workspace_id)
    return workspace_id


def open_credential_sql(column, key):
    """``guestguard_open`` of ``column``'s credential ``key`` (a bind
    parameter) as SQL, for a statement that opens the credential's workspace
    and reads it in one: only what it evaluates after the call (a LATERAL
    subquery on its result) sees the workspace. Call ``opened`` with the
    workspace it found."""
    return func.guestguard_open(literal_column(f"'{column.table.name}'"), literal_column(f"'{column.name}'"), key,
                                type_=Uuid())


def opened(db: Session, workspace_id: uuid.UUID) -> None:
    """Keep ``workspace_id``, which ``guestguard_open`` has just opened to
    this transaction on the connection, in the session's scope for its later
    transactions (without the lookup, which was this one's)."""
    scope = scope_of(db)
    if not scope.system and workspace_id not in scope.workspaces:
        db.info[SCOPE_KEY] = dataclasses.replace(scope, workspaces=scope.workspaces | {workspace_id})


def open_workspaces_of(db: Session, user_id: uuid.UUID) -> None:
    """Let this transaction see every workspace ``user_id`` belongs to,
    closed ones included: for a path the person's emailed token opens (their
    account's deletion called off) rather than a signed-in identity."""
    if not applies(db):
        return
    scope = scope_of(db)
    if scope.system:
        return
    set_scope(db, dataclasses.replace(scope, user_id=user_id))
    mine = db.scalars(text("SELECT workspace_id FROM memberships WHERE user_id = :user"), {"user": user_id})
    set_scope(db, dataclasses.replace(scope, workspaces=scope.workspaces | set(mine), user_id=user_id))


@contextlib.contextmanager
def as_system(db: Session) -> Iterator[None]:
    """Within the block, this transaction sees every workspace: for the few
    questions asked across tenants by design (is a workspace slug taken)."""
    before = scope_of(db)
    set_scope(db, SYSTEM)
    try:
        yield
    finally:
        set_scope(db, before)


def app_role_statements(role: str) -> list[str]:
    """The SQL, run as the tables' owner after ``guestguard migrate``, that
    makes ``role`` the application's role: it may log in and read and write
    rows, owns nothing, cannot bypass row-level security, and cannot change
    the schema. Tables a later migration creates are granted to it by
    default (for migrations run by the same owner). Its password is the
    operator's to set (``ALTER ROLE ... PASSWORD``, or ``\\password`` in psql)."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", role):
        raise ValueError("a role name is lower-case letters, digits and underscores, starting with a letter")
    return [
        f"CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS",
        f"GRANT USAGE ON SCHEMA public TO {role}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
        f"REVOKE INSERT, UPDATE, DELETE ON alembic_version FROM {role}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {role}",
    ]


def apply_to(connection, scope: Scope) -> None:
    """Set ``scope`` for the transaction of a plain connection (a tool that
    reads without a session); nothing on SQLite."""
    if connection.dialect.name == "postgresql":
        connection.execute(APPLY, scope.settings())


def _apply_on_begin(session: Session, _transaction, connection) -> None:
    # A transaction starts with the settings empty (they are only ever set
    # for one transaction): nothing to send for no workspace at all, the
    # scope of every anonymous request until it opens a credential. A
    # session joining the transaction of its own connection (``db.connection_of``)
    # finds it in its scope already: kept so from its beginning.
    scope = scope_of(session)
    if scope != NOBODY and connection is not session.info.get(OWN_CONNECTION):
        apply_to(connection, scope)


def scoped(session_factory):
    """Make every session of ``session_factory`` set its scope at the start
    of each transaction."""
    event.listen(session_factory, "after_begin", _apply_on_begin)
    return session_factory


def scope_for_identity(db: Session, identity) -> Scope:
    """The scope of a web request: the workspaces the caller belongs to (an
    API key: its own), or none for an anonymous caller."""
    if identity is None:
        return NOBODY
    if identity.api_key is not None:
        return Scope(workspaces=frozenset({identity.api_key.workspace_id}))
    # Their memberships are read under their own id, before the scope names
    # any workspace (an access token's identity read them with its session,
    # under that id already).
    if scope_of(db).user_id != identity.user.id:
        set_scope(db, Scope(user_id=identity.user.id))
    return Scope(workspaces=frozenset(identity.roles), user_id=identity.user.id)


def scope_request(request) -> None:
    """Scope the transaction of ``request`` to what its caller may see (the
    tween does it for every web request; a scripted request acting as
    someone calls it itself)."""
    set_scope(request.db, scope_for_identity(request.db, request.identity))


def scope_tween_factory(handler, registry):
    """Just above the router, inside pyramid_tm's transaction and under the
    exception views (an error identifying the caller gets its usual answer):
    before the route's resource is looked up, scope the request's
    transaction to what its caller may see."""
    if registry["db.engine"].dialect.name != "postgresql":
        return handler

    def tween(request):
        scope_request(request)
        return handler(request)

    return tween


def includeme(config) -> None:
    config.add_tween("guestguard.rls.scope_tween_factory", over=MAIN)
