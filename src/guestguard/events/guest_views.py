"""The guest's pages: the invitation, the RSVP form and the calendar file.

Guests have no account and no session: the token in the address is their
credential. So the RSVP form carries no CSRF token (``require_csrf=False``):
CSRF guards *ambient* credentials (cookies), and a page that could forge this
POST would already need the token. Nothing here depends on a cookie; the
thank-you message is a flash, which simply does not show when cookies are off.

Every page is ``no-store`` with ``Referrer-Policy: no-referrer`` (the token is
in the URL), and an unusable token gets one neutral 404 page."""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
import uuid
from dataclasses import fields
from urllib.parse import quote, urlsplit

from markupsafe import Markup
from pyramid.renderers import render_to_response
from pyramid.response import Response
from pyramid.view import view_config

from guestguard import timefmt
from guestguard.checkin import passes
from guestguard.db import utcnow
from guestguard.events import branding, invitations, outbound, questions, seats, services
from guestguard.events.models import MAYBE, NO, YES
from guestguard.events.schemas import RsvpInput
from guestguard.events.services import EventsError
from guestguard.guard import access
from guestguard.guard.access import EventRow, GuestRow, TokenUse
from guestguard.guard.models import ANSWER, CALENDAR, OK, VIEW
from guestguard.permissions import EVENTS_VIEW
from guestguard.web import OMIT, Field, Form, Submitted, content_security_policy, private, redirect, sentence

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
    if guest.response == YES and guest.waitlisted_at is not None:
        return "You said yes, and you're on the waitlist"
    if guest.response == YES:
        if guest.plus_ones_coming:
            return f"You said yes, with {invitations.plus_ones_phrase(guest.plus_ones_coming)}"
        return "You said yes"
    if guest.response == NO:
        return "You said no"
    if guest.response == MAYBE:
        return "You said maybe"
    return ""


def theme_style(request, event: EventRow) -> str:
    """The event's colours as a style element's text ("" for the house's),
    allowed by this response's CSP through its hash: no inline style
    attribute, and the policy stays closed to any other style."""
    if not event.theme_colour:
        return ""
    css = f".invitation.themed{{--theme:{event.theme_colour};--theme-ink:{branding.ink_for(event.theme_colour)}}}"
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    request.response.headers["Content-Security-Policy"] = content_security_policy(
        {"style-src": [f"'sha256-{digest}'"]})
    return css


def preselected(request) -> str:
    """``?answer=yes`` from the email's one-tap buttons: the choice shown
    ticked. Nothing is recorded until the guest sends the form (a link
    scanner following every link in the email answers nothing)."""
    wanted = request.GET.get("answer", "")
    return wanted if wanted in (YES, NO, MAYBE) else ""


def page(request, found: TokenUse, *, status: int = 200,
         errors: dict[str, str] | None = None, form: dict[str, str] | None = None,
         refusal: EventsError | None = None, preview: dict | None = None) -> dict:
    """The invitation page's values; ``preview`` (the host's look at it:
    ``back_url``) shows it with no token, its form not to be sent."""
    private(request, status)
    guest, event, latest = found.guest, found.event, found.latest
    closed = invitations.rsvp_refusal(event)
    chosen = preselected(request) if form is None else ""
    if form is None:
        form = {"response": chosen or guest.response or "", "plus_ones": str(guest.plus_ones_coming or 0),
                "dietary": latest.dietary if latest else "", "message": latest.message if latest else "",
                "plus_one_names": list(guest.plus_one_names or []), "answers": dict(guest.answers or {})}
    faces = None if preview else passes.for_guest(request.ctx, found.link, guest, event, request.matchdict["token"])
    return {
        "guest": guest, "event": event, "token": "" if preview else request.matchdict["token"],
        "preview": preview,
        # segno's own SVG of our secret (base32 letters): no input of anyone's.
        "guest_pass": faces, "pass_svg": Markup(passes.qr_svg(faces.secret)) if faces else "",  # noqa: S704
        "closes_at": invitations.rsvp_closes_at(event),
        "closed": closed, "cancelled": closed is not None and closed.code == "event_cancelled",
        "answer": answer_sentence(guest), "answers": ANSWERS,
        "plus_ones_phrase": invitations.plus_ones_phrase,
        "errors": errors or {}, "form": form, "refusal": refusal, "chosen": chosen,
        "theme_style": theme_style(request, event), "cover_url": services.cover_url(request.ctx, event),
        "map_url": outbound.map_url(event.venue),
        "google_calendar_url": outbound.google_calendar_url(event),
        "outlook_calendar_url": outbound.outlook_calendar_url(event),
        "waitlist_position": seats.waitlist_position(request.db, guest) if guest.waitlisted_at else None,
        "question_field": questions.field_name, "kinds": questions.KINDS,
    }


@view_config(route_name="access", request_method="GET", renderer=PAGE, rate_limit="invitation_page")
def invitation_page(request):
    found = access.use_token(request.ctx, request.matchdict["token"], VIEW)
    if found is None:
        return invalid(request)
    if request.method == "GET" and access.is_person(request.ctx):
        invitations.record_open(request.ctx, found.link, found.guest)
    return page(request, found)


@view_config(route_name="event_invitation_preview", request_method="GET", renderer=PAGE, permission=EVENTS_VIEW)
def invitation_preview(context, request):
    """The invitation page as a guest sees it, for the host: a sample guest
    with the event's plus-ones; it records nothing."""
    event = context.event
    row = EventRow(**{column.name: getattr(event, column.name) for column in fields(EventRow)})
    guest = GuestRow(id=uuid.uuid4(), workspace_id=event.workspace_id, event_id=event.id, name="Grace",
                     plus_ones_allowed=event.default_plus_ones, response=None, plus_ones_coming=0,
                     responded_at=None, opened_at=None, plus_one_names=[], answers={}, waitlisted_at=None)
    back = request.route_path("event_send", event_id=event.id)
    return page(request, TokenUse(outcome=OK, guest=guest, event=row), preview={"back_url": back})


def replies(request, event: EventRow) -> dict:
    """The form's plus-ones' names and answers to the host's questions."""
    return {"plus_one_names": [name.strip() for name in request.POST.getall("plus_one_name")][:20],
            "answers": {question["id"]: request.POST.get(questions.field_name(question), "").strip()
                        for question in event.questions or []}}


def reply_errors(event: EventRow, fields: dict[str, str]) -> dict[str, str]:
    """The questions' problems as the page words them."""
    labels = {"plus_one_names": "The names of your guests", "answers": "Your answers"}
    labels.update({questions.field_name(question): question["label"] for question in event.questions or []})
    return {name: sentence(name, message, labels) for name, message in fields.items()}


def read_answer(request, guest: GuestRow, event: EventRow) -> Submitted:
    """The RSVP form, the plus-ones the guest may bring checked too, and
    the names and questions (every problem at once)."""
    given = replies(request, event)
    form = RSVP_FORM.read(request, assume={"response": YES}, extra=given)
    if form.model is not None and form.model.response != NO:
        try:
            invitations.check_plus_ones(guest, form.model.plus_ones)
        except EventsError as error:
            for name, message in error.extra["fields"].items():
                form.refuse(name, message)
    if form.model is not None:
        plus_ones = 0 if form.model.response == NO else form.model.plus_ones
        try:
            questions.check_reply(event, form.model.response, plus_ones, given["plus_one_names"], given["answers"])
        except EventsError as error:
            form.errors.update(reply_errors(event, error.extra["fields"]))
    return form


@view_config(route_name="rsvp", request_method="POST", renderer=PAGE, rate_limit="rsvp", require_csrf=False)
def rsvp(request):
    found = access.use_token(request.ctx, request.matchdict["token"], ANSWER)
    if found is None:
        return invalid(request)
    form = read_answer(request, found.guest, found.event)
    typed = {**RSVP_FORM.typed(request), **replies(request, found.event)}
    if not form.ok:
        return page(request, found, status=422, errors=form.errors, form=typed)
    data = form.model
    try:
        _, new = invitations.submit_rsvp(request.ctx, found.link, found.guest, found.event, data,
                                         request.matchdict["token"])
    except EventsError as error:
        if error.code == "validation_failed":
            return page(request, found, status=422, errors=form.refused(error), form=typed)
        if error.code == "event_full":
            return page(request, found, status=409, errors=form.refused(error), form=typed)
        return page(request, found, status=error.status, refusal=error)
    thanks = {YES: "Thank you! We've let your host know you're coming.",
              NO: "Thank you for letting your host know you can't come.",
              MAYBE: "Thank you! Your host knows you might come."}[data.response]
    if found.guest.waitlisted_at is not None:
        thanks = ("The event is full for now, so you're on the waitlist. We'll let you know "
                  "as soon as a place opens up.")
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
    (escaping, lines folded at 75 octets, CRLF). Times are in UTC. It links
    back to the guest's page (URL and in the description), where the guest
    answers: the file stays with the guest, like the email holding the link."""
    # Imported with the first calendar file (3 MiB a web process need not
    # hold until a guest asks for one).
    import icalendar

    ends = event.ends_at or event.starts_at + dt.timedelta(hours=2)
    # Our own name, not the request's Host header, which the caller chooses.
    host = urlsplit(request.registry.settings["app.base_url"]).hostname or "guestguard"
    page_url = request.ctx.url("access", token=request.matchdict["token"])
    # The time in the event's zone and on its clock, as the invitation says
    # it: the calendar shows the time in the reader's own zone.
    when = f"When: {timefmt.long_span(event.starts_at, event.ends_at, event.timezone)}"
    description = "\n\n".join(part for part in (event.description, event.host_message, when,
                                                 f"Your invitation: {page_url}") if part)
    cal = icalendar.Calendar()
    cal.add("version", "2.0")
    cal.add("prodid", "-//GuestGuard//Invitation//EN")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    item = icalendar.Event()
    item.add("uid", f"{event.id}-{guest.id}@{host}")
    # The same UID with a higher SEQUENCE: calendars replace what they hold.
    item.add("sequence", event.sequence)
    item.add("dtstamp", utcnow())
    item.add("dtstart", event.starts_at.astimezone(dt.UTC))
    item.add("dtend", ends.astimezone(dt.UTC))
    item.add("summary", event.name)
    item.add("url", page_url)
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
    response.content_disposition = calendar_disposition(found.event.name)
    private_headers(response)
    return response



def calendar_disposition(event_name: str) -> str:
    """``attachment`` named after the event: "Midsummer Gala.ics", with the
    RFC 6266 ``filename*`` for names beyond ASCII."""
    safe = re.sub(r"[^A-Za-z0-9 ._-]+", "", event_name).strip(" .")[:80] or "invitation"
    full = re.sub(r"[\x00-\x1f\x7f/\\:*?\"<>|]+", "", event_name).strip(" .")[:80] or "invitation"
    return f'attachment; filename="{safe}.ics"; filename*=UTF-8\'\'{quote(full + ".ics")}'


# --- the cover image --------------------------------------------------------------

COVER_CACHE_SECONDS = 86400


@view_config(route_name="event_cover", request_method="GET")
def event_cover(request):
    """A cover at its unguessable address; the same 404 for a wrong
    signature, an unknown, replaced or removed cover and a deleted event."""
    try:
        cover_id = uuid.UUID(request.matchdict["cover_id"])
    except ValueError:
        return invalid_cover(request)
    if not branding.cover_signed(request.registry.settings, cover_id, request.matchdict["signature"]):
        return invalid_cover(request)
    cover = services.find_cover(request.db, cover_id)
    if cover is None:
        return invalid_cover(request)
    response = Response(body=cover.data, content_type=cover.content_type)
    # One address, one image (a new upload gets a new address): cacheable,
    # but not for ever, as a removed cover must go away.
    response.cache_control.public = True
    response.cache_control.max_age = COVER_CACHE_SECONDS
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Disposition"] = "inline"
    return response


def invalid_cover(request) -> Response:
    response = Response(status=404, body=b"Not found", content_type="text/plain", charset="utf-8")
    response.cache_control.no_store = True
    return response
