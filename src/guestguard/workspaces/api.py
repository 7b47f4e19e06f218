"""The workspace API: workspaces, members, invitations and API keys."""
from __future__ import annotations

from pyramid.httpexceptions import HTTPNoContent
from pyramid.view import view_config

from guestguard.contract import Refused, links_to
from guestguard.errors import APIError
from guestguard.permissions import (
    ACCOUNT,
    API_KEYS_MANAGE,
    MEMBERS_MANAGE,
    MEMBERS_VIEW,
    OWNERSHIP_TRANSFER,
    WORKSPACE_CREATE,
    WORKSPACE_DELETE,
    WORKSPACE_EDIT,
    WORKSPACE_VIEW,
    WORKSPACES_LIST,
)
from guestguard.workspaces import services
from guestguard.workspaces.models import Membership
from guestguard.workspaces.schemas import (
    AcceptInvitationInput,
    ApiKeyCreated,
    ApiKeyInput,
    ApiKeyList,
    ApiKeyOut,
    InvitationInput,
    InvitationList,
    InvitationOut,
    MemberList,
    MemberOut,
    NewApiKeyOut,
    OneInvitation,
    OneMember,
    OneWorkspace,
    RoleInput,
    TransferInput,
    WorkspaceInput,
    WorkspaceList,
    WorkspaceOut,
)

LAST_OWNER = Refused("last_owner")
WORKSPACE_LINKS = ("get_workspace", "update_workspace", "list_members", "list_invitations", "create_invitation",
                   "list_api_keys", "create_api_key")


def caller_role(request, workspace_id) -> str | None:
    return request.identity.roles.get(workspace_id)


def own_membership(request, workspace_id) -> Membership | None:
    user = request.identity.user
    return services.membership_of(request.db, workspace_id, user.id) if user is not None else None


# --- workspaces --------------------------------------------------------------


@view_config(route_name="api_workspaces", request_method="GET", renderer="json",
             permission=WORKSPACES_LIST, response=WorkspaceList)
def list_workspaces(request):
    """The caller's workspaces (an API key: its own)."""
    roles = request.identity.roles
    found = [services.find_workspace(request.db, workspace_id) for workspace_id in roles]
    return WorkspaceList(workspaces=[WorkspaceOut.of(w, role=roles[w.id]) for w in found if w is not None])


@view_config(route_name="api_workspaces", request_method="POST", renderer="json",
             permission=WORKSPACE_CREATE, rate_limit="workspace_create", body=WorkspaceInput,
             response={201: OneWorkspace}, links=links_to(WORKSPACE_LINKS, workspace_id="$response.body#/workspace/id"))
def create_workspace(request):
    """Create a workspace; the caller is its owner."""
    data = request.body_input
    workspace = services.create_workspace(request.ctx, request.identity.user, data.name)
    return OneWorkspace(workspace=WorkspaceOut.of(workspace, role="owner"))


@view_config(route_name="api_workspace", request_method="GET", renderer="json",
             permission=WORKSPACE_VIEW, response=OneWorkspace)
def get_workspace(context, request):
    """One workspace, with the caller's role in it."""
    return OneWorkspace(workspace=WorkspaceOut.of(context.workspace,
                                                  role=caller_role(request, context.workspace_id)))


@view_config(route_name="api_workspace", request_method="PATCH", renderer="json",
             permission=WORKSPACE_EDIT, body=WorkspaceInput, response=OneWorkspace)
def update_workspace(context, request):
    """Rename the workspace."""
    data = request.body_input
    workspace = services.rename_workspace(request.ctx, context.workspace, data.name)
    return OneWorkspace(workspace=WorkspaceOut.of(workspace, role=caller_role(request, context.workspace_id)))


@view_config(route_name="api_workspace", request_method="DELETE", permission=WORKSPACE_DELETE,
             response={204: None})
def delete_workspace(context, request):
    """Delete the workspace: members lose access, its API keys are revoked."""
    services.delete_workspace(request.ctx, context.workspace)
    return HTTPNoContent()


# --- members -----------------------------------------------------------------


@view_config(route_name="api_members", request_method="GET", renderer="json", permission=MEMBERS_VIEW,
             response=MemberList)
def list_members(context, request):
    """The workspace's members and their roles."""
    return MemberList(members=[MemberOut.of(m) for m in services.members(request.db, context.workspace_id)])


@view_config(route_name="api_member", request_method="PATCH", renderer="json",
             permission=MEMBERS_MANAGE, body=RoleInput, response={200: OneMember, 409: LAST_OWNER})
def change_member_role(context, request):
    """Change a member's role; only owners make or unmake owners."""
    data = request.body_input
    membership = services.change_role(request.ctx, caller_role(request, context.workspace_id),
                                      context.record, data.role)
    return OneMember(member=MemberOut.of(membership))


@view_config(route_name="api_member", request_method="DELETE", permission=MEMBERS_MANAGE,
             response={204: None, 409: LAST_OWNER})
def remove_member(context, request):
    """Remove a member; owners are removed only by owners, never the last."""
    services.remove_member(request.ctx, caller_role(request, context.workspace_id), context.record)
    return HTTPNoContent()


@view_config(route_name="api_workspace_leave", request_method="POST", permission=WORKSPACE_VIEW,
             response={204: None, 409: LAST_OWNER})
def leave_workspace(context, request):
    """Leave the workspace; its last owner cannot."""
    membership = own_membership(request, context.workspace_id)
    if membership is None:  # an API key is no member
        raise APIError(403, "forbidden", "Only members can leave a workspace.")
    services.remove_member(request.ctx, membership.role, membership)
    return HTTPNoContent()


@view_config(route_name="api_workspace_transfer", request_method="POST", renderer="json",
             permission=OWNERSHIP_TRANSFER, body=TransferInput,
             response={200: OneMember, 409: Refused("conflict")})
def transfer_ownership(context, request):
    """Make a member the owner; the caller becomes an admin."""
    data = request.body_input
    target = services.find_membership(request.db, context.workspace_id, data.member_id)
    if target is None:
        raise APIError(422, "validation_failed", "Some fields are invalid.",
                       fields={"member_id": "is not a member of this workspace"})
    services.transfer_ownership(request.ctx, own_membership(request, context.workspace_id), target)
    return OneMember(member=MemberOut.of(target))


# --- invitations -------------------------------------------------------------


@view_config(route_name="api_invitations", request_method="GET", renderer="json",
             permission=MEMBERS_MANAGE, response=InvitationList)
def list_invitations(context, request):
    """Pending invitations to join the workspace."""
    return InvitationList(invitations=[InvitationOut.of(i)
                                       for i in services.pending_invitations(request.db, context.workspace_id)])


@view_config(route_name="api_invitations", request_method="POST", renderer="json",
             permission=MEMBERS_MANAGE, rate_limit="workspace_invite", body=InvitationInput,
             response={201: OneInvitation, 409: Refused("already_member")},
             links={"revoke_invitation": {"workspace_id": "$request.path.workspace_id",
                                          "invitation_id": "$response.body#/invitation/id"}})
def create_invitation(context, request):
    """Invite someone by email; a pending invitation to the address is replaced."""
    data = request.body_input
    invitation = services.invite(request.ctx, request.identity.user, context.workspace,
                                 data.email, data.role)
    return OneInvitation(invitation=InvitationOut.of(invitation))


@view_config(route_name="api_invitation", request_method="DELETE", permission=MEMBERS_MANAGE,
             response={204: None})
def revoke_invitation(context, request):
    """Withdraw a pending invitation."""
    services.revoke_invitation(request.ctx, context.record)
    return HTTPNoContent()


@view_config(route_name="api_invitation_accept", request_method="POST", renderer="json",
             permission=ACCOUNT, body=AcceptInvitationInput,
             response={200: OneWorkspace, 403: Refused("invitation_email_mismatch"),
                       404: Refused("invalid_invitation")})
def accept_invitation(request):
    """Join a workspace with the token of an emailed invitation."""
    data = request.body_input
    membership = services.accept_invitation(request.ctx, request.identity.user, data.token)
    return OneWorkspace(workspace=WorkspaceOut.of(membership.workspace, role=membership.role))


# --- API keys ----------------------------------------------------------------


@view_config(route_name="api_api_keys", request_method="GET", renderer="json",
             permission=API_KEYS_MANAGE, response=ApiKeyList)
def list_api_keys(context, request):
    """The workspace's API keys, without their secrets."""
    return ApiKeyList(api_keys=[ApiKeyOut.of(k) for k in services.api_keys(request.db, context.workspace_id)])


@view_config(route_name="api_api_keys", request_method="POST", renderer="json",
             permission=API_KEYS_MANAGE, body=ApiKeyInput, shows_secret=True, response={201: ApiKeyCreated},
             links={"revoke_api_key": {"workspace_id": "$request.path.workspace_id",
                                       "key_id": "$response.body#/api_key/id"}})
def create_api_key(context, request):
    """Create an API key; its secret is in this answer only."""
    data = request.body_input
    key, secret = services.create_api_key(request.ctx, context.workspace,
                                          data.name, data.role)
    return ApiKeyCreated(api_key=NewApiKeyOut.of(key, secret=secret),
                         message="Store the secret now: it is not shown again.")


@view_config(route_name="api_api_key", request_method="DELETE", permission=API_KEYS_MANAGE,
             response={204: None})
def revoke_api_key(context, request):
    """Revoke an API key: it stops working at once."""
    services.revoke_api_key(request.ctx, context.record)
    return HTTPNoContent()
