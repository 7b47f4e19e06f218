"""The privacy API: forgetting a guest, asking for a copy of one's data."""
from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import Field
from pyramid.view import view_config

from guestguard.accounts.schemas import AnyPassword
from guestguard.audit.services import record
from guestguard.contract import Message, Moment, Out, Refused
from guestguard.permissions import ACCOUNT, GUESTS_EDIT, WORKSPACE_EDIT
from guestguard.privacy import deletion, exports, services
from guestguard.validation import Input


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


class ExportOut(Out):
    id: uuid.UUID
    status: str
    created_at: Moment
    ready_at: Moment | None
    expires_at: Moment | None
    downloaded_at: Moment | None


class OneExport(Out):
    export: ExportOut


@view_config(route_name="api_me_data_export", request_method="POST", renderer="json", permission=ACCOUNT,
             response={202: OneExport})
def request_data_export(request):
    """Ask for a copy of your data: the worker builds it and emails you a link
    that works once, for ``privacy.export_link_days``, signed in. While one is
    being built, asking again answers that one."""
    export, _ = exports.request_export(request.ctx, request.identity.user)
    request.response.status = 202
    return OneExport(export=ExportOut.of(export))


class DeleteAccountInput(Input):
    password: AnyPassword


@view_config(route_name="api_me", request_method="DELETE", renderer="json", permission=ACCOUNT,
             body=DeleteAccountInput,
             response={202: Message, 400: Refused("invalid_password"), 409: Refused("last_owner")})
def delete_account(request):
    """Delete your account: at once signed out everywhere and unable to sign
    in; a copy of your data and a link to cancel are emailed; erased for good
    after ``privacy.deletion_grace_days``. The last owner of a workspace
    others belong to gets 409 naming it."""
    user = deletion.delete_account(request.ctx, request.identity.user, request.body_input.password)
    request.response.status = 202
    return Message(message=f"Your account is deleted. A copy of your data and a link to undo this within "
                           f"{request.registry.settings['privacy.deletion_grace_days']} days were emailed to "
                           f"{user.email}.")


class RetentionInput(Input):
    # Months after an event ends before its guests are anonymized; null:
    # the platform's privacy.retention_months.
    months: Annotated[int, Field(ge=1, le=120)] | None


class RetentionOut(Out):
    months: int | None
    default_months: int


@view_config(route_name="api_workspace_retention", request_method="PUT", renderer="json",
             permission=WORKSPACE_EDIT, body=RetentionInput, response=RetentionOut)
def set_retention(context, request):
    """How long the workspace keeps guests' details after an event ends."""
    months = request.body_input.months
    workspace = context.workspace
    if workspace.retention_months != months:
        workspace.retention_months = months
        record(request.ctx, "workspace.retention_set", actor_id=request.ctx.actor_id, workspace_id=workspace.id,
               target_type="workspace", target_id=workspace.id, months=months)
    return RetentionOut(months=months, default_months=request.registry.settings["privacy.retention_months"])
