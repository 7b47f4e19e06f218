"""What each rate-limit key function makes of a request, called directly on
requests built here: which requests share a bucket and which must not.
test_ratelimit_keys.py shows the same groupings through the routes'
limits; these run in a moment (the mutation run's checks of the key
functions, and a developer's while changing them)."""
import hashlib
import json
from urllib.parse import quote

import pytest
from pyramid.request import Request

from guestguard.ratelimit.service import BODY_PEEK, _email_in_body, by_ip, by_ip_and_email, by_token
from guestguard.web import blank_request


def request_from(ip: str = "203.0.113.7", body: bytes = b"", content_type: str | None = None,
                 matchdict=None) -> Request:
    request = Request.blank("/api/v1/auth/login", method="POST", POST=body if content_type else None)
    if content_type:
        request.content_type = content_type
        request.body = body
    request.client_ip = ip
    request.matchdict = matchdict
    return request


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def login(email, ip: str = "203.0.113.7", content_type: str = "application/json") -> Request:
    if content_type == "application/json":
        return request_from(ip, json.dumps({"email": email, "password": "x"}).encode(), content_type)
    return request_from(ip, f"email={quote(email)}&password=x".encode(), content_type)


@pytest.mark.parametrize("ip, key", [
    ("203.0.113.7", "203.0.113.7"),
    ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
    ("2001:db8:1:2::", "2001:db8:1:2::/64"),
    ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
    ("::ffff:203.0.113.7", "203.0.113.7"),  # an IPv4 client of a dual-stack listener
    ("::ffff:198.51.100.1", "198.51.100.1"),
    ("not an address", "not an address"),
    ("", ""),
])
def test_an_address_counts_by_itself_and_an_ipv6_one_by_its_64(ip, key):
    assert by_ip(request_from(ip)) == key


def test_login_counts_by_address_and_the_digest_of_the_canonical_email():
    key = by_ip_and_email(login("Ada@Example.com"))
    assert key == f"203.0.113.7:{digest('ada@example.com')}"
    assert "ada" not in key.lower()
    assert by_ip_and_email(login(" ada@example.COM ")) == key
    assert by_ip_and_email(login("ada@example.com", content_type="application/x-www-form-urlencoded")) == key
    assert by_ip_and_email(login("bob@example.com")) != key
    assert by_ip_and_email(login("ada@example.com", ip="198.51.100.1")) != key
    ipv6 = by_ip_and_email(login("ada@example.com", ip="2001:db8::1"))
    assert ipv6 == f"2001:db8::/64:{digest('ada@example.com')}"


@pytest.mark.parametrize("body, content_type", [
    (b"", "application/json"), (b"{nonsense", "application/json"), (b'["ada@example.com"]', "application/json"),
    (b'{"email": 42}', "application/json"), (b'{"mail": "ada@example.com"}', "application/json"),
    (b"email=ada%40example.com", "text/plain"), (b"password=x", "application/x-www-form-urlencoded"),
])
def test_a_body_without_a_readable_email_counts_as_no_email(body, content_type):
    assert _email_in_body(request_from(body=body, content_type=content_type)) == ""
    assert by_ip_and_email(request_from(body=body, content_type=content_type)) == f"203.0.113.7:{digest('')}"


def test_an_email_that_is_not_valid_still_counts_as_typed_lower_cased():
    assert _email_in_body(login("  Not An Email ")) == "not an email"
    assert _email_in_body(login("ADA@EXAMPLE.COM")) == "ada@example.com"


def test_a_multipart_login_counts_its_email():
    boundary = "xyz"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\nAda@Example.com\r\n"
            f"--{boundary}--\r\n").encode()
    request = request_from(body=body, content_type="multipart/form-data")
    request.content_type = f"multipart/form-data; boundary={boundary}"
    assert _email_in_body(request) == "ada@example.com"


def test_only_the_first_64_kib_of_a_body_are_read_and_the_view_reads_it_all_again():
    fits = json.dumps({"email": "ada@example.com", "pad": "x" * (BODY_PEEK - 50)}).encode()
    assert len(fits) <= BODY_PEEK
    request = request_from(body=fits, content_type="application/json")
    assert _email_in_body(request) == "ada@example.com"
    assert request.body_file_seekable.read() == fits
    beyond = json.dumps({"pad": "x" * BODY_PEEK, "email": "ada@example.com"}).encode()
    assert _email_in_body(request_from(body=beyond, content_type="application/json")) == ""
    exactly = json.dumps({"email": "ada@example.com", "pad": ""}).encode()
    padded = exactly[:-2] + b"x" * (BODY_PEEK - len(exactly)) + b'"}'
    assert len(padded) == BODY_PEEK
    assert _email_in_body(request_from(body=padded, content_type="application/json")) == "ada@example.com"
    over = padded[:-2] + b'x"}'
    assert _email_in_body(request_from(body=over, content_type="application/json")) == ""


def test_a_link_counts_by_the_digest_of_its_token_wherever_it_is_opened():
    token = "t" * 43
    key = by_token(request_from(matchdict={"token": token}))
    assert key == digest(token)
    assert by_token(request_from("198.51.100.1", matchdict={"token": token})) == key
    assert by_token(request_from(matchdict={"token": "u" * 43})) != key
    assert by_token(request_from(matchdict={})) == digest("")
    assert by_token(request_from(matchdict=None)) == digest("")


# --- who the caller is: the application's own security policy says ------------------------------


@pytest.fixture(scope="module")
def callers(module_db_url):
    """Ada (signed in by an access token), her workspace's API key, and the
    credentials each sends."""
    from guestguard.accounts import sessions
    from guestguard.accounts.models import API
    from guestguard.testing import AppFactory, acting_as, create_user, in_request, settings_for
    from guestguard.workspaces import services as workspaces

    factory = AppFactory(settings_for(module_db_url))
    app = factory()

    def build(request):
        ada = create_user(request, "ada@example.com", "Ada")
        ours = workspaces.create_workspace(request.ctx, ada, "Ours")
        key, secret = workspaces.create_api_key(acting_as(request.ctx, ada), ours, "k", "staff")
        session, _ = sessions.start_session(request.db, request.registry.settings, ada, kind=API, user_agent="",
                                            ip=None)
        token = sessions.issue_tokens(request.db, request.registry.settings, session).access_token
        return {"user": ada.id, "key": key.id, "bearer": token, "secret": secret}

    found = in_request(app.app.registry, build)
    yield app.app.registry, found
    factory.close()


def keys_of(callers, authorization: str | None, ip: str = "203.0.113.7"):
    """(by_caller, api_keys_of) of a request from ``ip`` with ``authorization``."""
    from pyramid.scripting import prepare

    from guestguard.ratelimit.service import api_keys_of, by_caller

    registry, _ = callers
    headers = {"Authorization": authorization} if authorization else {}
    request = blank_request(registry, "/api/v1/me", headers=headers, environ={"REMOTE_ADDR": ip})
    with prepare(request=request, registry=registry) as env:
        request = env["request"]
        with request.tm:
            return by_caller(request), api_keys_of(request)


def test_a_person_counts_as_themselves_a_key_as_itself_and_anyone_else_by_address(callers):
    _, found = callers
    assert keys_of(callers, f"Bearer {found['bearer']}") == (f"user:{found['user']}", ["ip:203.0.113.7"])
    assert keys_of(callers, f"Bearer {found['bearer']}", ip="198.51.100.1")[0] == f"user:{found['user']}"
    assert keys_of(callers, f"Bearer {found['secret']}") == (f"key:{found['key']}",
                                                           ["ip:203.0.113.7", f"key:{found['key']}"])
    assert keys_of(callers, None) == ("ip:203.0.113.7", ["ip:203.0.113.7"])
    assert keys_of(callers, None, ip="2001:db8::1") == ("ip:2001:db8::/64", ["ip:2001:db8::/64"])
    assert keys_of(callers, "Bearer ggk_0123456789abcdef_" + "A" * 43) == ("ip:203.0.113.7", ["ip:203.0.113.7"])
