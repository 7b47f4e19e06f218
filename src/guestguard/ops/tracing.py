"""Traces to an OpenTelemetry collector (OTLP over HTTP), off unless
``tracing.enabled``; a process that does not trace never imports this module
(nor OpenTelemetry), which the tests check.

What is traced: each request (a server span named after its route, opened
by ``tracing_tween_factory`` under the request id, carrying the caller's W3C
``traceparent`` when it sends one; OpenTelemetry's Pyramid instrumentation
is not used: it patches the Configurator and records the path, tokens
included, and the caller's address), each task (a consumer span, child of the
span that queued it: ``enqueue`` puts the W3C context among the task's
arguments and the worker takes it out), and inside them SQL statements
(SQLAlchemy), Redis commands and outgoing HTTP (requests, urllib). Log lines
carry the current trace and span id (``guestguard.audit.logging``).

What is never recorded: ``ExportScrubbing`` rewrites every span before it
leaves the process. URLs keep their path with tokens masked and lose their
query values and fragment; SQL keeps its text without values (bound
parameters are never recorded; literals in the text are replaced by ``?``);
tokens, emails and phone numbers are masked in every other string; the
caller's address and user agent are dropped. Our server span records the
route pattern (``/rsvp/{token}``), never the path.

OpenTelemetry's instrumentation patches libraries once per process, so
tracing is set up once per process: the first application that starts it
decides where spans go (a web process or a worker builds one application).
"""
from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from importlib import metadata
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, SamplingResult, TraceIdRatioBased
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pyramid.interfaces import IRoute

from guestguard.audit.logging import set_trace_ids
from guestguard.ops.error_reports import scrub_query, scrub_text, scrub_url

log = logging.getLogger(__name__)

# W3C Trace Context, whatever OTEL_PROPAGATORS says: the one format our
# requests accept and our tasks carry.
W3C = TraceContextTextMapPropagator()
TRACER_NAME = "guestguard"

# --- what leaves the process ---------------------------------------------------------

URL_KEYS = frozenset({"http.url", "url.full"})
PATH_KEYS = frozenset({"http.target", "url.path"})
QUERY_KEYS = frozenset({"url.query"})
SQL_KEYS = frozenset({"db.statement", "db.query.text"})
# Who called: personal data, never recorded (an instrumentation may add them).
DROPPED_KEYS = frozenset({"client.address", "client.port", "http.client_ip", "net.peer.ip", "net.sock.peer.addr",
                          "http.user_agent", "user_agent.original", "url.fragment", "enduser.id"})
# A string literal in SQL text ('it''s' included); bound parameters are not
# in the text at all, but a statement built with literal values would be.
SQL_LITERAL = re.compile(r"'(?:[^']|'')*'")


def scrub_sql(statement: str) -> str:
    return scrub_text(SQL_LITERAL.sub("'?'", statement))


def _scrub_value(key: str, value: Any) -> Any:
    if isinstance(value, str):
        if key in URL_KEYS:
            return scrub_url(value)
        if key in PATH_KEYS:
            path, _, query = value.partition("?")
            return scrub_text(path) + (f"?{scrub_query(query)}" if query else "")
        if key in QUERY_KEYS:
            return scrub_query(value)
        if key in SQL_KEYS:
            return scrub_sql(value)
        return scrub_text(value)
    if isinstance(value, Sequence) and not isinstance(value, bytes):
        return tuple(_scrub_value(key, item) for item in value)
    return value


def scrub_attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    """Span or event attributes as they may leave the process."""
    return {key: _scrub_value(key, value) for key, value in (attributes or {}).items() if key not in DROPPED_KEYS}


def scrub_span(span: ReadableSpan) -> ReadableSpan:
    """A copy of ``span`` without personal data or credentials (its name,
    attributes, events and status text scrubbed)."""
    status = span.status
    if status.description:
        status = Status(status.status_code, scrub_text(status.description))
    return ReadableSpan(
        name=scrub_text(span.name),
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=scrub_attributes(span.attributes),
        events=[Event(event.name, scrub_attributes(event.attributes), event.timestamp) for event in span.events],
        links=span.links,
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class ExportScrubbing(SpanExporter):
    """Scrubs every span (``scrub_span``), then hands them to ``exporter``."""

    def __init__(self, exporter: SpanExporter):
        self.exporter = exporter

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.exporter.export([scrub_span(span) for span in spans])

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.exporter.force_flush(timeout_millis)


# --- which traces are kept -----------------------------------------------------------


class EntryPointSampler(Sampler):
    """Keeps ``ratio`` of the traces, chosen by trace id, so a request and
    the tasks it queued (same trace id) are kept or dropped together.

    A trace starts only at an entry point, a request or a task: a client
    span without a parent (a worker polling its queue, a lease renewal) is
    not a trace and is dropped. A caller's ``traceparent`` is followed for
    its trace id, but its "sampled" flag is decided again by the ratio, so
    callers cannot make us record more than the ratio allows."""

    def __init__(self, ratio: float):
        by_id = TraceIdRatioBased(ratio)
        self.ratio = ratio
        self.delegate = ParentBased(root=by_id, remote_parent_sampled=by_id, remote_parent_not_sampled=by_id)

    def should_sample(self, parent_context: Context | None, trace_id: int, name: str,
                      kind: SpanKind | None = None, attributes=None, links=None, trace_state=None) -> SamplingResult:
        parent = trace.get_current_span(parent_context).get_span_context()
        if not parent.is_valid and kind == SpanKind.CLIENT:
            return SamplingResult(Decision.DROP)
        return self.delegate.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"EntryPointSampler{{{self.ratio}}}"


# --- the process's set-up ----------------------------------------------------------


def current_trace_ids() -> tuple[str, str]:
    """(trace id, span id) of the span current here, hex; empty strings when none."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return "", ""
    return trace.format_trace_id(context.trace_id), trace.format_span_id(context.span_id)


def _version() -> str:
    try:
        return metadata.version("guestguard")
    except metadata.PackageNotFoundError:
        return "unknown"


# The process's tracer provider, once made.
_process: dict[str, TracerProvider] = {}


def _process_provider(settings: Mapping[str, Any]) -> TracerProvider:
    """The process's tracer provider, made (and the libraries instrumented)
    by the first call; later calls get the same one."""
    if "provider" in _process:
        return _process["provider"]
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.instrumentation.requests import RequestsInstrumentor
    from opentelemetry.instrumentation.urllib import URLLibInstrumentor

    resource = Resource.create({"service.name": settings["tracing.service_name"], "service.version": _version(),
                                "deployment.environment.name": settings["app.env"]})
    provider = TracerProvider(resource=resource, sampler=EntryPointSampler(settings["tracing.sample_ratio"]))
    timeout = settings["tracing.export_timeout"]
    exporter = OTLPSpanExporter(endpoint=settings["tracing.endpoint"], headers=dict(settings["tracing.headers"]),
                                timeout=timeout)
    # Spans are sent from the processor's thread: a slow or absent collector
    # costs dropped spans, never a request's time.
    provider.add_span_processor(BatchSpanProcessor(ExportScrubbing(exporter), export_timeout_millis=timeout * 1000))
    trace.set_tracer_provider(provider)
    RedisInstrumentor().instrument(tracer_provider=provider)
    RequestsInstrumentor().instrument(tracer_provider=provider)
    URLLibInstrumentor().instrument(tracer_provider=provider)
    set_trace_ids(current_trace_ids)
    _process["provider"] = provider
    return provider


class Tracing:
    """What requests and tasks use to open their spans
    (``registry["tracing"]``, present only when tracing is on)."""

    def __init__(self, provider: TracerProvider):
        self.provider = provider
        self.tracer = provider.get_tracer(TRACER_NAME, _version())

    def carrier(self) -> dict[str, str]:
        """The current context, W3C-encoded, for a task's arguments (empty
        when no span is current)."""
        carrier: dict[str, str] = {}
        W3C.inject(carrier)
        return carrier

    def serve(self, handler, request):
        """Call ``handler(request)`` in a server span: named after the route
        (the method when none matched), with the route's pattern, never the
        path."""
        parent = W3C.extract(request.headers, context=Context())
        with self.tracer.start_as_current_span(
                request.method, context=parent, kind=SpanKind.SERVER, record_exception=False,
                set_status_on_exception=False,
                attributes={"http.request.method": request.method, "url.scheme": request.scheme,
                            "guestguard.request_id": getattr(request, "request_id", "")}) as span:
            try:
                response = handler(request)
            except Exception as exc:
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise
            finally:
                route: IRoute | None = getattr(request, "matched_route", None)
                if route is not None:
                    span.update_name(route.name)
                    span.set_attribute("http.route", route.pattern)
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 500:
                span.set_status(Status(StatusCode.ERROR))
            return response

    @contextlib.contextmanager
    def task_span(self, task: str, carrier: Mapping[str, str] | None, request_id: str) -> Iterator[None]:
        """Run a task's body in a consumer span, child of the span whose
        context ``carrier`` holds (a new trace without one)."""
        parent = W3C.extract(dict(carrier or {}), context=Context())
        with self.tracer.start_as_current_span(
                f"task {task}", context=parent, kind=SpanKind.CONSUMER, record_exception=False,
                set_status_on_exception=False,
                attributes={"messaging.system": "huey", "messaging.operation.type": "process",
                            "guestguard.task": task, "guestguard.request_id": request_id}) as span:
            try:
                yield
            except BaseException as exc:
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise

    def flush(self, timeout: float = 10.0) -> bool:
        return self.provider.force_flush(int(timeout * 1000))


def tracing_tween_factory(handler, registry):
    tracing: Tracing = registry["tracing"]

    def tween(request):
        return tracing.serve(handler, request)

    return tween


def start_tracing(config) -> Tracing:
    """Trace this application's requests, tasks and database (called only
    when ``tracing.enabled``)."""
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    settings = config.registry.settings
    first = "provider" not in _process
    provider = _process_provider(settings)
    if first:
        # The instrumentation declares SQLAlchemy below 2.1 and would stand
        # aside; the engine events it listens to (before/after_cursor_execute,
        # handle_error) are unchanged in 2.1, and the tests check its spans.
        SQLAlchemyInstrumentor().instrument(engine=config.registry["db.engine"], tracer_provider=provider,
                                            skip_dep_check=True)
        endpoint = urlsplit(settings["tracing.endpoint"])  # logged without any credentials it holds
        log.info("traces go to %s://%s%s (service %s, %g of them kept)", endpoint.scheme, endpoint.hostname,
                 f":{endpoint.port}" if endpoint.port else "", settings["tracing.service_name"],
                 settings["tracing.sample_ratio"])
    else:
        log.warning("tracing was already started in this process: this application's database is not "
                    "traced, and its spans go where the first one's do")
    tracing = Tracing(provider)
    config.registry["tracing"] = tracing
    return tracing

