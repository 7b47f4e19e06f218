"""Pytest fixtures for GuestGuard and its plugins (loaded by the repository's
root conftest.py; a plugin distribution's own conftest can load it the same
way with ``pytest_plugins = ["guestguard.testing"]``).

Every test gets a real database: a fresh SQLite file copied from a migrated
template, or, when ``GG_TEST_DATABASE_URL`` is set, the PostgreSQL database it
names (migrated once per run, emptied after each test). An unreachable
database fails the run; it is never skipped.
"""
from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import functools
import gc
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import webtest
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import create_engine, select, text

from guestguard import make_config
from guestguard.db import default_migrations_dir
from guestguard.models import metadata
from guestguard.plugins import hookimpl

REPO_ROOT = Path(__file__).resolve().parents[2]
DATABASE_ENV = "GG_TEST_DATABASE_URL"
REDIS_ENV = "GG_TEST_REDIS_URL"
# Set (to anything) with GG_TEST_DATABASE_URL: the applications under test
# connect as a role that owns nothing and obeys row-level security (made in
# the test database, named after it); the fixtures keep the owner's URL.
ROW_SECURITY_ENV = "GG_TEST_ROW_SECURITY"


def alembic_config(db_url: str) -> AlembicConfig:
    config = AlembicConfig(str(REPO_ROOT / "development.ini"))
    config.set_main_option("script_location", str(default_migrations_dir()))
    config.attributes["db_url"] = db_url
    return config


def migrate(db_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(db_url), revision)


def downgrade(db_url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(db_url), revision)


def empty_tables(db_url: str) -> None:
    """Delete every row, children first. A test leaves a few rows, and on
    PostgreSQL deleting them costs a tenth of TRUNCATE, which makes every
    table anew."""
    engine = create_engine(db_url)
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":  # every workspace's rows
                connection.execute(text("SELECT set_config('guestguard.scope', 'system', true)"))
            for table in reversed(metadata.sorted_tables):
                connection.execute(table.delete())
    finally:
        engine.dispose()


# `make test` with PostgreSQL and Redis runs the suite twice at once, once
# on SQLite and once on them. A test marked ``one_pass("sqlite")`` or
# ``one_pass("services")`` runs in only that pass then: its behaviour does
# not depend on the backend (the command line's own SQLite database), or
# only the production backends matter to it (real processes under faults),
# and it costs enough to be worth running once. Run alone, a pass runs all.
PASSES = ("sqlite", "services")


def pytest_addoption(parser) -> None:
    parser.addoption("--pass", dest="suite_pass", choices=PASSES, default=None,
                     help="which of make test's two passes this is: leaves out tests marked one_pass for the other")


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "one_pass(name): when make test runs both passes, run only in that one "
                            "(sqlite or services)")


def pytest_collection_finish(session) -> None:
    """What the run imported stays for the run: the collector stops walking
    it, and collects the young generation less often. Collecting was a
    quarter of a test run's CPU, a tenth after."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def pytest_collection_modifyitems(config, items) -> None:
    this_pass = config.getoption("suite_pass")
    if this_pass is None:
        return
    kept, left = [], []
    for item in items:
        marker = item.get_closest_marker("one_pass")
        if marker is not None and marker.args[0] not in PASSES:
            raise pytest.UsageError(f"{item.nodeid}: one_pass takes one of {', '.join(PASSES)}")
        (left if marker is not None and marker.args[0] != this_pass else kept).append(item)
    if left:
        config.hook.pytest_deselected(items=left)
        items[:] = kept


@pytest.fixture(scope="session")
def postgres_owner_url() -> str | None:
    """The PostgreSQL URL under test, as the tables' owner, migrated to
    head; None when unset."""
    url = os.environ.get(DATABASE_ENV)
    if not url:
        return None
    engine = create_engine(url)
    try:
        with engine.begin() as connection:  # fails the run when unreachable
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
    finally:
        engine.dispose()
    migrate(url)
    return url


def app_role_url(owner_url: str) -> str:
    """A URL of the database of ``owner_url`` as its application role
    (``rls.app_role_statements``), made anew; the role is named after the
    database, so runs on other databases of the server keep theirs."""
    from sqlalchemy.engine import make_url

    from guestguard.rls import app_role_statements

    owner = make_url(owner_url)
    role = f"{owner.database}_app"
    engine = create_engine(owner_url)
    try:
        with engine.begin() as connection:
            connection.execute(text(f"DROP OWNED BY {role}") if connection.scalar(
                text("SELECT 1 FROM pg_roles WHERE rolname = :role"), {"role": role}) else text("SELECT 1"))
            connection.execute(text(f"DROP ROLE IF EXISTS {role}"))
            for statement in app_role_statements(role):
                connection.execute(text(statement))
    finally:
        engine.dispose()
    return owner.set(username=role, password=None).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_url(postgres_owner_url) -> str | None:
    """The PostgreSQL URL the applications under test use: the owner's, or
    with GG_TEST_ROW_SECURITY set, the application role's."""
    if postgres_owner_url and os.environ.get(ROW_SECURITY_ENV):
        return app_role_url(postgres_owner_url)
    return postgres_owner_url


_TEMPLATES: dict[int, Path] = {}


def _remove_template(path: Path) -> None:
    shutil.rmtree(path.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def sqlite_template() -> Path:
    """A migrated SQLite database each test copies. Migrated once per
    process: the mutation run's many short test sessions (forked from the
    one that made it) share it."""
    if _TEMPLATES:
        return next(iter(_TEMPLATES.values()))
    path = Path(tempfile.mkdtemp(prefix="guestguard-template-")) / "template.sqlite"
    migrate(f"sqlite:///{path}")
    _TEMPLATES[os.getpid()] = path
    atexit.register(_remove_template, path)
    return path


def _database(postgres_url: str | None, owner_url: str | None, template: Path,
              directory: Path) -> Iterable[str]:
    if postgres_url:
        yield postgres_url
        empty_tables(owner_url)
        return
    path = directory / "guestguard.sqlite"
    shutil.copy(template, path)
    yield f"sqlite:///{path}"


@pytest.fixture
def db_url(postgres_url, postgres_owner_url, sqlite_template, tmp_path) -> Iterable[str]:
    yield from _database(postgres_url, postgres_owner_url, sqlite_template, tmp_path)


@pytest.fixture(scope="module")
def module_db_url(postgres_url, postgres_owner_url, sqlite_template, tmp_path_factory) -> Iterable[str]:
    """A database the tests of one module share (a world they build once),
    emptied when the module is done."""
    yield from _database(postgres_url, postgres_owner_url, sqlite_template, tmp_path_factory.mktemp("module"))


@pytest.fixture
def redis_url() -> str | None:
    return os.environ.get(REDIS_ENV) or None


@pytest.fixture
def base_settings(db_url) -> dict[str, str]:
    return settings_for(db_url)


def settings_for(db_url: str) -> dict[str, str]:
    """The settings of a test application on ``db_url``."""
    return {
        "app.env": "test",
        "app.base_url": f"http://{TEST_HOST}",
        "db.url": db_url,
        "huey.url": "memory://",
        "huey.immediate": "true",
        "notifications.email.provider": "console",
        "notifications.sms.provider": "console",
        # Texts to guests go out whatever the hour of the test run; the tests
        # of quiet hours switch them on.
        "notifications.quiet_hours.enabled": "false",
        # Plan limits are on everywhere else; most tests make several events
        # and guests in one workspace. The billing tests switch them on.
        "billing.enforce": "false",
        # The OWASP floor: real argon2id, at the cheapest allowed cost.
        "passwords.memory_kib": "19456",
        "passwords.time_cost": "2",
        "passwords.parallelism": "1",
        # Each application compiles its templates; the run's share what the
        # first compiled (a third of a test's time otherwise).
        "jinja2.bytecode_caching": "true",
        "jinja2.bytecode_caching_directory": compiled_templates_directory(),
    }


def compiled_templates_directory() -> str:
    """A directory of this test process's, removed when it ends (the
    templates' source is the key, so an edited one compiles again)."""
    if not _COMPILED:
        _COMPILED[os.getpid()] = tempfile.mkdtemp(prefix="guestguard-templates-")
        atexit.register(_remove_compiled, os.getpid())
    return next(iter(_COMPILED.values()))


def _remove_compiled(creator: int) -> None:
    if os.getpid() == creator:  # not a forked child's exit (the mutation run's)
        shutil.rmtree(_COMPILED[creator], ignore_errors=True)


_COMPILED: dict[int, str] = {}


# The host of the test applications' app.base_url, which their clients call:
# redirects and links name it, whatever Host header a request carries.
TEST_HOST = "guestguard.test"


class TestClient(webtest.TestApp):
    """A TestApp whose ``request()`` gets its ``extra_environ`` too, as its
    other calls do (webtest leaves it out), the host included."""

    def request(self, url_or_req, *args, **kwargs):
        if isinstance(url_or_req, str):
            if url_or_req.startswith("/"):
                url_or_req = f"http://{self.extra_environ.get('HTTP_HOST', TEST_HOST)}{url_or_req}"
            kwargs["environ"] = {**self.extra_environ, **kwargs.get("environ", {})}
        return super().request(url_or_req, *args, **kwargs)


def new_client(wsgi_app, **environ) -> webtest.TestApp:
    """A browser or API client of its own (its own cookie jar) calling the
    test host from 127.0.0.1, unless ``environ`` says otherwise, as served by
    a threaded server (waitress, gunicorn's gthread), as the app always is."""
    return TestClient(wsgi_app, extra_environ={"REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": TEST_HOST,
                                               "wsgi.multithread": True, **environ})


def together(calls: Iterable[Callable[[], Any]], timeout: float = 120) -> list:
    """Runs each call from a thread of its own, all released at once (a
    double click, a burst of retries); their results, or what they raised,
    in the calls' order."""
    calls = list(calls)
    barrier = threading.Barrier(len(calls))
    outcomes: list = [None] * len(calls)

    def run(n: int) -> None:
        barrier.wait()
        try:
            outcomes[n] = calls[n]()
        except Exception as exc:  # the caller's assertions say whether it was expected
            outcomes[n] = exc

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(thread.is_alive() for thread in threads), f"a thread is still running after {timeout} s"
    return outcomes


def clicks(app: webtest.TestApp, calls: Iterable[Callable[[webtest.TestApp], Any]]) -> list:
    """Each ``call(client)`` from a thread of its own with a client (cookie
    jar) of its own, all released at once; their answers or what they raised."""
    return together([functools.partial(call, new_client(app.app)) for call in calls])


class AppFactory:
    """Builds the real application with test settings and extra plugins."""

    def __init__(self, base: dict[str, str]):
        self.base = base
        self.apps: list[Any] = []

    def __call__(self, settings: dict[str, str] | None = None,
                 plugins: Iterable[tuple[str, object]] = (),
                 environ: dict[str, str] | None = None) -> webtest.TestApp:
        raw = {**self.base, **(settings or {})}
        config = make_config(raw, environ=environ or {}, extra_plugins=plugins)
        app = config.make_wsgi_app()
        self.apps.append(app)
        return new_client(app)

    def close(self) -> None:
        for app in self.apps:
            consumer = app.registry.get("huey.consumer")
            if consumer is not None:
                consumer.stop(graceful=True)
            reaper = app.registry.get("jobs.reaper")
            if reaper is not None:
                reaper.stop()
            for engine in (app.registry["db.engine"], app.registry["db.replica_engine"]):
                if engine is not None:
                    engine.dispose()


@pytest.fixture
def make_app(base_settings) -> Iterable[AppFactory]:
    factory = AppFactory(base_settings)
    yield factory
    factory.close()


@pytest.fixture
def app(make_app) -> webtest.TestApp:
    return make_app()


@pytest.fixture
def fault_lab(db_url, redis_url, tmp_path, make_app) -> Iterable[Callable[..., Any]]:
    """``fault_lab(settings)``: a FaultLab (``guestguard.testing_processes``)
    on the test's database and a queue of its own (Redis when the run has
    one), ``settings`` overriding; the processes it starts are killed when
    the test ends."""
    from guestguard.testing_processes import FaultLab, lab_settings

    labs = []

    def build(settings: dict[str, str] | None = None):
        queue = redis_url or f"sqlite:///{tmp_path}/queue.sqlite"
        lab = FaultLab(tmp_path, lab_settings(db_url, queue, f"faults-{tmp_path.name}", settings or {}), make_app)
        labs.append(lab)
        return lab

    yield build
    for lab in labs:
        lab.close()


@pytest.fixture
def registry(app):
    return app.app.registry


def drain(huey, now: dt.datetime | None = None) -> int:
    """Run, in this thread, every queued task that is due by ``now`` (default:
    the current time), including scheduled ones. Returns how many ran; tasks
    not yet due wait in the schedule, as a consumer would leave them."""
    moment = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(tzinfo=None)
    ran = 0
    for task in huey.read_schedule(moment):
        huey.enqueue(task)
    while (task := huey.dequeue()) is not None:
        if huey.ready_to_run(task, moment):
            huey.execute(task, moment)
            ran += 1
        else:
            huey.add_schedule(task)
    return ran


@contextlib.contextmanager
def scripted(registry) -> Iterator[dict[str, Any]]:
    """``pyramid.scripting.prepare``'s environment for ``registry``'s
    application, its request seeing every workspace (row-level security's
    system scope), as a periodic task or the command line does."""
    from pyramid.scripting import prepare

    from guestguard import rls

    with prepare(registry=registry) as env:
        rls.set_scope(env["request"].db, rls.SYSTEM)
        yield env


def in_request(registry, func: Callable[[Any], Any]) -> Any:
    """``func(request)`` inside a committed transaction of a scripted
    request of ``registry``'s application, as a task or a CLI would call it."""
    with scripted(registry) as env:
        request = env["request"]
        with request.tm:
            return func(request)


@pytest.fixture
def run_in_request(registry) -> Callable[..., Any]:
    """Call ``func(request)`` as :func:`in_request` does (in the ``app``
    fixture's application unless another registry is given)."""

    def run(func: Callable[[Any], Any], registry_=None) -> Any:
        return in_request(registry_ or registry, func)

    return run


TEST_PASSWORD = "correct horse battery staple"
# What real browsers send, for tests that tell a guest's devices apart.
IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
          "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1")
WINDOWS = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/120.0 Safari/537.36")
ANDROID = ("Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/121.0 Mobile Safari/537.36")
LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"
MAC = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) "
       "Version/17.1 Safari/605.1.15")


class DomainEvents:
    """A plugin that keeps every domain event it hears, for assertions."""

    def __init__(self):
        self.events = []

    @hookimpl
    def domain_event(self, event, request):
        self.events.append(event)

    def names(self, prefix=""):
        return [event.name for event in self.events if event.name.startswith(prefix)]

    def named(self, name):
        return [event for event in self.events if event.name == name]


def create_team(request, name: str = "Gala team") -> str:
    """Ada owns a workspace where Sam is door staff; Eve has only her own.
    Returns the workspace's id."""
    from guestguard.workspaces.models import Membership
    from guestguard.workspaces.services import create_workspace

    ada = create_user(request, "ada@example.com", "Ada")
    sam = create_user(request, "sam@example.com", "Sam")
    create_user(request, "eve@example.com", "Eve")
    workspace = create_workspace(request.ctx, ada, name)
    request.db.add(Membership(workspace_id=workspace.id, user_id=sam.id, role="staff"))
    return str(workspace.id)


def create_user(request, email: str, name: str = "", *, verified: bool = True):
    """A user as signup makes one (personal workspace included), verified
    unless asked otherwise: the fast way to set up a test."""
    from guestguard.accounts.models import User
    from guestguard.db import utcnow as now
    from guestguard.workspaces.services import create_personal_workspace

    moment = now()
    user = User(email=email, display_name=name or email.split("@", maxsplit=1)[0],
                password_hash=hash_of_test_password(request.registry["accounts.passwords"].hasher),
                privacy_accepted_at=moment, terms_accepted_at=moment,
                email_verified_at=moment if verified else None)
    request.db.add(user)
    request.db.flush()
    create_personal_workspace(request.ctx, user)
    return user


_TEST_PASSWORD_HASHES: dict[tuple[int, int, int], str] = {}


def hash_of_test_password(hasher) -> str:
    """A hash of TEST_PASSWORD at ``hasher``'s cost, made once per cost: a
    user made for a test needs a valid hash, not a salt of its own, and
    argon2 at the production floor is most of what setting up a team costs."""
    cost = (hasher.time_cost, hasher.memory_cost, hasher.parallelism)
    if cost not in _TEST_PASSWORD_HASHES:
        _TEST_PASSWORD_HASHES[cost] = hasher.hash(TEST_PASSWORD)
    return _TEST_PASSWORD_HASHES[cost]


def bearer_for(app, email: str) -> dict[str, str]:
    """Log in through the API; the Authorization header to send (see
    session_bearer for a test that is not about logging in)."""
    tokens = app.post_json("/api/v1/auth/login", {"email": email, "password": TEST_PASSWORD}).json
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def session_bearer(registry, email: str) -> dict[str, str]:
    """The Authorization header of a new API session for ``email``, as a
    login through the API makes it, without checking the password (whose
    argon2 cost the login tests pay)."""
    from guestguard.accounts.models import API, User
    from guestguard.accounts.sessions import issue_tokens, start_session

    def mint(request) -> str:
        user = request.db.scalar(select(User).where(User.email == email))
        session, _ = start_session(request.db, request.registry.settings, user, kind=API, user_agent="",
                                   ip="127.0.0.1")
        return issue_tokens(request.db, request.registry.settings, session).access_token

    return {"Authorization": f"Bearer {in_request(registry, mint)}"}


def acting_as(ctx, user):
    """The service context of ``ctx`` with ``user`` signed in, for services
    called outside a web request."""
    from guestguard.security import Identity

    return ctx.replace(identity=Identity(method="cookie", user=user, _db=ctx.db))


def create_host(request, workspace_name: str = "W") -> str:
    """Ada with a workspace named ``workspace_name`` of her own (besides her
    personal one). Returns the workspace's id."""
    from guestguard.workspaces.services import create_workspace

    return str(create_workspace(request.ctx, create_user(request, "ada@example.com", "Ada"), workspace_name).id)


# --- helpers the test modules share ---------------------------------------------


@pytest.fixture
def listener() -> DomainEvents:
    """A DomainEvents plugin for an ``app`` fixture to register."""
    return DomainEvents()


def scalar(app, run_in_request, query):
    """One value read in a request of ``app``."""
    return run_in_request(lambda request: request.db.scalar(query), app.app.registry)


def dispatch_reminders(app, now: dt.datetime, batch: int | None = None):
    """One run of the reminders' periodic task as of ``now``, as a worker
    runs it (outside a transaction: it opens its own); what it returns."""
    from guestguard.reminders import services

    with scripted(app.app.registry) as env:
        return services.dispatch(env["request"], now=now, batch=batch)


def event_host(app, run_in_request, event: dict) -> dict:
    """The team of ``create_team`` with one event made through the API from
    ``event``: the workspace id, Ada's, Sam's and Eve's Authorization headers,
    the event and its API URL."""
    registry = app.app.registry
    workspace_id = run_in_request(create_team, registry)
    ada = session_bearer(registry, "ada@example.com")
    created = app.post_json("/api/v1/events", {"workspace_id": workspace_id, **event}, headers=ada).json["event"]
    return {"workspace": workspace_id, "ada": ada, "sam": session_bearer(registry, "sam@example.com"),
            "eve": session_bearer(registry, "eve@example.com"), "event": created,
            "url": f"/api/v1/events/{created['id']}"}


def add_guest(app, host, **fields) -> dict:
    """A guest (Grace unless ``fields`` say otherwise) added to ``event_host``'s event."""
    body = {"name": "Grace Hopper", "email": "grace@example.com", **fields}
    return app.post_json(f"{host['url']}/guests", body, headers=host["ada"], status=201).json["guest"]


def issue(app, host, guest) -> dict:
    """Issue ``guest`` a new invitation link; the API's answer (``token``, ``url``, …)."""
    return app.post_json(f"{host['url']}/guests/{guest['id']}/tokens", {}, headers=host["ada"], status=201).json


def signup(app, email: str = "ada@example.com", password: str = TEST_PASSWORD, name: str = "Ada Lovelace",
           status: int = 202, *, captcha_token: str | None = None, **kwargs):
    """Sign up through the API, accepting the policies."""
    body = {"email": email, "password": password, "display_name": name, "accept_policies": True}
    if captcha_token is not None:
        body["captcha_token"] = captcha_token
    return app.post_json("/api/v1/auth/signup", body, status=status, **kwargs)


def signed_in(app, run_in_request, email: str, ip: str = "203.0.113.7") -> webtest.TestApp:
    """A browser with its own cookie jar, signed in as ``email`` (whose
    password is TEST_PASSWORD)."""
    from guestguard.accounts.models import WEB
    from guestguard.accounts.services import login

    result = run_in_request(lambda r: login(r.ctx, email=email, password=TEST_PASSWORD, kind=WEB), app.app.registry)
    browser = new_client(app.app, REMOTE_ADDR=ip)
    browser.set_cookie("gg_session", result.cookie_token)
    return browser


def outbox(app):
    """(time, message) for every message the console provider delivered, newest first."""
    return app.app.registry["notifications.providers_by_name"]["console"].messages


def inbox(app, recipient: str) -> list:
    """Messages the console provider delivered to ``recipient``, newest first."""
    return [message for _, message in outbox(app) if message.recipient == recipient]


def link(message, prefix: str) -> str:
    """The path of the first ``http://guestguard.test/<prefix>/…`` link in ``message``."""
    found = re.search(r"http://guestguard\.test(/" + prefix + r"/[^\s]+)", message.text)
    assert found, message.text
    return found.group(1)


def main_text(page) -> str:
    return page.html.find("main").get_text(" ", strip=True)


def h1(page) -> str:
    return page.html.find("h1").get_text(" ", strip=True)


def csrf(page) -> str:
    """The CSRF token of the first form on ``page``."""
    return page.html.find("input", {"name": "csrf_token"})["value"]


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """``condition()``'s first true value within ``timeout`` seconds, else an
    AssertionError naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def command_env(**variables: str) -> dict[str, str]:
    """A bare environment for the ``guestguard`` command: a PATH, this run's
    PYTHONPATH (so the command runs the code under test) and ``variables``."""
    env = {"PATH": "/usr/bin:/bin"}
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return {**env, **variables}


COMMAND = str(Path(sys.executable).parent / "guestguard")


@contextlib.contextmanager
def logging_kept() -> Iterator[None]:
    """Logging as it is, restored afterwards: every logger's level,
    handlers, propagation and whether it is disabled (an ini's logging,
    applied by a command run in process, replaces the root's handlers with
    one writing to the stream of the moment, which a test's capture closes
    when the test ends)."""
    root = logging.getLogger()
    loggers = [root, *(logger for logger in logging.Logger.manager.loggerDict.values()
                       if isinstance(logger, logging.Logger))]
    saved = [(logger, logger.level, logger.handlers[:], logger.propagate, logger.disabled) for logger in loggers]
    try:
        yield
    finally:
        for handler in root.handlers:
            if handler not in saved[0][2]:  # the root's own, added meanwhile
                handler.close()
        for logger, level, handlers, propagate, disabled in saved:
            logger.setLevel(level)
            logger.handlers[:] = handlers
            logger.propagate, logger.disabled = propagate, disabled


def command_in_process(*args: str) -> int:
    """``guestguard <args>`` run in this process (its exit status), the
    logging it configures undone afterwards."""
    from guestguard.ops import cli

    with logging_kept():
        return cli.main(list(args))


def guestguard_command(*args: str, env: dict[str, str] | None = None, timeout: float = 120,
                       **kwargs) -> subprocess.CompletedProcess:
    """Run ``guestguard <args>`` in :func:`command_env` plus ``env``; its output as text."""
    return subprocess.run([COMMAND, *args], capture_output=True, text=True, timeout=timeout,
                          env=command_env(**(env or {})), **kwargs)


def site_ini(directory: Path) -> Path:
    """development.ini copied, as is, into ``directory`` as site.ini."""
    path = directory / "site.ini"
    path.write_text((REPO_ROOT / "development.ini").read_text())
    return path
