"""The host's review of a flag from the guest's page: dismiss it, or revoke
the link and send the guest a new one, in one action each; and the
workspace's sensitivity, from its settings page."""
from __future__ import annotations

from pyramid.view import view_config

from guestguard.events import invitations
from guestguard.events.services import EventsError
from guestguard.guard import flags
from guestguard.guard.schemas import GuardSettingsInput
from guestguard.guard.sensitivity import set_sensitivity
from guestguard.permissions import GUESTS_EDIT, WORKSPACE_EDIT
from guestguard.web import Field, Form, flash, redirect
from guestguard.workspaces.views import SETTINGS_PAGE, go, settings_page

GUARD_FORM = Form(GuardSettingsInput, Field("sensitivity", "Sensitivity",
                                            choice="Choose relaxed, normal or strict."))


def back_to_guest(request, flag):
    return redirect(request, request.route_path("event_guest", event_id=flag.event_id, guest_id=flag.guest_id))


@view_config(route_name="event_flag_dismiss", request_method="POST", permission=GUESTS_EDIT)
def dismiss(context, request):
    flag = context.record
    try:
        flags.dismiss(request.ctx, flag)
    except EventsError as error:
        flash(request, error.message, "error")
    else:
        flash(request, "Flag dismissed. It comes back only if a device it did not include uses the link.")
    return back_to_guest(request, flag)


@view_config(route_name="event_flag_reissue", request_method="POST", permission=GUESTS_EDIT,
             rate_limit="link_issue")
def reissue(context, request):
    flag = context.record
    try:
        channel, guest, _ = flags.reissue(request.ctx, flag, context.event)
    except EventsError as error:
        flash(request, error.message, "error")
    else:
        by = invitations.one_message_by(request.ctx, channel)
        flash(request, f"The old link no longer works. {guest.name} gets a new one by {by}.")
    return back_to_guest(request, flag)


@view_config(route_name="workspace_guard", request_method="POST", permission=WORKSPACE_EDIT,
             renderer=SETTINGS_PAGE)
def choose_sensitivity(context, request):
    form = GUARD_FORM.read(request)
    if not form.ok:
        return settings_page(request, context, 400, guard={"values": {"sensitivity": ""}, "errors": form.errors})
    changed = set_sensitivity(request.ctx, context.workspace, form.model.sensitivity)
    word = form.model.sensitivity
    return go(request, "workspace_settings", context,
              f"Shared-link detection is now {word}." if changed else f"Shared-link detection was already {word}.")
