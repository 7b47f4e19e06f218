"""The events API: events and their guest lists."""
from __future__ import annotations

from pyramid.httpexceptions import HTTPNoContent
from pyramid.view import view_config

from guestguard.contract import Batch, Refused, links_to
from guestguard.errors import APIError
from guestguard.events import alerts, copies, deliveries, removals, services
from guestguard.events.models import Guest
from guestguard.events.schemas import (
    AlertInput,
    AlertOut,
    ChangedEvent,
    CopiedAlready,
    CountedEventOut,
    DeliveryOut,
    DuplicateInput,
    EventFields,
    EventInput,
    EventOut,
    EventPage,
    EventQuery,
    GuestFields,
    GuestInput,
    GuestList,
    GuestOut,
    GuestPage,
    GuestQuery,
    HeadcountOut,
    OneEvent,
    OneGuest,
)
from guestguard.permissions import EVENTS_EDIT, EVENTS_VIEW, GUESTS_EDIT, GUESTS_VIEW, WORKSPACES_LIST
from guestguard.workspaces import services as workspaces
from guestguard.workspaces.resources import WorkspaceResource, parse_id

BATCH_BODY_BYTES = 1024 * 1024  # a thousand guests with notes fit
GUESTS = Batch(GuestInput, "guests.max_batch", max_bytes=BATCH_BODY_BYTES, counted_by="guest_create",
               noun="guest", nouns="guests")
INVALID_CURSOR = Refused("invalid_cursor")
EVENT_LINKS = ("get_event", "update_event", "list_guests", "add_guests", "send_all", "list_activity", "list_flags")
GUEST_LINKS = ("get_guest", "update_guest", "issue_token", "send_one", "guest_access")
EMAIL_TAKEN = Refused("conflict")
PLAN_LIMIT = Refused("plan_limit")
UNDO_REFUSED = Refused("undo_expired", "conflict")


def counted(request, event, headcount: services.Headcount) -> CountedEventOut:
    return CountedEventOut.of(event, headcount=HeadcountOut.of(headcount),
                              cover_url=services.cover_url(request.ctx, event))


# --- events ------------------------------------------------------------------


@view_config(route_name="api_events", request_method="GET", renderer="json", permission=WORKSPACES_LIST,
             query=EventQuery, response={200: EventPage, 400: INVALID_CURSOR})
def list_events(request):
    """The caller's workspaces' events, soonest first; ``workspace_id`` narrows to one."""
    roles = request.identity.roles
    workspace_ids = list(roles)
    query = request.query_input
    if query.workspace_id is not None:
        # Someone else's workspace is no different from one that does not exist.
        workspace_ids = [query.workspace_id] if query.workspace_id in roles else []
    events, cursor = services.list_events(request.db, workspace_ids, after=query.after, limit=query.limit)
    counts = services.headcounts(request.db, [event.id for event in events])
    return EventPage(events=[counted(request, event, counts[event.id]) for event in events], next=cursor)


@view_config(route_name="api_events", request_method="POST", renderer="json", permission=WORKSPACES_LIST,
             rate_limit="event_create", body=EventInput, response={201: OneEvent, 402: PLAN_LIMIT},
             links=links_to(EVENT_LINKS, event_id="$response.body#/event/id"))
def create_event(request):
    """Create an event in a workspace where the caller may edit events."""
    data = request.body_input
    workspace = workspaces.find_workspace(request.db, data.workspace_id)
    if workspace is None or workspace.id not in request.identity.roles:
        raise APIError(422, "validation_failed", "Some fields are invalid.",
                       fields={"workspace_id": "is not a workspace of yours"})
    resource = WorkspaceResource(request, workspace)
    if not request.has_permission(EVENTS_EDIT, resource):
        raise APIError(403, "forbidden", "Your role cannot create events here.", required=EVENTS_EDIT,
                       role=request.identity.roles[workspace.id])
    event = services.create_event(request.ctx, workspace.id, data)
    return OneEvent(event=counted(request, event, services.Headcount()))


@view_config(route_name="api_event_duplicate", request_method="POST", renderer="json", permission=EVENTS_EDIT,
             rate_limit="event_create", body=DuplicateInput,
             response={200: CopiedAlready, 201: OneEvent, 402: PLAN_LIMIT},
             links=links_to(EVENT_LINKS, event_id="$response.body#/event/id"))
def duplicate_event(context, request):
    """A draft copy of the event (its details, look and questions; with
    ``with_guests``, its guest list without links or answers). The same copy
    asked for again within 30 seconds answers the first one with 200."""
    made = copies.duplicate_event(request.ctx, context.event, request.body_input)
    counts = services.headcounts(request.db, [made.event.id])
    return (OneEvent if made.created else CopiedAlready)(event=counted(request, made.event, counts[made.event.id]))


def person_only(request) -> None:
    if request.identity.user is None:
        raise APIError(403, "forbidden", "Answer alerts are emailed to a person: an API key has none.")


@view_config(route_name="api_event_alerts", request_method="GET", renderer="json", permission=GUESTS_VIEW,
             response=AlertOut)
def get_alerts(context, request):
    """How the caller hears of this event's answers by email."""
    person_only(request)
    return AlertOut(mode=alerts.alert_mode(request.db, context.event.id, request.ctx.actor_id))


@view_config(route_name="api_event_alerts", request_method="PUT", renderer="json", permission=GUESTS_VIEW,
             body=AlertInput, response=AlertOut)
def set_alerts(context, request):
    """Hear of each answer, get a daily digest, or neither; setting the same
    mode again changes nothing."""
    person_only(request)
    return AlertOut(mode=alerts.set_alert(request.ctx, context.event, request.body_input.mode))


@view_config(route_name="api_event", request_method="GET", renderer="json", permission=EVENTS_VIEW,
             response=OneEvent)
def get_event(context, request):
    """One event with its headcount."""
    counts = services.headcounts(request.db, [context.event.id])
    return OneEvent(event=counted(request, context.event, counts[context.event.id]))


@view_config(route_name="api_event", request_method="PATCH", renderer="json", permission=EVENTS_EDIT,
             body=EventFields, response={200: ChangedEvent, 402: PLAN_LIMIT})
def update_event(context, request):
    """Change any of the event's fields (a new theme colour needs a plan with branding: 402 without)."""
    data = request.body_input
    event = services.update_event(request.ctx, context.event, data)
    return ChangedEvent(event=EventOut.of(event, cover_url=services.cover_url(request.ctx, event)))


@view_config(route_name="api_event", request_method="DELETE", permission=EVENTS_EDIT,
             response={204: None})
def delete_event(context, request):
    """Delete the event."""
    services.delete_event(request.ctx, context.event)
    return HTTPNoContent()


# --- guests ------------------------------------------------------------------


def guests_out(request, event, guests) -> list[GuestOut]:
    """The guests as the API shows them, each with what became of their invitation."""
    states = deliveries.invitation_deliveries(request.db, event.workspace_id, guests, event.timezone)
    return [GuestOut.of(guest, delivery=DeliveryOut.of(states[guest.id]))
            for guest in guests]


# What a page of the list reads of each guest: the columns behind GuestOut's
# fields (its delivery aside) and the invitation that delivery is read from,
# as plain rows rather than ORM objects.
LISTED = services.Listing(*(getattr(Guest, field.validation_alias or name)
                            for name, field in GuestOut.model_fields.items() if name != "delivery"),
                          Guest.invitation_id)


@view_config(route_name="api_guests", request_method="GET", renderer="json", permission=GUESTS_VIEW,
             query=GuestQuery, response={200: GuestPage, 400: INVALID_CURSOR})
def list_guests(context, request):
    """The guest list by name; search with ``q``, filter by ``response``,
    ``flagged`` or ``invitation`` (``not_invited``, ``not_opened``)."""
    query = request.query_input
    event = context.event
    rows, cursor = services.list_guests(request.db, event.id, after=query.after,
                                        limit=query.limit, search=query.q, response=query.response,
                                        flagged=query.flagged, invitation=query.invitation, listing=LISTED)
    states = deliveries.invitation_deliveries(request.db, event.workspace_id, rows, event.timezone)
    # The whole page validated in one call, from each row's columns by name.
    return GuestPage.model_validate({"guests": [{**row._asdict(), "delivery": states[row.id]} for row in rows],
                                     "next": cursor})


@view_config(route_name="api_guests", request_method="POST", renderer="json", permission=GUESTS_EDIT,
             body=GUESTS, response={201: OneGuest | GuestList, 402: PLAN_LIMIT, 409: EMAIL_TAKEN},
             links=links_to(GUEST_LINKS, event_id="$request.path.event_id", guest_id="$response.body#/guest/id"))
def add_guests(context, request):
    """Add one guest (an object) or up to ``guests.max_batch`` (an array), all or nothing."""
    data = request.body_input
    guests = services.add_guests(request.ctx, context.event, data.items)
    if data.many:
        return GuestList(guests=guests_out(request, context.event, guests))
    return OneGuest(guest=guests_out(request, context.event, guests)[0])


@view_config(route_name="api_guest", request_method="GET", renderer="json", permission=GUESTS_VIEW,
             response=OneGuest)
def get_guest(context, request):
    """One guest and their answer."""
    return OneGuest(guest=guests_out(request, context.event, [context.record])[0])


@view_config(route_name="api_guest", request_method="PATCH", renderer="json", permission=GUESTS_EDIT,
             body=GuestFields, response={200: OneGuest, 409: EMAIL_TAKEN})
def update_guest(context, request):
    """Change any of the guest's fields."""
    data = request.body_input
    guest = services.update_guest(request.ctx, context.event, context.record, data)
    return OneGuest(guest=guests_out(request, context.event, [guest])[0])


@view_config(route_name="api_guest", request_method="DELETE", permission=GUESTS_EDIT,
             response={204: None})
def delete_guest(context, request):
    """Remove the guest from the list: hidden at once, their link stops
    working; ``restore`` puts them back within ``guests.undo_seconds``."""
    removals.remove_guest(request.ctx, context.event, context.record)
    return HTTPNoContent()


@view_config(route_name="api_guest_restore", request_method="POST", renderer="json", permission=GUESTS_EDIT,
             response={200: OneGuest, 402: PLAN_LIMIT, 409: UNDO_REFUSED})
def restore_guest(context, request):
    """Undo a removal, within ``guests.undo_seconds``: the guest is back
    with their answer and link (on the waitlist if their place was taken
    meanwhile). A guest already back is returned as is. 409 ``undo_expired``
    past the window, ``conflict`` when another guest took their address;
    404 once the guest is purged."""
    guest = removals.restore_guest(request.ctx, context.event, parse_id(request, "guest_id"))
    return OneGuest(guest=guests_out(request, context.event, [guest])[0])
