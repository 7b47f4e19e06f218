"""The guard's API: flags and their review, the activity feed, a guest's
access log, stream tickets, and the live stream itself."""
from __future__ import annotations

import uuid

from pyramid.httpexceptions import HTTPForbidden
from pyramid.response import Response
from pyramid.view import view_config

from guestguard.errors import APIError, json_error, refusal
from guestguard.events import access, activity, flags, stream
from guestguard.events.api import page_size
from guestguard.events.links_api import SendInput
from guestguard.events.live import Full
from guestguard.events.models import FLAG_STATUSES, Guest
from guestguard.events.resources import event_resource, event_factory, flag_factory, guest_factory
from guestguard.events.services import EventsError
from guestguard.permissions import GUESTS_EDIT, GUESTS_VIEW
from guestguard.validation import Input, parse_json

ROUTES = (
    ("api_stream_ticket", "/api/v1/auth/stream-ticket", None),
    ("api_activity", "/api/v1/events/{event_id}/activity", event_factory),
    ("api_flags", "/api/v1/events/{event_id}/flags", event_factory),
    ("api_flag_dismiss", "/api/v1/events/{event_id}/flags/{flag_id}/dismiss", flag_factory),
    ("api_flag_reissue", "/api/v1/events/{event_id}/flags/{flag_id}/reissue", flag_factory),
    ("api_guest_access", "/api/v1/events/{event_id}/guests/{guest_id}/access", guest_factory),
    ("activity_stream", "/events/{event_id}/activity/stream", None),
)
INVALID_TICKET = "This stream ticket is not valid: ask for a new one (POST /api/v1/auth/stream-ticket)."


class TicketInput(Input):
    event_id: uuid.UUID


def one_of(request, name: str, allowed) -> str | None:
    value = request.GET.get(name)
    if value is not None and value not in allowed:
        raise APIError(400, "bad_request", f"{name} must be one of {', '.join(allowed)}.")
    return value


# --- flags ----------------------------------------------------------------------


@view_config(route_name="api_flags", request_method="GET", renderer="json", permission=GUESTS_VIEW)
def list_flags(context, request):
    """Newest first; filter by ``status``, ``rule`` or ``guest_id``."""
    status = one_of(request, "status", FLAG_STATUSES)
    rule = request.GET.get("rule", "").strip()[:64] or None
    guest_id = None
    if request.GET.get("guest_id"):
        try:
            guest_id = uuid.UUID(request.GET["guest_id"])
        except ValueError:
            raise APIError(400, "bad_request", "guest_id must be a guest's id.") from None
    try:
        found, cursor = flags.list_flags(request.db, context.event.id, after=request.GET.get("after"),
                                         limit=page_size(request), status=status, rule=rule, guest_id=guest_id)
    except EventsError as error:
        return refusal(request, error)
    return {"flags": [flags.flag_json(flag) for flag in found], "next": cursor}


@view_config(route_name="api_flag_dismiss", request_method="POST", renderer="json", permission=GUESTS_EDIT)
def dismiss_flag(context, request):
    try:
        flag = flags.dismiss(request, context.record)
    except EventsError as error:
        return refusal(request, error)
    return flags.flag_json(flag)


@view_config(route_name="api_flag_reissue", request_method="POST", renderer="json", permission=GUESTS_EDIT,
             rate_limit="link_issue")
def reissue_link(context, request):
    """Revoke the guest's link, send a new one, resolve their open flags."""
    data = parse_json(request, SendInput) if request.body else SendInput()
    flag = context.record
    guest = request.db.get(Guest, flag.guest_id)
    try:
        channel, resolved = flags.reissue(request, flag, guest, context.event, data.channel)
    except EventsError as error:
        return refusal(request, error)
    request.response.status = 202
    return {"guest_id": str(guest.id), "channel": channel, "resolved": [str(f.id) for f in resolved]}


# --- activity and access ---------------------------------------------------------


@view_config(route_name="api_activity", request_method="GET", renderer="json", permission=GUESTS_VIEW)
def feed(context, request):
    """Oldest first (``order=desc`` for newest first); ``after`` continues
    past an item's id, ``lookback`` seconds earlier if asked (followers drop
    the ids they have). ``next`` is the id to continue from: when nothing
    newer exists yet it is the ``after`` given, so a poller keeps it."""
    order = one_of(request, "order", (activity.ASCENDING, activity.DESCENDING)) or activity.ASCENDING
    after = request.GET.get("after") or None
    lookback = request.GET.get("lookback", "0")
    if not (lookback.isascii() and lookback.isdigit()) or int(lookback) > activity.MAX_LOOKBACK_SECONDS:
        raise APIError(400, "bad_request", f"lookback must be a whole number of seconds from 0 to "
                                           f"{activity.MAX_LOOKBACK_SECONDS}.")
    try:
        items, more = activity.page(request.db, context.event.id, after=after, limit=page_size(request),
                                    order=order, lookback=int(lookback))
    except EventsError as error:
        return refusal(request, error)
    return {"items": [activity.item_json(item) for item in items],
            "next": activity.cursor_of(items[-1]) if items else after, "more": more}


@view_config(route_name="api_guest_access", request_method="GET", renderer="json", permission=GUESTS_VIEW)
def guest_access(context, request):
    """The guest's recent uses of their links and their totals."""
    guest = context.record
    return {"uses": [access.entry_json(entry) for entry in access.recent_uses(request.db, guest.id)],
            "totals": access.totals(request.db, guest.id)}


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
    raw, expires_at = stream.issue_ticket(request, resource.event)
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
            activity.parse_cursor(after)
        except EventsError as error:
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
