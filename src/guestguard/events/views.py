"""The host's pages: the dashboard, creating and editing events, the event
page with its guest list and headcount chart, and adding or editing guests.

Each view declares the permission of its JSON counterpart in ``api.py``.
Refusals from the services are rendered, never raised: pyramid_tm would roll
their audit rows back with the exception."""
from __future__ import annotations

import datetime as dt
import math
import uuid
from dataclasses import astuple

from pydantic_core import PydanticCustomError
from pyramid.httpexceptions import HTTPForbidden
from pyramid.response import Response
from pyramid.view import view_config
from sqlalchemy import select

from guestguard import timefmt
from guestguard.activity import feed
from guestguard.billing.services import BRANDING, PlanFeatureMissing, has_feature
from guestguard.checkin import services as checkin
from guestguard.db import utcnow
from guestguard.events import alerts, copies, deliveries, invitations, pages, previews, questions, removals, services
from guestguard.events.models import EVENT_STATUSES
from guestguard.events.schemas import (
    DuplicateInput,
    EventFields,
    EventInput,
    GuestFields,
    GuestInput,
    QuestionInput,
    check_times,
)
from guestguard.events.services import EventsError
from guestguard.guard import access, flags
from guestguard.guard.rules import ADVICE
from guestguard.pagination import InvalidCursor
from guestguard.permissions import ACCOUNT, EVENTS_EDIT, EVENTS_VIEW, GUESTS_CHECK_IN, GUESTS_EDIT, GUESTS_VIEW, granted
from guestguard.ratelimit import enforce
from guestguard.reminders import notices, services as reminders
from guestguard.web import CHECKBOX, DATETIME, LIST, NONE, OMIT, Field, Form, Submitted, flash, private, redirect
from guestguard.workspaces.models import Workspace
from guestguard.workspaces.resources import parse_id

TIME_FIELDS = ("starts_at", "ends_at", "rsvp_deadline")
STATUS_LABELS = {"draft": "Draft", "published": "Published", "cancelled": "Cancelled"}
STATUS_HINTS = {"draft": "only your team sees it", "published": "invitations can go out",
                "cancelled": "guests see that it is cancelled"}
# The guest list's filter chips: (value, label, what the filtered list is).
GUEST_FILTERS = (("", "Everyone", ""), ("yes", "Yes", "who answered yes"), ("maybe", "Maybe", "who answered maybe"),
                 ("no", "No", "who answered no"), ("pending", "No answer", "who have not answered"),
                 ("flagged", "Flagged", "flagged for review"),
                 ("not_invited", "Not invited", "not yet sent an invitation"),
                 ("not_opened", "Not opened", "sent an invitation they have not opened"))
FEED_SIZE = 20
# The built-in access rules in words; a plugin's rule shows under its name.
RULE_LABELS = {"networks": "Many networks", "devices": "Many people", "revoked_link": "Old link used",
               "rsvp_device": "Answered from another device", "burst": "Burst of opens",
               "link_preview": "Pasted into a chat or post", "programs": "A program collecting the link",
               "public_link": "On a public web page", "first_open_elsewhere": "First opened abroad"}
PAGE_SIZE = services.DEFAULT_PAGE_SIZE


# --- reading forms -------------------------------------------------------------

# Times are wall-clock times in the event's zone (datetime-local inputs); an
# empty optional field means "none". Every field is always sent.
EVENT_FORM = Form(
    EventInput,
    Field("name", "Name"), Field("description", "Description"), Field("venue", "Venue"),
    Field("starts_at", "Start", DATETIME, NONE), Field("ends_at", "End", DATETIME, NONE),
    Field("timezone", "Time zone"), Field("rsvp_deadline", "RSVP deadline", DATETIME, NONE),
    Field("default_plus_ones", "Plus-ones per guest", blank=OMIT), Field("host_message", "Message to guests"),
    Field("status", "Status", blank=OMIT, choice="Choose a status from the list."),
    Field("reply_to", "Reply-to address", blank=NONE),
    Field("invitation_channel", "Send invitations by", blank=NONE, choice="Choose how to send from the list."),
    Field("host_name", "Host name shown to guests"), Field("theme_colour", "Theme colour"),
    Field("capacity", "Capacity", blank=NONE), Field("ask_plus_one_names", kind=CHECKBOX),
    absent_as_blank=True, zone_field="timezone")
QUESTION_FORM = Form(
    QuestionInput,
    Field("label", "Question"), Field("kind", "Kind of answer", choice="Choose a kind of answer from the list."),
    Field("choices", "Choices", LIST), Field("required", kind=CHECKBOX))
EVENT_EDIT_FORM = EVENT_FORM.using(EventFields)
DUPLICATE_FORM = Form(
    DuplicateInput,
    Field("name", "Name"), Field("starts_at", "Start", DATETIME, NONE), Field("with_guests", kind=CHECKBOX),
    absent_as_blank=True)
GUEST_FORM = Form(
    GuestInput,
    Field("name", "Name"), Field("email", "Email", blank=NONE), Field("phone", "Phone", blank=NONE),
    Field("preferred_channel", "Send invitations by", blank=NONE, choice="Choose how to send from the list."),
    Field("plus_ones_allowed", "Plus-ones allowed", blank=OMIT), Field("group", "Group"),
    Field("tags", "Tags", LIST), Field("notes", "Notes"),
    absent_as_blank=True)
GUEST_EDIT_FORM = GUEST_FORM.using(GuestFields)


def read_event(request, form: Form, **extra) -> Submitted:
    """The event form, every problem at once: pydantic skips the check across
    fields when a field failed, so it is made here too."""
    submitted = form.read(request, extra=extra)
    values = submitted.values
    if (submitted.errors and values.get("starts_at")
            and not any(name in submitted.errors for name in (*TIME_FIELDS, "timezone"))):
        try:
            check_times(values["starts_at"], values.get("ends_at"), values.get("rsvp_deadline"),
                        values["timezone"])
        except PydanticCustomError as exc:  # a field_problem: its field and words
            if exc.context["field"] in TIME_FIELDS:
                submitted.refuse(exc.context["field"], exc.context["message"])
    return submitted


# --- page context ----------------------------------------------------------------


def event_values(event) -> dict[str, str]:
    """The event as the form shows it."""
    return {
        "name": event.name, "description": event.description, "venue": event.venue,
        "starts_at": timefmt.form_value(event.starts_at, event.timezone),
        "ends_at": timefmt.form_value(event.ends_at, event.timezone),
        "timezone": event.timezone,
        "rsvp_deadline": timefmt.form_value(event.rsvp_deadline, event.timezone),
        "default_plus_ones": str(event.default_plus_ones), "host_message": event.host_message,
        "status": event.status, "reply_to": event.reply_to or "", "host_name": event.host_name,
        "theme_colour": event.theme_colour, "capacity": str(event.capacity or ""),
        "ask_plus_one_names": event.ask_plus_one_names, "invitation_channel": event.invitation_channel or "",
    }


def guest_values(guest) -> dict[str, str]:
    return {"name": guest.name, "email": guest.email or "", "phone": guest.phone or "",
            "plus_ones_allowed": str(guest.plus_ones_allowed), "group": guest.group_name,
            "tags": ", ".join(guest.tags or []), "notes": guest.notes,
            "preferred_channel": guest.preferred_channel or ""}


def form_choices(request) -> dict:
    return {
        "zones": timefmt.place_zones(),
        "event_channels": channel_choices(request, "Email when the guest has an address, else a text"),
        "statuses": [(status, f"{STATUS_LABELS[status]} — {STATUS_HINTS[status]}") for status in EVENT_STATUSES],
    }


def warn_if_past(request, event) -> None:
    """A start in the past is allowed (an event entered afterwards), but rarely meant."""
    if event.starts_at < utcnow():
        flash(request, f"Note: it starts in the past ({timefmt.long_when(event.starts_at, event.timezone)}). "
                       "If that is a typo, edit the start.", "info")


def channel_choices(request, automatic: str) -> list[tuple[str, str]]:
    """The channels that reach guests and have a provider here, for the
    forms' "send invitations by" choice; "" is ``automatic``."""
    served = request.registry["notifications.providers"]
    return [("", automatic)] + [
        (name, channel.label or {"email": "Email", "sms": "Text message"}.get(name, name))
        for name, channel in request.registry["notifications.channels"].items()
        if channel.contact_field and name in served]


def phone_hint(request, event) -> dict[str, str]:
    """The country a number without + is read in, for the guest form's hint."""
    import phonenumbers

    region = services.phone_region(request.ctx, event)
    return {"name": timefmt.country_names().get(region, region),
            "code": str(phonenumbers.country_code_for_region(region))}


def event_page_base(request, context, status: int = 200, **extra) -> dict:
    """What every page of one event shows: the event, its workspace, and
    what the caller may do there."""
    private(request, status)
    allowed = granted(request.identity, context.workspace_id)
    event = context.event
    return {
        "event": event, "workspace": context.workspace,
        "role": request.identity.roles.get(context.workspace_id),
        "can": {"edit": EVENTS_EDIT in allowed, "view_guests": GUESTS_VIEW in allowed,
                "edit_guests": GUESTS_EDIT in allowed, "check_in": GUESTS_CHECK_IN in allowed},
        "status_labels": STATUS_LABELS,
        "cursor_of": feed.cursor_of,
        "rule_labels": RULE_LABELS,
        "phone_region": phone_hint(request, event),
        "guest_channels": channel_choices(request, "As the event says"),
        **extra,
    }


# --- the dashboard -----------------------------------------------------------------


@view_config(route_name="dashboard", request_method="GET", permission=ACCOUNT,
             renderer="events/dashboard.jinja2")
def dashboard(request):
    """Upcoming events of every workspace one belongs to, soonest first, with
    their headcounts: four queries whatever the number of workspaces."""
    private(request)
    roles = request.identity.roles
    names = dict(request.db.execute(select(Workspace.id, Workspace.name)
                                    .where(Workspace.id.in_(list(roles)))).all()) if roles else {}
    now = utcnow()
    upcoming = pages.upcoming_events(request.db, names, now)
    past = pages.past_events(request.db, names, now)
    counts = services.headcounts(request.db, [event.id for event in upcoming + past])
    sections = []
    for workspace_id, role in roles.items():  # personal first, then by name
        if workspace_id not in names:
            continue
        sections.append({
            "id": workspace_id, "name": names[workspace_id], "role": role,
            "can_create": EVENTS_EDIT in granted(request.identity, workspace_id),
            "upcoming": [event for event in upcoming if event.workspace_id == workspace_id],
            "past": [event for event in past if event.workspace_id == workspace_id],
        })
    return {
        "sections": sections, "counts": counts, "status_labels": STATUS_LABELS,
        "any_events": bool(upcoming or past),
    }


# --- creating an event -------------------------------------------------------------


def new_event_page(request, resource, status: int = 200, values=None, errors=None) -> dict:
    private(request, status)
    fresh = {"timezone": services.workspace_zone(request.db, resource.workspace_id), "browser_zone": True,
             "status": "draft", "default_plus_ones": "0", "theme_colour": "", "capacity": "",
             "ask_plus_one_names": False,
             "host_name": services.default_host_name(request.db, resource.workspace_id, request.ctx.actor_id)}
    return {"workspace": resource.workspace, "values": values or fresh,
            "errors": errors or {}, **form_choices(request)}


@view_config(route_name="event_new", request_method="GET", permission=EVENTS_EDIT,
             renderer="events/new.jinja2")
def new_event_form(context, request):
    return new_event_page(request, context)


@view_config(route_name="event_new", request_method="POST", permission=EVENTS_EDIT,
             renderer="events/new.jinja2", rate_limit="event_create")
def new_event(context, request):
    resource = context
    form = read_event(request, EVENT_FORM, workspace_id=resource.workspace_id)
    if not form.ok:
        return new_event_page(request, resource, 400, EVENT_FORM.typed(request), form.errors)
    try:
        event = services.create_event(request.ctx, resource.workspace_id, form.model)
    except PlanFeatureMissing as missing:
        return new_event_page(request, resource, missing.status, EVENT_FORM.typed(request), form.refused(missing))
    flash(request, f"Event “{event.name}” created. Add your guests next.")
    warn_if_past(request, event)
    return redirect(request, request.route_path("event_page", event_id=event.id))


# --- answer alerts ------------------------------------------------------------------

ALERT_CHOICES = ((alerts.EACH, "Each answer, as it comes"), (alerts.DAILY, "A daily digest at 8:00"),
                 (alerts.OFF, "No emails"))
ALERT_SAVED = {alerts.EACH: "You’ll get an email for each answer to this event.",
               alerts.DAILY: "You’ll get a digest of the day’s answers at 8:00 (event time), when there are any.",
               alerts.OFF: "You won’t get emails about answers to this event."}


@view_config(route_name="event_alerts", request_method="POST", permission=GUESTS_VIEW)
def set_alerts(context, request):
    """The "Email me" choice on the event page."""
    if request.identity.user is None:
        raise HTTPForbidden("Answer alerts are emailed to a person: an API key has none.")
    mode = request.POST.get("mode", "")
    if mode not in alerts.MODES:
        flash(request, "Choose how to hear of answers from the list.", "error")
    else:
        flash(request, ALERT_SAVED[alerts.set_alert(request.ctx, context.event, mode)])
    return redirect(request, request.route_path("event_page", event_id=context.event.id, _anchor="alerts-title"))


# --- duplicating an event ------------------------------------------------------------


def duplicate_page(request, context, status: int = 200, values=None, errors=None) -> dict:
    event = context.event
    page = event_page_base(request, context, status)
    page.update(values=values or {"name": event.name, "starts_at": timefmt.form_value(event.starts_at, event.timezone),
                                  "with_guests": False},
                errors=errors or {}, guests=services.headcounts(request.db, [event.id])[event.id].guests)
    return page


@view_config(route_name="event_duplicate", request_method="GET", permission=EVENTS_EDIT,
             renderer="events/duplicate.jinja2")
def duplicate_form(context, request):
    return duplicate_page(request, context)


@view_config(route_name="event_duplicate", request_method="POST", permission=EVENTS_EDIT,
             renderer="events/duplicate.jinja2", rate_limit="event_create")
def duplicate_event(context, request):
    """A draft copy, with the guest list if asked; a repeated click opens the first copy."""
    form = DUPLICATE_FORM.read(request, zone=context.event.timezone)
    errors, made = form.errors, None
    if form.ok:
        try:
            made = copies.duplicate_event(request.ctx, context.event, form.model)
        except EventsError as error:
            errors = form.refused(error)
    if made is None:
        return duplicate_page(request, context, 400, DUPLICATE_FORM.typed(request), errors)
    guests = f" with its {made.guests} guest{'' if made.guests == 1 else 's'} (none invited yet)" if made.guests else ""
    flash(request, f"“{made.event.name}” was created as a draft{guests}. Check the details, then publish it."
          if made.created else f"“{made.event.name}” was already copied moments ago: here it is.")
    return redirect(request, request.route_path("event_page", event_id=made.event.id))


# --- the event page and its chart ----------------------------------------------------


def list_query(q: str, response: str, after: str | None = None) -> dict[str, str]:
    return {name: value for name, value in (("q", q), ("response", response), ("after", after)) if value}


@view_config(route_name="event_page", request_method="GET", permission=EVENTS_VIEW,
             renderer="events/event.jinja2")
def event_page(context, request):
    """The event, its headcount, activity and guest list; with ``live=1``,
    only the parts that follow the activity, for the page's script."""
    event = context.event
    if request.GET.get("live") == "1":
        request.override_renderer = "events/live.jinja2"
    q = request.GET.get("q", "").strip()[:100]
    response = request.GET.get("response", "")
    if response not in {value for value, _, _ in GUEST_FILTERS}:
        response = ""
    after = request.GET.get("after") or None
    page = event_page_base(request, context)
    guests, cursor, problem, items = [], None, None, []
    if page["can"]["view_guests"]:
        try:
            guests, cursor = services.list_guests(
                request.db, event.id, after=after, limit=PAGE_SIZE, search=q,
                response=response if response in services.RESPONSE_FILTERS else None,
                flagged=response == "flagged",
                invitation=response if response in services.INVITATION_STATES else None)
        except InvalidCursor:
            request.response.status = 400
            problem = "That page of the guest list is no longer valid. Start again from the first page."
        items = feed.latest(request.db, event.id, FEED_SIZE)
    counts = services.headcounts(request.db, [event.id])[event.id]
    flagged = services.flagged_guests(request.db, event.id) if page["can"]["view_guests"] else 0
    sizes = {"": counts.guests, "yes": counts.yes + counts.waitlisted, "maybe": counts.maybe, "no": counts.no,
             "pending": counts.pending, "flagged": flagged, "not_invited": counts.guests - counts.invited,
             "not_opened": counts.not_opened}
    delivery = deliveries.invitation_deliveries(request.db, event.workspace_id, guests, event.timezone)
    here = lambda **query: request.route_path("event_page", event_id=event.id, _query=query)  # noqa: E731
    page.update(
        counts=counts, summary=pages.headcount_summary(counts), guests=guests, problem=problem,
        q=q, response=response, paged=after is not None,
        filters=[{"value": value, "label": label, "meaning": meaning, "size": sizes[value],
                  "url": here(**list_query(q, value))} for value, label, meaning in GUEST_FILTERS],
        filtered=bool(q or response),
        next_url=here(**list_query(q, response, cursor)) if cursor else None,
        first_url=here(**list_query(q, response)),
        # A new address when the counts change, so the browser fetches the new chart.
        chart_url=request.route_path("event_headcount_svg", event_id=event.id,
                                     _query={"v": "-".join(str(value) for value in astuple(counts))}),
        feed=items, feed_since=feed.cursor_of(items[0]) if items else feed.now_cursor(),
        flagged=flagged, delivery=delivery, alert_choices=ALERT_CHOICES,
        alert_mode=alerts.alert_mode(request.db, event.id, request.ctx.actor_id),
        channel_words=deliveries.CHANNEL_WORDS, delivery_labels=deliveries.LABELS,
        delivery_summary=deliveries.delivery_summary(request.db, event.workspace_id, event.id)
        if page["can"]["view_guests"] else {},
        door=checkin.counts(request.db, event.id) if page["can"]["check_in"] else None,
        reminders=reminders.schedule(request.db, event) if page["can"]["view_guests"] else [],
        max_reminders=request.registry.settings["reminders.max_per_event"],
        notice=(notices.recipients(request.db, event) or None)
        if page["can"]["edit_guests"] and notices.pending(event) else None,
        reminder_preview=(reminders.preview(request.ctx, event, kind=request.GET["preview"])
                          if page["can"]["edit"] and request.GET.get("preview") in ("reminder", "nudge")
                          else None),
        rollup=(questions.rollup(event.questions, pages.question_answers(request.db, event.id))
                if event.questions and page["can"]["view_guests"] else []),
        undo=undo_offers(request) if page["can"]["edit_guests"] and request.GET.get("live") != "1" else [],
    )
    return page


UNDO = "undo"


def offer_undo(request, guest, until) -> None:
    """After a removal, the next page offers to put the guest back, until ``until``."""
    request.session.flash({"guest_id": str(guest.id), "name": guest.name, "until": until.isoformat()}, UNDO)


def undo_offers(request) -> list[dict]:
    """The removals to announce, once each, with the seconds their undo has
    left (0: the window has closed, the page only says what happened)."""
    if not request.cookies.get("gg_flash"):
        return []
    now = utcnow()
    return [{**offer, "seconds_left": max(0, math.ceil((dt.datetime.fromisoformat(offer["until"]) - now)
                                                        .total_seconds()))}
            for offer in request.session.pop_flash(UNDO)]


@view_config(route_name="event_headcount_svg", request_method="GET", permission=EVENTS_VIEW)
def headcount_svg(context, request):
    counts = services.headcounts(request.db, [context.event.id])[context.event.id]
    response = Response(pages.headcount_svg(context.event.name, counts), content_type="image/svg+xml",
                        charset="utf-8")
    response.cache_control.no_store = True
    response.cache_control.private = True
    return response


# --- editing and deleting an event ---------------------------------------------------


def confirmed(request) -> bool:
    """Whether a destructive form carried its confirmation (``confirm_action``)."""
    return request.POST.get("confirm") == "yes"


def edit_event_page(request, context, status: int = 200, values=None, errors=None, cover_errors=None,
                    question_values=None, question_errors=None, confirming: str = "") -> dict:
    counts = services.headcounts(request.db, [context.event.id])[context.event.id]
    return event_page_base(request, context, status, values=values or event_values(context.event),
                           confirming=confirming, guest_count=counts.guests,
                           coming_count=notices.recipient_count(request.db, context.event),
                           errors=errors or {}, cover_errors=cover_errors or {},
                           question_values=question_values or {"label": "", "kind": "text", "choices": "",
                                                                "required": False},
                           question_errors=question_errors or {}, question_kinds=questions.KINDS,
                           cover_url=services.cover_url(request.ctx, context.event),
                           branding=has_feature(request.ctx, context.event.workspace_id, BRANDING, context.event.id),
                           max_cover_mb=request.registry.settings["covers.max_bytes"] // (1024 * 1024),
                           **form_choices(request))


@view_config(route_name="event_edit", request_method="GET", permission=EVENTS_EDIT,
             renderer="events/edit.jinja2")
def edit_event_form(context, request):
    return edit_event_page(request, context)


@view_config(route_name="event_edit", request_method="POST", permission=EVENTS_EDIT,
             renderer="events/edit.jinja2")
def edit_event(context, request):
    event = context.event
    if request.POST.get("action") == "delete":
        if not confirmed(request):
            return edit_event_page(request, context, confirming="delete")
        told = notices.tell_of_deletion(request.ctx, event).queued if request.POST.get("tell_guests") else 0
        services.delete_event(request.ctx, event)
        flash(request, f"Event “{event.name}” was deleted." + (
            f" {told} {'guest is' if told == 1 else 'guests are'} being told it will not take place." if told else ""))
        return redirect(request, request.route_path("dashboard"))
    form = read_event(request, EVENT_EDIT_FORM)
    if not form.ok:
        return edit_event_page(request, context, 400, EVENT_FORM.typed(request), form.errors)
    try:
        services.update_event(request.ctx, event, form.model)
    except (EventsError, PlanFeatureMissing) as error:
        return edit_event_page(request, context, 400 if error.status == 422 else error.status,
                               EVENT_FORM.typed(request), form.refused(error))
    flash(request, f"Event “{event.name}” saved.")
    warn_if_past(request, event)
    return redirect(request, request.route_path("event_page", event_id=event.id))


@view_config(route_name="event_cover_upload", request_method="POST", permission=EVENTS_EDIT,
             renderer="events/edit.jinja2")
def upload_cover(context, request):
    """Set (the ``file`` part) or remove (``action=remove``) the cover image."""
    event = context.event
    if request.POST.get("action") == "remove":
        removed = services.remove_cover(request.ctx, event)
        flash(request, "The cover image was removed." if removed else "This event has no cover image.")
        return redirect(request, request.route_path("event_edit", event_id=event.id))
    upload = request.POST.get("file")
    data = upload.file.read() if hasattr(upload, "file") else b""
    try:
        services.set_cover(request.ctx, event, data)
    except PlanFeatureMissing as missing:
        return edit_event_page(request, context, missing.status, cover_errors={"file": missing.message})
    except EventsError as error:
        problem = error.extra["fields"]["cover"]
        return edit_event_page(request, context, 400, cover_errors={"file": f"The image {problem}."})
    flash(request, "The cover image was saved. Guests see it on their invitation.")
    return redirect(request, request.route_path("event_edit", event_id=event.id))


@view_config(route_name="event_questions", request_method="POST", permission=EVENTS_EDIT,
             renderer="events/edit.jinja2")
def edit_questions(context, request):
    """Add a question (the form's fields) or remove one (``remove``: its id)."""
    event = context.event
    removing = request.POST.get("remove")
    if removing:
        questions.remove_question(request.ctx, event, removing)
        flash(request, "The question was removed.")
    else:
        form = QUESTION_FORM.read(request)
        errors = form.errors
        if form.ok:
            try:
                questions.add_question(request.ctx, event, form.model)
            except EventsError as error:
                errors = form.refused(error)
        if errors:
            return edit_event_page(request, context, 400, question_values=QUESTION_FORM.typed(request),
                                   question_errors=errors)
        flash(request, "The question was added to the RSVP form.")
    return redirect(request, request.route_path("event_edit", event_id=event.id, _anchor="questions-title"))


# --- guests ------------------------------------------------------------------------------


def guest_conflict(request, event, form: Submitted, error: EventsError):
    """(status, errors, existing guest) for a refused guest form: 409 naming
    the guest who already has the email or phone number, else 400 with the fields."""
    existing = None
    if error.extra.get("existing_guest_id"):
        existing = services.find_guest(request.db, event.id, uuid.UUID(error.extra["existing_guest_id"]))
    errors = form.refused(error)
    if existing is None:
        return 400, errors, None
    field = error.field or "email"
    errors[field] = f"This {services.CONTACTS[field]} is already on the list as {existing.name}."
    return 409, errors, existing


def new_guest_page(request, context, status: int = 200, values=None, errors=None, existing=None) -> dict:
    values = values or {"plus_ones_allowed": str(context.event.default_plus_ones)}
    return event_page_base(request, context, status, values=values, errors=errors or {}, existing=existing)


@view_config(route_name="event_guests_new", request_method="GET", permission=GUESTS_EDIT,
             renderer="events/guest_new.jinja2")
def new_guest_form(context, request):
    return new_guest_page(request, context)


@view_config(route_name="event_guests_new", request_method="POST", permission=GUESTS_EDIT,
             renderer="events/guest_new.jinja2")
def new_guest(context, request):
    event = context.event
    form = GUEST_FORM.read(request)
    if not form.ok:
        return new_guest_page(request, context, 400, GUEST_FORM.typed(request), form.errors)
    enforce(request, "guest_create")
    try:
        guest = services.add_guests(request.ctx, event, [form.model])[0]
    except EventsError as error:
        status, errors, existing = guest_conflict(request, event, form, error)
        return new_guest_page(request, context, status, GUEST_FORM.typed(request), errors, existing)
    flash(request, f"{guest.name} was added to the guest list.")
    if request.POST.get("then") == "another":
        return redirect(request, request.route_path("event_guests_new", event_id=event.id))
    return redirect(request, request.route_path("event_page", event_id=event.id))


def guest_page(request, context, status: int = 200, values=None, errors=None, existing=None,
               confirming: str = "") -> dict:
    guest = context.record
    delivery = deliveries.invitation_deliveries(request.db, guest.workspace_id, [guest],
                                                context.event.timezone)[guest.id]
    return event_page_base(request, context, status, guest=guest, answers=pages.answers(request.db, guest.id),
                           delivery=delivery, channel_words=deliveries.CHANNEL_WORDS,
                           confirming=confirming, live_link=invitations.has_live_link(request.db, guest.id),
                           values=values or guest_values(guest), errors=errors or {}, existing=existing,
                           flags=flags.guest_flags(request.db, guest.id), flag_advice=ADVICE,
                           uses=access.recent_uses(request.db, guest.id, 10),
                           totals=access.totals(request.db, guest.id),
                           undo_seconds=request.registry.settings["guests.undo_seconds"])


@view_config(route_name="event_guest", request_method="GET", permission=GUESTS_VIEW,
             renderer="events/guest.jinja2")
def guest_detail(context, request):
    return guest_page(request, context)


@view_config(route_name="event_guest", request_method="POST", permission=GUESTS_EDIT,
             renderer="events/guest.jinja2")
def guest_update(context, request):
    event, guest = context.event, context.record
    action = request.POST.get("action")
    if action in ("delete", "revoke", "forget") and not confirmed(request):
        return guest_page(request, context, confirming=action)
    if action == "forget":
        from guestguard.privacy.services import forget_guest

        name = guest.name
        forget_guest(request.ctx, guest.id)
        flash(request, f"{name} was forgotten: their details, answers’ details and uses of their link are gone; "
                       "the event’s counts still include them.")
        return redirect(request, request.route_path("event_guest", event_id=event.id, guest_id=guest.id))
    if action == "revoke":
        revoked = invitations.revoke_link(request.ctx, guest)
        flash(request, f"{guest.name}’s link was withdrawn: it no longer opens the invitation. "
                       "Send the invitation again to give them a new one." if revoked
              else f"{guest.name} has no link in use: nothing was withdrawn.")
        return redirect(request, request.route_path("event_guest", event_id=event.id, guest_id=guest.id))
    if action == "delete":
        # The message and its undo are one offer on the event page.
        offer_undo(request, guest, removals.remove_guest(request.ctx, event, guest))
        return redirect(request, request.route_path("event_page", event_id=event.id))
    form = GUEST_EDIT_FORM.read(request)
    if not form.ok:
        return guest_page(request, context, 400, GUEST_FORM.typed(request), form.errors)
    try:
        services.update_guest(request.ctx, event, guest, form.model)
    except EventsError as error:
        status, errors, existing = guest_conflict(request, event, form, error)
        return guest_page(request, context, status, GUEST_FORM.typed(request), errors, existing)
    flash(request, f"{guest.name}’s details were saved.")
    return redirect(request, request.route_path("event_guest", event_id=event.id, guest_id=guest.id))


@view_config(route_name="event_guest_restore", request_method="POST", permission=GUESTS_EDIT)
def guest_restore(context, request):
    """The undo of a removal: the guest is back on the list, or the host
    reads why not (too late, their address taken since)."""
    event = context.event
    try:
        guest = removals.restore_guest(request.ctx, event, parse_id(request, "guest_id"))
    except EventsError as error:
        flash(request, error.message, "error")
        return redirect(request, request.route_path("event_page", event_id=event.id))
    flash(request, f"{guest.name} is back on the guest list"
                   + (", on the waitlist: their place was taken meanwhile." if guest.waitlisted_at else "."))
    return redirect(request, request.route_path("event_guest", event_id=event.id, guest_id=guest.id))


# --- sending invitations -------------------------------------------------------------


@view_config(route_name="event_send", request_method="GET", permission=GUESTS_EDIT,
             renderer="events/send.jinja2")
def send_preview(context, request):
    """Before sending: how many go by email and by text, who is skipped and
    why, the message as guests will read it, and a test to oneself."""
    page = event_page_base(request, context)
    event = context.event
    page.update(preview=previews.preview_send_all(request.ctx, event),
                unsendable=invitations.refusal_to_send(event),
                channel_words=invitations.CHANNEL_WORDS,
                preview_url=request.route_path("event_invitation_preview", event_id=event.id),
                no_contact=invitations.NO_CONTACT)
    return page


@view_config(route_name="event_send_test", request_method="POST", permission=GUESTS_EDIT, rate_limit="test_send")
def send_test(context, request):
    """The invitation, marked as a test, to the host's own address."""
    if request.identity.user is None:
        raise HTTPForbidden("A test goes to the signed-in host's own address: an API key has none.")
    if previews.send_test(request.ctx, context.event):
        flash(request, "A test invitation is on its way to your email address.")
    else:
        flash(request, "A test invitation went to your email address moments ago.")
    return redirect(request, request.route_path("event_send", event_id=context.event.id))


@view_config(route_name="event_send", request_method="POST", permission=GUESTS_EDIT)
def send_invitations(context, request):
    """Invite every guest not invited yet; say who could not be reached."""
    try:
        sent = invitations.send_all(request.ctx, context.event)
    except EventsError as error:
        flash(request, error.message, "error")
        return redirect(request, request.route_path("event_page", event_id=context.event.id))
    if sent.queued:
        message = f"{sent.queued} invitation{'' if sent.queued == 1 else 's'} on the way."
    else:
        message = "No invitations sent." if sent.skipped else "Every guest has been invited already."
    for reason in dict.fromkeys(item["reason"] for item in sent.skipped):
        named = [item["name"] for item in sent.skipped if item["reason"] == reason]
        more = f" and {len(named) - 5} more" if len(named) > 5 else ""
        words = "no email address or phone number" if reason == invitations.NO_CONTACT else reason
        message += f" Not sent to {', '.join(named[:5])}{more}: {words}."
    flash(request, message)
    return redirect(request, request.route_path("event_page", event_id=context.event.id))


@view_config(route_name="event_guest_send", request_method="POST", permission=GUESTS_EDIT)
def send_one_invitation(context, request):
    """Send (or send again, with a fresh link) one guest's invitation."""
    guest = context.record
    try:
        sent = invitations.send_invitation(request.ctx, guest, context.event)
    except EventsError as error:
        flash(request, error.message, "error")
    else:
        by = invitations.one_message_by(request.ctx, sent.channel)
        flash(request, f"Invitation sent to {guest.name} by {by}." if sent.queued
              else f"An invitation was sent to {guest.name} moments ago; it is on its way by {by}.")
    return redirect(request, request.route_path("event_guest", event_id=context.event.id, guest_id=guest.id))
