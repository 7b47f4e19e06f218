"""The workspace API: workspaces, members, invitations and API keys."""
from __future__ import annotations

from pyramid.httpexceptions import HTTPNoContent
from pyramid.view import view_config

from guestguard.errors import APIError
from guestguard.permissions import (
    ACCOUNT, API_KEYS_MANAGE, MEMBERS_MANAGE, MEMBERS_VIEW, OWNERSHIP_TRANSFER, WORKSPACE_CREATE,
    WORKSPACE_DELETE, WORKSPACE_EDIT, WORKSPACE_VIEW, WORKSPACES_LIST,
)
from guestguard.validation import parse_json
from guestguard.workspaces import services
from guestguard.workspaces.models import ApiKey, Invitation, Membership, Workspace
from guestguard.workspaces.schemas import (
    AcceptInvitationInput, ApiKeyInput, InvitationInput, RoleInput, TransferInput, WorkspaceInput,
)


def workspace_json(workspace: Workspace, role: str | None) -> dict:
    return {"id": str(workspace.id), "name": workspace.name, "slug": workspace.slug,
            "personal": workspace.personal, "role": role,
            "created_at": workspace.created_at.isoformat()}


def member_json(membership: Membership) -> dict:
    return {"id": str(membership.id), "user_id": str(membership.user_id),
            "email": membership.user.email, "display_name": membership.user.display_name,
            "role": membership.role, "joined_at": membership.created_at.isoformat()}


def invitation_json(invitation: Invitation) -> dict:
    return {"id": str(invitation.id), "email": invitation.email, "role": invitation.role,
            "created_at": invitation.created_at.isoformat(),
            "expires_at": invitation.expires_at.isoformat()}


def api_key_json(key: ApiKey) -> dict:
    return {"id": str(key.id), "name": key.name, "role": key.role,
            "prefix": f"{services.API_KEY_PREFIX}{key.lookup_id}",
            "created_at": key.created_at.isoformat(),
            "last_used_at": key.last_used_at.isoformat() if key.last_used_at else None}


def caller_role(request, workspace_id) -> str | None:
    return request.identity.roles.get(workspace_id)


def own_membership(request, workspace_id) -> Membership | None:
    user = request.identity.user
    return services.membership_of(request.db, workspace_id, user.id) if user is not None else None


# --- workspaces --------------------------------------------------------------


@view_config(route_name="api_workspaces", request_method="GET", renderer="json",
             permission=WORKSPACES_LIST)
def list_workspaces(request):
    roles = request.identity.roles
    found = [services.find_workspace(request.db, workspace_id) for workspace_id in roles]
    return {"workspaces": [workspace_json(w, roles[w.id]) for w in found if w is not None]}


@view_config(route_name="api_workspaces", request_method="POST", renderer="json",
             permission=WORKSPACE_CREATE, rate_limit="workspace_create")
def create_workspace(request):
    data = parse_json(request, WorkspaceInput)
    workspace = services.create_workspace(request.ctx, request.identity.user, data.name)
    request.response.status = 201
    return {"workspace": workspace_json(workspace, "owner")}


@view_config(route_name="api_workspace", request_method="GET", renderer="json",
             permission=WORKSPACE_VIEW)
def get_workspace(context, request):
    return {"workspace": workspace_json(context.workspace, caller_role(request, context.workspace_id))}


@view_config(route_name="api_workspace", request_method="PATCH", renderer="json",
             permission=WORKSPACE_EDIT)
def update_workspace(context, request):
    data = parse_json(request, WorkspaceInput)
    workspace = services.rename_workspace(request.ctx, context.workspace, data.name)
    return {"workspace": workspace_json(workspace, caller_role(request, context.workspace_id))}


@view_config(route_name="api_workspace", request_method="DELETE", permission=WORKSPACE_DELETE)
def delete_workspace(context, request):
    services.delete_workspace(request.ctx, context.workspace)
    return HTTPNoContent()


# --- members -----------------------------------------------------------------


@view_config(route_name="api_members", request_method="GET", renderer="json", permission=MEMBERS_VIEW)
def list_members(context, request):
    return {"members": [member_json(m) for m in services.members(request.db, context.workspace_id)]}


@view_config(route_name="api_member", request_method="PATCH", renderer="json",
             permission=MEMBERS_MANAGE)
def change_member_role(context, request):
    data = parse_json(request, RoleInput)
    membership = services.change_role(request.ctx, caller_role(request, context.workspace_id),
                                      context.record, data.role)
    return {"member": member_json(membership)}


@view_config(route_name="api_member", request_method="DELETE", permission=MEMBERS_MANAGE)
def remove_member(context, request):
    services.remove_member(request.ctx, caller_role(request, context.workspace_id), context.record)
    return HTTPNoContent()


@view_config(route_name="api_workspace_leave", request_method="POST", permission=WORKSPACE_VIEW)
def leave_workspace(context, request):
    membership = own_membership(request, context.workspace_id)
    if membership is None:  # an API key is no member
        raise APIError(403, "forbidden", "Only members can leave a workspace.")
    services.remove_member(request.ctx, membership.role, membership)
    return HTTPNoContent()


@view_config(route_name="api_workspace_transfer", request_method="POST", renderer="json",
             permission=OWNERSHIP_TRANSFER)
def transfer_ownership(context, request):
    data = parse_json(request, TransferInput)
    target = services.find_membership(request.db, context.workspace_id, data.member_id)
    if target is None:
        raise APIError(422, "validation_failed", "Some fields are invalid.",
                       fields={"member_id": "is not a member of this workspace"})
    services.transfer_ownership(request.ctx, own_membership(request, context.workspace_id), target)
    return {"member": member_json(target)}


# --- invitations -------------------------------------------------------------


@view_config(route_name="api_invitations", request_method="GET", renderer="json",
             permission=MEMBERS_MANAGE)
def list_invitations(context, request):
    return {"invitations": [invitation_json(i)
                            for i in services.pending_invitations(request.db, context.workspace_id)]}


@view_config(route_name="api_invitations", request_method="POST", renderer="json",
             permission=MEMBERS_MANAGE, rate_limit="workspace_invite")
def create_invitation(context, request):
    data = parse_json(request, InvitationInput)
    invitation = services.invite(request.ctx, request.identity.user, context.workspace,
                                 data.email, data.role)
    request.response.status = 201
    return {"invitation": invitation_json(invitation)}


@view_config(route_name="api_invitation", request_method="DELETE", permission=MEMBERS_MANAGE)
def revoke_invitation(context, request):
    services.revoke_invitation(request.ctx, context.record)
    return HTTPNoContent()


@view_config(route_name="api_invitation_accept", request_method="POST", renderer="json",
             permission=ACCOUNT)
def accept_invitation(request):
    data = parse_json(request, AcceptInvitationInput)
    membership = services.accept_invitation(request.ctx, request.identity.user, data.token)
    return {"workspace": workspace_json(membership.workspace, membership.role)}


# --- API keys ----------------------------------------------------------------


@view_config(route_name="api_api_keys", request_method="GET", renderer="json",
             permission=API_KEYS_MANAGE)
def list_api_keys(context, request):
    return {"api_keys": [api_key_json(k) for k in services.api_keys(request.db, context.workspace_id)]}


@view_config(route_name="api_api_keys", request_method="POST", renderer="json",
             permission=API_KEYS_MANAGE)
def create_api_key(context, request):
    data = parse_json(request, ApiKeyInput)
    key, secret = services.create_api_key(request.ctx, context.workspace,
                                          data.name, data.role)
    request.response.status = 201
    return {"api_key": {**api_key_json(key), "secret": secret},
            "message": "Store the secret now: it is not shown again."}


@view_config(route_name="api_api_key", request_method="DELETE", permission=API_KEYS_MANAGE)
def revoke_api_key(context, request):
    services.revoke_api_key(request.ctx, context.record)
    return HTTPNoContent()
