"""The activity API: the feed, stream tickets, and the live stream itself."""
from __future__ import annotations

import uuid

from pyramid.httpexceptions import HTTPForbidden
from pyramid.response import Response
from pyramid.view import view_config

from guestguard.activity import feed, stream
from guestguard.activity.live import Full
from guestguard.errors import APIError, json_error, refusal
from guestguard.events.api import page_size
from guestguard.events.resources import event_resource
from guestguard.pagination import InvalidCursor
from guestguard.permissions import GUESTS_VIEW
from guestguard.validation import Input, one_of, parse_json

INVALID_TICKET = "This stream ticket is not valid: ask for a new one (POST /api/v1/auth/stream-ticket)."


class TicketInput(Input):
    event_id: uuid.UUID


# --- the feed ---------------------------------------------------------------------


@view_config(route_name="api_activity", request_method="GET", renderer="json", permission=GUESTS_VIEW)
def list_activity(context, request):
    """Oldest first (``order=desc`` for newest first); ``after`` continues
    past an item's id, ``lookback`` seconds earlier if asked (followers drop
    the ids they have). ``next`` is the id to continue from: when nothing
    newer exists yet it is the ``after`` given, so a poller keeps it."""
    order = one_of(request, "order", (feed.ASCENDING, feed.DESCENDING)) or feed.ASCENDING
    after = request.GET.get("after") or None
    lookback = request.GET.get("lookback", "0")
    if not (lookback.isascii() and lookback.isdigit()) or int(lookback) > feed.MAX_LOOKBACK_SECONDS:
        raise APIError(400, "bad_request", f"lookback must be a whole number of seconds from 0 to "
                                           f"{feed.MAX_LOOKBACK_SECONDS}.")
    items, more = feed.page(request.db, context.event.id, after=after, limit=page_size(request),
                                order=order, lookback=int(lookback))
    return {"items": [feed.item_json(item) for item in items],
            "next": feed.cursor_of(items[-1]) if items else after, "more": more}


# --- the live stream --------------------------------------------------------------


@view_config(route_name="api_stream_ticket", request_method="POST", renderer="json", rate_limit="stream_ticket")
def stream_ticket(request):
    """A single-use ticket for one event's live stream, valid 60 seconds."""
    if request.identity is None:
        raise HTTPForbidden()  # answered 401 by the forbidden view
    data = parse_json(request, TicketInput)
    resource = event_resource(request, data.event_id)
    allowed = request.has_permission(GUESTS_VIEW, resource)
    if not allowed:
        request.context = resource  # outsiders get the 404, members the 403
        raise HTTPForbidden(result=allowed)
    raw, expires_at = stream.issue_ticket(request.ctx, resource.event)
    request.response.status = 201
    request.response.cache_control.no_store = True
    return {"ticket": raw, "expires_at": expires_at.isoformat(), "event_id": str(resource.event.id),
            "stream_url": request.route_path("activity_stream", event_id=resource.event.id,
                                             _query={"ticket": raw})}


def refused_ticket(request) -> Response:
    response = json_error(request, 401, "invalid_ticket", INVALID_TICKET)
    response.cache_control.no_store = True
    return response


@view_config(route_name="activity_stream", request_method="GET")
def live_stream(request):
    """Server-Sent Events: activity as it happens, a heartbeat while idle;
    ``Last-Event-ID`` (or ``last_event_id``) replays what came after it."""
    after = request.headers.get("Last-Event-ID") or request.GET.get("last_event_id") or None
    if after is not None:
        try:
            feed.parse_cursor(after)
        except InvalidCursor as error:  # the stream's errors are JSON, like the API's
            return refusal(request, error)
    try:
        event_id = uuid.UUID(request.matchdict["event_id"])
    except ValueError:
        return refused_ticket(request)
    ticket = stream.redeem_ticket(request.db, request.GET.get("ticket"), event_id)
    if ticket is None:
        return refused_ticket(request)
    settings = request.registry.settings
    try:  # subscribed before the replay: nothing falls between
        listener = request.registry["live.broker"].listen(
            event_id, holder=str(ticket.user_id or ticket.api_key_id),
            limit=settings["guard.stream.max_streams"], per_holder=settings["guard.stream.max_per_holder"])
    except Full as full:
        response = json_error(request, 503, "streams_full", f"{str(full).capitalize()}: follow the feed with "
                              "GET /api/v1/events/{id}/activity meanwhile.", headers={"Retry-After": "30"})
        response.cache_control.no_store = True
        return response
    response = Response(content_type="text/event-stream", charset="utf-8")
    response.cache_control.no_store = True
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass each message on at once
    response.app_iter = stream.EventStream(
        request.registry["db.session_factory"], event_id, listener, after,
        heartbeat=settings["guard.stream.heartbeat_seconds"], lifetime=settings["guard.stream.max_seconds"])
    return response
