"""The guard's API: flags and their review, and a guest's access log."""
from __future__ import annotations

import uuid

from pyramid.view import view_config

from guestguard.errors import APIError
from guestguard.events.api import page_size
from guestguard.events.links_api import SendInput
from guestguard.events.models import Guest
from guestguard.guard import access, flags
from guestguard.guard.models import FLAG_STATUSES
from guestguard.permissions import GUESTS_EDIT, GUESTS_VIEW
from guestguard.validation import one_of, parse_json



# --- flags ----------------------------------------------------------------------


@view_config(route_name="api_flags", request_method="GET", renderer="json", permission=GUESTS_VIEW)
def list_flags(context, request):
    """Newest first; filter by ``status``, ``rule`` or ``guest_id``."""
    status = one_of(request, "status", FLAG_STATUSES)
    rule = request.GET.get("rule", "").strip()[:64] or None
    guest_id = None
    if request.GET.get("guest_id"):
        try:
            guest_id = uuid.UUID(request.GET["guest_id"])
        except ValueError:
            raise APIError(400, "bad_request", "guest_id must be a guest's id.") from None
    found, cursor = flags.list_flags(request.db, context.event.id, after=request.GET.get("after"),
                                     limit=page_size(request), status=status, rule=rule, guest_id=guest_id)
    return {"flags": [flags.flag_json(flag) for flag in found], "next": cursor}


@view_config(route_name="api_flag_dismiss", request_method="POST", renderer="json", permission=GUESTS_EDIT)
def dismiss_flag(context, request):
    flag = flags.dismiss(request.ctx, context.record)
    return flags.flag_json(flag)


@view_config(route_name="api_flag_reissue", request_method="POST", renderer="json", permission=GUESTS_EDIT,
             rate_limit="link_issue")
def reissue_link(context, request):
    """Revoke the guest's link, send a new one, resolve their open flags."""
    data = parse_json(request, SendInput) if request.body else SendInput()
    flag = context.record
    guest = request.db.get(Guest, flag.guest_id)
    channel, resolved = flags.reissue(request.ctx, flag, guest, context.event, data.channel)
    request.response.status = 202
    return {"guest_id": str(guest.id), "channel": channel, "resolved": [str(f.id) for f in resolved]}


# --- access ---------------------------------------------------------------------


@view_config(route_name="api_guest_access", request_method="GET", renderer="json", permission=GUESTS_VIEW)
def guest_access(context, request):
    """The guest's recent uses of their links and their totals."""
    guest = context.record
    return {"uses": [access.entry_json(entry) for entry in access.recent_uses(request.db, guest.id)],
            "totals": access.totals(request.db, guest.id)}
