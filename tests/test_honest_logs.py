"""Honest logs (docs/operations.md, "Logs"): no SQL parameters, password
hashes, email addresses, guest messages or tokens reach a log line.

``test_the_flows_leave_no_secret_in_the_logs`` configures logging from
development.ini and production.ini the way ``pserve``, gunicorn and the
``guestguard`` command do (their console handler writing to a buffer), runs
the flows that handle secrets and personal data with planted values, and
reads the buffer: as configured, and with every logger at DEBUG and
``db.echo`` on (every statement, its parameters and the rows it returned)."""
from __future__ import annotations

import contextlib
import io
import logging
import sys
from unittest import mock

import pytest
from pyramid.paster import setup_logging
from sqlalchemy import select

from guestguard.audit.logging import REDACTING, all_handlers, redact
from guestguard.plugins import hookimpl
from guestguard.testing import REPO_ROOT, csrf, in_request, inbox, link, logging_kept, signup

# In one pass only when make test runs both: what the flows log does not depend on the backend.
pytestmark = pytest.mark.one_pass("sqlite")

HOST = "planted.host@example.net"
PASSWORD = "Planted-Passphrase-4721"
NEW_PASSWORD = "Planted-Newphrase-9044"
STRANGER = "planted.stranger@example.org"
GUEST = "planted.guest@example.com"
MESSAGE = "planted guest message: the door code is 4417"


@contextlib.contextmanager
def logging_from(ini: str):
    """Logging as ``ini`` configures it, its handlers writing to the buffer
    yielded; everything as it was afterwards."""
    with logging_kept():
        buffer = io.StringIO()
        with mock.patch.object(sys, "stderr", buffer):
            setup_logging(str(REPO_ROOT / ini))
        yield buffer


class DatabaseError:
    """A plugin adding a page whose insert fails with the planted values as
    its parameters (the host's email again, their password hash, the
    guest's message): the error is logged with its traceback."""

    @hookimpl
    def configure(self, config):
        config.add_route("failing_insert", "/failing-insert/{token}")
        config.add_view(self.failing_insert, route_name="failing_insert")

    @staticmethod
    def failing_insert(request):
        from guestguard.accounts.models import User

        existing = request.db.scalar(select(User).where(User.email == HOST))
        request.db.add(User(email=HOST, display_name=MESSAGE, password_hash=existing.password_hash))
        request.db.flush()


def run_flows(app) -> set[str]:
    """Signup (a failed CAPTCHA, then for real, then again with the same
    address), failed logins, a login, a password reset, an event whose guest
    answers with a message (API and page), an API key used, the guest
    forgotten, a data export, the account deleted, a database error.
    Returns every secret and piece of personal data the flows handled."""
    from guestguard.accounts.models import User

    def password_hash():
        return in_request(app.app.registry,
                          lambda r: r.db.scalar(select(User.password_hash).where(User.email == HOST)))

    seen = {HOST, PASSWORD, NEW_PASSWORD, STRANGER, GUEST, MESSAGE}
    signup(app, HOST, PASSWORD, "Planted Host", captcha_token="wrong", status=400)
    signup(app, HOST, PASSWORD, "Planted Host", captcha_token="pass")
    verify_token = link(inbox(app, HOST)[0], "verify-email").rsplit("/", 1)[1]
    app.post_json("/api/v1/auth/verify-email", {"token": verify_token})
    signup(app, HOST, PASSWORD, "Planted Host", captcha_token="pass")  # the address is taken
    seen |= {verify_token, password_hash()}
    app.post_json("/api/v1/auth/login", {"email": HOST, "password": "not " + PASSWORD}, status=401)
    app.post_json("/api/v1/auth/login", {"email": STRANGER, "password": PASSWORD}, status=401)
    app.post("/login", {"csrf_token": csrf(app.get("/login")), "email": HOST, "password": "not " + PASSWORD},
             status=401)
    app.post_json("/api/v1/auth/forgot-password", {"email": HOST, "captcha_token": "pass"})
    reset_token = link(inbox(app, HOST)[0], "reset-password").rsplit("/", 1)[1]
    app.post_json("/api/v1/auth/reset-password", {"token": reset_token, "password": NEW_PASSWORD})
    seen |= {reset_token, password_hash()}
    tokens = app.post_json("/api/v1/auth/login", {"email": HOST, "password": NEW_PASSWORD}).json
    seen |= {tokens["access_token"], tokens["refresh_token"]}
    host = {"Authorization": f"Bearer {tokens['access_token']}"}

    workspace = app.get("/api/v1/workspaces", headers=host).json["workspaces"][0]["id"]
    event = app.post_json("/api/v1/events", {"workspace_id": workspace, "name": "Gala", "timezone": "UTC",
                                             "starts_at": "2031-01-01T18:00", "status": "published"},
                          headers=host).json["event"]["id"]
    guest = app.post_json(f"/api/v1/events/{event}/guests", {"name": "Grace", "email": GUEST},
                          headers=host).json["guest"]["id"]
    token = app.post_json(f"/api/v1/events/{event}/guests/{guest}/tokens", {}, headers=host).json["token"]
    seen.add(token)
    app.post_json(f"/api/v1/rsvp/{token}", {"response": "yes", "message": MESSAGE})
    app.get(f"/access/{token}")
    app.post(f"/rsvp/{token}", {"response": "maybe", "message": MESSAGE})
    app.get(f"/api/v1/events/{event}/guests/{guest}", headers=host)

    key = app.post_json(f"/api/v1/workspaces/{workspace}/api-keys", {"name": "door", "role": "staff"},
                        headers=host).json["api_key"]["secret"]
    seen.add(key)
    app.get(f"/api/v1/workspaces/{workspace}", headers={"Authorization": f"Bearer {key}"})
    app.get(f"/api/v1/workspaces/{workspace}", headers={"Authorization": f"Bearer {key[:-2]}xx"}, status=401)

    # Privacy: the guest forgotten, a copy of the host's data mailed, the
    # account deleted (its copy and cancel link mailed).
    app.post_json(f"/api/v1/events/{event}/guests/{guest}/forget", {}, headers=host)
    app.post_json("/api/v1/me/data-export", {}, headers=host, status=202)
    app.delete_json("/api/v1/me", {"password": NEW_PASSWORD}, headers=host, status=202)
    seen |= {link(message, "account").rsplit("/", 1)[1] for message in inbox(app, HOST)
             if "/account/" in message.text}

    app.get(f"/failing-insert/{token}", status=500)
    return seen


@pytest.mark.parametrize("verbose", [False, True], ids=["as configured", "everything at DEBUG"])
@pytest.mark.parametrize("ini", ["development.ini", "production.ini"])
def test_the_flows_leave_no_secret_in_the_logs(make_app, ini, verbose, tmp_path):
    with logging_from(ini) as logged:
        app = make_app({"captcha.verifier": "test", "db.echo": str(verbose).lower(),
                        "privacy.export_dir": str(tmp_path / "exports")},
                       plugins=[("database_error", DatabaseError())])
        assert all(REDACTING in handler.filters for handler in all_handlers())
        if verbose:
            for name in ("", "guestguard", "sqlalchemy.engine"):
                logging.getLogger(name).setLevel(logging.DEBUG)
        seen = run_flows(app)
    output = logged.getvalue()
    assert "unhandled error on GET '/failing-insert/[redacted]'" in output
    assert "[parameters: redacted]" in output, "the database error was logged, its parameters masked"
    if verbose:
        assert "INSERT INTO users" in output and "[parameters redacted]" in output and "Row [redacted]" in output
    assert all(len(secret) >= 8 for secret in seen)
    assert sorted(secret for secret in seen if secret in output) == []


def test_each_kind_of_secret_is_masked():
    token = "k7Qw0n3u8L2x9P1m4R5t6Y7u8I9o0P1a2S3d4F5g6H7"
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzaWQiOiJ4In0.c2lnbmF0dXJl"
    cases = {
        "signup of ada.lovelace+gg@example.co.uk failed": "signup of [email] failed",
        "[SQL: INSERT INTO users (email) VALUES (?)]\n[parameters: ('a@b.example', 'hi')]\n(Background":
            "[SQL: INSERT INTO users (email) VALUES (?)]\n[parameters: redacted]\n(Background",
        "[SQL parameters: ('secret',)]": "[parameters: redacted]",
        "[generated in 0.00012s] ('ada@example.com', 'x')": "[generated in 0.00012s] [parameters redacted]",
        "[cached since 2.5s ago] {'message': 'hi'}": "[cached since 2.5s ago] [parameters redacted]",
        "Row ('Grace', 'See you there')": "Row [redacted]",
        "DETAIL:  Key (email)=(ada@example.com) already exists.": "DETAIL:  Key (email)=(redacted) already exists.",
        "DETAIL:  Failing row contains (1, a note, null).": "DETAIL:  Failing row contains (redacted).",
        "hash $argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA is": "hash [argon2 hash] is",
        f"Authorization: Bearer {token}": "Authorization: Bearer [redacted]",
        f"token {jwt} seen": "token [jwt] seen",
        f"key ggk_0123456789abcdef_{token} used": "key ggk_[redacted] used",
        f"GET /access/{token}/event.ics": "GET /access/[token]/event.ics",
        "POST /unsubscribe/gAAAAABnX-short_one HTTP/1.1": "POST /unsubscribe/[token] HTTP/1.1",
        f"refresh {token} rotated": "refresh [token] rotated",
        f"stored {'ab' * 32}": "stored [hash]",
        "password=hunter22 and {'password': 'two words'}": "password=[redacted] and {'password': [redacted]}",
        "postgresql://gg:pw-in-url@db.example.com/gg": "postgresql://gg:[email]/gg",
        # What stays: ids, placeholders, words.
        "event 1b4e28ba-2fa1-11d2-883f-0016d3cca427": "event 1b4e28ba-2fa1-11d2-883f-0016d3cca427",
        "WHERE token_hash = %(token_hash_1)s": "WHERE token_hash = %(token_hash_1)s",
        "rejected a token: invalid-input-response": "rejected a token: invalid-input-response",
    }
    assert {text: redact(text) for text in cases} == cases


def test_a_traceback_is_masked_whichever_formatter_writes_it():
    """The filter masks the exception text before any formatter, so a
    handler with a formatter of its own writes it masked too."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(REDACTING)
    logger = logging.getLogger("guestguard.test_honest_logs")
    logger.addHandler(handler)
    try:
        try:
            raise ValueError(f"could not mail {GUEST}\n[parameters: ({MESSAGE!r},)]")
        except ValueError:
            logger.exception("sending to %s failed", GUEST)
    finally:
        logger.removeHandler(handler)
    written = buffer.getvalue()
    assert "sending to [email] failed" in written and "Traceback" in written
    assert "ValueError: could not mail [email]\n[parameters: redacted]" in written
    assert GUEST not in written and MESSAGE not in written
