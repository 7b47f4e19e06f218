"""Pooled connections the server closed while they sat idle (a restart, an
idle timeout) are replaced before a request gets them: checked with a round
trip only after ``db.ping_idle_seconds`` unused, not on every checkout."""
from __future__ import annotations

import pytest
from sqlalchemy import create_engine, event, text


def kill_other_backends(db_url: str) -> int:
    """Close every other connection to the test database, as a server
    restart would; how many were closed."""
    engine = create_engine(db_url, poolclass=None)
    try:
        with engine.connect() as connection:
            return connection.execute(text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()")).scalar()
    finally:
        engine.dispose()


@pytest.fixture
def postgres(db_url):
    if not db_url.startswith("postgresql"):
        pytest.skip("connections the server closes: PostgreSQL only")
    return db_url


def pings(app) -> list[int]:
    """Counts the pool's checks of idle connections (a SELECT 1 on the raw
    connection, which the engine's statement events do not see)."""
    seen: list[int] = []
    engine = app.app.registry["db.engine"]
    real = engine.dialect.do_ping

    def do_ping(dbapi_connection):
        seen.append(1)
        return real(dbapi_connection)

    engine.dialect.do_ping = do_ping
    return seen


def test_a_connection_closed_while_idle_is_replaced_before_use(make_app, postgres):
    app = make_app({"db.ping_idle_seconds": "0", "db.pool_size": "1"})
    app.get("/api/v1/access/" + "A" * 43, status=404)
    assert kill_other_backends(postgres) >= 1
    checked = pings(app)
    app.get("/api/v1/access/" + "A" * 43, status=404)
    assert checked == [1]


def test_a_connection_back_in_use_within_the_idle_time_is_not_checked(make_app, postgres):
    app = make_app({"db.ping_idle_seconds": "3600", "db.pool_size": "1"})
    app.get("/api/v1/access/" + "A" * 43, status=404)
    checked = pings(app)
    for _ in range(3):
        app.get("/api/v1/access/" + "A" * 43, status=404)
    assert checked == []


def test_without_the_check_a_closed_connection_fails_its_request_as_an_outage(make_app, postgres):
    app = make_app({"db.ping_idle_seconds": "-1", "db.pool_size": "1"})
    engine = app.app.registry["db.engine"]
    assert not event.contains(engine.pool, "checkout", lambda *a: None)
    app.get("/api/v1/access/" + "A" * 43, status=404)
    kill_other_backends(postgres)
    assert app.get("/api/v1/access/" + "A" * 43, status="*").status_int == 503
    # The dead connection was dropped: the next request gets a fresh one.
    app.get("/api/v1/access/" + "A" * 43, status=404)
