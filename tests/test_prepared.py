"""``db.Prepared``: the guest's busiest statements run on the session's own
DBAPI connection, answering as SQLAlchemy would (same rows, same errors,
the same transaction)."""
from __future__ import annotations

import contextlib
import datetime as dt
import uuid

import pytest
from sqlalchemy import bindparam, create_engine, event as sa_event, exc as sa_exc, func, select, text

from guestguard.accounts.tokens import hash_token
from guestguard.db import OWN_CONNECTION, Prepared, utcnow
from guestguard.guard.access import LOG_USE, LOOK_UP, LOOK_UP_LOGGED, USE
from guestguard.guard.models import AccessEntry
from guestguard.plugins import hookimpl
from guestguard.testing import add_guest, event_host, in_request, issue, new_client

EVENT = {"name": "Gala", "status": "published", "starts_at": "2030-06-21T19:00:00", "timezone": "Europe/Paris"}


@pytest.fixture
def token(app, run_in_request):
    host = event_host(app, run_in_request, EVENT)
    raw = issue(app, host, add_guest(app, host))["token"]
    guest = new_client(app.app)
    guest.post_json(f"/api/v1/rsvp/{raw}", {"response": "yes", "dietary": "none", "plus_ones": 0})
    return raw


def test_a_row_comes_back_as_sqlalchemy_would_give_it(run_in_request, token):
    """UUIDs, UTC datetimes, JSON and the latest answer's columns converted
    alike on either backend."""
    params = {"token_hash": hash_token(token)}

    def both(request):
        return (LOOK_UP.first(request.db, params), tuple(request.db.execute(LOOK_UP.statement, params).first()),
                LOOK_UP.first(request.db, {"token_hash": "0" * 64}))

    prepared, through_sqlalchemy, unknown = run_in_request(both)
    assert prepared == through_sqlalchemy
    assert unknown is None
    assert isinstance(prepared[0], uuid.UUID)
    moments = [value for value in prepared if isinstance(value, dt.datetime)]
    assert moments and all(moment.utcoffset() == dt.timedelta(0) for moment in moments)
    assert "none" in prepared, "the latest answer's dietary needs"

def entry(entry_id) -> dict:
    return {"id": entry_id, "workspace_id": None, "event_id": None, "guest_id": None, "link_id": None,
            "at": utcnow(), "kind": "view", "outcome": "unknown", "ip": "192.0.2.1", "network": "192.0.2.0/24",
            "user_agent": "test", "device": "Other", "automated": False, "evaluated_at": None}


def count(request) -> int:
    return request.db.scalar(select(func.count()).select_from(AccessEntry))


def test_a_write_alone_is_committed_with_the_request(run_in_request, app):
    before = run_in_request(count)
    run_in_request(lambda request: LOG_USE.write(request.db, entry(uuid.uuid4())))
    assert run_in_request(count) == before + 1


def test_a_select_that_writes_is_committed_with_the_request(run_in_request, app, token):
    """The look-up that logs its use (a data-modifying WITH) read with
    ``first`` alone: its row is the plain look-up's, and what it wrote is
    committed, not rolled back as a read's transaction would be."""
    if app.app.registry["db.engine"].dialect.name == "sqlite":
        pytest.skip("a data-modifying WITH: PostgreSQL")
    params = {"token_hash": hash_token(token)}
    use = {name: value for name, value in entry(uuid.uuid4()).items() if name in USE}
    before = run_in_request(count)
    logged = run_in_request(lambda request: LOOK_UP_LOGGED.first(request.db, {**params, **use}))
    assert run_in_request(count) == before + 1
    assert logged == run_in_request(lambda request: LOOK_UP.first(request.db, params))
    unknown = run_in_request(lambda request: LOOK_UP_LOGGED.first(
        request.db, {"token_hash": "0" * 64, **use, "id": uuid.uuid4()}))
    assert unknown is None
    assert run_in_request(count) == before + 2


def test_a_driver_error_comes_out_as_sqlalchemys_and_the_transaction_rolls_back(run_in_request, app):
    entry_id = uuid.uuid4()
    run_in_request(lambda request: LOG_USE.write(request.db, entry(entry_id)))
    before = run_in_request(count)

    def twice(request):
        LOG_USE.write(request.db, entry(uuid.uuid4()))
        LOG_USE.write(request.db, entry(entry_id))

    with pytest.raises(sa_exc.IntegrityError):
        run_in_request(twice)
    assert run_in_request(count) == before


def test_a_connection_keeps_one_cursor_for_its_runs_and_a_failed_run_leaves_it_for_a_new_one(
        run_in_request, app, token):
    """psycopg: one raw cursor per DBAPI connection, kept in its pool
    record's ``info`` across runs and transactions; a run that fails closes
    it, and the next run on that connection makes a new one; a connection
    the pool makes anew starts with none."""
    engine = app.app.registry["db.engine"]
    if engine.dialect.name == "sqlite":
        pytest.skip("the kept cursor is psycopg's")
    from guestguard.db import KEPT_CURSOR

    def kept(request):
        pooled = request.db.connection().connection
        return pooled.dbapi_connection, pooled.info.get(KEPT_CURSOR)

    def runs(request):
        found = LOOK_UP.first(request.db, {"token_hash": hash_token(token)})
        connection, first = kept(request)
        LOG_USE.write(request.db, entry(uuid.uuid4()))
        return found, connection, first, kept(request)[1]

    found, connection, first, second = run_in_request(runs)
    assert found is not None and second is first and not first.closed and first.connection is connection
    cursors = {connection: first}
    for _ in range(3):
        _, connection, first, second = run_in_request(runs)
        assert second is first and cursors.setdefault(connection, first) is first

    entry_id, failed = uuid.uuid4(), []

    def twice(request):
        LOG_USE.write(request.db, entry(entry_id))
        failed.append(kept(request))
        LOG_USE.write(request.db, entry(entry_id))

    with pytest.raises(sa_exc.IntegrityError):
        run_in_request(twice)
    (connection, broken), = failed
    assert broken.closed
    found, again, renewed, _ = run_in_request(runs)
    assert found is not None and not renewed.closed and (again is not connection or renewed is not broken)

    engine.dispose()  # every pooled connection closed: the next is made anew, with no cursor kept
    found, fresh, renewed, _ = run_in_request(runs)
    assert found is not None and fresh not in cursors and renewed.connection is fresh


def test_the_engines_cursor_events_see_each_run_with_a_context_of_its_own(app, run_in_request, token):
    """As a tracer's SQL spans need: what the before event leaves on the
    execution context, the after event of the same run finds."""
    engine, seen = app.app.registry["db.engine"], []

    def before(conn, cursor, statement, parameters, context, executemany):
        assert context.dialect.paramstyle, "as error reporting's SQL breadcrumbs read it"
        context.started = statement

    def after(conn, cursor, statement, parameters, context, executemany):
        seen.append(context.started == statement)

    sa_event.listen(engine, "before_cursor_execute", before)
    sa_event.listen(engine, "after_cursor_execute", after)
    try:
        run_in_request(lambda request: (LOOK_UP.first(request.db, {"token_hash": hash_token(token)}),
                                        LOG_USE.write(request.db, entry(uuid.uuid4()))))
    finally:
        sa_event.remove(engine, "before_cursor_execute", before)
        sa_event.remove(engine, "after_cursor_execute", after)
    assert len(seen) >= 2 and all(seen)


def test_a_value_left_out_is_refused_not_written_as_null(run_in_request, app):
    partial = {key: value for key, value in entry(uuid.uuid4()).items() if key != "device"}
    with pytest.raises(ValueError, match="a value is required for device"):
        run_in_request(lambda request: LOG_USE.write(request.db, partial))
    with pytest.raises(ValueError, match="token_hash"):
        run_in_request(lambda request: LOOK_UP.first(request.db, {}))


def test_placeholders_become_postgresqls_own_once_a_name_used_twice_is_one():
    from guestguard.db import _native_placeholders

    sql, names = _native_placeholders("UPDATE t SET a = %(now)s, b = %(x)s, c = %(now)s WHERE d LIKE 'x%%'")
    assert sql == "UPDATE t SET a = $1, b = $2, c = $1 WHERE d LIKE 'x%'"
    assert names == ("now", "x")


def test_a_statement_of_many_values_and_a_name_used_twice_writes_each_where_it_belongs(run_in_request, token):
    """The answer's writes with the host's news: over 50 values, ``now``
    given once for two columns; the rows read back hold what was given."""
    from guestguard.activity import news
    from guestguard.events.invitations import ANSWERED, NEW_ANSWER
    from guestguard.events.models import Guest, Rsvp

    def write(request):
        link = request.db.execute(select(AccessEntry.link_id, AccessEntry.workspace_id, AccessEntry.event_id,
                                         AccessEntry.guest_id)).first()
        at = dt.datetime(2031, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
        answer = {"id": uuid.uuid4(), "workspace_id": link.workspace_id, "event_id": link.event_id,
                  "guest_id": link.guest_id, "link_id": link.link_id, "response": "maybe", "plus_ones": 0,
                  "dietary": "", "message": "50%", "plus_one_names": [], "answers": {"q": "a"}, "created_at": at}
        answered = {"guest_id": link.guest_id, "response": "maybe", "plus_ones": 0, "plus_one_names": [],
                    "answers": {"q": "a"}, "waitlisted_at": None, "now": at}
        news.tell_host(request.ctx, "rsvp.changed", workspace_id=link.workspace_id, event_id=link.event_id,
                       guest_id=link.guest_id, details={}, payload={}, summary="changed",
                       along=[(NEW_ANSWER, {f"answer_{k}": v for k, v in answer.items()}),
                              (ANSWERED, {f"answered_{k}": v for k, v in answered.items()})])
        return answer["id"], link.guest_id

    rsvp_id, guest_id = run_in_request(write)

    def read(request):
        guest = request.db.get(Guest, guest_id)
        rsvp = request.db.get(Rsvp, rsvp_id)
        return (guest.response, guest.responded_at, guest.updated_at, guest.answers, rsvp.message, rsvp.answers)

    at = dt.datetime(2031, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert run_in_request(read) == ("maybe", at, at, {"q": "a"}, "50%", {"q": "a"})


PID_AND_TRANSACTION = Prepared(select(func.pg_backend_pid(), func.txid_current()))


def test_a_statement_before_the_orm_has_a_connection_of_its_own_which_the_orm_then_joins(run_in_request, app):
    """PostgreSQL: a statement run before the session's own transaction
    begins runs on a connection of the session's own, in a transaction the
    request's manager ends; the ORM, once it needs the session, works in
    that same transaction on that same connection, and both writes commit
    together. The connection then goes back to the pool and the session
    to its engine."""
    engine = app.app.registry["db.engine"]
    if engine.dialect.name == "sqlite":
        pytest.skip("PostgreSQL's")
    before = run_in_request(count)
    first_id, second_id = uuid.uuid4(), uuid.uuid4()

    def statement_then_orm(request):
        LOG_USE.write(request.db, entry(first_id))
        began_before = request.db.in_transaction()
        prepared = PID_AND_TRANSACTION.first(request.db, {})
        orm = tuple(request.db.execute(select(func.pg_backend_pid(), func.txid_current())).one())
        request.db.add(AccessEntry(**entry(second_id)))
        return began_before, prepared, orm, request.db

    began_before, prepared, orm, session = run_in_request(statement_then_orm)
    assert not began_before, "the statement alone began no transaction of the session's"
    assert prepared == orm, "one connection, one transaction"
    assert run_in_request(count) == before + 2
    assert engine.pool.checkedout() == 0
    assert session.bind is engine and OWN_CONNECTION not in session.info


@pytest.mark.parametrize("orm_too", [False, True], ids=["statement alone", "with the orm joined"])
def test_a_request_that_fails_after_a_statement_on_its_own_connection_keeps_nothing(run_in_request, app, orm_too):
    """The request's one transaction: what the statement wrote on the
    session's own connection (and what the ORM wrote after it, in the same
    transaction) is rolled back when the request fails."""
    engine = app.app.registry["db.engine"]
    if engine.dialect.name == "sqlite":
        pytest.skip("PostgreSQL's")
    before = run_in_request(count)

    def fails(request):
        LOG_USE.write(request.db, entry(uuid.uuid4()))
        if orm_too:
            request.db.add(AccessEntry(**entry(uuid.uuid4())))
            request.db.flush()
        raise RuntimeError("after the writes")

    with pytest.raises(RuntimeError, match="after the writes"):
        run_in_request(fails)
    assert run_in_request(count) == before
    assert engine.pool.checkedout() == 0


def test_a_scope_set_while_only_its_own_connection_is_open_is_that_connections_at_once(run_in_request, app):
    """Row-level security's settings: a scope set after a statement on the
    session's own connection, before the ORM began, applies to that
    connection's transaction there and then, and the ORM joining it later
    finds it there."""
    if app.app.registry["db.engine"].dialect.name == "sqlite":
        pytest.skip("PostgreSQL's")
    from guestguard import rls

    workspace_id = uuid.uuid4()
    setting = Prepared(select(func.current_setting("guestguard.workspaces", True)))

    def scoped(request):
        LOG_USE.write(request.db, entry(uuid.uuid4()))
        rls.set_scope(request.db, rls.Scope(workspaces=frozenset({workspace_id})))
        return (setting.first(request.db, {})[0], request.db.in_transaction(),
                request.db.scalar(select(func.current_setting("guestguard.workspaces", True))))

    assert run_in_request(scoped) == (str(workspace_id), False, str(workspace_id))


def test_a_statement_then_orm_reads_only_keeps_the_statements_write(run_in_request, app):
    """The session joined the connection's transaction only to read: its
    resource ends with no work to commit, and the connection's commit
    still keeps what the statement wrote."""
    if app.app.registry["db.engine"].dialect.name == "sqlite":
        pytest.skip("PostgreSQL's")
    before = run_in_request(count)
    run_in_request(lambda request: (LOG_USE.write(request.db, entry(uuid.uuid4())), count(request)))
    assert run_in_request(count) == before + 1


class OnceDeadlocked:
    """A route whose first attempt's statement, on the session's own
    connection, fails as a deadlock does; the attempts it saw."""

    def __init__(self):
        self.attempts = 0

    @hookimpl
    def configure(self, config):
        config.add_route("once_deadlocked", "/test/once-deadlocked")
        config.add_view(self.view, route_name="once_deadlocked", renderer="json", request_method="POST",
                        require_csrf=False)

    def view(self, request):
        self.attempts += 1
        LOG_USE.write(request.db, entry(uuid.uuid4()))
        if self.attempts == 1:
            FAIL_AS.first(request.db, {"state": "40P01"})
        return {"attempts": self.attempts, "began": request.db.in_transaction()}


FAIL_AS = Prepared(select(func.test_fail_as(bindparam("state"))))


@contextlib.contextmanager
def installed(db_url: str, create: list[str], drop: list[str]):
    """SQL objects a test needs in the database (``create``), removed
    afterwards (``drop``), whatever the test did."""
    engine = create_engine(db_url)
    try:
        with engine.begin() as connection:
            for sql in create:
                connection.execute(text(sql))
        yield
    finally:
        with engine.begin() as connection:
            for sql in drop:
                connection.execute(text(sql))
        engine.dispose()


def test_a_deadlock_on_the_sessions_own_connection_has_the_request_replayed(make_app, db_url):
    """pyramid_retry asks the transaction's resources whether an error is
    worth a replay: the own connection's answers for a deadlock as the
    session's would, and the replay's write alone is kept."""
    if not db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's")
    with installed(db_url, [("CREATE OR REPLACE FUNCTION test_fail_as(state text) RETURNS int LANGUAGE plpgsql AS "
                             "$$ BEGIN RAISE EXCEPTION 'failed as asked' USING ERRCODE = state; END $$")],
                   ["DROP FUNCTION IF EXISTS test_fail_as(text)"]):
        plugin = OnceDeadlocked()
        client = make_app(plugins=[("once_deadlocked", plugin)])
        before = in_request(client.app.registry, count)
        assert client.post("/test/once-deadlocked").json == {"attempts": 2, "began": False}
        assert in_request(client.app.registry, count) == before + 1


@pytest.mark.parametrize("orm_too", [False, True], ids=["statement alone", "with the orm joined"])
def test_a_commit_that_fails_on_its_own_connection_keeps_nothing_and_aborts_cleanly(run_in_request, app, db_url,
                                                                                   orm_too, caplog):
    """A check PostgreSQL defers to COMMIT fails on the session's own
    connection: the request gets that error, nothing of it is kept, the
    connection goes back to the pool, and no resource of the transaction
    is asked to abort what it had already committed (which the transaction
    package would log as a failure of its own)."""
    if not db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's")
    create = [("CREATE OR REPLACE FUNCTION test_fail_at_commit() RETURNS trigger LANGUAGE plpgsql AS "
               "$$ BEGIN RAISE EXCEPTION 'refused at commit' USING ERRCODE = '23514'; END $$"),
              ("CREATE CONSTRAINT TRIGGER test_fail_at_commit AFTER INSERT ON access_log DEFERRABLE INITIALLY "
               "DEFERRED FOR EACH ROW WHEN (NEW.user_agent = 'refused at commit') EXECUTE FUNCTION "
               "test_fail_at_commit()")]
    with installed(db_url, create, ["DROP TRIGGER IF EXISTS test_fail_at_commit ON access_log",
                                    "DROP FUNCTION IF EXISTS test_fail_at_commit()"]):
        before = run_in_request(count)

        def refused(request):
            LOG_USE.write(request.db, {**entry(uuid.uuid4()), "user_agent": "refused at commit"})
            if orm_too:
                request.db.add(AccessEntry(**entry(uuid.uuid4())))
                request.db.flush()

        with caplog.at_level("DEBUG"), pytest.raises(sa_exc.IntegrityError, match="refused at commit"):
            run_in_request(refused)
        assert run_in_request(count) == before
        assert app.app.registry["db.engine"].pool.checkedout() == 0
        assert not [record for record in caplog.records if record.levelname in ("ERROR", "CRITICAL")], \
            [record.getMessage() for record in caplog.records]


def test_what_a_flushs_listener_adds_after_the_last_flush_is_committed_with_the_rest(run_in_request, app, db_url):
    """The session's resource flushes once, before the votes; an object a
    flush's listener adds then is written before the own connection's
    COMMIT, with the request's other writes, not after it."""
    if not db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's")
    before = run_in_request(count)
    added = []

    def add_once(session, _context):
        if not added:
            added.append(AccessEntry(**entry(uuid.uuid4())))
            session.add(added[0])

    def writes(request):
        LOG_USE.write(request.db, entry(uuid.uuid4()))
        request.db.add(AccessEntry(**entry(uuid.uuid4())))
        sa_event.listen(request.db, "after_flush", add_once)

    run_in_request(writes)
    assert added, "the listener ran"
    assert run_in_request(count) == before + 3
    assert app.app.registry["db.engine"].pool.checkedout() == 0
