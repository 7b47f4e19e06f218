from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST
from pyramid.httpexceptions import HTTPNotFound
from pyramid.response import Response
from pyramid.view import view_config

from guestguard.ops.metrics import allowed, process_metrics, state_metrics
from guestguard.ops.readiness import run_checks


@view_config(route_name="health", renderer="json", request_method=("GET", "HEAD"))
def health(request):
    """Alive: the process answers. Touches nothing else."""
    return {"status": "ok"}


@view_config(route_name="readyz", renderer="json", request_method=("GET", "HEAD"))
def readyz(request):
    """Ready: the database, the queue and (when configured) Redis answer."""
    ready, checks = run_checks(request.registry)
    request.response.status = 200 if ready else 503
    request.response.headers["Cache-Control"] = "no-store"
    body = {"status": "ok" if ready else "unavailable", "checks": checks}
    signals = request.registry.get("guard.signals")
    if signals is not None:
        # Not a check: the guard works either way, but a host's flags are
        # coarser without a network database, and the operator should know.
        body["details"] = {"guard_networks": signals.network_source}
    return body


@view_config(route_name="metrics", request_method=("GET", "HEAD"))
def metrics(request):
    """Prometheus text format, to the scrapers the settings allow; anyone
    else (and everyone, when nothing is configured) gets the 404 of a
    missing page."""
    if not allowed(request.registry.settings, request.headers.get("Authorization", ""), request.client_ip):
        raise HTTPNotFound()
    body = process_metrics() + state_metrics(request.registry)
    response = Response(body=body, content_type=CONTENT_TYPE_LATEST.split(";")[0], charset="utf-8")
    response.headers["Cache-Control"] = "no-store"
    return response
