"""Engine, one session per request joined to pyramid_tm, the declarative base
and the column mixins every model uses."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import time
import uuid
from pathlib import Path
from typing import Any

from prometheus_client import Gauge
from sqlalchemy import JSON, DateTime, MetaData, Uuid, create_engine, delete, event, exc as sa_exc, false, func, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.types import TypeDecorator
from transaction.interfaces import NoTransaction
from zope.sqlalchemy.datamanager import STATUS_ACTIVE, SessionDataManager, ZopeStatus, join_transaction, mark_changed

from guestguard.rls import NOBODY, OWN_CONNECTION, SCOPE_KEY, apply_to, scope_of, scoped

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def default_migrations_dir() -> Path:
    """The Alembic scripts of this code: ``migrations/`` beside the package in
    the source tree, whichever ini file is used."""
    return Path(__file__).resolve().parents[2] / "migrations"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC timestamp on every backend (SQLite stores naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where a timezone-aware one is required")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")


EMPTY_LIST, EMPTY_OBJECT = frozenset({b"[]", "[]"}), frozenset({b"{}", "{}"})


def read_json(data: str | bytes) -> Any:
    """A JSON value from the database (the engine's ``json_deserializer``):
    an empty list or object, which most guests' tags, plus-ones' names and
    answers are, made without the parser (a page of 50 guests reads 150 of
    them); anything else as ``json.loads`` reads it."""
    if len(data) == 2:
        if data in EMPTY_LIST:
            return []
        if data in EMPTY_OBJECT:
            return {}
    return json.loads(data)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        dt.datetime: UTCDateTime(),
        uuid.UUID: Uuid(),
        dict[str, Any]: JSONType,
        list[Any]: JSONType,
    }


class IdMixin:
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4, sort_order=-1)


class TimestampMixin:
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


def make_engine(settings: dict[str, Any]) -> Engine:
    url: str = settings["db.url"]
    options: dict[str, Any] = {}
    if settings["db.echo"]:
        # Through the logging configuration (and so its redaction), not
        # create_engine(echo=True), which adds a handler of its own.
        logging.getLogger("sqlalchemy.engine").setLevel(logging.INFO)
    if url.startswith("sqlite"):
        ensure_sqlite_dir(url)
    else:
        options.update(
            pool_size=settings["db.pool_size"],
            max_overflow=settings["db.max_overflow"],
            pool_timeout=settings["db.pool_timeout"],
            pool_recycle=settings["db.pool_recycle"],
            # psycopg's own keyword: None prepares nothing (PgBouncer, transaction mode).
            connect_args={"prepare_threshold": settings["db.prepare_threshold"]},
        )
    engine = create_engine(url, json_deserializer=read_json, **options)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        ping_after_idle(engine, settings["db.ping_idle_seconds"])
    count_connections_in_use(engine)
    return engine


POOL_IN_USE = Gauge("gg_db_pool_in_use", "Database connections checked out of the pool (in use) now.",
                    multiprocess_mode="livesum")


def count_connections_in_use(engine: Engine) -> None:
    """Keep POOL_IN_USE up to date. Registered after the idle check, whose
    refusal of a dead connection means no checkout; a connection is counted
    once however often its checkout is retried, and uncounted once."""

    @event.listens_for(engine, "checkout")
    def _out(_dbapi_connection, record, _proxy) -> None:
        if not record.record_info.get("gg.in_use"):
            record.record_info["gg.in_use"] = True
            POOL_IN_USE.inc()

    @event.listens_for(engine, "checkin")
    def _in(_dbapi_connection, record) -> None:
        if record.record_info.pop("gg.in_use", False):
            POOL_IN_USE.dec()


def ping_after_idle(engine: Engine, idle_seconds: int) -> None:
    """Check a pooled connection before handing it out only when it has sat
    unused for ``idle_seconds`` or more; a dead one is replaced (the pool
    tries again with a fresh connection) and the request never sees it.

    Not ``pool_pre_ping``: that costs a round trip on every checkout, one
    statement in five of a guest's page, while under load connections are
    back in use within milliseconds and a server restart or idle-timeout
    closes them only while they sit idle. A connection that dies while in
    use fails its request either way (503, ``outages``)."""
    if idle_seconds < 0:
        return

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection, record) -> None:
        record.info["gg.idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection, record, _proxy) -> None:
        since = record.info.get("gg.idle_since")
        if since is None or time.monotonic() - since < idle_seconds:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            # The pool discards this connection and checks out another.
            raise sa_exc.DisconnectionError(f"pooled connection found dead after idling: {error}") from error


def ensure_sqlite_dir(url: str) -> None:
    path = url.removeprefix("sqlite:///")
    if path and path != ":memory:" and not url.startswith("sqlite://?"):
        Path(path).parent.mkdir(parents=True, exist_ok=True)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the in-process worker read while a request writes; the busy
    # timeout turns brief lock contention into a wait instead of an error.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


# Locks held until the transaction ends, for changes that must see each
# other (two demotions of the last owners, two sends of one invitation):
# whoever comes next waits, then reads what the one before committed.
# SQLite ignores FOR UPDATE and has no advisory locks; it has one write lock
# for the whole database, which any write takes until commit (here a delete
# of nothing), and what the transaction reads after taking it includes every
# earlier commit.


def is_sqlite(db: Session) -> bool:
    return db.get_bind().dialect.name == "sqlite"


def insert_ignoring_conflict(db: Session, table, values: dict, **conflict) -> int:
    """INSERT … ON CONFLICT DO NOTHING on either backend (``conflict``: the
    dialects' ``index_elements``/``index_where``): 1 when the row went in,
    0 when a conflicting one was there or came first (on PostgreSQL, after
    waiting for its transaction). Counted by RETURNING: the driver's
    rowcount is not reliable for this statement."""
    if is_sqlite(db):
        from sqlalchemy.dialects.sqlite import insert
    else:
        from sqlalchemy.dialects.postgresql import insert
    statement = insert(table).values(**values).on_conflict_do_nothing(**conflict).returning(table.c.id)
    return 0 if db.execute(statement).first() is None else 1


def insert_many_ignoring_conflict(db: Session, table, rows: list[dict], chunk: int = 1000, **conflict) -> int:
    """``insert_ignoring_conflict`` for many rows, ``chunk`` to a statement:
    how many went in."""
    if is_sqlite(db):
        from sqlalchemy.dialects.sqlite import insert
    else:
        from sqlalchemy.dialects.postgresql import insert
    inserted = 0
    for start in range(0, len(rows), chunk):
        statement = (insert(table).values(rows[start:start + chunk]).on_conflict_do_nothing(**conflict)
                     .returning(table.c.id))
        inserted += len(db.execute(statement).all())
    return inserted


def sqlite_write_lock(db: Session, model: type) -> None:
    """SQLite's one write lock, taken by a write to ``model``'s table that
    changes nothing."""
    db.execute(delete(model).where(false()))


# Execution option: read rows a model's soft deletion hides from ORM
# queries (a removed guest, for its undo and its purge).
ALL_ROWS = "all_rows"


def lock_row(db: Session, model: type, row_id) -> None:
    """Hold one row: SELECT … FOR NO KEY UPDATE; SQLite's write lock there.

    Not FOR UPDATE: a transaction that has already inserted a row referring
    to this one (an access-log entry naming the guest) holds its KEY SHARE
    lock, which FOR UPDATE waits on; two such transactions each waiting on
    the other's would deadlock. FOR NO KEY UPDATE still excludes every other
    holder of this lock, and lets rows referring to this one be written."""
    if is_sqlite(db):
        sqlite_write_lock(db, model)
    else:
        db.execute(select(model.id).where(model.id == row_id).with_for_update(key_share=True)
                   .execution_options(**{ALL_ROWS: True}))


def lock_name(db: Session, name: str, model: type) -> None:
    """Hold the lock called ``name``: PostgreSQL's advisory transaction lock,
    which blocks no row; SQLite's write lock there (taken through ``model``'s
    table)."""
    if is_sqlite(db):
        sqlite_write_lock(db, model)
    else:
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        db.execute(select(func.pg_advisory_xact_lock(key)))


# zope.sqlalchemy's listeners, registered once on the session factory
# instead of on every request's session (``zope.sqlalchemy.register`` on an
# instance costs about as much as the session itself): each session carries
# its transaction manager in ``info["tm"]`` and the listeners read it there.
# A session made without one (the live stream's short reads) is left alone.


def _join(session: Session, *_args) -> None:
    tm = session.info.get("tm")
    if tm is not None:
        join_transaction(session, STATUS_ACTIVE, tm)


def _changed(session: Session) -> None:
    tm = session.info.get("tm")
    if tm is not None:
        mark_changed(session, tm)


def _flushed(session: Session, _flush_context) -> None:
    _changed(session)


def _bulk_changed(context) -> None:
    _changed(context.session)


def _before_commit(session: Session) -> None:
    tm = session.info.get("tm")
    if tm is not None and not session.in_nested_transaction() and tm.get().status != ZopeStatus.COMMITTING:
        raise AssertionError("Transaction must be committed using the transaction manager")


def _executed(state) -> None:
    # Core INSERT/UPDATE/DELETE run through the session count as changes too
    # (zope.sqlalchemy's own listener counts ORM statements only), so a
    # transaction whose only write is a Core insert commits.
    if state.is_insert or state.is_update or state.is_delete:
        _changed(state.session)


def joined_to_transactions(session_factory: sessionmaker) -> sessionmaker:
    """Make every session of ``session_factory`` follow the transaction
    manager it is given (``session_for``)."""
    event.listen(session_factory, "after_begin", _join)
    event.listen(session_factory, "after_attach", _join)
    event.listen(session_factory, "after_flush", _flushed)
    event.listen(session_factory, "after_bulk_update", _bulk_changed)
    event.listen(session_factory, "after_bulk_delete", _bulk_changed)
    event.listen(session_factory, "before_commit", _before_commit)
    event.listen(session_factory, "do_orm_execute", _executed)
    return session_factory


# As SQLAlchemy's own commit bounds the flushes of a session whose
# listeners keep adding to it.
FLUSHES_BEFORE_COMMIT = 100


class _OwnTransaction:
    """A session's own connection (``connection_of``) as a resource of the
    transaction manager's transaction: committed in its vote, rolled back
    with everything else, and given back to the pool either way."""

    def __init__(self, session: Session, connection) -> None:
        self.session = session
        self.connection = connection
        self.engine = connection.engine
        self.transaction_manager = session.info["tm"]

    def sortKey(self) -> str:  # noqa: N802 (the transaction package's name)
        # Before zope.sqlalchemy's "~sqlalchemy:<number>", so this COMMIT
        # is the first vote. The session has flushed what it holds by then
        # (every resource's tpc_begin comes before any vote), and its own
        # vote, on a transaction it joined, commits nothing. Were this vote
        # after the session's, a failed COMMIT here would have the
        # transaction ask the session's resource to abort a commit it had
        # recorded as done.
        return "~sqlalchemy:!own"

    # A deadlock or serialization failure on this connection has the
    # request replayed (pyramid_retry asks the transaction's resources),
    # as it has when the session's own resource is there to answer.
    should_retry = SessionDataManager.should_retry

    def abort(self, _transaction) -> None:
        self._end()

    def tpc_begin(self, _transaction) -> None:
        pass

    def commit(self, _transaction) -> None:
        pass

    def tpc_vote(self, _transaction) -> None:
        # Objects a flush's own listeners added after the session's
        # resource flushed (in tpc_begin) go in before the COMMIT, as the
        # session's commit would have flushed them; after it they would
        # land in a transaction of their own, rolled back at the end.
        session = self.session
        if session.info.get(OWN_CONNECTION) is self.connection:
            for _ in range(FLUSHES_BEFORE_COMMIT):
                if not (session.new or session.dirty or session.deleted):
                    break
                session.flush()
        self.connection.commit()

    def tpc_finish(self, _transaction) -> None:
        self._end()

    def tpc_abort(self, _transaction) -> None:
        self._end()

    def _end(self) -> None:
        session = self.session
        try:
            if session.info.pop(OWN_CONNECTION, None) is not None:
                session.bind = self.engine
                # The session joined the connection's transaction (an abort
                # may reach this resource first): let it go before the
                # connection. It neither commits nor rolls back a transaction
                # it joined.
                if session.in_transaction():
                    session.close()
        finally:
            self.connection.close()  # rolls back what was not committed


def _own_connection(db: Session):
    """A connection of the session's engine in a transaction joined to the
    session's transaction manager, made the session's bind, so that the
    session's own transaction, if it ever needs one, joins it; None where
    that does not apply (no explicit manager with a transaction under way,
    not PostgreSQL)."""
    tm = db.info.get("tm")
    engine = db.bind
    if tm is None or not getattr(tm, "explicit", False) or not isinstance(engine, Engine) \
            or engine.dialect.name != "postgresql":
        return None
    try:
        transaction = tm.get()
    except NoTransaction:
        return None
    if transaction.status != ZopeStatus.ACTIVE:
        return None
    connection = engine.connect()
    try:
        connection.begin()
        scope = scope_of(db)
        if scope != NOBODY:
            apply_to(connection, scope)
        transaction.join(_OwnTransaction(db, connection))
    except BaseException:
        connection.close()
        raise
    db.info[OWN_CONNECTION] = connection
    db.bind = connection
    return connection


def connection_of(db: Session) -> tuple[Any, bool]:
    """The connection a statement run outside the ORM uses, and whether it
    is the session's own transaction's (which then needs telling of a
    write, ``mark_changed``).

    Until the ORM needs the session, a session joined to an explicit
    transaction manager (a web request's, a task's) runs such statements on
    a plain connection of its own, in a transaction the manager commits:
    beginning and committing the session's own transaction around a
    guest's one statement (its state snapshot, its events, its resource for
    the manager) cost a tenth of the invitation page's CPU. The session's
    own transaction, once it begins, joins that connection's, so the
    request still has one transaction on one connection."""
    if db.in_transaction():
        return db.connection(), True
    own = db.info.get(OWN_CONNECTION) or _own_connection(db)
    if own is None:
        return db.connection(), True
    return own, False


def open_connection(db: Session):
    """The connection of the session's transaction under way (its own
    transaction's, or the one ``connection_of`` began); None when none is."""
    if db.in_transaction():
        return db.connection()
    return db.info.get(OWN_CONNECTION)


def session_for(session_factory: sessionmaker, transaction_manager, request=None) -> Session:
    """A session whose commit and rollback follow ``transaction_manager``."""
    return session_factory(info={"request": request, "tm": transaction_manager})


def replica_session(request) -> Session:
    """``request.replica_db``: a session on ``db.replica_url`` for reads that
    may lag the primary (exports), closed when the request ends; without a
    replica, ``request.db`` itself. Never for a read that decides a write."""
    replica_sessions = request.registry["db.replica_sessions"]
    if replica_sessions is None:
        return request.db
    # The request's scope (row-level security) goes with it: the replica
    # has the primary's policies.
    session = replica_sessions(info={SCOPE_KEY: scope_of(request.db)})
    request.add_finished_callback(lambda _request: session.close())
    return session


def includeme(config) -> None:
    settings = config.get_settings()
    engine = make_engine(settings)
    # "rollback_only": a session whose bind is a connection already in a
    # transaction (``connection_of``) joins it and never commits it.
    session_factory = scoped(joined_to_transactions(sessionmaker(bind=engine, expire_on_commit=False,
                                                                 join_transaction_mode="rollback_only")))
    config.registry["db.engine"] = engine
    replica = make_engine({**settings, "db.url": settings["db.replica_url"]}) if settings["db.replica_url"] else None
    config.registry["db.replica_engine"] = replica
    config.registry["db.replica_sessions"] = scoped(sessionmaker(bind=replica)) if replica is not None else None
    config.registry["db.session_factory"] = session_factory
    config.add_request_method(
        lambda request: session_for(session_factory, request.tm, request), "db", reify=True)
    config.add_request_method(replica_session, "replica_db", reify=True)


_PLACEHOLDER = re.compile(r"%%|%\((\w+)\)s")


def _native_placeholders(sql: str) -> tuple[str, tuple[str, ...]]:
    """``sql`` in psycopg's ``%(name)s`` style turned into PostgreSQL's own
    ``$1``, ``$2`` (a name used twice is one placeholder), with the names in
    placeholder order. Done once per statement: psycopg would otherwise
    parse the SQL at each run when it is longer than 4 KiB or has more than
    50 parameters (its cache of parsed queries skips those), as the host's
    news with an answer's writes along has."""
    names: list[str] = []

    def placeholder(match: re.Match) -> str:
        if match.group(1) is None:
            return "%"
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    return _PLACEHOLDER.sub(placeholder, sql), tuple(names)


KEPT_CURSOR = "guestguard.raw_cursor"


def _kept_cursor(pooled) -> Any:
    """The raw psycopg cursor of a pooled connection, made once per DBAPI
    connection and kept in its ``info`` (which the pool empties when it
    reconnects). psycopg keeps a cursor's adapters of result columns and
    parameters while it runs the same statement again, which a new cursor
    finds anew at every run: a connection serving guests' repeat views runs
    the look-up (over forty columns) over and over."""
    dbapi_connection = pooled.dbapi_connection
    cursor = pooled.info.get(KEPT_CURSOR)
    if cursor is None or cursor.closed or cursor.connection is not dbapi_connection:
        from psycopg import RawCursor

        cursor = pooled.info[KEPT_CURSOR] = RawCursor(dbapi_connection)
    return cursor


class _Execution:
    """What a prepared run hands the engine's cursor events as its execution
    context: the dialect (error reporting's SQL breadcrumbs read its
    paramstyle), and a place for a listener's own attributes between the
    two events (a trace's SQL span)."""

    def __init__(self, dialect) -> None:
        self.dialect = dialect


def _done(cursor, kept: bool) -> None:
    """A run's cursor finished with: closed, unless it is the connection's
    kept one (whose next run replaces what it holds)."""
    if not kept:
        cursor.close()


def _converted(row: tuple, results: list) -> tuple:
    """``row`` with each of ``results``' columns (index, conversion) converted."""
    values = list(row)
    for index, convert in results:
        values[index] = convert(values[index])
    return tuple(values)


class Prepared:
    """A Core statement built once per process and run straight on the
    session's own DBAPI connection, for the busiest statements (the guest's
    token's look-up, the access-log row; a page of the host's guest list).

    SQLAlchemy's execution of even a cached statement (its execution
    context, result object, and the driver's column descriptions that reads)
    costs more CPU than the driver's own execute and fetch. Here the SQL,
    its parameters and the columns' conversions are worked out once per
    dialect; a run is the driver's execute and fetch with the column types'
    own conversions (UTC datetimes; UUIDs and JSON on SQLite). What
    SQLAlchemy would do around it is kept: the session's transaction is
    joined (through its connection), a write marks it changed so the commit
    happens, the engine's ``before_cursor_execute`` listeners see the
    statement (with no execution context; statement counts use them), and a driver error is handled and raised
    as SQLAlchemy's own (a dead connection invalidated, ``DBAPIError`` for
    retries and outages). Not shown by ``db.echo``'s SQL logging."""

    __slots__ = ("_forms", "statement", "writes")

    def __init__(self, statement, *, writes: bool = False) -> None:
        """``writes``: a SELECT that writes too (a data-modifying WITH), so
        that reading its rows marks the transaction changed, as ``write``
        does, and the commit keeps what it wrote."""
        self.statement = statement
        self.writes = writes
        self._forms: dict[str, tuple] = {}

    def _form(self, dialect) -> tuple:
        form = self._forms.get(dialect.name)
        if form is None:
            compiled = self.statement.compile(dialect=dialect)
            if "POSTCOMPILE" in compiled.string:
                raise ValueError("a prepared statement cannot expand parameters when run")
            names = {name: bind for bind, name in compiled.bind_names.items()}
            converters = {name: convert for name, bind in names.items()
                          if (convert := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None}
            results = []
            if self.statement.is_select:
                results = [(index, convert) for index, column in enumerate(self.statement.selected_columns)
                           if (convert := column.type.dialect_impl(dialect).result_processor(dialect, None))
                           is not None]
            sql = compiled.string
            order = tuple(compiled.positiontup) if dialect.positional else None
            if dialect.driver == "psycopg" and order is None:
                sql, order = _native_placeholders(sql)
            # As SQLAlchemy does, a parameter with no value of its own must be
            # given (an INSERT of the whole table: every column, or a column
            # added later would silently be NULL instead of its default).
            required = frozenset(name for name, bind in names.items() if bind.value is None and bind.callable is None)
            form = (sql, dict(compiled.params), converters, order, results, required)
            self._forms[dialect.name] = form
        return form

    def _run(self, db: Session, params: dict[str, Any]):
        # As the session's own queries do: what it holds unwritten is
        # written first, so the statement sees it (a guest forgotten earlier
        # in the transaction is gone for the answer's lock).
        if db.autoflush:
            db.flush()  # nothing to do, and at once, when nothing is pending
        connection, joined = connection_of(db)
        sql, defaults, converters, order, results, required = self._form(connection.dialect)
        if not required.issubset(params):
            raise ValueError(f"a value is required for {', '.join(sorted(required.difference(params)))}")
        values = {**defaults, **params}
        for name, convert in converters.items():
            values[name] = convert(values[name])
        driver_params = tuple(values[name] for name in order) if order is not None else values
        # psycopg: the SQL carries PostgreSQL's own placeholders already, and
        # a raw cursor sends it as it is.
        kept = connection.dialect.driver == "psycopg"
        cursor = _kept_cursor(connection.connection) if kept else connection.connection.dbapi_connection.cursor()
        # Listeners (statement counts, the trace's SQL spans) keep what they
        # need between the two events on the execution context: each run has one.
        context = _Execution(connection.dialect) if connection.dispatch.before_cursor_execute else None
        if context is not None:
            connection.dispatch.before_cursor_execute(connection, cursor, sql, driver_params, context, False)
        try:
            cursor.execute(sql, driver_params)
        except connection.dialect.loaded_dbapi.Error as error:
            cursor.close()
            # SQLAlchemy's own handling: a disconnect invalidates the pooled
            # connection; the error comes out wrapped as for any statement.
            connection._handle_dbapi_exception(error, sql, driver_params, cursor, None)
        if connection.dispatch.after_cursor_execute:
            connection.dispatch.after_cursor_execute(connection, cursor, sql, driver_params, context, False)
        return cursor, results, kept, joined

    def first(self, db: Session, params: dict[str, Any]) -> tuple | None:
        """The first row, converted, or None."""
        cursor, results, kept, joined = self._run(db, params)
        try:
            row = cursor.fetchone()
        finally:
            _done(cursor, kept)
        if self.writes and joined:
            _changed(db)
        if row is None or not results:
            return row
        return _converted(row, results)

    def all(self, db: Session, params: dict[str, Any]) -> list[tuple]:
        """Every row, converted."""
        cursor, results, _, joined = self._run(db, params)
        try:
            rows = cursor.fetchall()
        finally:
            # Closed even when kept: it would hold every row until the
            # connection's next run (the next one makes a new cursor).
            cursor.close()
        if self.writes and joined:
            _changed(db)
        if not results:
            return rows
        return [_converted(row, results) for row in rows]

    def write(self, db: Session, params: dict[str, Any]) -> None:
        """Run an INSERT, UPDATE or DELETE in the session's transaction."""
        cursor, _, kept, joined = self._run(db, params)
        _done(cursor, kept)
        if joined:
            _changed(db)
