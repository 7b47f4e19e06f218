"""Idempotency-Key: a retried unsafe API call gets the first answer again,
byte for byte, and does the work once; per caller; never a secret kept; the
record commits with the work or not at all. On SQLite, and on PostgreSQL
(where two requests with one key at once are tested) when
GG_TEST_DATABASE_URL is set."""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import threading
import time
import uuid

import psycopg
import pytest
import time_machine
from pydantic import BaseModel
from sqlalchemy import event as sa_event, func, select

from guestguard.contract import as_answers, model_types
from guestguard.events.models import Event, Guest
from guestguard.idempotency import HEADER, UNSAFE_METHODS, IdempotencyRecord, purge_expired
from guestguard.plugins import hookimpl
from guestguard.tasks import run_task_now
from guestguard.testing import DATABASE_ENV, TEST_PASSWORD, create_team, event_host, session_bearer

EVENT = {"name": "Midsummer Gala", "starts_at": "2030-06-21T19:00:00", "timezone": "Europe/London",
         "status": "published"}
GRACE = {"name": "Grace Hopper", "email": "grace@example.com"}


def keyed(headers, key="retry-me-1"):
    return {**headers, HEADER: key}


def count(app, run_in_request, model) -> int:
    return run_in_request(lambda request: request.db.scalar(select(func.count()).select_from(model)),
                          app.app.registry)


def records(app, run_in_request) -> list[IdempotencyRecord]:
    return run_in_request(lambda request: list(request.db.scalars(select(IdempotencyRecord))), app.app.registry)


@pytest.fixture
def host(app, run_in_request):
    return event_host(app, run_in_request, EVENT)


def same_answer(first, again):
    assert (again.status, again.body, again.content_type) == (first.status, first.body, first.content_type)
    assert again.headers.get("Location") == first.headers.get("Location")
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers


# --- the same request again -----------------------------------------------------


def test_a_repeat_gets_the_first_answer_and_adds_nothing(app, run_in_request, host):
    url, headers = f"{host['url']}/guests", keyed(host["ada"])
    first = app.post_json(url, GRACE, headers=headers, status=201)
    again = app.post_json(url, GRACE, headers=headers, status=201)
    same_answer(first, again)
    assert count(app, run_in_request, Guest) == 1
    [record] = records(app, run_in_request)
    assert (record.status, record.body, record.body_kept) == (201, first.body, True)


def test_a_repeated_event_is_created_once(app, run_in_request, host):
    body = {"workspace_id": host["workspace"], **EVENT, "name": "Autumn ball"}
    first = app.post_json("/api/v1/events", body, headers=keyed(host["ada"]), status=201)
    same_answer(first, app.post_json("/api/v1/events", body, headers=keyed(host["ada"]), status=201))
    assert count(app, run_in_request, Event) == 2  # the host's, and this one


def test_without_a_key_each_call_does_its_work(app, run_in_request, host):
    url = f"{host['url']}/guests"
    app.post_json(url, GRACE, headers=host["ada"], status=201)
    app.post_json(url, {**GRACE, "email": "grace2@example.com"}, headers=host["ada"], status=201)
    assert count(app, run_in_request, Guest) == 2
    assert records(app, run_in_request) == []


def test_a_retried_delete_gets_its_first_answer(app, run_in_request, host):
    first = app.delete(host["url"], headers=keyed(host["ada"]), status=204)
    again = app.delete(host["url"], headers=keyed(host["ada"]), status=204)  # the event is gone: still its answer
    assert again.headers["Idempotent-Replayed"] == "true" and again.body == first.body == b""
    assert "Content-Length" not in again.headers and "Content-Type" not in again.headers
    app.delete(host["url"], headers=keyed(host["ada"], "another key"), status=404)
    app.delete(host["url"], headers=host["ada"], status=404)


def test_a_refusal_the_view_answered_is_the_answer_kept(app, run_in_request, host):
    url = f"{host['url']}/guests"
    app.post_json(url, GRACE, headers=host["ada"], status=201)
    first = app.post_json(url, GRACE, headers=keyed(host["ada"]), status=409)  # the same email again
    again = app.post_json(url, GRACE, headers=keyed(host["ada"]), status=409)
    same_answer(first, again)
    assert first.json["error"]["existing_guest_id"]


def test_only_unsafe_api_calls_read_the_key(app, host):
    assert {"POST", "PUT", "PATCH", "DELETE"} == UNSAFE_METHODS
    app.get(host["url"], headers=keyed(host["ada"], ""), status=200)  # even a malformed one


def test_a_replay_is_not_counted_against_the_views_rate_limit(make_app, run_in_request):
    app = make_app({"ratelimit.event_create": "1/day"})
    workspace = run_in_request(create_team, app.app.registry)
    ada = session_bearer(app.app.registry, "ada@example.com")
    body = {"workspace_id": workspace, **EVENT}
    first = app.post_json("/api/v1/events", body, headers=keyed(ada), status=201)
    for _ in range(3):
        same_answer(first, app.post_json("/api/v1/events", body, headers=keyed(ada), status=201))
    refused = app.post_json("/api/v1/events", body, headers=keyed(ada, "a new key"), status=429)
    assert refused.json["error"]["code"] == "rate_limited"


# --- another request, another caller ------------------------------------------


@pytest.mark.parametrize("change", ["body", "path", "query", "method"])
def test_the_same_key_with_another_request_is_refused(app, run_in_request, host, change):
    url, headers = f"{host['url']}/guests", keyed(host["ada"])
    app.post_json(url, GRACE, headers=headers, status=201)
    if change == "body":
        refused = app.post_json(url, {**GRACE, "name": "Grace B. Hopper"}, headers=headers, status=422)
    elif change == "path":
        other = app.post_json("/api/v1/events", {"workspace_id": host["workspace"], **EVENT},
                              headers=host["ada"]).json["event"]["id"]
        refused = app.post_json(f"/api/v1/events/{other}/guests", GRACE, headers=headers, status=422)
    elif change == "query":
        refused = app.post_json(f"{url}?x=1", GRACE, headers=headers, status=422)
    else:
        refused = app.patch_json(host["url"], {"name": "Renamed"}, headers=headers, status=422)
    error = refused.json["error"]
    assert error["code"] == "idempotency_key_reused"
    assert HEADER in error["message"] and "another request" in error["message"]
    assert count(app, run_in_request, Guest) == 1
    assert app.get(host["url"], headers=host["ada"]).json["event"]["name"] == EVENT["name"]


def test_keys_belong_to_their_caller(app, run_in_request, host):
    """Eve and an API key of Ada's workspace use Ada's key: each gets an answer of its own."""
    ada = app.post_json("/api/v1/events", {"workspace_id": host["workspace"], **EVENT},
                        headers=keyed(host["ada"]), status=201).json["event"]
    personal = app.get("/api/v1/workspaces", headers=host["eve"]).json["workspaces"][0]["id"]
    eve = app.post_json("/api/v1/events", {"workspace_id": personal, **EVENT},
                        headers=keyed(host["eve"]), status=201)
    assert "Idempotent-Replayed" not in eve.headers and eve.json["event"]["id"] != ada["id"]
    secret = app.post_json(f"/api/v1/workspaces/{host['workspace']}/api-keys", {"name": "Sync", "role": "admin"},
                           headers=host["ada"], status=201).json["api_key"]["secret"]
    api_key = {"Authorization": f"Bearer {secret}"}
    keyed_call = app.post_json("/api/v1/events", {"workspace_id": host["workspace"], **EVENT},
                               headers=keyed(api_key), status=201)
    assert "Idempotent-Replayed" not in keyed_call.headers
    assert count(app, run_in_request, Event) == 4
    callers = sorted(record.caller.split(":")[0] for record in records(app, run_in_request))
    assert callers == ["key", "user", "user"]


def test_anonymous_callers_are_told_apart_by_address_and_path(app, run_in_request):
    def login(address, password=TEST_PASSWORD, path="/api/v1/auth/login", status=200):
        return app.post_json(path, {"email": "ada@example.com", "password": password},
                             headers={HEADER: "k"}, extra_environ={"REMOTE_ADDR": address}, status=status)

    run_in_request(create_team, app.app.registry)
    first = login("198.51.100.1", "wrong password", status=401)
    same_answer(first, login("198.51.100.1", "wrong password", status=401))
    assert login("198.51.100.2").json["access_token"]  # a stranger with the same key: their own answer
    login("198.51.100.1", status=422)  # the first address meant another body by it
    elsewhere = app.post_json("/api/v1/auth/forgot-password", {"email": "ada@example.com"}, headers={HEADER: "k"},
                              extra_environ={"REMOTE_ADDR": "198.51.100.1"}, status=202)  # another path: its own
    assert "Idempotent-Replayed" not in elsewhere.headers
    assert [r.caller.startswith("anon:") for r in records(app, run_in_request)] == [True, True, True]
    assert not any("198.51.100" in r.caller for r in records(app, run_in_request))


def test_a_guest_answering_by_token_is_kept_without_the_token(app, run_in_request, host):
    guest = app.post_json(f"{host['url']}/guests", GRACE, headers=host["ada"], status=201).json["guest"]
    token = app.post_json(f"{host['url']}/guests/{guest['id']}/tokens", {}, headers=host["ada"]).json["token"]
    url = f"/api/v1/rsvp/{token}"
    first = app.post_json(url, {"response": "yes"}, headers={HEADER: "rsvp-1"}, status=200)
    same_answer(first, app.post_json(url, {"response": "yes"}, headers={HEADER: "rsvp-1"}, status=200))
    assert app.post_json(url, {"response": "no"}, headers={HEADER: "rsvp-1"}, status=422)
    [record] = [r for r in records(app, run_in_request) if r.key == "rsvp-1"]
    assert token not in repr(vars(record)) and token.encode() not in record.body


# --- malformed keys -------------------------------------------------------------


# A NUL is dropped from every header before anything reads it (the input
# guard), so "nul\x00byte" arrives as the well-formed "nulbyte".
@pytest.mark.parametrize("key", ["", "k" * 256, "caf\u00e9", "\x01control", "tab\there", "line\nbreak",
                                 "\x7f", "\u00ff" * 300])
def test_a_malformed_key_is_refused_naming_the_header(app, run_in_request, host, key):
    refused = app.post_json(f"{host['url']}/guests", GRACE, headers=keyed(host["ada"], key), status=400)
    error = refused.json["error"]
    assert error["code"] == "invalid_idempotency_key" and HEADER in error["message"]
    assert list(error["fields"]) == [HEADER]
    assert count(app, run_in_request, Guest) == 0 and records(app, run_in_request) == []


@pytest.mark.parametrize("key", ["k" * 255, " ", "~!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", str(uuid.uuid4())])
def test_every_printable_ascii_key_up_to_255_characters_is_accepted(app, host, key):
    app.post_json(f"{host['url']}/guests", GRACE, headers=keyed(host["ada"], key), status=201)
    app.post_json(f"{host['url']}/guests", GRACE, headers=keyed(host["ada"], key), status=201)


# --- what raised, what failed ---------------------------------------------------


class CountingRoute:
    """POST /api/v1/test/count: counts its runs; ``?fail=raise`` raises
    after writing a guest, ``?fail=503`` answers 503 after writing one."""

    def __init__(self, workspace_id, event_id):
        self.workspace_id = workspace_id
        self.event_id = event_id
        self.runs = 0

    @hookimpl
    def configure(self, config):
        config.add_route("count", "/api/v1/test/count")
        config.add_view(self.count, route_name="count", request_method="POST", renderer="json",
                        require_csrf=False)

    def count(self, request):
        from guestguard.errors import json_error

        self.runs += 1
        request.db.add(Guest(workspace_id=self.workspace_id, event_id=self.event_id, name=f"Run {self.runs}"))
        request.db.flush()
        failure = request.GET.get("fail")
        if failure == "raise" and self.runs == 1:
            raise RuntimeError("the view broke")
        if failure == "503" and self.runs == 1:
            return json_error(request, 503, "unavailable", "Try again.")
        return {"runs": self.runs}


@pytest.fixture
def counting(make_app, run_in_request):
    from guestguard.testing import create_host

    first = make_app()
    workspace = run_in_request(create_host, first.app.registry)
    headers = session_bearer(first.app.registry, "ada@example.com")
    event = first.post_json("/api/v1/events", {"workspace_id": workspace, **EVENT}, headers=headers).json["event"]
    route = CountingRoute(uuid.UUID(workspace), uuid.UUID(event["id"]))
    # Ada calls it: on PostgreSQL, row-level security lets only a member
    # write into her workspace.
    return make_app(plugins=[("count", route)]), route, {**headers, HEADER: "k"}


@pytest.mark.parametrize("failure", ["raise", "503"])
def test_a_failed_first_attempt_leaves_the_key_free(counting, run_in_request, failure):
    app, route, keyed_as_ada = counting
    status = 500 if failure == "raise" else 503
    app.post(f"/api/v1/test/count?fail={failure}", headers=keyed_as_ada, status=status)
    guests = count(app, run_in_request, Guest)
    assert guests == (0 if failure == "raise" else 1)  # a raise rolls back; a 503 answered commits its work
    assert records(app, run_in_request) == []
    again = app.post(f"/api/v1/test/count?fail={failure}", headers=keyed_as_ada, status=200)
    assert again.json == {"runs": 2} and "Idempotent-Replayed" not in again.headers
    assert app.post(f"/api/v1/test/count?fail={failure}", headers=keyed_as_ada, status=200).json == {"runs": 2}
    assert route.runs == 2 and count(app, run_in_request, Guest) == guests + 1


def test_a_body_the_view_refused_leaves_the_key_free(app, run_in_request, host):
    url, headers = f"{host['url']}/guests", keyed(host["ada"])
    app.post_json(url, {"name": ""}, headers=headers, status=422)
    assert records(app, run_in_request) == []
    app.post_json(url, GRACE, headers=headers, status=201)
    assert count(app, run_in_request, Guest) == 1


# --- secrets ----------------------------------------------------------------------


def secret_calls(app, run_in_request):
    """Each call whose success carries a credential shown once: (name, call, the secret in its answer)."""
    host = event_host(app, run_in_request, EVENT)
    guest = app.post_json(f"{host['url']}/guests", GRACE, headers=host["ada"]).json["guest"]
    login = {"email": "ada@example.com", "password": TEST_PASSWORD}
    refresh = app.post_json("/api/v1/auth/login", login).json["refresh_token"]
    return {
        "login": lambda h, s: app.post_json("/api/v1/auth/login", login, headers=h, status=s),
        "refresh": lambda h, s: app.post_json("/api/v1/auth/refresh", {"refresh_token": refresh}, headers=h,
                                              status=s),
        "create_api_key": lambda h, s: app.post_json(f"/api/v1/workspaces/{host['workspace']}/api-keys",
                                                     {"name": "Sync", "role": "staff"},
                                                     headers={**host["ada"], **h}, status=s),
        "issue_token": lambda h, s: app.post_json(f"{host['url']}/guests/{guest['id']}/tokens", {},
                                                  headers={**host["ada"], **h}, status=s),
        "stream_ticket": lambda h, s: app.post_json("/api/v1/auth/stream-ticket", {"event_id": host["event"]["id"]},
                                                    headers={**host["ada"], **h}, status=s),
    }


# Where each answer carries its secret.
SECRETS = {"login": lambda answer: answer["refresh_token"], "refresh": lambda answer: answer["refresh_token"],
           "create_api_key": lambda answer: answer["api_key"]["secret"],
           "issue_token": lambda answer: answer["token"], "stream_ticket": lambda answer: answer["ticket"]}


@pytest.mark.parametrize("name", sorted(SECRETS))
def test_an_answer_carrying_a_secret_is_not_kept(app, run_in_request, name):
    call = secret_calls(app, run_in_request)[name]
    first = call({HEADER: "secret-1"}, 201 if name in ("create_api_key", "issue_token", "stream_ticket") else 200)
    shown = SECRETS[name](first.json)
    refused = call({HEADER: "secret-1"}, 409).json["error"]
    assert refused["code"] == "idempotency_answer_not_kept"
    assert "succeeded" in refused["message"] and "secret" in refused["message"]
    [record] = [r for r in records(app, run_in_request) if r.key == "secret-1"]
    assert (record.status, record.body, record.body_kept) == (first.status_int, None, False)
    assert shown not in repr(vars(record))
    assert call({HEADER: "secret-2"}, "*").json.get("error", {}).get("code") != "idempotency_answer_not_kept"


def test_a_refused_login_is_kept_like_any_refusal(app, run_in_request):
    run_in_request(create_team, app.app.registry)
    body = {"email": "ada@example.com", "password": "not the password"}
    first = app.post_json("/api/v1/auth/login", body, headers={HEADER: "k"}, status=401)
    same_answer(first, app.post_json("/api/v1/auth/login", body, headers={HEADER: "k"}, status=401))


CREDENTIAL_FIELDS = {"token", "access_token", "refresh_token", "secret", "ticket"}


def property_names(schema, definitions) -> set[str]:
    """Every property name of a JSON schema, through its references."""
    found, pending, seen = set(), [schema], set()
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if ref and ref not in seen:
                seen.add(ref)
                pending.append(definitions[ref.rsplit("/", 1)[1]])
            found.update(node.get("properties", {}))
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return found


def test_every_view_whose_answer_carries_a_credential_says_so(app):
    """A view answering with a field named like a credential declares
    ``shows_secret=True`` (so its answer is never kept), and only those do."""
    undeclared, needless = [], []
    for intr in app.app.registry.introspector.get_category("views"):
        view = intr["introspectable"]
        methods = view["request_methods"] or ()
        if not set((methods,) if isinstance(methods, str) else methods) & UNSAFE_METHODS:
            continue
        models = [m for kind in as_answers(view.get("response")).values() for m in model_types(kind)]
        names = set()
        for model in models:
            assert issubclass(model, BaseModel)
            schema = model.model_json_schema(mode="serialization")
            names |= property_names(schema, schema.get("$defs", {}))
        carries = bool(names & CREDENTIAL_FIELDS)
        declared = bool(view.get("shows_secret"))
        if carries and not declared:
            undeclared.append(view["callable"].__name__)
        if declared and not carries:
            needless.append(view["callable"].__name__)
    assert undeclared == [] and needless == []


# --- time ---------------------------------------------------------------------------


def test_a_key_is_kept_for_a_day_then_works_again_and_is_purged(app, run_in_request, host):
    url = f"{host['url']}/guests"
    start = dt.datetime.now(dt.UTC)
    with time_machine.travel(start, tick=False) as clock:
        first = app.post_json(url, GRACE, headers=keyed(host["ada"]), status=201)
        app.post_json(url, {"name": "Alan"}, headers=keyed(host["ada"], "other"), status=201)
        clock.shift(dt.timedelta(hours=23, minutes=59))
        ada = session_bearer(app.app.registry, "ada@example.com")  # the access token expired meanwhile
        same_answer(first, app.post_json(url, GRACE, headers=keyed(ada), status=201))
        assert run_task_now(app.app.registry, purge_expired) == 0
        clock.shift(dt.timedelta(minutes=2))
        ada = session_bearer(app.app.registry, "ada@example.com")
        again = app.post_json(url, GRACE, headers=keyed(ada), status=409)  # run again: Grace is there now
        assert "Idempotent-Replayed" not in again.headers
        assert run_task_now(app.app.registry, purge_expired) == 1  # "other"; the renewed one stays
        assert [r.key for r in records(app, run_in_request)] == ["retry-me-1"]
        clock.shift(dt.timedelta(days=1, minutes=1))
        assert run_task_now(app.app.registry, purge_expired) == 1
    assert records(app, run_in_request) == []


def test_the_time_a_key_is_kept_is_a_setting(make_app, run_in_request):
    app = make_app({"idempotency.ttl_hours": "2"})
    host = event_host(app, run_in_request, EVENT)
    app.post_json(f"{host['url']}/guests", GRACE, headers=keyed(host["ada"]), status=201)
    [record] = records(app, run_in_request)
    assert dt.timedelta(hours=2) - (record.expires_at - record.created_at) < dt.timedelta(seconds=1)


def test_purging_runs_every_hour(app):
    huey = app.app.registry["huey"]

    def due(minute):
        return {task.name.rsplit(".", 1)[-1] for task in huey.read_periodic(dt.datetime(2030, 1, 1, 5, minute))}

    assert "purge_expired" in due(23) and "purge_expired" not in due(24)


# --- outages, logs, the contract ---------------------------------------------------


def test_the_database_down_is_the_houses_503(make_app):
    nowhere = make_app({"db.url": "postgresql+psycopg://postgres@127.0.0.1:9/gg", "db.pool_timeout": "1"})
    answer = nowhere.post_json("/api/v1/auth/login", {"email": "ada@example.com", "password": "x" * 12},
                               headers={HEADER: "k"}, status=503)
    assert answer.json["error"]["code"] == "unavailable" and answer.headers["Retry-After"]


def test_nothing_about_keys_or_answers_goes_to_the_logs(app, run_in_request, host, caplog):
    caplog.set_level(logging.DEBUG)
    url = f"{host['url']}/guests"
    key = "a-very-recognisable-key"
    app.post_json(url, GRACE, headers=keyed(host["ada"], key), status=201)
    app.post_json(url, GRACE, headers=keyed(host["ada"], key), status=201)
    app.post_json(url, {"name": "Other"}, headers=keyed(host["ada"], key), status=422)
    app.post_json("/api/v1/auth/login", {"email": "ada@example.com", "password": TEST_PASSWORD},
                  headers={HEADER: key}, status=200)
    app.post_json("/api/v1/auth/login", {"email": "ada@example.com", "password": TEST_PASSWORD},
                  headers={HEADER: key}, status=409)
    assert key not in caplog.text and "grace@example.com" not in caplog.text


def test_the_contract_documents_the_header_on_every_unsafe_call(app):
    document = app.get("/api/v1/openapi.json").json
    unsafe = 0
    for path, item in document["paths"].items():
        for method, operation in item.items():
            parameters = [p for p in operation.get("parameters", []) if p["name"] == HEADER]
            if method.upper() not in UNSAFE_METHODS or not path.startswith("/api/"):
                assert parameters == [], (method, path)
                continue
            unsafe += 1
            [parameter] = parameters
            assert parameter["in"] == "header" and parameter["required"] is False
            assert parameter["schema"]["maxLength"] == 255
            codes = {status: answer["content"]["application/json"]["schema"]["properties"]["error"]["properties"]
                     ["code"]["enum"] for status, answer in operation["responses"].items() if int(status) >= 400}
            assert "invalid_idempotency_key" in codes["400"]
            assert "idempotency_key_in_use" in codes["409"]
            assert "idempotency_key_reused" in codes["422"]
            secret = operation["operationId"] in SECRETS
            assert ("idempotency_answer_not_kept" in codes["409"]) == secret, operation["operationId"]
    assert unsafe > 30


# --- two at once (PostgreSQL) ---------------------------------------------------------


postgres_only = pytest.mark.skipif(not os.environ.get(DATABASE_ENV),
                                   reason="two transactions at once need PostgreSQL (SQLite has one writer)")


def waiting_on_a_lock(timeout=20.0) -> bool:
    """Whether a backend waits for a lock on an idempotency insert (polled)."""
    url = os.environ[DATABASE_ENV].replace("postgresql+psycopg://", "postgresql://")
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as connection:
        while time.monotonic() < deadline:
            waiting = connection.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE 'INSERT INTO idempotency_keys%'").fetchone()[0]
            if waiting:
                return True
            time.sleep(0.05)
    return False


@contextlib.contextmanager
def first_guest_held(app):
    """Holds the first INSERT INTO guests until released: that request's
    transaction (and its idempotency record) stays open meanwhile."""
    engine = app.app.registry["db.engine"]
    inside, release = threading.Event(), threading.Event()

    def pause(conn, cursor, statement, *args):
        if statement.startswith("INSERT INTO guests") and not inside.is_set():
            inside.set()
            release.wait(60)

    sa_event.listen(engine, "before_cursor_execute", pause)
    try:
        yield inside, release
    finally:
        release.set()
        sa_event.remove(engine, "before_cursor_execute", pause)


def in_thread(call):
    answers = []
    thread = threading.Thread(target=lambda: answers.append(call()))
    thread.start()
    return thread, answers


@postgres_only
def test_a_repeat_arriving_while_the_first_runs_waits_and_replays(app, run_in_request, host):
    url, headers = f"{host['url']}/guests", keyed(host["ada"])
    with first_guest_held(app) as (inside, release):
        first, first_answer = in_thread(lambda: app.post_json(url, GRACE, headers=headers, expect_errors=True))
        assert inside.wait(30)
        second, second_answer = in_thread(lambda: app.post_json(url, GRACE, headers=headers, expect_errors=True))
        assert waiting_on_a_lock()  # the repeat waits at the record the first one holds
        release.set()
        first.join(60)
        second.join(60)
    assert first_answer[0].status_int == 201
    same_answer(first_answer[0], second_answer[0])
    assert count(app, run_in_request, Guest) == 1


@postgres_only
def test_a_repeat_that_waits_too_long_is_told_to_come_back(make_app, run_in_request):
    app = make_app({"idempotency.wait_seconds": "1"})
    host = event_host(app, run_in_request, EVENT)
    url, headers = f"{host['url']}/guests", keyed(host["ada"])
    with first_guest_held(app) as (inside, release):
        first, first_answer = in_thread(lambda: app.post_json(url, GRACE, headers=headers, expect_errors=True))
        assert inside.wait(30)
        busy = app.post_json(url, GRACE, headers=headers, status=409)
        release.set()
        first.join(60)
    assert busy.json["error"]["code"] == "idempotency_key_in_use"
    assert busy.headers["Retry-After"] == "1" and busy.json["error"]["retry_after"] == 1
    assert first_answer[0].status_int == 201
    same_answer(first_answer[0], app.post_json(url, GRACE, headers=headers, status=201))
    assert count(app, run_in_request, Guest) == 1


@postgres_only
def test_many_requests_with_one_key_at_once_make_one_guest(app, run_in_request, host):
    url, headers = f"{host['url']}/guests", keyed(host["ada"])
    barrier = threading.Barrier(6)
    answers = []

    def call():
        barrier.wait()
        answers.append(app.post_json(url, GRACE, headers=headers, expect_errors=True))

    threads = [threading.Thread(target=call) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert [answer.status_int for answer in answers] == [201] * 6
    assert len({answer.body for answer in answers}) == 1
    assert sum("Idempotent-Replayed" not in answer.headers for answer in answers) == 1
    assert count(app, run_in_request, Guest) == 1
    assert len(records(app, run_in_request)) == 1

