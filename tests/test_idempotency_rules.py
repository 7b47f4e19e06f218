"""The Idempotency-Key rules, called directly: which requests carry a key,
what a well-formed key is, whose key it is, what it means, and what a repeat
is answered. The records live in a SQLite database of their own, so the
whole module runs in a moment (the mutation run's checks of
guestguard.idempotency). test_idempotency.py drives the same rules through
the application, and on PostgreSQL two requests with one key at once."""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import io
import uuid
from types import SimpleNamespace
from typing import ClassVar

import pytest
import time_machine
from pyramid.response import Response
from sqlalchemy import create_engine, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from webob import Request

from guestguard.errors import APIError
from guestguard.idempotency import (
    ANSWER_NOT_KEPT,
    HEADER,
    INVALID_KEY,
    KEY_IN_USE,
    KEY_REUSED,
    REPLAYED,
    IdempotencyRecord,
    KeyInUse,
    caller_of,
    carries_key,
    claim,
    fingerprint_of,
    gone_deriver,
    idempotency_deriver,
    keep,
    kept_answer,
    presented_key,
    replay,
)

SECRET = b"s" * 32
OTHER_SECRET = b"t" * 32
NOW = dt.datetime(2030, 3, 1, 12, tzinfo=dt.UTC)
DAY = dt.timedelta(hours=24)


def spec_digest(secret: bytes, *parts: bytes) -> str:
    """The documented fingerprint: HMAC-SHA256 over each part preceded by
    its length as 8 big-endian bytes."""
    mac = hmac.new(secret, digestmod=hashlib.sha256)
    for part in parts:
        mac.update(len(part).to_bytes(8, "big") + part)
    return mac.hexdigest()


def fake_request(method="POST", path="/api/v1/events", key="key-1", query="", body=b"{}", user=None,
                 api_key=None, ip="203.0.113.7", db=None):
    headers = {} if key is None else {HEADER: key}
    identity = None if user is None and api_key is None else SimpleNamespace(user=user, api_key=api_key)
    return SimpleNamespace(method=method, headers=headers, body=body, content_type="application/json",
                           environ={"PATH_INFO": path, "QUERY_STRING": query},
                           ctx=SimpleNamespace(identity=identity, client_ip=ip, db=db))


@pytest.fixture
def db():
    engine = create_engine("sqlite://")
    IdempotencyRecord.__table__.create(engine)
    with Session(engine) as session:
        yield session
    engine.dispose()


def stored(db) -> list[IdempotencyRecord]:
    return list(db.scalars(select(IdempotencyRecord).execution_options(populate_existing=True)))


def answer(status=201, body=b'{"id": 1}', **headers) -> Response:
    response = Response(status=status, body=body, content_type="application/json")
    response.headers.update(headers)
    return response


# --- which requests carry a key -------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize("path", ["/api/v1/events", "/api/", "/api"])
def test_unsafe_api_calls_with_the_header_carry_a_key(method, path):
    assert carries_key(fake_request(method=method, path=path))


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
def test_safe_methods_never_carry_a_key(method):
    assert not carries_key(fake_request(method=method))


@pytest.mark.parametrize("path", ["/events/new", "/apis", "/", "/login"])
def test_pages_outside_the_api_never_carry_a_key(path):
    assert not carries_key(fake_request(path=path))


def test_a_call_without_the_header_carries_no_key():
    assert not carries_key(fake_request(key=None))


# --- what a well-formed key is --------------------------------------------------


@pytest.mark.parametrize("key", [" ", "~", "a", "x" * 255, "550e8400-e29b-41d4-a716-446655440000", " !~ "])
def test_printable_ascii_keys_up_to_255_characters_are_taken_as_they_are(key):
    assert presented_key(fake_request(key=key)) == key


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "tab\there", "line\n", "\x7f", "\x1f", "\ud800"])
def test_a_malformed_key_is_refused_naming_the_header_and_its_rule(key):
    with pytest.raises(APIError) as refused:
        presented_key(fake_request(key=key))
    assert (refused.value.code, refused.value.error_code) == (400, INVALID_KEY)
    assert refused.value.error_message == ("The Idempotency-Key header must be 1 to 255 printable ASCII "
                                           "characters; a random UUID is a good key.")
    assert refused.value.extra["fields"] == {HEADER: "must be 1 to 255 printable ASCII characters"}


# --- whose key it is ------------------------------------------------------------


def test_a_signed_in_users_key_is_theirs():
    user = SimpleNamespace(id=uuid.UUID(int=7))
    assert caller_of(fake_request(user=user), SECRET) == f"user:{uuid.UUID(int=7)}"
    assert caller_of(fake_request(user=user, api_key=SimpleNamespace(id=uuid.UUID(int=8))), SECRET) \
        == f"user:{uuid.UUID(int=7)}"


def test_an_api_keys_key_is_the_api_keys():
    api_key = SimpleNamespace(id=uuid.UUID(int=8))
    assert caller_of(fake_request(api_key=api_key), SECRET) == f"key:{uuid.UUID(int=8)}"


def test_anyone_else_is_known_by_an_hmac_of_their_address_and_path():
    caller = caller_of(fake_request(ip="203.0.113.7", path="/api/v1/rsvp/abc"), SECRET)
    assert caller == "anon:" + spec_digest(SECRET, b"203.0.113.7", b"/api/v1/rsvp/abc")
    assert "203.0.113.7" not in caller
    assert caller_of(fake_request(ip="203.0.113.8", path="/api/v1/rsvp/abc"), SECRET) != caller
    assert caller_of(fake_request(ip="203.0.113.7", path="/api/v1/rsvp/abd"), SECRET) != caller
    assert caller_of(fake_request(ip="203.0.113.7", path="/api/v1/rsvp/abc"), OTHER_SECRET) != caller
    nobody = fake_request()
    nobody.ctx.identity = SimpleNamespace(user=None, api_key=None)
    assert caller_of(nobody, SECRET).startswith("anon:")


def test_an_address_or_path_that_is_not_valid_text_still_has_a_caller():
    caller = caller_of(fake_request(ip="\ud800", path="/api/\udcff"), SECRET)
    assert caller == "anon:" + spec_digest(SECRET, b"\xed\xa0\x80", b"/api/\xed\xb3\xbf")


# --- what the key means ---------------------------------------------------------


def test_the_fingerprint_covers_method_path_query_and_body():
    request = fake_request(method="PATCH", path="/api/v1/events/1", query="a=1", body=b'{"name": "x"}')
    print_ = fingerprint_of(request, SECRET)
    assert print_ == spec_digest(SECRET, b"PATCH", b"/api/v1/events/1", b"a=1", b'{"name": "x"}')
    for change in ({"method": "PUT"}, {"path": "/api/v1/events/2"}, {"query": "a=2"}, {"body": b'{"name": "y"}'}):
        other = fake_request(**{"method": "PATCH", "path": "/api/v1/events/1", "query": "a=1",
                                "body": b'{"name": "x"}', **change})
        assert fingerprint_of(other, SECRET) != print_, change
    assert fingerprint_of(request, OTHER_SECRET) != print_


def test_parts_cannot_run_into_each_other():
    one = fake_request(path="/api/v1/a", query="bc", body=b"")
    other = fake_request(path="/api/v1/ab", query="c", body=b"")
    assert fingerprint_of(one, SECRET) != fingerprint_of(other, SECRET)


def test_a_request_without_a_query_string_reads_as_an_empty_one():
    request = fake_request(body=b"x")
    del request.environ["QUERY_STRING"]
    assert fingerprint_of(request, SECRET) == spec_digest(SECRET, b"POST", b"/api/v1/events", b"", b"x")


def multipart(body: bytes, **fields):
    request = fake_request(body=body)
    request.content_type, request.POST = "multipart/form-data", fields
    return request


def upload(name: str, content: bytes):
    return SimpleNamespace(filename=name, file=io.BytesIO(content))


def test_a_multipart_body_means_its_parts_whatever_its_boundary():
    sent = upload("guests.csv", b"name\nGrace")
    first = multipart(b"--boundary-1 ...", file=sent, duplicates="skip")
    print_ = fingerprint_of(first, SECRET)
    assert print_ == spec_digest(SECRET, b"POST", b"/api/v1/events", b"", b"duplicates", b"skip", b"file",
                                 b"guests.csv", b"name\nGrace")
    assert sent.file.tell() == 0, "the file is left to be read again"
    again = multipart(b"--boundary-2 ...", duplicates="skip", file=upload("guests.csv", b"name\nGrace"))
    assert fingerprint_of(again, SECRET) == print_
    for other in (multipart(b"", file=upload("other.csv", b"name\nGrace"), duplicates="skip"),
                  multipart(b"", file=upload("guests.csv", b"name\nAlan"), duplicates="skip"),
                  multipart(b"", file=upload("guests.csv", b"name\nGrace"), duplicates="update")):
        assert fingerprint_of(other, SECRET) != print_


def sent_form(*parts: tuple, boundary: str = "boundary-1", db=None):
    """A multipart request as WebOb reads it off the wire: each part
    ``(name, text)`` for a field, or ``(name, file name, bytes[, content
    type])`` for a file; ``boundary`` as the client drew it."""
    wire = b""
    for name, *rest in parts:
        head = f'Content-Disposition: form-data; name="{name}"'
        if len(rest) == 1:
            content = rest[0].encode()
        else:
            filename, content, *kind = rest
            head += f'; filename="{filename}"\r\nContent-Type: {kind[0] if kind else "text/csv"}'
        wire += f"--{boundary}\r\n{head}\r\n\r\n".encode() + content + b"\r\n"
    wire += f"--{boundary}--\r\n".encode()
    parsed = Request.blank("/api/v1/events", method="POST", body=wire,
                           content_type=f"multipart/form-data; boundary={boundary}")
    request = fake_request(body=wire, db=db)
    request.content_type, request.POST = "multipart/form-data", parsed.POST
    return request


def test_values_sent_under_one_name_mean_their_order(db):
    """Fields of different names may come in any order (above), but the
    values of one name are a list: the same key with them in another order
    is another request, refused, while a repeat in their order replays."""
    view = CountingView(answer(201, b'{"id": 1}'))
    wrapped = idempotency_deriver(view, view_info())
    wrapped(CONTEXT, sent_form(("tag", "vip"), ("tag", "family"), ("name", "Grace"), db=db))
    again = wrapped(CONTEXT, sent_form(("name", "Grace"), ("tag", "vip"), ("tag", "family"), boundary="b-2", db=db))
    assert (view.calls, again.status_code, again.headers[REPLAYED]) == (1, 201, "true")
    with pytest.raises(APIError) as refused:
        wrapped(CONTEXT, sent_form(("tag", "family"), ("tag", "vip"), ("name", "Grace"), boundary="b-3", db=db))
    assert (refused.value.code, refused.value.error_code, view.calls) == (422, KEY_REUSED, 1)


def test_files_sent_under_one_name_are_each_part_of_the_fingerprint_in_their_order():
    grace, alan = ("file", "grace.csv", b"name\nGrace"), ("file", "alan.csv", b"name\nAlan")
    print_ = fingerprint_of(sent_form(grace, alan), SECRET)
    assert print_ == spec_digest(SECRET, b"POST", b"/api/v1/events", b"", b"file", b"grace.csv", b"name\nGrace",
                                 b"file", b"alan.csv", b"name\nAlan")
    assert fingerprint_of(sent_form(alan, grace, boundary="b-2"), SECRET) != print_
    with_text = fingerprint_of(sent_form(grace, ("file", "Alan")), SECRET)
    assert with_text == spec_digest(SECRET, b"POST", b"/api/v1/events", b"", b"file", b"grace.csv",
                                    b"name\nGrace", b"file", b"Alan")


def test_a_file_whose_name_reads_as_nothing_is_fingerprinted_with_an_empty_name():
    """A file part's name in a charset that decodes it to nothing (a UTF-8
    byte order mark under utf-8-sig): WebOb hands over a file without a
    name, and the fingerprint holds that empty name, so the upload is never
    taken for a named one."""
    unnamed = sent_form(("file", "\ufeff", b"name\nGrace", "text/csv; charset=utf-8-sig"))
    assert (unnamed.POST["file"].filename, unnamed.POST["file"].file.read()) == ("", b"name\nGrace")
    unnamed.POST["file"].file.seek(0)
    print_ = fingerprint_of(unnamed, SECRET)
    assert print_ == spec_digest(SECRET, b"POST", b"/api/v1/events", b"", b"file", b"", b"name\nGrace")
    assert fingerprint_of(sent_form(("file", "guests.csv", b"name\nGrace")), SECRET) != print_


# --- a key still being processed ------------------------------------------------


def test_a_key_in_use_is_a_409_with_retry_after():
    error = KeyInUse()
    assert (error.code, error.error_code, error.extra) == (409, KEY_IN_USE, {"retry_after": 1})
    assert error.headers["Retry-After"] == "1"
    assert error.error_message == ("A request with this Idempotency-Key is still being processed. "
                                   "Try again in 1 second to get its answer.")


def test_a_longer_wait_is_said_in_seconds(monkeypatch):
    from guestguard import idempotency

    monkeypatch.setattr(idempotency, "RETRY_AFTER", 3)
    error = KeyInUse()
    assert error.error_message.endswith("Try again in 3 seconds to get its answer.")
    assert (error.headers["Retry-After"], error.extra) == ("3", {"retry_after": 3})


# --- the record -----------------------------------------------------------------


def test_the_first_request_records_its_key_until_the_time_to_live_ends(db):
    with time_machine.travel(NOW, tick=False):
        record_id, found = claim(db, "user:1", "key-1", "print-1", DAY, wait=2)
    assert found is None and record_id is not None
    (record,) = stored(db)
    assert (record.id, record.caller, record.key, record.fingerprint) == (record_id, "user:1", "key-1", "print-1")
    assert (record.status, record.headers, record.body, record.body_kept) == (None, {}, None, True)
    assert (record.created_at, record.expires_at) == (NOW, NOW + DAY)


def test_a_repeat_finds_the_first_record_and_adds_none(db):
    first_id, _ = claim(db, "user:1", "key-1", "print-1", DAY, wait=2)
    record_id, found = claim(db, "user:1", "key-1", "print-2", DAY, wait=2)
    assert record_id is None and found.id == first_id and found.fingerprint == "print-1"
    assert len(stored(db)) == 1


def test_keys_are_per_caller(db):
    first_id, _ = claim(db, "user:1", "key-1", "print-1", DAY, wait=2)
    other_id, found = claim(db, "user:2", "key-1", "print-1", DAY, wait=2)
    again_id, _ = claim(db, "user:1", "key-2", "print-1", DAY, wait=2)
    assert found is None and len({first_id, other_id, again_id}) == 3
    assert len(stored(db)) == 3


def test_an_expired_record_is_replaced(db):
    with time_machine.travel(NOW, tick=False):
        old_id, _ = claim(db, "user:1", "key-1", "print-1", DAY, wait=2)
    with time_machine.travel(NOW + DAY, tick=False):
        new_id, found = claim(db, "user:1", "key-1", "print-2", DAY, wait=2)
    assert found is None and new_id != old_id
    (record,) = stored(db)
    assert (record.id, record.fingerprint, record.expires_at) == (new_id, "print-2", NOW + 2 * DAY)


def test_a_key_others_keep_taking_is_in_use_after_three_tries(db, monkeypatch):
    from guestguard import idempotency

    tries = []
    monkeypatch.setattr(idempotency, "_insert_unless_taken", lambda db, values, wait: tries.append(wait))
    with pytest.raises(KeyInUse):
        claim(db, "user:1", "key-1", "print-1", DAY, wait=5)
    assert tries == [5, 5, 5]


def test_a_repeat_reads_its_own_callers_record_for_its_key(db):
    for caller, key in (("user:2", "key-1"), ("user:1", "key-0"), ("user:1", "key-1")):
        claim(db, caller, key, f"{caller}/{key}", DAY, wait=2)
    _, found = claim(db, "user:1", "key-1", "again", DAY, wait=2)
    assert (found.caller, found.key, found.fingerprint) == ("user:1", "key-1", "user:1/key-1")


def test_a_repeat_reads_the_record_as_it_is_now(db):
    record_id, _ = claim(db, "user:1", "key-1", "print-1", DAY, wait=2)
    loaded = db.get(IdempotencyRecord, record_id)  # held in the session, unanswered
    assert loaded.status is None
    db.execute(update(IdempotencyRecord).values(status=201).execution_options(synchronize_session=False))
    _, found = claim(db, "user:1", "key-1", "print-1", DAY, wait=2)
    assert found is loaded and found.status == 201


def test_the_answer_is_kept_with_the_headers_that_describe_it(db):
    record_id, _ = claim(db, "user:1", "key-1", "print-1", DAY, wait=2)
    keep(db, record_id, answer(201, b'{"id": 1}', Location="/api/v1/events/1", **{"Set-Cookie": "a=b",
                                                                                 "X-Other": "1"}), False)
    (record,) = stored(db)
    assert (record.status, record.body, record.body_kept) == (201, b'{"id": 1}', True)
    assert record.headers == {"Content-Type": "application/json", "Location": "/api/v1/events/1"}


@pytest.mark.parametrize("status", [400, 422])
def test_a_refusal_is_kept_even_from_a_view_that_shows_secrets(db, status):
    record_id, _ = claim(db, "user:1", "key-1", "print-1", DAY, wait=2)
    keep(db, record_id, answer(status, b'{"error": {}}'), True)
    (record,) = stored(db)
    assert (record.status, record.body, record.body_kept) == (status, b'{"error": {}}', True)


def test_a_secret_shown_once_is_not_kept(db):
    record_id, _ = claim(db, "user:1", "key-1", "print-1", DAY, wait=2)
    keep(db, record_id, answer(399, b'{"token": "secret"}'), True)
    (record,) = stored(db)
    assert (record.status, record.body, record.body_kept) == (399, None, False)


@pytest.mark.parametrize("status", [500, 503])
def test_a_server_error_is_not_an_answer_to_keep(db, status):
    record_id, _ = claim(db, "user:1", "key-1", "print-1", DAY, wait=2)
    other_id, _ = claim(db, "user:1", "key-2", "print-1", DAY, wait=2)
    keep(db, record_id, answer(status), False)
    assert [record.id for record in stored(db)] == [other_id]


def test_the_last_status_below_500_is_kept(db):
    record_id, _ = claim(db, "user:1", "key-1", "print-1", DAY, wait=2)
    keep(db, record_id, answer(499), False)
    assert stored(db)[0].status == 499


# --- the answer to a repeat -----------------------------------------------------


def record_of(status=201, body=b'{"id": 1}', headers=None, body_kept=True, fingerprint="print-1"):
    return IdempotencyRecord(caller="user:1", key="key-1", fingerprint=fingerprint, status=status,
                             headers={"Content-Type": "application/json"} if headers is None else headers,
                             body=body, body_kept=body_kept, expires_at=NOW + DAY)


def test_a_repeat_gets_the_first_answer_marked_as_replayed():
    response = replay(record_of(headers={"Content-Type": "application/json", "Location": "/x"}), "print-1")
    assert (response.status_code, response.body) == (201, b'{"id": 1}')
    assert (response.headers["Location"], response.content_type) == ("/x", "application/json")
    assert response.headers[REPLAYED] == "true"


def test_a_kept_answer_without_a_body_is_replayed_without_one():
    response = replay(record_of(status=204, body=b"", headers={}), "print-1")
    assert (response.status_code, response.body, response.headers[REPLAYED]) == (204, b"", "true")
    assert "Content-Length" not in response.headers or response.headers["Content-Length"] == "0"


def test_the_key_with_another_request_is_refused():
    with pytest.raises(APIError) as refused:
        replay(record_of(), "print-2")
    assert (refused.value.code, refused.value.error_code) == (422, KEY_REUSED)
    assert refused.value.error_message == ("This Idempotency-Key was already used for another request (a "
                                           "different method, path, query or body). Send a new key with a "
                                           "new request.")


def test_a_repeat_of_a_request_still_running_is_told_it_is_in_use():
    with pytest.raises(KeyInUse):
        replay(record_of(status=None, body=None), "print-1")


def test_a_repeat_of_an_answer_that_carried_a_secret_is_told_it_was_not_kept():
    with pytest.raises(APIError) as refused:
        replay(record_of(body=None, body_kept=False), "print-1")
    assert (refused.value.code, refused.value.error_code) == (409, ANSWER_NOT_KEPT)
    assert refused.value.error_message == (
        "The first request with this Idempotency-Key succeeded, but its answer carried a secret shown only "
        "once, so it was not kept and cannot be shown again. Send a new key to ask for a new one.")


def test_the_fingerprint_is_checked_before_the_state():
    with pytest.raises(APIError) as refused:
        replay(record_of(status=None, body=None, fingerprint="print-2"), "print-1")
    assert refused.value.error_code == KEY_REUSED


# --- the deriver ----------------------------------------------------------------


class Registry(dict):
    """What the deriver reads of the application registry."""

    settings: ClassVar[dict[str, int]] = {"idempotency.ttl_hours": 24, "idempotency.wait_seconds": 2}


def view_info(exception_only=False, shows_secret=False):
    return SimpleNamespace(exception_only=exception_only, options={"shows_secret": shows_secret},
                           registry=Registry({"idempotency.secret": SECRET}))


CONTEXT = object()


class CountingView:
    """A view that checks it is called with the context and request the
    deriver was given."""

    def __init__(self, response):
        self.response, self.calls = response, 0

    def __call__(self, context, request):
        assert context is CONTEXT and isinstance(request, SimpleNamespace)
        self.calls += 1
        return self.response


def test_a_keyed_call_runs_once_and_its_repeat_gets_the_answer(db):
    view = CountingView(answer(201, b'{"id": 1}'))
    wrapped = idempotency_deriver(view, view_info())
    user = SimpleNamespace(id=uuid.UUID(int=1))
    first = wrapped(CONTEXT, fake_request(user=user, db=db))
    again = wrapped(CONTEXT, fake_request(user=user, db=db))
    assert view.calls == 1 and first is view.response
    assert (again.status_code, again.body, again.headers[REPLAYED]) == (201, b'{"id": 1}', "true")
    (record,) = stored(db)
    assert record.expires_at - record.created_at == DAY


def test_an_anonymous_callers_record_is_theirs_and_waits_as_configured(db, monkeypatch):
    from guestguard import idempotency

    waits = []
    insert = idempotency._insert_unless_taken
    monkeypatch.setattr(idempotency, "_insert_unless_taken",
                        lambda db, values, wait: waits.append(wait) or insert(db, values, wait))
    idempotency_deriver(CountingView(answer()), view_info())(CONTEXT, fake_request(path="/api/v1/rsvp/x", db=db))
    assert waits == [2]
    assert stored(db)[0].caller == "anon:" + spec_digest(SECRET, b"203.0.113.7", b"/api/v1/rsvp/x")


def test_a_call_without_a_key_runs_every_time(db):
    view = CountingView(answer())
    wrapped = idempotency_deriver(view, view_info())
    for _ in range(2):
        assert wrapped(CONTEXT, fake_request(key=None, db=db)) is view.response
    assert view.calls == 2 and stored(db) == []


def test_a_malformed_key_stops_the_call_before_the_view(db):
    view = CountingView(answer())
    with pytest.raises(APIError):
        idempotency_deriver(view, view_info())(CONTEXT, fake_request(key="", db=db))
    assert view.calls == 0


def test_a_view_showing_a_secret_keeps_no_body(db):
    wrapped = idempotency_deriver(CountingView(answer(201, b'{"token": "t"}')), view_info(shows_secret=True))
    wrapped(CONTEXT, fake_request(user=SimpleNamespace(id=uuid.UUID(int=1)), db=db))
    assert (stored(db)[0].body, stored(db)[0].body_kept) == (None, False)


def kept(db, request, response=None):
    record_id, _ = claim(db, caller_of(request, SECRET), request.headers[HEADER],
                         fingerprint_of(request, SECRET), DAY, wait=2)
    keep(db, record_id, response or answer(204, b""), False)


def not_found():
    return Response(status=404, body=b'{"error": {"code": "not_found"}}')


def test_a_retried_delete_whose_resource_is_gone_gets_the_first_answer(db):
    request = fake_request(method="DELETE", path="/api/v1/events/1", db=db)
    kept(db, request)
    error_view = idempotency_deriver(CountingView(not_found()), view_info(exception_only=True))
    response = error_view(CONTEXT, request)
    assert (response.status_code, response.headers[REPLAYED]) == (204, "true")


def test_the_not_found_stands_for_anything_but_the_same_request_with_a_kept_answer(db):
    request = fake_request(method="DELETE", path="/api/v1/events/1", db=db)
    kept(db, request)
    error_view = gone_deriver(CountingView(not_found()), SECRET)
    for other in (fake_request(method="DELETE", path="/api/v1/events/1", body=b"other", db=db),
                  fake_request(method="DELETE", path="/api/v1/events/1", key="key-2", db=db),
                  fake_request(method="DELETE", path="/api/v1/events/1", key="", db=db),
                  fake_request(method="DELETE", path="/api/v1/events/1", key=None, db=db),
                  fake_request(method="DELETE", path="/api/v1/events/1", ip="198.51.100.1", db=db)):
        assert error_view(CONTEXT, other).status_code == 404


def test_only_a_not_found_looks_for_a_kept_answer(db):
    request = fake_request(method="DELETE", path="/api/v1/events/1", db=db)
    kept(db, request)
    gone = gone_deriver(CountingView(Response(status=403)), SECRET)
    assert gone(CONTEXT, request).status_code == 403


def test_an_answer_is_not_replayed_from_the_moment_it_expires(db):
    request = fake_request(method="DELETE", path="/api/v1/events/1", db=db)
    with time_machine.travel(NOW, tick=False):
        kept(db, request)
    with time_machine.travel(NOW + DAY - dt.timedelta(microseconds=1), tick=False):
        assert kept_answer(request, SECRET).status_code == 204
    with time_machine.travel(NOW + DAY, tick=False):
        assert kept_answer(request, SECRET) is None


@pytest.mark.parametrize("state", ["expired", "running", "secret"])
def test_an_answer_that_cannot_be_replayed_leaves_the_not_found(db, state):
    request = fake_request(method="DELETE", path="/api/v1/events/1", db=db)
    made = dt.datetime.now(dt.UTC) - (2 * DAY if state == "expired" else dt.timedelta())
    with time_machine.travel(made, tick=False):
        record_id, _ = claim(db, caller_of(request, SECRET), "key-1", fingerprint_of(request, SECRET), DAY, 2)
    if state == "secret":
        keep(db, record_id, answer(200, b"{}"), True)
    elif state == "expired":
        keep(db, record_id, answer(204, b""), False)
    assert kept_answer(request, SECRET) is None
    assert gone_deriver(CountingView(not_found()), SECRET)(CONTEXT, request).status_code == 404


def test_a_database_that_cannot_read_leaves_the_not_found():
    class Broken:
        def scalar(self, statement):
            raise OperationalError("SELECT", {}, Exception("the database is down"))

    request = fake_request(method="DELETE", path="/api/v1/events/1", db=Broken())
    assert gone_deriver(CountingView(not_found()), SECRET)(CONTEXT, request).status_code == 404
