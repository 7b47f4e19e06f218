"""The guard's API: flags and their review, and a guest's access log."""
from __future__ import annotations

from pyramid.view import view_config

from guestguard.contract import Body, Refused, links_to
from guestguard.events.schemas import SendInput
from guestguard.guard import access, flags
from guestguard.guard.schemas import (
    AccessLog,
    AccessUseOut,
    FlagOut,
    FlagPage,
    FlagQuery,
    GuardSettingsInput,
    GuardSettingsOut,
    Reissued,
)
from guestguard.guard.sensitivity import set_sensitivity
from guestguard.permissions import GUESTS_EDIT, GUESTS_VIEW, WORKSPACE_EDIT, WORKSPACE_VIEW

# --- flags ----------------------------------------------------------------------


@view_config(route_name="api_flags", request_method="GET", renderer="json", permission=GUESTS_VIEW,
             query=FlagQuery, response={200: FlagPage, 400: Refused("invalid_cursor")},
             links=links_to(("dismiss_flag", "reissue_link"), event_id="$request.path.event_id",
                            flag_id="$response.body#/flags/0/id"))
def list_flags(context, request):
    """The event's flags, newest first; filter by ``status``, ``rule`` or ``guest_id``."""
    query = request.query_input
    found, cursor = flags.list_flags(request.db, context.event.id, after=query.after, limit=query.limit,
                                     status=query.status, rule=query.rule, guest_id=query.guest_id)
    return FlagPage(flags=[FlagOut.of(flag) for flag in found], next=cursor)


@view_config(route_name="api_flag_dismiss", request_method="POST", renderer="json", permission=GUESTS_EDIT,
             response={200: FlagOut, 409: Refused("flag_not_open")})
def dismiss_flag(context, request):
    """Dismiss an open flag: the same rule flags the guest again only when a device it did not include uses the link."""
    flag = flags.dismiss(request.ctx, context.record)
    return FlagOut.of(flag)


@view_config(route_name="api_flag_reissue", request_method="POST", renderer="json", permission=GUESTS_EDIT,
             rate_limit="link_issue", body=Body(SendInput, optional=True),
             response={202: Reissued, 409: Refused("flag_not_open", "event_not_published", "event_cancelled"),
                       422: Refused("no_contact")})
def reissue_link(context, request):
    """Revoke the guest's link, send a new one, resolve their open flags."""
    data = request.body_input
    flag = context.record
    channel, _, resolved = flags.reissue(request.ctx, flag, context.event, data.channel)
    return Reissued(guest_id=flag.guest_id, channel=channel, resolved=[f.id for f in resolved])


# --- access ---------------------------------------------------------------------


@view_config(route_name="api_guest_access", request_method="GET", renderer="json", permission=GUESTS_VIEW,
             response=AccessLog)
def guest_access(context, request):
    """The guest's recent uses of their links and their totals."""
    guest = context.record
    return AccessLog(uses=[AccessUseOut.of(entry) for entry in access.recent_uses(request.db, guest.id)],
                     totals=access.totals(request.db, guest.id))


# --- the workspace's guard ----------------------------------------------------------


@view_config(route_name="api_workspace_guard", request_method="GET", renderer="json", permission=WORKSPACE_VIEW,
             response=GuardSettingsOut)
def guard_settings(context, request):
    """How readily the guard flags the workspace's links: relaxed, normal or strict."""
    return GuardSettingsOut.of(context.workspace)


@view_config(route_name="api_workspace_guard", request_method="PUT", renderer="json", permission=WORKSPACE_EDIT,
             body=GuardSettingsInput, response=GuardSettingsOut)
def put_guard_settings(context, request):
    """Set the workspace's sensitivity; the rules use it from the next use of a link on."""
    set_sensitivity(request.ctx, context.workspace, request.body_input.sensitivity)
    return GuardSettingsOut.of(context.workspace)
