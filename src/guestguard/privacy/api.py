"""The privacy API: forgetting a guest."""
from __future__ import annotations

import uuid

from pyramid.view import view_config

from guestguard.contract import Moment, Out
from guestguard.permissions import GUESTS_EDIT
from guestguard.privacy import services


class ForgottenGuestOut(Out):
    id: uuid.UUID
    event_id: uuid.UUID
    name: str
    forgotten_at: Moment


class ForgottenGuest(Out):
    guest: ForgottenGuestOut


@view_config(route_name="api_guest_forget", request_method="POST", renderer="json", permission=GUESTS_EDIT,
             response=ForgottenGuest)
def forget_guest(context, request):
    """Forget the guest: their name, contact, notes, answers' details, uses of
    their link and messages' addresses are erased; the event's counts stay.
    Forgetting again answers the same."""
    guest = services.forget_guest(request.ctx, context.record.id)
    return ForgottenGuest(guest=ForgottenGuestOut.of(guest))
