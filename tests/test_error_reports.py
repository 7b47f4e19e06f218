"""Error reports: off without a DSN; with one, a view's error, an ERROR log
line and a task's error reach the ingest (a local HTTP server standing in
for Sentry) as real envelopes, tagged with the release and the environment,
and none of the planted personal data or credentials (emails, phone
numbers, tokens in URLs, cookies, bodies, the caller's address under any
proxy header, names in query values and the Referer, percent-encoded
emails and phone numbers) is in them."""
from __future__ import annotations

import gzip
import json
import logging
import threading
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sentry_sdk

from guestguard.notifications.models import Notification
from guestguard.notifications.services import queue_notification
from guestguard.ops.error_reports import scrub, scrub_url, start_error_reports
from guestguard.plugins import hookimpl
from guestguard.testing import in_request, wait_for

# In one pass only when make test runs both: what an error report carries does not depend on the backend
# (docs/testing.md, "Two passes at once").
pytestmark = pytest.mark.one_pass("sqlite")

EMAIL = "grace.hopper@example.com"
PHONE = "+44 20 7946 0958"
TOKEN = "Zq" + "x7" * 21 + "Q"  # the shape of an invitation token
SESSION = "session-cookie-value-" + "s" * 20
BEARER = "Bearer apikeyvalue" + "b" * 30
BODY = "the-request-body-says-" + "c" * 10
PLANTED = (EMAIL, "grace.hopper", "7946", TOKEN, SESSION, "apikeyvalue", BODY, "203.0.113.9")
# What slipped past earlier masks: a guest's name in a query value (in the
# Referer too), an email and a phone number percent-encoded, the caller's
# address under the headers other proxies use.
ENCODED_EMAIL = "ottoline.morrell%40example.com"
ENCODED_PHONE = "%2B447946095812"
NAME_QUERY = "q=Ottoline+Morrell"
CALLER = "198.51.100.23"
CALLER_HEADERS = {"X-Real-IP": CALLER, "Forwarded": f"for={CALLER};proto=https", "CF-Connecting-IP": CALLER,
                  "True-Client-IP": CALLER}
ENCODED_PLANTED = ("Ottoline", "ottoline", "Morrell", "447946095812", "7946095812", CALLER)


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
                self.do_GET()

            def do_GET(self):  # a lookup service the failing view calls first
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"
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


class Lookup:
    """A plugin whose view looks a guest up at another service (an outgoing
    request: a breadcrumb with its query) and then fails with ``failure``."""

    def __init__(self, service_port, query=f"email={ENCODED_EMAIL}&{NAME_QUERY}",
                 failure=f"no guest at /guests?email={ENCODED_EMAIL}&phone={ENCODED_PHONE}"):
        self.service_port, self.query, self.failure = service_port, query, failure

    @hookimpl
    def configure(self, config):
        config.add_route("lookup", "/lookup/{term}")
        config.add_view(self.lookup, route_name="lookup", request_method="GET")

    def lookup(self, request):
        service = HTTPConnection("127.0.0.1", self.service_port, timeout=5)
        try:
            service.request("GET", f"/guests?{self.query}")
            service.getresponse().read()
        finally:
            service.close()
        raise RuntimeError(self.failure)


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
    logging.getLogger("opentelemetry.sdk._shared_internal").error("Exception while exporting the batch.")
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
    assert len(logged) == 1 and "[email]" in json.dumps(logged[0]["logentry"]), "not the trace exporter's error"
    tasks = [e for e in events if any(v["type"] == "ValueError" for v in e.get("exception", {}).get("values", []))]
    assert tasks, "the task's error arrived"


def test_encoded_personal_data_names_in_urls_and_proxy_headers_do_not_arrive(make_app, ingest):
    app = make_app({"sentry.dsn": ingest.dsn}, plugins=[("lookup", Lookup(ingest.server.server_port))])
    referer = f"https://gg.example/events/1/guests?{NAME_QUERY}&email={ENCODED_EMAIL}"
    app.get(f"/lookup/{ENCODED_EMAIL}?phone={ENCODED_PHONE}&{NAME_QUERY}", status=500,
            headers={**CALLER_HEADERS, "Referer": referer, "User-Agent": f"probe/1 (+{ENCODED_EMAIL})",
                     "X-Guest": ENCODED_PHONE, "Accept-Language": "en-GB"},
            extra_environ={"REMOTE_ADDR": CALLER})
    sentry_sdk.flush(10)
    wait_for(ingest.events, 10, "the report to arrive")
    raw = b"\n".join(ingest.envelopes).decode()
    for planted in (*ENCODED_PLANTED, ENCODED_EMAIL, ENCODED_PHONE):
        assert planted not in raw, f"{planted!r} reached the error report"
    [event] = [e for e in ingest.events() if e.get("exception")]
    assert event["exception"]["values"][-1]["value"] == "no guest at /guests?email=[email]&phone=[phone]"
    request = event["request"]
    assert request["url"].endswith("/lookup/[email]")
    assert request["query_string"] == "phone=[removed]&q=[removed]"
    headers = {name.lower(): value for name, value in request["headers"].items()}
    assert headers["referer"] == "https://gg.example/events/1/guests?q=[removed]&email=[removed]"
    assert headers["user-agent"] == "probe/1 ( [email])"
    assert headers["accept-language"] == "en-GB"
    assert not {"x-real-ip", "forwarded", "cf-connecting-ip", "true-client-ip", "x-guest"} & set(headers)
    [crumb] = [c for c in event["breadcrumbs"]["values"] if c.get("category") == "httplib"]
    assert crumb["data"]["url"] == f"{ingest.url}/guests"
    assert crumb["data"]["http.query"] == "email=[removed]&q=[removed]"


@pytest.mark.parametrize("planted, path, headers, plugin", [
    (CALLER, "/lookup/x", {"Forwarded": f"for={CALLER};proto=https"}, {}),
    (CALLER, "/lookup/x", {"CF-Connecting-IP": CALLER}, {}),
    (CALLER, "/lookup/x", {"True-Client-IP": CALLER}, {}),
    ("ottoline", "/lookup/x", {"Referer": f"https://gg.example/events/1/guests?{NAME_QUERY}"}, {}),
    ("ottoline", "/lookup/x", {"User-Agent": f"probe/1 ({ENCODED_EMAIL})"}, {}),
    ("7946095812", "/lookup/x", {"User-Agent": f"probe/1 ({ENCODED_PHONE})"}, {}),
    ("ottoline", "/lookup/ottoline.morrell%2540example.com", {}, {}),  # one layer the server decodes
    ("ottoline", "/lookup/x", {}, {"failure": f"no guest {ENCODED_EMAIL}"}),
    ("7946095812", "/lookup/x", {}, {"failure": f"cannot text {ENCODED_PHONE}"}),
    ("ottoline", "/lookup/x", {}, {"query": f"email={ENCODED_EMAIL}"}),
    ("ottoline", "/lookup/x", {}, {"query": NAME_QUERY}),
], ids=["forwarded", "cf-connecting-ip", "true-client-ip", "name-in-referer", "email-in-header", "phone-in-header",
        "email-in-path", "email-in-exception", "phone-in-exception", "email-in-breadcrumb-query",
        "name-in-breadcrumb-query"])
def test_each_leak_stays_out_of_the_report(make_app, ingest, planted, path, headers, plugin):
    quiet = {"query": "page=1", "failure": "lookup failed", **plugin}
    app = make_app({"sentry.dsn": ingest.dsn}, plugins=[("lookup", Lookup(ingest.server.server_port, **quiet))])
    app.get(path, headers=headers, status=500)
    sentry_sdk.flush(10)
    wait_for(ingest.events, 10, "the report to arrive")
    raw = b"\n".join(ingest.envelopes).decode().lower()
    assert planted not in raw, f"{planted!r} reached the error report"


def test_scrub_decodes_before_masking_and_keeps_only_harmless_headers():
    event = {
        "request": {"url": "https://gg.example/guests/ottoline.morrell%2540example.com",
                    "headers": {"Host": "gg.example", "Content-Type": "text/plain", "Content-Length": "12",
                                "X-Real-IP": CALLER, "X-Forwarded-For": CALLER, **CALLER_HEADERS,
                                "Referer": f"https://gg.example/rsvp/{TOKEN}?{NAME_QUERY}#Ottoline",
                                "X-Anything": "Ottoline"}},
        "breadcrumbs": {"values": [
            {"category": "httplib", "data": {"url": f"https://api.example/find?{NAME_QUERY}",
                                             "http.query": f"{NAME_QUERY}&to={ENCODED_PHONE}",
                                             "http.fragment": "Ottoline"}},
            {"message": f"texting %2B44+20+7946+0958 and +44+20+7946+0958 about {ENCODED_EMAIL}"}]},
        "exception": {"values": [{"type": "ValueError", "value": f"bad recipient {ENCODED_PHONE}"}]},
    }
    scrubbed = scrub(event)
    text = json.dumps(scrubbed)
    assert [planted for planted in (*ENCODED_PLANTED, "7946", "0958") if planted in text] == []
    assert scrubbed["request"]["url"] == "https://gg.example/guests/[email]"
    assert scrubbed["request"]["headers"] == {"Host": "gg.example", "Content-Type": "text/plain",
                                              "Content-Length": "12", "Referer": "https://gg.example/rsvp/[token]?q=[removed]"}
    assert scrubbed["exception"]["values"][0]["value"] == "bad recipient [phone]"
    # A Referer that is no URL is removed, and the report still goes.
    broken = scrub({"request": {"headers": {"Referer": f"https://[gg.example/?{NAME_QUERY}"}},
                    "exception": {"values": [{"type": "ValueError", "value": "lookup failed"}]}})
    assert broken["request"]["headers"] == {"Referer": "[removed]"}
    assert broken["exception"]["values"][0]["value"] == "lookup failed"
    # Text with nothing encoded to reveal reads as it was written.
    assert scrub({"message": "C++ at 100% of 50+ guests, 20%"})["message"] == "C++ at 100% of 50+ guests, 20%"


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
