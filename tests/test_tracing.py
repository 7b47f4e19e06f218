"""Traces: off by default (the tracing machinery not even imported); when on, a
request and the task it queued reach a local OTLP/HTTP collector as one
trace (the task's span a child of the request's, through the task's
arguments), with SQL and Redis spans inside, log lines carrying the trace
and span id, and none of the planted personal data or tokens in any span;
a collector that is down costs no request.

The application runs in a process of its own for each scenario: tracing
patches libraries process-wide, as it does in a web process or a worker,
and must not leak into the other tests."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from guestguard.settings import SettingsError
from guestguard.testing import free_port, settings_for

# In one pass only when make test runs both: the Redis spans need the services pass's Redis, and what a span
# carries does not depend on the backend (docs/testing.md, "Two passes at once").
pytestmark = pytest.mark.one_pass("services")

EMAIL = "grace.hopper@example.com"
PASSWORD = "correct horse battery staple"
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"

# The application's process: sign up (the request queues the verification
# email), run the queued task in a thread of its own, as a worker would
# (nothing but the task's message links it to the request), open the link
# in the email with a caller's traceparent, call a page that asks another
# service (the collector's server) with the token and the email in the
# URL, then exit (which sends what is left). Prints what the test needs to
# know on its last line.
SCENARIO = r'''
import json, sys, threading, urllib.request
import requests
from guestguard import make_config
from guestguard.plugins import hookimpl
from guestguard.testing import drain, inbox, link, new_client, signup

# What tracing loads. (redis-py loads OpenTelemetry's API and metrics SDK
# by itself when they are installed, tracing or not: about 1.5 MiB.)
TRACING_MODULES = ("guestguard.ops.tracing", "opentelemetry.sdk.trace", "opentelemetry.exporter",
                   "opentelemetry.instrumentation", "opentelemetry.proto", "google.protobuf")
settings, email, password, traceparent, service = json.loads(sys.argv[1]), *sys.argv[2:6]


class Lookup:
    # A page that asks another service about a guest, once with urllib and
    # once with requests (as the core and the plugins do).
    @hookimpl
    def configure(self, config):
        config.add_route("trace_lookup", "/trace-lookup/{token}")
        config.add_view(self.lookup, route_name="trace_lookup", renderer="json")

    def lookup(self, request):
        query = f"email={email}&token={request.matchdict['token']}"
        with urllib.request.urlopen(f"{service}/guests/{request.matchdict['token']}?{query}", timeout=5) as answer:
            answer.read()
        requests.get(f"{service}/guests?{query}#{email}", timeout=5)
        return {}


app = new_client(make_config(settings, environ={}, extra_plugins=[("lookup", Lookup())]).make_wsgi_app())
registry = app.app.registry
signed_up = signup(app, email=email, password=password, status=None)
worker = threading.Thread(target=drain, args=(registry["huey"],))
worker.start()
worker.join()
path = link(inbox(app, email)[0], "verify-email")
verified = app.get(path, headers={"traceparent": traceparent}, status=None)
looked_up = app.get(f"/trace-lookup/{path.rsplit('/', 1)[1]}", status=None)
print(json.dumps({"signup": signed_up.status_int, "verify": verified.status_int, "lookup": looked_up.status_int,
                  "path": path,
                  "tracing_loaded": sorted(name for name in sys.modules if name.startswith(TRACING_MODULES))}))
'''


def _value(any_value):
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [_value(item) for item in any_value.array_value.values]
    return getattr(any_value, kind) if kind else None


class Collector:
    """An OTLP/HTTP collector, as far as the exporter can tell: every
    ExportTraceServiceRequest POSTed to /v1/traces, decoded."""

    def __init__(self):
        self.requests: list[ExportTraceServiceRequest] = []
        self.raw: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    import gzip

                    body = gzip.decompress(body)
                message = ExportTraceServiceRequest()
                message.ParseFromString(body)
                collector.raw.append(body)
                collector.requests.append(message)
                collector.headers.append({name.lower(): value for name, value in self.headers.items()})
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if self.path == "/v1/traces" else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def do_GET(self):  # another service the application asks
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.endpoint = f"http://127.0.0.1:{self.server.server_port}/v1/traces"

    def spans(self) -> list[dict]:
        found = []
        for request in self.requests:
            for resource_spans in request.resource_spans:
                resource = {kv.key: _value(kv.value) for kv in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        found.append({
                            "trace": span.trace_id.hex(), "id": span.span_id.hex(),
                            "parent": span.parent_span_id.hex(), "name": span.name, "kind": span.kind,
                            "scope": scope_spans.scope.name, "resource": resource,
                            "attributes": {kv.key: _value(kv.value) for kv in span.attributes},
                            "events": [{kv.key: _value(kv.value) for kv in event.attributes}
                                       for event in span.events],
                            "status": span.status.code,
                        })
        return found

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector():
    stand_in = Collector()
    yield stand_in
    stand_in.close()


def run_scenario(db_url, redis_url, tmp_path, settings: dict[str, str], service: str) -> tuple[dict, list[dict]]:
    """Run SCENARIO on the test's database (and Redis queue when the run has
    one) with ``settings``; its outcome and its JSON log lines."""
    queue = redis_url or f"sqlite:///{tmp_path}/queue.sqlite"
    script = tmp_path / "scenario.py"
    script.write_text(SCENARIO)
    full = {**settings_for(db_url), "huey.url": queue, "huey.immediate": "false", "huey.name": f"tr-{tmp_path.name}",
            "log.format": "json", **settings}
    done = subprocess.run([sys.executable, str(script), json.dumps(full), EMAIL, PASSWORD,
                           f"00-{CALLER_TRACE}-{CALLER_SPAN}-01", service],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    return json.loads(done.stdout.strip().splitlines()[-1]), lines


def test_a_request_and_its_task_are_one_trace_with_sql_and_redis_inside(db_url, redis_url, tmp_path, collector):
    outcome, lines = run_scenario(db_url, redis_url, tmp_path, {
        "tracing.enabled": "true", "tracing.endpoint": collector.endpoint, "tracing.service_name": "gg-test",
        "tracing.headers": "x-collector-key=k%3Dv"}, collector.url)
    assert (outcome["signup"], outcome["verify"], outcome["lookup"]) == (202, 200, 200), outcome
    spans = collector.spans()
    by_id = {span["id"]: span for span in spans}
    [signup] = [s for s in spans if s["name"] == "api_signup"]
    [task] = [s for s in spans if s["name"] == "task notifications.tasks.dispatch_notification"]  # the email
    assert (signup["kind"], signup["parent"]) == (Span.SPAN_KIND_SERVER, ""), "a server span, the trace's root"
    assert signup["attributes"]["http.route"] == "/api/v1/auth/signup"
    assert signup["attributes"]["http.response.status_code"] == 202
    assert (task["kind"], task["trace"]) == (Span.SPAN_KIND_CONSUMER, signup["trace"]), \
        "the task joins the request's trace"

    def ancestors(span):
        while span["parent"] in by_id:
            span = by_id[span["parent"]]
            yield span

    assert signup in list(ancestors(task)), "the task span descends from the request span"
    sql = [s for s in spans if s["attributes"].get("db.system") in ("sqlite", "postgresql")]
    assert any(signup in list(ancestors(s)) for s in sql), "the request's SQL is inside its span"
    assert any(task in list(ancestors(s)) for s in sql), "the task's SQL is inside its span"
    assert all(s["parent"] for s in spans if s["kind"] == Span.SPAN_KIND_CLIENT), \
        "no client span without a parent (a queue poll)"
    if redis_url:  # the services pass: the queue is Redis
        redis = [s for s in spans if s["attributes"].get("db.system") == "redis"]
        assert any(signup in list(ancestors(s)) for s in redis), "the push of the task is inside the request"
        assert all(set(s["attributes"]["db.statement"].split()[1:]) <= {"?"} for s in redis), "no key or value"

    # The caller's traceparent: the verification joins the caller's trace, by route pattern.
    [verify] = [s for s in spans if s["name"] == "verify_email"]
    assert (verify["trace"], verify["parent"]) == (CALLER_TRACE, CALLER_SPAN)
    assert verify["attributes"]["http.route"] == "/verify-email/{token}"
    assert verify["resource"]["service.name"] == "gg-test"
    assert collector.headers[0].get("x-collector-key") == "k=v"

    # Outgoing calls, urllib's and requests', inside the page's span, their URLs without the token or the query.
    [lookup] = [s for s in spans if s["name"] == "trace_lookup"]
    assert lookup["attributes"]["http.route"] == "/trace-lookup/{token}"
    calls = [s for s in spans if s["parent"] == lookup["id"] and s["kind"] == Span.SPAN_KIND_CLIENT]
    assert {s["scope"].rsplit(".", 1)[-1] for s in calls} == {"urllib", "requests"}, calls
    assert {s["attributes"]["http.url"] for s in calls} == {
        f"{collector.url}/guests/[token]?email=[removed]&token=[removed]",
        f"{collector.url}/guests?email=[removed]&token=[removed]"}

    # Nothing personal anywhere: not the email, not the token in the link, not the password.
    token = outcome["path"].rsplit("/", 1)[1]
    raw = b"".join(collector.raw)
    for planted in (EMAIL, "grace.hopper", token, PASSWORD):
        assert planted.encode() not in raw, f"{planted!r} reached the collector"
    statements = [s["attributes"]["db.statement"] for s in sql if "db.statement" in s["attributes"]]
    assert statements and any("?" in text or "%(" in text for text in statements), "statements keep placeholders"

    # Log lines carry the trace and span id of the span they were written in.
    traced = [line for line in lines if line["trace_id"]]
    assert any(line["trace_id"] == task["trace"] and line["span_id"] in {s["id"] for s in spans}
               and line["request_id"] == signup["attributes"]["guestguard.request_id"] for line in traced), lines
    assert {line["trace_id"] for line in traced} <= {signup["trace"], CALLER_TRACE, lookup["trace"]}, \
        "no line in a trace of its own"


def test_tracing_is_off_by_default_and_loads_nothing(db_url, redis_url, tmp_path, collector):
    outcome, lines = run_scenario(db_url, redis_url, tmp_path, {"tracing.endpoint": collector.endpoint},
                                  collector.url)
    assert (outcome["signup"], outcome["verify"], outcome["lookup"]) == (202, 200, 200), outcome
    assert outcome["tracing_loaded"] == [], "a process that does not trace loads none of the tracing machinery"
    assert collector.requests == []
    assert lines and all(line["trace_id"] == "" and line["span_id"] == "" for line in lines)


def test_a_collector_that_is_down_costs_no_request(db_url, redis_url, tmp_path, collector):
    closed = f"http://127.0.0.1:{free_port()}/v1/traces"
    outcome, lines = run_scenario(db_url, redis_url, tmp_path, {
        "tracing.enabled": "true", "tracing.endpoint": closed, "tracing.export_timeout": "1"}, collector.url)
    assert (outcome["signup"], outcome["verify"], outcome["lookup"]) == (202, 200, 200), outcome
    assert any(line["trace_id"] for line in lines), "spans were made, only not delivered"


# --- what a span may carry, and which are kept ----------------------------------------------


def test_a_span_leaves_without_values_tokens_emails_or_the_caller():
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.trace import SpanContext, Status, StatusCode

    from guestguard.ops.tracing import scrub_span

    token = "Zq" + "x7" * 21 + "Q"
    span = ReadableSpan(
        name=f"GET /rsvp/{token}",
        context=SpanContext(1, 2, is_remote=False),
        attributes={
            "db.statement": "SELECT id FROM users WHERE email = 'jane@example.com' AND name = 'O''Brien' AND id = ?",
            "http.url": f"https://api.example.com/rsvp/{token}?email=jane%40example.com#frag",
            "http.target": f"/verify-email/{token}?next=/x",
            "client.address": "203.0.113.9", "user_agent.original": "Mozilla",
            "guestguard.task": "notifications.tasks.deliver", "http.response.status_code": 200,
            "note": ("to +44 20 7946 0958", "fine"),
        },
        events=[Event("exception", {"exception.message": "no user jane@example.com"})],
        status=Status(StatusCode.ERROR, f"failed for /rsvp/{token}"),
    )
    clean = scrub_span(span)
    text = repr((clean.name, dict(clean.attributes), [dict(e.attributes) for e in clean.events],
                 clean.status.description))
    for planted in ("jane", "Brien", token, "203.0.113.9", "Mozilla", "7946", "frag"):
        assert planted not in text, planted
    assert clean.attributes["db.statement"] == "SELECT id FROM users WHERE email = '?' AND name = '?' AND id = ?"
    assert clean.attributes["http.url"] == "https://api.example.com/rsvp/[token]?email=[removed]"
    assert clean.attributes["http.target"] == "/verify-email/[token]?next=[removed]"
    assert clean.attributes["guestguard.task"] == "notifications.tasks.deliver"
    assert clean.attributes["http.response.status_code"] == 200
    assert clean.context == span.context


def test_traces_start_only_at_requests_and_tasks_and_the_ratio_is_ours():
    from opentelemetry import trace
    from opentelemetry.sdk.trace.sampling import Decision
    from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

    from guestguard.ops.tracing import EntryPointSampler

    keep_all, keep_none = EntryPointSampler(1.0), EntryPointSampler(0.0)
    assert keep_all.should_sample(None, 123, "RPOP", SpanKind.CLIENT).decision == Decision.DROP
    assert keep_all.should_sample(None, 123, "api_signup", SpanKind.SERVER).decision == Decision.RECORD_AND_SAMPLE
    assert keep_none.should_sample(None, 123, "api_signup", SpanKind.SERVER).decision == Decision.DROP
    caller = trace.set_span_in_context(NonRecordingSpan(SpanContext(123, 7, is_remote=True,
                                                                    trace_flags=TraceFlags(TraceFlags.SAMPLED))))
    assert keep_none.should_sample(caller, 123, "api_signup", SpanKind.SERVER).decision == Decision.DROP, \
        "a caller's sampled flag does not raise our ratio"
    inside = trace.set_span_in_context(NonRecordingSpan(SpanContext(123, 8, is_remote=False,
                                                                    trace_flags=TraceFlags(TraceFlags.SAMPLED))))
    assert keep_all.should_sample(inside, 123, "SELECT", SpanKind.CLIENT).decision == Decision.RECORD_AND_SAMPLE


@pytest.mark.parametrize("raw, expected", [
    ("", ()),
    ("api-key=secret", (("api-key", "secret"),)),
    ("a=1, b=x%2Cy%3Dz", (("a", "1"), ("b", "x,y=z"))),
])
def test_export_headers_are_read_like_otlps_own(raw, expected):
    from guestguard.settings import as_headers

    assert as_headers(raw) == expected


@pytest.mark.parametrize("setting", [
    {"tracing.headers": "no-equals-sign"}, {"tracing.headers": "bad name=1"}, {"tracing.headers": "a=x%0Ay"},
    {"tracing.sample_ratio": "1.5"}, {"tracing.endpoint": "ftp://collector"}, {"tracing.protocol": "grpc"},
])
def test_bad_tracing_settings_stop_startup_naming_the_setting(make_app, setting):
    with pytest.raises(SettingsError, match=next(iter(setting)).replace(".", r"\.")):
        make_app(setting)
