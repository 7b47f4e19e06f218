"""The event page's reminders: setting them, a preview, a test to oneself;
and the schedule in the API."""
from __future__ import annotations

from pyramid.view import view_config

from guestguard.contract import Moment, Out, Refused
from guestguard.events import services as events
from guestguard.events.schemas import EventFields
from guestguard.events.services import EventsError
from guestguard.permissions import EVENTS_EDIT, EVENTS_VIEW, GUESTS_EDIT
from guestguard.reminders import notices, services
from guestguard.web import redirect


class OccurrenceOut(Out):
    rule: str
    words: str
    due_at: Moment | None
    counts: dict[str, int]


class ScheduleOut(Out):
    reminders: list[OccurrenceOut]


def event_page(request, event_id, anchor: str = "reminders") -> str:
    return request.route_path("event_page", event_id=event_id) + f"#{anchor}"


@view_config(route_name="api_event_reminders", request_method="GET", renderer="json", permission=EVENTS_VIEW,
             response=ScheduleOut)
def schedule(context, request):
    """The event's reminders, then its "please answer" nudge (rule ``nudge``; no
    time without an RSVP deadline): when each goes, and how many went, were
    skipped or missed."""
    return ScheduleOut(reminders=[OccurrenceOut.of(item) for item in services.schedule(request.db, context.event)])


@view_config(route_name="event_reminders", request_method="POST", permission=EVENTS_EDIT)
def set_reminders(context, request):
    """The form's offsets, comma-separated: "7d, 1d, 3h"; empty sends none;
    and the nudge's offset before the RSVP deadline ("2d"; empty: none)."""
    typed = request.POST.get("reminders", "")[:200]
    values = [part for part in typed.replace(";", ",").split(",") if part.strip()]
    fields = {"reminders": values}
    if "answer_nudge" in request.POST:
        fields["answer_nudge"] = request.POST["answer_nudge"][:8]
    try:
        data = EventFields(**fields)
    except ValueError as exc:
        message = str(exc).split("\n")[-2 if "\n" in str(exc) else -1].strip()
        request.session.flash(f"Reminders not changed: {message.removeprefix('Value error, ')}", "error")
        return redirect(request, event_page(request, context.event.id))
    try:
        events.update_event(request.ctx, context.event, data)
    except EventsError as error:
        request.session.flash(f"Reminders not changed: {error.message}", "error")
        return redirect(request, event_page(request, context.event.id))
    words = ", ".join(services.offset_words(rule) for rule in context.event.reminders) or "none"
    if context.event.answer_nudge:
        words += f"; please answer, {services.offset_words(context.event.answer_nudge)} the RSVP deadline"
    request.session.flash(f"Reminders saved: {words}.", "success")
    return redirect(request, event_page(request, context.event.id))


@view_config(route_name="event_reminder_test", request_method="POST", permission=EVENTS_EDIT)
def send_test(context, request):
    user = request.identity.user
    kind = services.NUDGE if request.POST.get("kind") == services.NUDGE else services.TEMPLATE
    if user is None:
        request.session.flash("A test goes to a person's address: sign in to send one.", "error")
    else:
        services.send_test(request.ctx, context.event, user, kind)
        words = "nudge" if kind == services.NUDGE else "reminder"
        request.session.flash(f"A test {words} is on its way to {user.email}.", "success")
    return redirect(request, event_page(request, context.event.id))


# --- change notices ------------------------------------------------------------------


class Recipient(Out):
    guest_id: str
    name: str


class NoticePreview(Out):
    pending: bool
    cancelled: bool
    sequence: int
    recipients: list[Recipient]


class NoticeSentOut(Out):
    queued: int
    skipped: list[dict[str, str]]


def notice_preview(db, event) -> NoticePreview:
    guests = notices.recipients(db, event) if notices.pending(event) else []
    return NoticePreview(pending=notices.pending(event), cancelled=event.status == "cancelled",
                         sequence=event.sequence,
                         recipients=[Recipient(guest_id=str(guest.id), name=guest.name) for guest in guests])


@view_config(route_name="api_event_change_notice", request_method="GET", renderer="json",
             permission=GUESTS_EDIT, response=NoticePreview)
def preview_notice(context, request):
    """Whether the event changed (time, place, cancelled) since guests were
    last told, and who a notice would go to."""
    return notice_preview(request.db, context.event)


@view_config(route_name="api_event_change_notice", request_method="POST", renderer="json",
             permission=GUESTS_EDIT, response={202: NoticeSentOut, 409: Refused("nothing_to_tell")})
def send_notice(context, request):
    """Tell the guests who said yes or maybe of the latest change; once per change and guest."""
    sent = notices.send(request.ctx, context.event)
    request.response.status = 202
    return NoticeSentOut(queued=sent.queued, skipped=sent.skipped)


@view_config(route_name="event_change_notice", request_method="POST", permission=GUESTS_EDIT)
def change_notice(context, request):
    event = context.event
    if request.POST.get("action") == "dismiss":
        notices.dismiss(request.ctx, event)
        request.session.flash("Guests were not told of this change.", "success")
        return redirect(request, event_page(request, event.id, "change-notice"))
    try:
        sent = notices.send(request.ctx, event)
    except EventsError as error:
        request.session.flash(error.message, "error")
        return redirect(request, event_page(request, event.id, "change-notice"))
    words = f"{sent.queued} guest{'' if sent.queued == 1 else 's'} will be told."
    if sent.skipped:
        words += f" {len(sent.skipped)} could not be reached."
    request.session.flash(words, "success")
    return redirect(request, request.route_path("event_page", event_id=event.id))
