"""Error reports: off without a DSN; with one, a view's error, an ERROR log
line and a task's error reach the ingest (a local HTTP server standing in
for Sentry) as real envelopes, tagged with the release and the environment,
and none of the planted personal data or credentials (emails, phone
numbers, tokens in URLs, cookies, bodies, the caller's address) is in them."""
from __future__ import annotations

import gzip
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sentry_sdk

from guestguard.notifications.models import Notification
from guestguard.notifications.services import queue_notification
from guestguard.ops.error_reports import scrub, scrub_url, start_error_reports
from guestguard.plugins import hookimpl
from guestguard.testing import in_request, wait_for

EMAIL = "grace.hopper@example.com"
PHONE = "+44 20 7946 0958"
TOKEN = "Zq" + "x7" * 21 + "Q"  # the shape of an invitation token
SESSION = "session-cookie-value-" + "s" * 20
BEARER = "Bearer apikeyvalue" + "b" * 30
BODY = "the-request-body-says-" + "c" * 10
PLANTED = (EMAIL, "grace.hopper", "7946", TOKEN, SESSION, "apikeyvalue", BODY, "203.0.113.9")


class Ingest:
    """Sentry's ingest, as far as the SDK can tell: every envelope POSTed to
    /api/<project>/envelope/, decompressed."""

    def __init__(self):
        self.envelopes: list[bytes] = []
        ingest = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "br":
                    import brotli

                    body = brotli.decompress(body)
                ingest.envelopes.append(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.dsn = f"http://publickey@127.0.0.1:{self.server.server_port}/42"

    def events(self) -> list[dict]:
        """The error events (items of type "event") received so far."""
        found = []
        for envelope in self.envelopes:
            lines = envelope.split(b"\n")
            for header, payload in zip(lines[1::2], lines[2::2], strict=False):
                if json.loads(header).get("type") == "event":
                    found.append(json.loads(payload))
        return found

    def close(self):
        self.server.shutdown()


class Failing:
    """A plugin whose view and task fail, saying things a report must not repeat."""

    @hookimpl
    def configure(self, config):
        config.add_route("boom", "/boom/{token}")
        config.add_view(self.boom, route_name="boom", request_method=("GET", "POST"), require_csrf=False)
        config.add_task(self.broken_task)

    @staticmethod
    def boom(request):
        raise RuntimeError(f"could not reach {EMAIL} at {PHONE} with /rsvp/{request.matchdict['token']}")

    @staticmethod
    def broken_task(request, recipient):
        raise ValueError(f"task could not write to {recipient} ({PHONE})")


@pytest.fixture
def ingest():
    stand_in = Ingest()
    yield stand_in
    sentry_sdk.get_client().close()
    sentry_sdk.init()  # no DSN: reporting off for the tests after this one
    stand_in.close()


def test_without_a_dsn_nothing_is_started(make_app):
    sentry_sdk.init()
    app = make_app(plugins=[("failing", Failing())])
    assert not start_error_reports(app.app.registry.settings)
    app.get(f"/boom/{TOKEN}", status=500)
    assert sentry_sdk.get_client().dsn is None and sentry_sdk.get_client().transport is None


def test_a_views_error_arrives_tagged_and_scrubbed(make_app, ingest):
    app = make_app({"sentry.dsn": ingest.dsn, "sentry.environment": "staging"}, plugins=[("failing", Failing())])
    app.set_cookie("gg_session", SESSION)
    app.post(f"/boom/{TOKEN}?email={EMAIL}&next=/x", params=BODY, status=500,
             headers={"Authorization": BEARER, "X-Forwarded-For": "203.0.113.9", "Content-Type": "text/plain"},
             extra_environ={"REMOTE_ADDR": "203.0.113.9"})
    sentry_sdk.flush(10)
    wait_for(ingest.events, 10, "the report to arrive")
    raw = b"\n".join(ingest.envelopes).decode()
    for planted in PLANTED:
        assert planted not in raw, f"{planted!r} reached the error report"
    [event] = [e for e in ingest.events() if e.get("exception")]
    assert event["exception"]["values"][-1]["type"] == "RuntimeError"
    assert "[email]" in event["exception"]["values"][-1]["value"]
    assert "[phone]" in event["exception"]["values"][-1]["value"]
    assert event["environment"] == "staging"
    assert event["release"].startswith("guestguard@")
    assert event["request"]["url"].endswith("/boom/[token]")
    assert event["request"]["query_string"] == "email=[removed]&next=[removed]"
    assert "Authorization" not in event["request"].get("headers", {})
    assert "Cookie" not in event["request"].get("headers", {})
    assert event["request"].get("data") in (None, "", "[removed]")
    assert event["transaction"] == "boom", "named after the route, not its path"


def test_error_log_lines_and_task_errors_are_reported(make_app, ingest):
    app = make_app({"sentry.dsn": ingest.dsn, "sentry.release": "guestguard@9.9.9"}, plugins=[("failing", Failing())])
    logging.getLogger("guestguard.tests").error("the export for %s failed", EMAIL)
    registry = app.app.registry
    wrapper = registry["huey.tasks"][f"{Failing.broken_task.__module__}.{Failing.broken_task.__qualname__}"]
    wrapper(EMAIL)
    sentry_sdk.flush(10)
    wait_for(lambda: len(ingest.events()) >= 2, 10, "both reports to arrive")
    raw = b"\n".join(ingest.envelopes).decode()
    for planted in PLANTED:
        assert planted not in raw, f"{planted!r} reached the error report"
    events = ingest.events()
    assert {e["release"] for e in events} == {"guestguard@9.9.9"}
    assert {e["environment"] for e in events} == {"test"}
    logged = [e for e in events if e.get("logentry")]
    assert logged and "[email]" in json.dumps(logged[0]["logentry"])
    tasks = [e for e in events if any(v["type"] == "ValueError" for v in e.get("exception", {}).get("values", []))]
    assert tasks, "the task's error arrived"


def test_scrub_masks_what_the_sdk_might_carry():
    event = {
        "request": {"url": f"https://gg.example/rsvp/{TOKEN}?phone=%2B442079460958", "cookies": {"gg_session": SESSION},
                    "data": {"message": BODY}, "headers": {"Cookie": SESSION, "Authorization": BEARER,
                                                           "User-Agent": "Mozilla/5.0"},
                    "env": {"REMOTE_ADDR": "203.0.113.9"}},
        "user": {"id": "u-1", "email": EMAIL, "ip_address": "203.0.113.9"},
        "breadcrumbs": {"values": [{"message": f"sent to {EMAIL} and {PHONE}"}]},
        "extra": {"huey-job": {"args": [EMAIL, "447946095800"], "kwargs": {"password": "hunter2-long"}}},
    }
    scrubbed = json.dumps(scrub(event))
    for planted in (*PLANTED, "447946095800", "hunter2"):
        assert planted not in scrubbed
    assert "Mozilla/5.0" in scrubbed and "u-1" in scrubbed
    assert scrub_url("https://gg.example/access/abc?x=1#frag") == "https://gg.example/access/[token]?x=[removed]"



def test_a_task_queued_by_a_process_reporting_errors_runs_in_one_that_does_not(make_app):
    """Error reporting adds its trace headers to a task's arguments when it
    queues it; a worker not reporting errors drops them instead of failing
    the task."""
    sentry_sdk.init()
    app = make_app({"huey.immediate": "false"})
    registry = app.app.registry
    huey = registry["huey"]
    huey.flush()
    notification_id = in_request(registry, lambda request: queue_notification(
        request.ctx, channel="email", recipient="grace@example.com", template="test_message",
        context={"base_url": "https://gg.example"}).id)
    task = huey.dequeue()
    task.kwargs["sentry_headers"] = {"sentry-trace": "0" * 32 + "-" + "1" * 16}
    huey.execute(task)
    status = in_request(registry, lambda request: request.db.get(Notification, notification_id).status)
    assert status == "succeeded"
    huey.flush()
