"""The door page for phones: scan a pass with the camera (JavaScript), type
its code, or find a guest by name; each form carries a scan id made when
the page was drawn, so a double tap or a resent form checks in once. After
a check-in the page shows its answer (read back by scan id), with an undo.

Also the guest's pass as an image, reached with the invitation token."""
from __future__ import annotations

import uuid

from pyramid.response import Response
from pyramid.view import view_config
from sqlalchemy import select

from guestguard.activity import feed
from guestguard.checkin import passes, services
from guestguard.checkin.models import DoorScan
from guestguard.events.guest_views import invalid, private_headers
from guestguard.events.views import event_page_base
from guestguard.guard import access
from guestguard.guard.models import VIEW
from guestguard.permissions import GUESTS_CHECK_IN
from guestguard.web import redirect

MIN_SEARCH = 2


def scan_id_of(request) -> str:
    value = request.POST.get("scan_id", "")
    if 8 <= len(value) <= 64 and all(c.isalnum() or c in "-_" for c in value):
        return value
    return ""


def door_url(request, **query) -> str:
    return request.route_path("event_door", event_id=request.context.event.id,
                              _query={key: value for key, value in query.items() if value})


@view_config(route_name="event_door", request_method="GET", permission=GUESTS_CHECK_IN,
             renderer="events/door.jinja2")
def door(context, request):
    event = context.event
    q = request.GET.get("q", "").strip()[:100]
    problem = ""
    found = []
    if q and len(q) < MIN_SEARCH:
        problem = f"Type at least {MIN_SEARCH} letters of the guest's name."
        request.response.status = 400
    elif q:
        found = services.search(request.db, event.id, q, request.registry.settings["checkin.search_results"])
    result = None
    scan = request.GET.get("scan", "")[:64]
    if scan:
        row = request.db.scalar(select(DoorScan).where(DoorScan.event_id == event.id, DoorScan.scan_id == scan))
        result = row.answer if row is not None and row.status else None
    page = event_page_base(request, context, status=request.response.status_int)
    inside = services.inside_by_guest(request.db, [guest.id for guest in found])
    page.update(q=q, problem=problem, found=found, inside=inside, result=result, scan=scan,
                new_scan_id=str(uuid.uuid4()), counts=services.counts(request.db, event.id),
                # The counter follows the other doors' check-ins from here on (door.js).
                feed_since=feed.now_cursor(),
                undo_minutes=request.registry.settings["checkin.undo_minutes"])
    return page


@view_config(route_name="event_door_checkin", request_method="POST", permission=GUESTS_CHECK_IN)
def door_check_in(context, request):
    scan_id = scan_id_of(request) or str(uuid.uuid4())
    code = request.POST.get("code", "").strip()[:64] or None
    guest_id = None
    raw_guest = request.POST.get("guest_id", "")
    if raw_guest:
        try:
            guest_id = uuid.UUID(raw_guest)
        except ValueError:
            guest_id = uuid.UUID(int=0)  # no guest has it: answered "not found" like any unknown id
        code = None
    raw_plus = request.POST.get("plus_ones", "")
    plus_ones = int(raw_plus) if raw_plus.isdigit() and len(raw_plus) <= 2 else None
    if code is None and guest_id is None:
        request.session.flash("Scan a pass, type its code or find the guest by name.", "error")
        return redirect(request, door_url(request))
    services.check_in(request.ctx, context.event, scan_id=scan_id, code=code, guest_id=guest_id,
                      plus_ones=plus_ones)
    return redirect(request, door_url(request, scan=scan_id))


@view_config(route_name="event_door_undo", request_method="POST", permission=GUESTS_CHECK_IN)
def door_undo(context, request):
    scan_id = scan_id_of(request)
    undone = services.undo(request.ctx, context.event, scan_id) if scan_id else None
    if undone is None or undone.status >= 400:
        request.session.flash(undone.message if undone else "Nothing to undo.", "error")
    else:
        request.session.flash(undone.message, "success")
    return redirect(request, door_url(request))


# --- the guest's pass ------------------------------------------------------------


@view_config(route_name="access_pass", request_method="GET", rate_limit="invitation_page")
def pass_image(request):
    """The guest's pass as an SVG QR code (the page draws it inline; this is
    for saving it)."""
    raw = request.matchdict["token"]
    found = access.use_token(request.ctx, raw, VIEW)
    if found is None:
        return invalid(request)
    faces = passes.for_guest(request.ctx, found.link, found.guest, found.event, raw)
    if faces is None:
        return invalid(request)
    response = Response(body=passes.qr_svg(faces.secret).encode(), content_type="image/svg+xml")
    response.content_disposition = 'inline; filename="pass.svg"'
    private_headers(response)
    return response
