"""A database that cannot be reached answers 503 with Retry-After in the
house's error format, logged once per window and counted; other database
errors stay 500s. (Stopping a real PostgreSQL: tests/test_faults.py.)"""
import logging

import psycopg
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import exc as sa_exc

from guestguard.outages import OutageReport, is_database_unavailable
from guestguard.testing import free_port


def unavailable_count(where="request") -> float:
    return REGISTRY.get_sample_value("gg_database_unavailable_total", {"where": where}) or 0.0


@pytest.fixture
def nowhere(make_app):
    """The app pointed at a PostgreSQL port where nothing listens."""
    return make_app({"db.url": f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/gg",
                     "db.pool_timeout": "1", "db.outage_retry_after": "7"})


API_KEY = {"Authorization": "Bearer ggk_0123456789abcdef_" + "k" * 43}  # well formed: it is looked up


def test_every_kind_of_request_answers_503_with_retry_after(nowhere):
    answers = [
        nowhere.get("/api/v1/me", headers=API_KEY, status=503),  # the identity lookup
        nowhere.post_json("/api/v1/auth/login", {"email": "ada@example.com", "password": "x" * 12}, status=503),
        nowhere.post_json("/api/v1/rsvp/" + "A" * 43, {"response": "yes"}, status=503),  # a guest answering
    ]
    for response in answers:
        assert response.headers["Retry-After"] == "7"
        assert response.headers["Cache-Control"] == "no-store"
        assert response.json["error"]["code"] == "unavailable"
        assert response.json["error"]["retry_after"] == 7
        assert "postgres" not in response.text and "127.0.0.1" not in response.text
    nowhere.set_cookie("gg_session", "a" * 43)
    page = nowhere.get("/dashboard", status=503)  # a page: the security policy reads the cookie's session
    assert page.content_type == "text/html"
    assert page.headers["Retry-After"] == "7"
    assert "try again in 7 seconds" in page.text
    assert page.headers["X-Request-ID"] in page.text
    assert "briefly unavailable" in nowhere.get("/access/" + "A" * 43, status=503).text  # a guest's page
    home = nowhere.get("/", status=503)  # the layout's menu looks the cookie's session up
    assert "briefly unavailable" in home.text


def test_a_page_that_needs_no_database_still_answers(nowhere):
    nowhere.get("/health", status=200)
    assert nowhere.get("/", status=200).text  # anonymous home page: no identity to look up
    assert nowhere.get("/readyz", status=503).json["status"] == "unavailable"


def test_an_outage_is_logged_once_per_window_and_counted_every_time(nowhere, caplog):
    before = unavailable_count()
    report = nowhere.app.registry["db.outage"]
    now = [1000.0]
    report.clock = lambda: now[0]
    with caplog.at_level(logging.INFO):
        for _ in range(12):
            nowhere.get("/api/v1/me", headers=API_KEY, status=503)
        now[0] += report.window + 1
        nowhere.get("/api/v1/me", headers=API_KEY, status=503)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "guestguard.outages"]
    assert len(warnings) == 2
    assert "database unavailable (OperationalError" in warnings[0].getMessage()
    assert "(11 since the last report)" in warnings[1].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "no traceback per request"
    assert not [r for r in caplog.records if r.exc_info]
    assert unavailable_count() - before == 13


def test_other_database_errors_stay_500s(make_app, caplog):
    from guestguard.plugins import hookimpl

    class Broken:
        @hookimpl
        def configure(self, config):
            config.add_route("bad_sql", "/api/v1/test/bad-sql")
            config.add_view(self.view, route_name="bad_sql", renderer="json")

        @staticmethod
        def view(request):
            from sqlalchemy import text

            request.db.execute(text("SELECT * FROM no_such_table"))

    app = make_app(plugins=[("broken", Broken())])
    response = app.get("/api/v1/test/bad-sql", status=500)
    assert response.json["error"]["code"] == "internal_error"
    assert "Retry-After" not in response.headers
    assert any(r.levelno == logging.ERROR and r.exc_info for r in caplog.records)


def wrapped(orig, invalidated=False):
    return sa_exc.OperationalError("SELECT 1", {}, orig, connection_invalidated=invalidated)


def FakeState(state):  # noqa: N802 - reads as the error class it builds
    """psycopg's own error class for ``state``, as the server would send it."""
    error = psycopg.errors.lookup(state)("from the server")
    assert isinstance(error, psycopg.OperationalError)
    return error


@pytest.mark.parametrize("error, unavailable", [
    (wrapped(psycopg.OperationalError("connection refused")), True),   # no SQLSTATE: connection level
    (wrapped(FakeState("57P01")), True),                                # admin shutdown
    (wrapped(FakeState("57P03")), True),                                # starting up / shutting down
    (wrapped(FakeState("53300")), True),                                # too many connections
    (wrapped(FakeState("08006")), True),                                # connection failure
    (wrapped(FakeState("40P01")), False),                               # deadlock: retried, then a 500
    (wrapped(FakeState("57014")), False),                               # statement timeout
    (wrapped(Exception("anything"), invalidated=True), True),           # SQLAlchemy saw the connection die
    (sa_exc.TimeoutError("QueuePool limit of size 5 overflow 10 reached"), True),
    (sa_exc.ProgrammingError("SELECT", {}, Exception("syntax")), False),
    (sa_exc.IntegrityError("INSERT", {}, Exception("duplicate key")), False),
    (ValueError("not a database error"), False),
])
def test_what_counts_as_the_database_being_unavailable(error, unavailable):
    assert is_database_unavailable(error) is unavailable


def test_sqlite_unavailable_and_not():
    import sqlite3

    assert is_database_unavailable(wrapped(sqlite3.OperationalError("unable to open database file")))
    assert is_database_unavailable(wrapped(sqlite3.OperationalError("database is locked")))
    assert not is_database_unavailable(wrapped(sqlite3.OperationalError("no such table: x")))


def test_the_report_ignores_what_is_not_an_outage():
    report = OutageReport(30, 5)
    assert report(ValueError("x")) is False
    assert report(sa_exc.TimeoutError("pool"), "worker") is True


def test_redis_unavailable_is_still_no_5xx(make_app):
    """The queue unreachable after commit (Redis down) is not the database:
    the request succeeds."""
    app = make_app({"huey.immediate": "false"})
    huey = app.app.registry["huey"]

    def unreachable(*args, **kwargs):
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    huey.storage.enqueue = unreachable
    from guestguard.testing import signup

    signup(app)  # queues a verification email and domain events after commit
