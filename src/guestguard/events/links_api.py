"""The invitation API: hosts issue, revoke and send personal links; guests
read their invitation and answer with the token alone (no login, no cookie).

Every unusable token (garbage, unknown, revoked, a deleted event) gets the
very same 404 ``invalid_link``; the token is never logged or audited."""
from __future__ import annotations

from typing import Literal

from pyramid.httpexceptions import HTTPNoContent
from pyramid.view import view_config

from guestguard import timefmt
from guestguard.errors import json_error, refusal
from guestguard.events import invitations
from guestguard.guard import access as token_access
from guestguard.events.guest_views import private_headers
from guestguard.events.models import Event, Guest, Rsvp
from guestguard.guard.models import ANSWER, VIEW
from guestguard.events.schemas import RsvpInput
from guestguard.events.services import EventsError
from guestguard.permissions import GUESTS_EDIT
from guestguard.validation import Input, parse_json, read_json, validate


class SendInput(Input):
    channel: Literal["email", "sms"] | None = None


def no_store(request) -> None:
    """A response carrying a token, or reached through one."""
    private_headers(request.response)


def invalid_link(request):
    response = json_error(request, 404, "invalid_link", invitations.INVALID_LINK)
    private_headers(response)
    return response


def iso(moment):
    return moment.isoformat() if moment is not None else None


def invitation_json(event: Event, guest: Guest, latest: Rsvp | None) -> dict:
    """What a guest may know: their own invitation, nothing about others."""
    zone = event.timezone
    closed = invitations.rsvp_refusal(event)
    return {
        "guest": {
            "name": guest.name, "plus_ones_allowed": guest.plus_ones_allowed,
            "response": guest.response, "plus_ones_coming": guest.plus_ones_coming,
            "dietary": latest.dietary if latest else "", "message": latest.message if latest else "",
            "responded_at": iso(timefmt.in_zone(guest.responded_at, zone)),
        },
        "event": {
            "name": event.name, "description": event.description, "venue": event.venue,
            "starts_at": iso(timefmt.in_zone(event.starts_at, zone)),
            "ends_at": iso(timefmt.in_zone(event.ends_at, zone)),
            "timezone": zone, "when": timefmt.event_long_span(event),
            "rsvp_deadline": iso(timefmt.in_zone(event.rsvp_deadline, zone)),
            "host_message": event.host_message, "status": event.status,
        },
        "rsvp": {
            "open": closed is None,
            "closes_at": iso(timefmt.in_zone(invitations.rsvp_closes_at(event), zone)),
            "closed_reason": closed.code if closed else None,
        },
    }


# --- hosts -------------------------------------------------------------------


@view_config(route_name="api_guest_tokens", request_method="POST", renderer="json", permission=GUESTS_EDIT,
             rate_limit="link_issue")
def issue_token(context, request):
    """A new personal link; the previous one stops working. Shown this once."""
    raw = invitations.issue_link(request.ctx, context.record)
    no_store(request)
    request.response.status = 201
    return {"token": raw, "url": invitations.access_url(request.ctx, raw), "guest_id": str(context.record.id)}


@view_config(route_name="api_guest_tokens", request_method="DELETE", permission=GUESTS_EDIT)
def revoke_token(context, request):
    invitations.revoke_link(request.ctx, context.record)
    return HTTPNoContent()


@view_config(route_name="api_guest_send", request_method="POST", renderer="json", permission=GUESTS_EDIT)
def send_one(context, request):
    """Send (or send again) the invitation, with a fresh link."""
    data = validate(SendInput, read_json(request)) if request.body else SendInput()
    guest = context.record
    channel = invitations.send_invitation(request.ctx, guest, context.event, data.channel)
    request.response.status = 202
    return {"guest_id": str(guest.id), "channel": channel, "invited_at": iso(guest.invited_at)}


@view_config(route_name="api_event_send", request_method="POST", renderer="json", permission=GUESTS_EDIT)
def send_all(context, request):
    """Invite every guest not invited yet."""
    sent = invitations.send_all(request.ctx, context.event)
    request.response.status = 202
    return {"queued": sent.queued, "skipped": sent.skipped}


# --- guests ------------------------------------------------------------------


def token_use(request, kind: str):
    return token_access.use_token(request.ctx, request.matchdict["token"], kind)


@view_config(route_name="api_access", request_method="GET", renderer="json", rate_limit="invitation_page")
def access(request):
    found = token_use(request, VIEW)
    if found is None:
        return invalid_link(request)
    link, guest, event = found
    if request.method == "GET" and token_access.is_person(request.ctx):
        invitations.record_open(request.ctx, link, guest)
    no_store(request)
    return invitation_json(event, guest, invitations.latest_rsvp(request.db, guest))


@view_config(route_name="api_rsvp", request_method="POST", renderer="json", rate_limit="rsvp")
def rsvp(request):
    found = token_use(request, ANSWER)
    if found is None:
        return invalid_link(request)
    link, guest, event = found
    data = parse_json(request, RsvpInput)
    try:
        answer, new = invitations.submit_rsvp(request.ctx, link, guest, event, data)
    except EventsError as error:
        response = refusal(request, error)
        response.cache_control.no_store = True
        return response
    no_store(request)
    body = invitation_json(event, guest, answer)
    body["recorded"] = new
    return body
