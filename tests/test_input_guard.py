"""The input guard rule by rule, at its edges: what is refused, how the
refusal reads, and the nearest input that is let through. One application
with a small body limit serves the module; its requests go to an address
no route serves, so input the guard lets through is a 404 (nothing
stopped it at the door) and input it refuses is the guard's 400 or 413.
test_hostile_input.py throws worse input at every route; this module pins
each rule's edge."""
import io
import json

import pytest
from sqlalchemy import select
from webob import Request

from guestguard.accounts.models import AuthSession
from guestguard.errors import APIError
from guestguard.inputs import MAX_JSON_DEPTH, NAME_SHOWN, check_json, check_pairs
from guestguard.testing import TEST_PASSWORD, AppFactory, create_user, in_request, new_client, settings_for

LIMIT = 4096
API = "/api/v1/nowhere"
PAGE = "/nowhere"
NUL = "must not contain a NUL character"
SURROGATE = "must be valid Unicode text"
FILE = "must be text, not a file"


@pytest.fixture(scope="module")
def site(module_db_url):
    factory = AppFactory(settings_for(module_db_url))
    app = factory({"http.max_body_bytes": str(LIMIT), "ratelimit.enabled": "false"})
    in_request(app.app.registry, lambda request: create_user(request, "ada@example.com", "Ada"))
    yield app
    factory.close()


@pytest.fixture
def client(site):
    return new_client(site.app)


def refusal(field: str, problem: str) -> dict:
    return {"error": {"code": "bad_request", "message": f"{field} {problem}.", "fields": {field: problem}}}


def let_through(response) -> bool:
    return response.status_int == 404


def post_json_bytes(client, body: bytes, path: str = API):
    return client.post(path, body, content_type="application/json", expect_errors=True)


# --- the rules themselves, called directly (no request needed) -------------------------


def refusal_of(check, data) -> tuple[int, str, str, dict] | None:
    try:
        check(data)
    except APIError as error:
        return error.code, error.error_code, error.error_message, error.extra
    return None


@pytest.mark.parametrize("data, where, problem", [
    ({"a": "\u0000"}, "a", NUL), ({"a\u0000": 1}, "a\ufffd", NUL), ({"a": ["x", {"b": "\ud800"}]}, "a.1.b", SURROGATE),
    ("\udfff", "body", SURROGATE), (["\u0000"], "0", NUL), ({"k" * 200: "\u0000"}, "k" * NAME_SHOWN, NUL),
    ({"a": {"b": {"c": "x\ud800y"}}}, "a.b.c", SURROGATE),
])
def test_json_refusals_name_where_and_why(data, where, problem):
    assert refusal_of(check_json, data) == (400, "bad_request", f"{where} {problem}.", {"fields": {where: problem}})


@pytest.mark.parametrize("data", [None, 1, 2.5, True, "", "\ufffd\U0001f600", {"": ""}, [[], {}], {"a": [1, None]}])
def test_json_of_text_and_other_values_passes(data):
    assert refusal_of(check_json, data) is None


def test_json_depth_counts_every_level_down_to_the_values():
    deep = (400, "invalid_json",
            f"The body is not valid JSON: it is nested more than {MAX_JSON_DEPTH} levels deep.", {})

    def lists(depth: int, inner):
        for _ in range(depth):
            inner = [inner]
        return inner

    assert refusal_of(check_json, lists(MAX_JSON_DEPTH - 1, [])) is None  # 32 lists
    assert refusal_of(check_json, lists(MAX_JSON_DEPTH, [])) == deep
    assert refusal_of(check_json, lists(MAX_JSON_DEPTH - 1, "x")) is None  # the string is the 32nd level
    assert refusal_of(check_json, lists(MAX_JSON_DEPTH, "x")) == deep
    value = "x"
    for _ in range(MAX_JSON_DEPTH - 1):
        value = {"k": value}
    assert refusal_of(check_json, value) is None
    assert refusal_of(check_json, {"k": value}) == deep


@pytest.mark.parametrize("pairs, where, problem", [
    ([("a", "x"), ("b", "\u0000")], "b", NUL), ([("a\u0000", "x")], "a\ufffd", NUL),
    ([("a", "\ud800")], "a", SURROGATE),
    ([("", "\u0000")], '""', NUL), ([("f", b"bytes")], "f", FILE), ([("f", None)], "f", FILE),
])
def test_query_and_form_refusals_name_the_field(pairs, where, problem):
    assert refusal_of(check_pairs, pairs) == (400, "bad_request", f"{where} {problem}.", {"fields": {where: problem}})


def test_query_and_form_text_passes():
    assert refusal_of(check_pairs, [("a", ""), ("", "b"), ("c", "\ufffd\u00e9\t\n")]) is None


def file_parts(filename: str, name: str = "file") -> list:
    """A multipart form's parts as a request reads them: ``name`` a file."""
    request = Request.blank("/", POST={"note": "x", name: (filename, b"a,b\n")})
    return list(request.POST.items())


def test_a_file_part_is_refused_unless_uploads_are_taken_and_it_is_the_file_field():
    refused_file = (400, "bad_request", f"file {FILE}.", {"fields": {"file": FILE}})
    assert refusal_of(check_pairs, file_parts("guests.csv")) == refused_file
    assert refusal_of(lambda pairs: check_pairs(pairs, upload=False), file_parts("guests.csv")) == refused_file
    assert refusal_of(lambda pairs: check_pairs(pairs, upload=True), file_parts("guests.csv", name="avatar")) == (
        400, "bad_request", f"avatar {FILE}.", {"fields": {"avatar": FILE}})
    assert refusal_of(lambda pairs: check_pairs(pairs, upload=True), file_parts("guests.csv")) is None
    # A part with no file name is read as an unnamed file: the route's own check judges its content.
    assert refusal_of(lambda pairs: check_pairs(pairs, upload=True), [("file", b"a,b")]) is None


@pytest.mark.parametrize("filename, problem", [("a\u0000.csv", NUL), ("a\ud800.csv", SURROGATE)])
def test_an_uploaded_files_name_is_checked_as_its_value(filename, problem):
    parts = [("file", type("Upload", (), {"filename": filename})())]
    assert refusal_of(lambda pairs: check_pairs(pairs, upload=True), parts) == (
        400, "bad_request", f"file {problem}.", {"fields": {"file": problem}})


# --- the size of the body -----------------------------------------------------------


def test_a_body_of_the_limit_is_read_and_one_byte_more_is_413(client):
    assert let_through(client.post(API, b"x" * LIMIT, content_type="text/plain", expect_errors=True))
    refused = client.post(API, b"x" * (LIMIT + 1), content_type="text/plain", expect_errors=True)
    assert refused.status_int == 413
    assert refused.json["error"] == {"code": "too_large", "message": f"The body is larger than {LIMIT} bytes.",
                                     "limit": LIMIT}


def sent_without_length(site, body: bytes, content_type: str = "application/json", path: str = API):
    """A body streamed without Content-Length (chunked, as a proxy passes it on)."""
    request = Request.blank(path, method="POST", environ={"REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "guestguard.test",
                                                        "wsgi.input_terminated": True})
    request.environ.pop("CONTENT_LENGTH", None)
    request.environ["CONTENT_TYPE"] = content_type
    request.environ["wsgi.input"] = io.BytesIO(body)
    return request.get_response(site.app)


def test_a_json_body_without_a_length_is_read_up_to_the_limit_only(site):
    fits = json.dumps({"name": "x" * (LIMIT - 12)}).encode()
    assert len(fits) == LIMIT
    assert sent_without_length(site, fits).status_int == 404
    refused = sent_without_length(site, fits + b" ")
    assert refused.status_int == 413
    assert json.loads(refused.body)["error"]["code"] == "too_large"
    assert sent_without_length(site, json.dumps({"name\u0000": 1}).encode()).status_int == 400
    login = json.dumps({"email": "ada@example.com", "password": "not the password"}).encode()
    whole = sent_without_length(site, login + b" " * (LIMIT - len(login)), path="/api/v1/auth/login")
    assert whole.status_int == 401, "a body of the limit reaches the view whole"
    refused = sent_without_length(site, login + b" " * (LIMIT + 1 - len(login)), path="/api/v1/auth/login")
    assert (refused.status_int, json.loads(refused.body)) == (413, {"error": {
        "code": "too_large", "message": f"The body is larger than {LIMIT} bytes.", "limit": LIMIT}})


# --- the address and the headers -------------------------------------------------------


@pytest.mark.parametrize("path", [API + "%00", "/nowhere%00x"])
def test_an_address_holding_a_nul_is_400(client, path):
    refused = client.get(path, expect_errors=True)
    assert refused.status_int == 400
    if path.startswith("/api/"):
        assert refused.json == {"error": {"code": "bad_request", "message": "The address holds a NUL character."}}
    else:
        assert "The address holds a NUL character." in refused.text


def test_a_nul_in_a_header_is_dropped_and_the_rest_kept(client, site):
    client.post_json("/api/v1/auth/login", {"email": "ada@example.com", "password": TEST_PASSWORD},
                     headers={"User-Agent": "Mozilla\x00/5.0 \x00(X11)"}, status=200)

    def agents(request):
        return {session.user_agent for session in request.db.scalars(select(AuthSession))}

    assert "Mozilla/5.0 (X11)" in in_request(site.app.registry, agents)


def test_only_headers_lose_their_nul(site):
    """The body's type is no header of the environ's HTTP_ kind: a NUL
    there is left, and such a body is not read as JSON."""
    body = json.dumps({"name": "a\u0000"}).encode()
    request = Request.blank(API, method="POST", environ={"REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "guestguard.test",
                                                        "CONTENT_TYPE": "application/json\x00", "wsgi.input":
                                                        io.BytesIO(body), "CONTENT_LENGTH": str(len(body))})
    assert request.get_response(site.app).status_int == 404


# --- the query string ---------------------------------------------------------------


@pytest.mark.parametrize("query, field, problem", [
    ("q=a%00b", "q", NUL), ("a%00b=1", "a\ufffdb", NUL), ("q=%00", "q", NUL),
    ("q=%ED%A0%80", None, None), ("%FF=1", None, None), ("q=%FF", None, None),
])
def test_a_query_field_with_a_nul_or_bytes_that_are_not_utf8_is_400(client, query, field, problem):
    refused = client.get(f"{API}?{query}", expect_errors=True)
    assert refused.status_int == 400
    if field is None:
        assert refused.json == {"error": {"code": "bad_request", "message": "The query string is not valid UTF-8."}}
    else:
        assert refused.json == refusal(field, problem)


@pytest.mark.parametrize("query", ["q=caf%C3%A9", "q=%F0%9F%98%80", "q=%EF%BF%BD", "q=", "q=%01%1F%7F"])
def test_any_other_text_in_a_query_is_let_through(client, query):
    assert let_through(client.get(f"{API}?{query}", expect_errors=True))


# --- forms --------------------------------------------------------------------------


@pytest.mark.parametrize("body, field, problem", [
    (b"name=a%00b", "name", NUL), (b"na%00me=x", "na\ufffdme", NUL), (b"x=1&name=%00", "name", NUL),
    (b"=%00", '""', NUL),
])
def test_a_form_field_with_a_nul_is_400_naming_it(client, body, field, problem):
    refused = client.post(API, body, content_type="application/x-www-form-urlencoded", expect_errors=True)
    assert (refused.status_int, refused.json) == (400, refusal(field, problem))


def test_a_forms_file_part_is_400_naming_it(client):
    refused = client.post(API, {"name": "x"}, upload_files=[("avatar", "me.png", b"\x89PNG")], expect_errors=True)
    assert (refused.status_int, refused.json) == (400, refusal("avatar", FILE))


def test_a_route_that_takes_uploads_lets_its_file_part_through_and_checks_its_name(client):
    cover = "/events/00000000-0000-4000-8000-000000000000/cover"
    passed = client.post(cover, {"note": "x"}, upload_files=[("file", "cover.png", b"\x89PNG")], expect_errors=True)
    # Let through by the guard, the file meets the route's own door: a page that needs a login.
    assert passed.status_int == 302 and "/login" in passed.location, passed.status
    refused = client.post(cover, {"note": "x"}, upload_files=[("file", "co\u0000ver.png", b"\x89PNG")],
                          expect_errors=True)
    assert refused.status_int == 400 and f"file {NUL}." in refused.text


def test_a_form_that_cannot_be_read_is_400(client):
    refused = client.post(API, b"a=1", content_type="application/x-www-form-urlencoded; charset=bogus",
                          expect_errors=True)
    assert (refused.status_int, refused.json) == (400, {"error": {
        "code": "bad_request", "message": "The form data could not be read."}})


def test_a_form_of_plain_text_is_let_through(client):
    body = "name=Caf%C3%A9&note=a%0Ab&empty="
    assert let_through(client.post(API, body, content_type="application/x-www-form-urlencoded",
                                   expect_errors=True))


def test_a_page_answers_a_refused_form_with_the_400_page_and_its_message(client):
    refused = client.post(PAGE, b"name=a%00b", content_type="application/x-www-form-urlencoded", expect_errors=True)
    assert refused.status_int == 400
    assert refused.content_type == "text/html"
    assert f"name {NUL}." in refused.text


# --- JSON ---------------------------------------------------------------------------


@pytest.mark.parametrize("body, field, problem", [
    ({"name": "a\u0000"}, "name", NUL),
    ({"na\u0000me": "x"}, "na\ufffdme", NUL),
    ({"guests": [{"name": "ok"}, {"name": "\u0000"}]}, "guests.1.name", NUL),
    ({"guests": [{"name": "ok"}, {"tags": ["a", "b\ud800"]}]}, "guests.1.tags.1", SURROGATE),
    ({"x\udfff": 1}, "x\ufffd", SURROGATE),
    (["a", "\ud800"], "1", SURROGATE),
    ("\u0000", "body", NUL),
    ({"n" * 150 + "\u0000": 1}, "n" * NAME_SHOWN, NUL),
])
def test_a_json_key_or_string_with_a_nul_or_a_lone_surrogate_is_400_naming_where(client, body, field, problem):
    refused = post_json_bytes(client, json.dumps(body).encode())
    assert (refused.status_int, refused.json) == (400, refusal(field, problem))


def test_a_lone_surrogate_sent_as_raw_bytes_is_refused_like_an_escaped_one(client):
    refused = post_json_bytes(client, b'{"name": "a\xed\xa0\x80"}')
    assert (refused.status_int, refused.json) == (400, refusal("name", SURROGATE))


@pytest.mark.parametrize("body", [{"name": "Caf\u00e9 \U0001f600 \ufffd \u0001"}, {"n": [1, 2.5, None, True, {}]},
                                  [], "", 0, None])
def test_json_of_plain_text_and_other_values_is_let_through(client, body):
    assert let_through(post_json_bytes(client, json.dumps(body).encode()))


def nested(depth: int, inner: str = "") -> bytes:
    return ("[" * depth + inner + "]" * depth).encode()


def objects(depth: int) -> bytes:
    return ('{"a":' * depth + "{}" + "}" * depth).encode()


def test_json_nested_up_to_the_limit_is_let_through_and_one_deeper_is_400(client):
    deep = {"error": {"code": "invalid_json",
                      "message": f"The body is not valid JSON: it is nested more than {MAX_JSON_DEPTH} levels deep."}}
    assert let_through(post_json_bytes(client, nested(MAX_JSON_DEPTH)))
    assert let_through(post_json_bytes(client, nested(MAX_JSON_DEPTH - 1, '"x"')))
    assert let_through(post_json_bytes(client, objects(MAX_JSON_DEPTH - 1)))
    for body in (nested(MAX_JSON_DEPTH + 1), nested(MAX_JSON_DEPTH, "1"), objects(MAX_JSON_DEPTH),
                 nested(2000)):
        refused = post_json_bytes(client, body)
        assert (refused.status_int, refused.json) == (400, deep), body[:40]


def test_a_body_that_is_not_json_or_is_empty_is_left_to_the_view(client):
    for body in (b"{not json", b"", b"\xff\xfe", b'{"a": "\\ud800'):
        assert let_through(post_json_bytes(client, body)), body


def test_a_json_body_is_read_again_by_the_view_from_its_start(client):
    """The guard reads the body first; the view must still see all of it."""
    response = client.post_json("/api/v1/auth/login", {"email": "ada@example.com", "password": TEST_PASSWORD},
                                expect_errors=True)
    assert response.status_int == 200


def test_another_content_type_is_not_read_as_json_or_a_form(client):
    body = json.dumps({"name": "a\u0000"}).encode()
    assert let_through(client.post(API, body, content_type="text/plain", expect_errors=True))
