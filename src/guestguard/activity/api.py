"""The activity API: the feed, stream tickets, and the live stream itself."""
from __future__ import annotations

import functools
import uuid

from pyramid.httpexceptions import HTTPForbidden
from pyramid.response import Response
from pyramid.view import view_config

from guestguard import rls
from guestguard.activity import feed, stream
from guestguard.activity.live import Full
from guestguard.activity.schemas import ActivityPage, ActivityQuery, StreamQuery, StreamTicketOut, TicketInput
from guestguard.contract import Refused, Stream
from guestguard.errors import json_error, refusal
from guestguard.events.resources import event_resource
from guestguard.pagination import InvalidCursor
from guestguard.permissions import GUESTS_VIEW

INVALID_TICKET = "This stream ticket is not valid: ask for a new one (POST /api/v1/auth/stream-ticket)."
EVENT_STREAM = Stream("text/event-stream", "Server-Sent Events: `activity` messages (an item of the feed, "
                      "its cursor as id), `reconnect`, `reload`; comments as heartbeats.")


# --- the feed ---------------------------------------------------------------------


@view_config(route_name="api_activity", request_method="GET", renderer="json", permission=GUESTS_VIEW,
             query=ActivityQuery, response={200: ActivityPage, 400: Refused("invalid_cursor")})
def list_activity(context, request):
    """The event's activity feed.

    Oldest first (``order=desc`` for newest first); ``after`` continues
    past an item's id, ``lookback`` seconds earlier if asked (followers drop
    the ids they have). ``next`` is the id to continue from: when nothing
    newer exists yet it is the ``after`` given, so a poller keeps it."""
    query = request.query_input
    after = query.after
    items, more = feed.page(request.db, context.event.id, after=after, limit=query.limit,
                                order=query.order, lookback=query.lookback)
    return ActivityPage(items=[feed.item_out(item) for item in items],
                        next=feed.cursor_of(items[-1]) if items else after, more=more)


# --- the live stream --------------------------------------------------------------


@view_config(route_name="api_stream_ticket", request_method="POST", renderer="json", rate_limit="stream_ticket",
             body=TicketInput, checks_permission=GUESTS_VIEW, shows_secret=True, response={201: StreamTicketOut})
def stream_ticket(request):
    """A single-use ticket for one event's live stream, valid 60 seconds."""
    if request.identity is None:
        raise HTTPForbidden()  # answered 401 by the forbidden view
    data = request.body_input
    resource = event_resource(request, data.event_id)
    allowed = request.has_permission(GUESTS_VIEW, resource)
    if not allowed:
        request.context = resource  # outsiders get the 404, members the 403
        raise HTTPForbidden(result=allowed)
    raw, expires_at = stream.issue_ticket(request.ctx, resource.event)
    request.response.cache_control.no_store = True
    return StreamTicketOut(ticket=raw, expires_at=expires_at, event_id=resource.event.id,
                           stream_url=request.route_path("activity_stream", event_id=resource.event.id,
                                                         _query={"ticket": raw}))


def streams_refused(request, why: str) -> Response:
    """503: no stream now; the page follows the feed by polling meanwhile."""
    response = json_error(request, 503, "streams_full", f"{why[:1].upper()}{why[1:]}: follow the feed with "
                          "GET /api/v1/events/{id}/activity meanwhile.", headers={"Retry-After": "30"})
    response.cache_control.no_store = True
    return response


def refused_ticket(request) -> Response:
    response = json_error(request, 401, "invalid_ticket", INVALID_TICKET)
    response.cache_control.no_store = True
    return response


@view_config(route_name="activity_stream", request_method="GET", query=StreamQuery,
             response={200: EVENT_STREAM, 400: Refused("invalid_cursor"), 401: Refused("invalid_ticket"),
                       503: Refused("streams_full")})
def live_stream(request):
    """The event's activity as it happens (Server-Sent Events).

    Authenticated by ``ticket`` (``POST /api/v1/auth/stream-ticket``) alone;
    a heartbeat while idle; ``Last-Event-ID`` (or ``last_event_id``)
    replays what came after it."""
    query = request.query_input
    after = request.headers.get("Last-Event-ID") or query.last_event_id or None
    if after is not None:
        try:
            feed.parse_cursor(after)
        except InvalidCursor as error:  # the stream's errors are JSON, like the API's
            return refusal(request, error)
    try:
        event_id = uuid.UUID(request.matchdict["event_id"])
    except ValueError:
        return refused_ticket(request)
    if not request.environ.get("wsgi.multithread"):
        # One request at a time per process (a sync worker): a stream would
        # hold the whole process, and every other request would wait on it.
        return streams_refused(request, "this server holds no live streams (it serves one request at a "
                                        "time per process)")
    ticket = stream.redeem_ticket(request.db, query.ticket, event_id)
    if ticket is None:
        return refused_ticket(request)
    settings = request.registry.settings
    try:  # subscribed before the replay: nothing falls between
        listener = request.registry["live.broker"].listen(
            event_id, holder=str(ticket.user_id or ticket.api_key_id),
            limit=settings["guard.stream.max_streams"], per_holder=settings["guard.stream.max_per_holder"])
    except Full as full:
        request.tm.doom()  # the ticket is not burned: the page may try it again within its minute
        return streams_refused(request, str(full))
    response = Response(content_type="text/event-stream", charset="utf-8")
    response.cache_control.no_store = True
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass each message on at once
    # The stream's own short sessions see the ticket's workspace only.
    session_factory = functools.partial(request.registry["db.session_factory"], info={
        rls.SCOPE_KEY: rls.Scope(workspaces=frozenset({ticket.workspace_id}))})
    response.app_iter = stream.EventStream(
        session_factory, event_id, listener, after,
        heartbeat=settings["guard.stream.heartbeat_seconds"], lifetime=settings["guard.stream.max_seconds"],
        ticket=ticket, recheck=settings["guard.stream.recheck_seconds"])
    return response
