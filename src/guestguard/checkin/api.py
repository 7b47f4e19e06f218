"""The door API: check-in, its undo, search by name and frame decoding."""
from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints
from pyramid.view import view_config

from guestguard.checkin import frames, services
from guestguard.checkin.schemas import (
    CheckInAnswer,
    CheckInInput,
    DecodedFrame,
    DoorSearch,
    DoorSearchAnswer,
    FoundGuest,
    UndoAnswer,
)
from guestguard.contract import Body, Refused
from guestguard.errors import json_error
from guestguard.permissions import GUESTS_CHECK_IN
from guestguard.validation import Input

CHECK_IN_REFUSALS = {404: Refused("unknown_pass", "guest_not_found"),
                     409: Refused("already_checked_in", "not_for_this_event", "pass_revoked", "event_cancelled")}


def answer(request, status: int, body: dict):
    """The check-in's answer: a success as is, a refusal in the house's
    error format carrying the same fields."""
    if status < 400:
        request.response.status = status
        return CheckInAnswer.model_validate(body)
    extra = {key: value for key, value in body.items() if key not in ("outcome", "message")}
    return json_error(request, status, body["outcome"], body["message"], **extra)


@view_config(route_name="api_checkins", request_method="POST", renderer="json", permission=GUESTS_CHECK_IN,
             body=CheckInInput, response={201: CheckInAnswer, **CHECK_IN_REFUSALS})
def check_in(context, request):
    """Check a guest in by pass (QR content or short code) or by id, with
    their plus-ones. Exactly once: the same ``scan_id`` again gets the first
    answer; another scan of a pass already used answers ``already_checked_in``."""
    data = request.body_input
    status, body = services.check_in(request.ctx, context.event, scan_id=data.scan_id, code=data.code,
                                     guest_id=data.guest_id, plus_ones=data.plus_ones)
    return answer(request, status, body)


@view_config(route_name="api_checkin", request_method="DELETE", renderer="json", permission=GUESTS_CHECK_IN,
             response={200: UndoAnswer, 404: Refused("scan_not_found"), 409: Refused("undo_expired")})
def undo_check_in(context, request):
    """Undo the check-in made by a scan, within 5 minutes of it."""
    undone = services.undo(request.ctx, context.event, request.matchdict["scan_id"][:64])
    if undone.status >= 400:
        return json_error(request, undone.status, undone.code, undone.message)
    return UndoAnswer(outcome=undone.code, message=undone.message, undone=undone.undone)


@view_config(route_name="api_door_guests", request_method="GET", renderer="json", permission=GUESTS_CHECK_IN,
             query=DoorSearch, response=DoorSearchAnswer)
def search_guests(context, request):
    """Guests whose name contains ``q`` (at least 2 characters), at most
    ``checkin.search_results`` (20 unless the operator set otherwise)."""
    guests = services.search(request.db, context.event.id, request.query_input.q,
                             request.registry.settings["checkin.search_results"])
    inside = services.inside_by_guest(request.db, [guest.id for guest in guests])
    return DoorSearchAnswer(guests=[FoundGuest.of(guest, guest_id=guest.id, inside=inside.get(guest.id, 0))
                                    for guest in guests])


class FrameInput(Input):
    image: Annotated[str, StringConstraints(min_length=1, max_length=frames.MAX_FRAME_BYTES * 4 // 3 + 64)]


@view_config(route_name="api_door_decode", request_method="POST", renderer="json", permission=GUESTS_CHECK_IN,
             body=Body(FrameInput, max_bytes=frames.MAX_FRAME_BYTES * 4 // 3 + 1024),
             response={200: DecodedFrame, 413: Refused("too_large")})
def decode_frame(context, request):
    """A camera frame (a data: URL) decoded: the QR code's content, or null."""
    return DecodedFrame(code=frames.decode(frames.frame_bytes(request.body_input.image)))
