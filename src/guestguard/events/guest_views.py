"""The guest's pages: the invitation, the RSVP form and the calendar file.

Guests have no account and no session: the token in the address is their
credential. So the RSVP form carries no CSRF token (``require_csrf=False``):
CSRF guards *ambient* credentials (cookies), and a page that could forge this
POST would already need the token. Nothing here depends on a cookie; the
thank-you message is a flash, which simply does not show when cookies are off.

Every page is ``no-store`` with ``Referrer-Policy: no-referrer`` (the token is
in the URL), and an unusable token gets one neutral 404 page."""
from __future__ import annotations

import datetime as dt
from urllib.parse import urlsplit

import icalendar
from pyramid.renderers import render_to_response
from pyramid.response import Response
from pyramid.view import view_config

from guestguard.db import utcnow
from guestguard.events import invitations
from guestguard.events.models import MAYBE, NO, YES
from guestguard.events.schemas import RsvpInput
from guestguard.events.services import EventsError
from guestguard.guard import access
from guestguard.guard.access import EventRow, GuestRow, TokenUse
from guestguard.guard.models import ANSWER, CALENDAR, VIEW
from guestguard.web import OMIT, Field, Form, Submitted, private, redirect

PAGE = "guest/invitation.jinja2"
INVALID_PAGE = "guest/invalid.jinja2"
# A blank answer or number of guests is left out; without an answer the
# other fields are still checked (as if yes), so every problem shows at once.
RSVP_FORM = Form(
    RsvpInput,
    Field("response", "Your answer", blank=OMIT, choice="Choose yes, no or maybe."),
    Field("plus_ones", "Number of guests", blank=OMIT),
    Field("dietary", "Dietary needs"), Field("message", "Message to your host"),
    absent_as_blank=True)
ANSWERS = ((YES, "Yes, I'll be there"), (NO, "No, I can't come"), (MAYBE, "Maybe"))


def invalid(request) -> Response:
    """The one answer for garbage, unknown and revoked tokens alike."""
    response = render_to_response(INVALID_PAGE, {"status": 404}, request=request)
    response.status = 404
    private_headers(response)
    return response


def answer_sentence(guest: GuestRow) -> str:
    if guest.response == YES:
        if guest.plus_ones_coming:
            return f"You said yes, with {invitations.plus_ones_phrase(guest.plus_ones_coming)}"
        return "You said yes"
    if guest.response == NO:
        return "You said no"
    if guest.response == MAYBE:
        return "You said maybe"
    return ""


def page(request, found: TokenUse, *, status: int = 200,
         errors: dict[str, str] | None = None, form: dict[str, str] | None = None,
         refusal: EventsError | None = None) -> dict:
    private(request, status)
    guest, event, latest = found.guest, found.event, found.latest
    closed = invitations.rsvp_refusal(event)
    if form is None:
        form = {"response": guest.response or "", "plus_ones": str(guest.plus_ones_coming or 0),
                "dietary": latest.dietary if latest else "", "message": latest.message if latest else ""}
    return {
        "guest": guest, "event": event, "token": request.matchdict["token"],
        "closes_at": invitations.rsvp_closes_at(event),
        "closed": closed, "cancelled": closed is not None and closed.code == "event_cancelled",
        "answer": answer_sentence(guest), "answers": ANSWERS,
        "plus_ones_phrase": invitations.plus_ones_phrase,
        "errors": errors or {}, "form": form, "refusal": refusal,
    }


@view_config(route_name="access", request_method="GET", renderer=PAGE, rate_limit="invitation_page")
def invitation_page(request):
    found = access.use_token(request.ctx, request.matchdict["token"], VIEW)
    if found is None:
        return invalid(request)
    if request.method == "GET" and access.is_person(request.ctx):
        invitations.record_open(request.ctx, found.link, found.guest)
    return page(request, found)


def read_answer(request, guest: GuestRow) -> Submitted:
    """The RSVP form, the plus-ones the guest may bring checked too."""
    form = RSVP_FORM.read(request, assume={"response": YES})
    if form.model is not None and form.model.response != NO:
        try:
            invitations.check_plus_ones(guest, form.model.plus_ones)
        except EventsError as error:
            for name, message in error.extra["fields"].items():
                form.refuse(name, message)
    return form


@view_config(route_name="rsvp", request_method="POST", renderer=PAGE, rate_limit="rsvp", require_csrf=False)
def rsvp(request):
    found = access.use_token(request.ctx, request.matchdict["token"], ANSWER)
    if found is None:
        return invalid(request)
    form = read_answer(request, found.guest)
    typed = RSVP_FORM.typed(request)
    if not form.ok:
        return page(request, found, status=422, errors=form.errors, form=typed)
    data = form.model
    try:
        _, new = invitations.submit_rsvp(request.ctx, found.link, found.guest, found.event, data,
                                         request.matchdict["token"])
    except EventsError as error:
        if error.code == "validation_failed":
            return page(request, found, status=422, errors=form.refused(error), form=typed)
        return page(request, found, status=error.status, refusal=error)
    thanks = {YES: "Thank you! We've let your host know you're coming.",
              NO: "Thank you for letting your host know you can't come.",
              MAYBE: "Thank you! Your host knows you might come."}[data.response]
    request.session.flash(thanks if new else "Your answer is unchanged.", "success")
    response = redirect(request, request.route_path("access", token=request.matchdict["token"]))
    private_headers(response)
    return response


def private_headers(response) -> None:
    response.cache_control.no_store = True
    response.headers["Referrer-Policy"] = "no-referrer"


# --- the calendar file (RFC 5545) ----------------------------------------------


def calendar(request, guest: GuestRow, event: EventRow) -> bytes:
    """The event as an iCalendar file, written by the icalendar library
    (escaping, lines folded at 75 octets, CRLF). Times are in UTC."""
    ends = event.ends_at or event.starts_at + dt.timedelta(hours=2)
    # Our own name, not the request's Host header, which the caller chooses.
    host = urlsplit(request.registry.settings["app.base_url"]).hostname or "guestguard"
    description = "\n\n".join(part for part in (event.description, event.host_message) if part)
    cal = icalendar.Calendar()
    cal.add("version", "2.0")
    cal.add("prodid", "-//GuestGuard//Invitation//EN")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    item = icalendar.Event()
    item.add("uid", f"{event.id}-{guest.id}@{host}")
    item.add("dtstamp", utcnow())
    item.add("dtstart", event.starts_at.astimezone(dt.UTC))
    item.add("dtend", ends.astimezone(dt.UTC))
    item.add("summary", event.name)
    if event.venue:
        item.add("location", event.venue)
    if description:
        item.add("description", description)
    if event.status == "cancelled":
        item.add("status", "CANCELLED")
    cal.add_component(item)
    return cal.to_ical()


@view_config(route_name="access_ics", request_method="GET", rate_limit="invitation_page")
def access_ics(request):
    found = access.use_token(request.ctx, request.matchdict["token"], CALENDAR)
    if found is None:
        return invalid(request)
    response = Response(body=calendar(request, found.guest, found.event),
                        content_type="text/calendar", charset="utf-8")
    response.content_disposition = 'attachment; filename="invitation.ics"'
    private_headers(response)
    return response

