"""The invitation API: hosts issue, revoke and send personal links; guests
read their invitation and answer with the token alone (no login, no cookie).

Every unusable token (garbage, unknown, revoked, a deleted event) gets the
very same 404 ``invalid_link``; the token is never logged or audited."""
from __future__ import annotations

from pyramid.httpexceptions import HTTPNoContent
from pyramid.view import view_config

from guestguard import timefmt
from guestguard.contract import Body, Refused
from guestguard.errors import json_error
from guestguard.events import invitations, outbound, services
from guestguard.events.guest_views import private_headers
from guestguard.events.invitations import Answer
from guestguard.events.schemas import (
    GuestInvitation,
    InvitationSent,
    InvitationsSent,
    InvitedEvent,
    InvitedGuest,
    IssuedLink,
    RsvpAnswer,
    RsvpInput,
    RsvpState,
    SendInput,
)
from guestguard.guard import access as token_access
from guestguard.guard.access import EventRow, GuestRow
from guestguard.guard.models import ANSWER, VIEW
from guestguard.permissions import GUESTS_EDIT

UNSENDABLE = Refused("event_not_published", "event_cancelled")
INVALID_LINK = Refused("invalid_link")


def no_store(request) -> None:
    """A response carrying a token, or reached through one."""
    private_headers(request.response)


def invalid_link(request):
    response = json_error(request, 404, "invalid_link", invitations.INVALID_LINK)
    private_headers(response)
    return response


def invitation(request, event: EventRow, guest: GuestRow, latest: Answer | None, answer=GuestInvitation,
               **extra) -> GuestInvitation:
    """What a guest may know: their own invitation, nothing about others."""
    zone = event.timezone
    closed = invitations.rsvp_refusal(event)
    return answer(
        guest=InvitedGuest.of(guest, dietary=latest.dietary if latest else "",
                              message=latest.message if latest else "",
                              responded_at=timefmt.in_zone(guest.responded_at, zone),
                              waitlisted=guest.waitlisted_at is not None),
        event=InvitedEvent.of(event, starts_at=timefmt.in_zone(event.starts_at, zone),
                              ends_at=timefmt.in_zone(event.ends_at, zone), when=timefmt.event_long_span(event),
                              rsvp_deadline=timefmt.in_zone(event.rsvp_deadline, zone),
                              cover_url=services.cover_url(request.ctx, event),
                              map_url=outbound.map_url(event.venue)),
        rsvp=RsvpState(open=closed is None,
                       closes_at=timefmt.in_zone(invitations.rsvp_closes_at(event), zone),
                       closed_reason=closed.code if closed else None),
        **extra)


# --- hosts -------------------------------------------------------------------


@view_config(route_name="api_guest_tokens", request_method="POST", renderer="json", permission=GUESTS_EDIT,
             rate_limit="link_issue", shows_secret=True, response={201: IssuedLink, 409: UNSENDABLE},
             links={"access": {"token": "$response.body#/token"}, "rsvp": {"token": "$response.body#/token"}})
def issue_token(context, request):
    """A new personal link; the previous one stops working. Shown this once."""
    raw = invitations.issue_link(request.ctx, context.record, context.event)
    no_store(request)
    return IssuedLink(token=raw, url=invitations.access_url(request.ctx, raw), guest_id=context.record.id)


@view_config(route_name="api_guest_tokens", request_method="DELETE", permission=GUESTS_EDIT,
             response={204: None})
def revoke_token(context, request):
    """Revoke the guest's link: it stops working."""
    invitations.revoke_link(request.ctx, context.record)
    return HTTPNoContent()


@view_config(route_name="api_guest_send", request_method="POST", renderer="json", permission=GUESTS_EDIT,
             body=Body(SendInput, optional=True),
             response={202: InvitationSent, 402: Refused("plan_limit"), 409: UNSENDABLE,
                       422: Refused("no_contact", "channel_unavailable", "message_too_long")})
def send_one(context, request):
    """Send (or send again) the invitation, with a fresh link."""
    data = request.body_input
    guest = context.record
    sent = invitations.send_invitation(request.ctx, guest, context.event, data.channel)
    return InvitationSent(guest_id=guest.id, channel=sent.channel, queued=sent.queued, invited_at=guest.invited_at)


@view_config(route_name="api_event_send", request_method="POST", renderer="json", permission=GUESTS_EDIT,
             response={202: InvitationsSent, 409: UNSENDABLE})
def send_all(context, request):
    """Invite every guest not invited yet; those without contact are listed.
    One run at a time per event: a repeat invites only whoever is still not
    invited."""
    sent = invitations.send_all(request.ctx, context.event)
    return InvitationsSent.of(sent)


# --- guests ------------------------------------------------------------------


def token_use(request, kind: str):
    return token_access.use_token(request.ctx, request.matchdict["token"], kind)


@view_config(route_name="api_access", request_method="GET", renderer="json", rate_limit="invitation_page",
             response={200: GuestInvitation, 404: INVALID_LINK})
def access(request):
    """The guest's invitation, read with the token alone; records the first open."""
    found = token_use(request, VIEW)
    if found is None:
        return invalid_link(request)
    if request.method == "GET" and token_access.is_person(request.ctx):
        invitations.record_open(request.ctx, found.link, found.guest)
    no_store(request)
    return invitation(request, found.event, found.guest, found.latest)


@view_config(route_name="api_rsvp", request_method="POST", renderer="json", rate_limit="rsvp",
             body=RsvpInput, response={200: RsvpAnswer, 404: INVALID_LINK,
                                       409: Refused("rsvp_closed", "event_cancelled", "event_not_published",
                                                    "event_full")})
def rsvp(request):
    """The guest's answer, sent with the token alone; the same answer twice records once."""
    found = token_use(request, ANSWER)
    if found is None:
        return invalid_link(request)
    link, guest, event = found.link, found.guest, found.event
    data = request.body_input
    # A refusal is answered by the refusal deriver; every API answer is no-store.
    answer, new = invitations.submit_rsvp(request.ctx, link, guest, event, data,
                                           request.matchdict["token"])
    no_store(request)
    return invitation(request, event, guest, answer, RsvpAnswer, recorded=new)
