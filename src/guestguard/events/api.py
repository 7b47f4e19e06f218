"""The events API: events and their guest lists."""
from __future__ import annotations

import uuid

from pyramid.httpexceptions import HTTPNoContent
from pyramid.view import view_config

from guestguard.errors import APIError, json_error, refusal
from guestguard.events import services
from guestguard.events.models import Event, Guest
from guestguard.events.schemas import EventFields, EventInput, GuestFields, GuestInput
from guestguard.events.services import EventsError
from guestguard.ratelimit import enforce
from guestguard.permissions import EVENTS_EDIT, EVENTS_VIEW, GUESTS_EDIT, GUESTS_VIEW, WORKSPACES_LIST
from guestguard.validation import parse_json, read_json, validate
from guestguard.workspaces import services as workspaces
from guestguard.workspaces.resources import WorkspaceResource

BATCH_BODY_BYTES = 1024 * 1024  # a thousand guests with notes fit


def event_json(event: Event, headcount: services.Headcount | None = None) -> dict:
    body = {
        "id": str(event.id), "workspace_id": str(event.workspace_id), "name": event.name,
        "description": event.description, "venue": event.venue,
        "starts_at": event.starts_at.isoformat(),
        "ends_at": event.ends_at.isoformat() if event.ends_at else None,
        "timezone": event.timezone,
        "rsvp_deadline": event.rsvp_deadline.isoformat() if event.rsvp_deadline else None,
        "default_plus_ones": event.default_plus_ones, "host_message": event.host_message,
        "status": event.status, "created_at": event.created_at.isoformat(),
    }
    if headcount is not None:
        body["headcount"] = headcount.as_json()
    return body


def guest_json(guest: Guest) -> dict:
    return {
        "id": str(guest.id), "event_id": str(guest.event_id), "name": guest.name,
        "email": guest.email, "phone": guest.phone, "plus_ones_allowed": guest.plus_ones_allowed,
        "group": guest.group_name, "tags": guest.tags, "notes": guest.notes,
        "response": guest.response, "plus_ones_coming": guest.plus_ones_coming,
        "responded_at": guest.responded_at.isoformat() if guest.responded_at else None,
        "invited_at": guest.invited_at.isoformat() if guest.invited_at else None,
        "opened_at": guest.opened_at.isoformat() if guest.opened_at else None,
        "open_flags": guest.open_flags,
    }


def page_size(request) -> int:
    raw = request.GET.get("limit")
    if raw is None:
        return services.DEFAULT_PAGE_SIZE
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= services.MAX_PAGE_SIZE:
        raise APIError(400, "bad_request", f"limit must be a whole number from 1 to {services.MAX_PAGE_SIZE}.")
    return int(raw)


# --- events ------------------------------------------------------------------


@view_config(route_name="api_events", request_method="GET", renderer="json", permission=WORKSPACES_LIST)
def list_events(request):
    """The caller's workspaces' events; ``workspace_id`` narrows to one."""
    roles = request.identity.roles
    workspace_ids = list(roles)
    wanted = request.GET.get("workspace_id")
    if wanted is not None:
        try:
            wanted_id = uuid.UUID(wanted)
        except ValueError:
            wanted_id = None
        # Someone else's workspace is no different from one that does not exist.
        workspace_ids = [wanted_id] if wanted_id in roles else []
    events, cursor = services.list_events(request.db, workspace_ids, after=request.GET.get("after"),
                                          limit=page_size(request))
    counts = services.headcounts(request.db, [event.id for event in events])
    return {"events": [event_json(event, counts[event.id]) for event in events], "next": cursor}


@view_config(route_name="api_events", request_method="POST", renderer="json", permission=WORKSPACES_LIST,
             rate_limit="event_create")
def create_event(request):
    data = parse_json(request, EventInput)
    workspace = workspaces.find_workspace(request.db, data.workspace_id)
    if workspace is None or workspace.id not in request.identity.roles:
        raise APIError(422, "validation_failed", "Some fields are invalid.",
                       fields={"workspace_id": "is not a workspace of yours"})
    resource = WorkspaceResource(request, workspace)
    if not request.has_permission(EVENTS_EDIT, resource):
        raise APIError(403, "forbidden", "Your role cannot create events here.", required=EVENTS_EDIT,
                       role=request.identity.roles[workspace.id])
    event = services.create_event(request.ctx, workspace.id, data)
    request.response.status = 201
    return {"event": event_json(event, services.Headcount())}


@view_config(route_name="api_event", request_method="GET", renderer="json", permission=EVENTS_VIEW)
def get_event(context, request):
    counts = services.headcounts(request.db, [context.event.id])
    return {"event": event_json(context.event, counts[context.event.id])}


@view_config(route_name="api_event", request_method="PATCH", renderer="json", permission=EVENTS_EDIT)
def update_event(context, request):
    data = parse_json(request, EventFields)
    event = services.update_event(request.ctx, context.event, data)
    return {"event": event_json(event)}


@view_config(route_name="api_event", request_method="DELETE", permission=EVENTS_EDIT)
def delete_event(context, request):
    services.delete_event(request.ctx, context.event)
    return HTTPNoContent()


# --- guests ------------------------------------------------------------------


@view_config(route_name="api_guests", request_method="GET", renderer="json", permission=GUESTS_VIEW)
def list_guests(context, request):
    response = request.GET.get("response")
    if response is not None and response not in services.RESPONSE_FILTERS:
        raise APIError(400, "bad_request", "response must be one of " + ", ".join(services.RESPONSE_FILTERS) + ".")
    search = request.GET.get("q", "").strip()[:100]
    flagged = request.GET.get("flagged", "false")
    if flagged not in ("true", "false"):
        raise APIError(400, "bad_request", "flagged must be true or false.")
    guests, cursor = services.list_guests(request.db, context.event.id, after=request.GET.get("after"),
                                          limit=page_size(request), search=search, response=response,
                                          flagged=flagged == "true")
    return {"guests": [guest_json(guest) for guest in guests], "next": cursor}


@view_config(route_name="api_guests", request_method="POST", renderer="json", permission=GUESTS_EDIT)
def add_guests(context, request):
    """One guest (an object) or up to ``guests.max_batch`` (an array), all or nothing."""
    body = read_json(request, max_bytes=BATCH_BODY_BYTES)
    batch = isinstance(body, list)
    items = body if batch else [body]
    limit = request.registry.settings["guests.max_batch"]
    if batch and not 1 <= len(items) <= limit:
        raise APIError(422, "validation_failed", f"Send 1 to {limit} guests at once; nothing was added.",
                       count=len(items))
    enforce(request, "guest_create", cost=len(items))  # the limit counts guests, not calls
    inputs, problems = [], {}
    for index, item in enumerate(items):
        try:
            inputs.append(validate(GuestInput, item))
        except APIError as error:
            problems[str(index)] = error.extra.get("fields", {"body": error.error_message})
    if problems:
        if not batch:
            raise APIError(422, "validation_failed", "Some fields are invalid.", fields=problems["0"])
        raise APIError(422, "validation_failed", "Some rows are invalid; no guest was added.", rows=problems)
    try:
        guests = services.add_guests(request.ctx, context.event, inputs)
    except EventsError as error:
        if not batch and "rows" in error.extra:
            return json_error(request, error.status, error.code, "Some fields are invalid.",
                              fields=error.extra["rows"]["0"])
        return refusal(request, error)
    request.response.status = 201
    if batch:
        return {"guests": [guest_json(guest) for guest in guests]}
    return {"guest": guest_json(guests[0])}


@view_config(route_name="api_guest", request_method="GET", renderer="json", permission=GUESTS_VIEW)
def get_guest(context, request):
    return {"guest": guest_json(context.record)}


@view_config(route_name="api_guest", request_method="PATCH", renderer="json", permission=GUESTS_EDIT)
def update_guest(context, request):
    data = parse_json(request, GuestFields)
    guest = services.update_guest(request.ctx, context.event, context.record, data)
    return {"guest": guest_json(guest)}


@view_config(route_name="api_guest", request_method="DELETE", permission=GUESTS_EDIT)
def delete_guest(context, request):
    services.delete_guest(request.ctx, context.record)
    return HTTPNoContent()
