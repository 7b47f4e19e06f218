"""The one permission catalogue and the role table. Views declare
``permission=`` with these names; resources grant them through ``__acl__``."""
from __future__ import annotations

from typing import ClassVar

from pyramid.authorization import Allow, Authenticated

# Your own account: profile, password, sessions.
ACCOUNT = "account"
# Allowed while the user still has to accept updated policies.
ACCOUNT_BASICS = "account.basics"
# Create workspaces, accept invitations: any signed-in person.
WORKSPACE_CREATE = "workspace.create"
# List the workspaces one can reach: people, and API keys (their own one).
WORKSPACES_LIST = "workspaces.list"
API_KEY_PRINCIPAL = "system:api_key"

WORKSPACE_VIEW = "workspace.view"
WORKSPACE_EDIT = "workspace.edit"
WORKSPACE_DELETE = "workspace.delete"
MEMBERS_VIEW = "members.view"
MEMBERS_MANAGE = "members.manage"
OWNERSHIP_TRANSFER = "ownership.transfer"
API_KEYS_MANAGE = "api_keys.manage"
BILLING_MANAGE = "billing.manage"
EVENTS_VIEW = "events.view"
EVENTS_EDIT = "events.edit"
GUESTS_VIEW = "guests.view"
GUESTS_EDIT = "guests.edit"
GUESTS_EXPORT = "guests.export"
GUESTS_CHECK_IN = "guests.check_in"

ALL_WORKSPACE_PERMISSIONS = frozenset({
    WORKSPACE_VIEW, WORKSPACE_EDIT, WORKSPACE_DELETE, MEMBERS_VIEW, MEMBERS_MANAGE,
    OWNERSHIP_TRANSFER, API_KEYS_MANAGE, BILLING_MANAGE, EVENTS_VIEW, EVENTS_EDIT, GUESTS_VIEW,
    GUESTS_EDIT, GUESTS_EXPORT, GUESTS_CHECK_IN,
})

OWNER, ADMIN, STAFF = "owner", "admin", "staff"
ROLES = (OWNER, ADMIN, STAFF)

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    OWNER: ALL_WORKSPACE_PERMISSIONS,
    ADMIN: ALL_WORKSPACE_PERMISSIONS - {BILLING_MANAGE, OWNERSHIP_TRANSFER, WORKSPACE_DELETE},
    STAFF: frozenset({WORKSPACE_VIEW, EVENTS_VIEW, GUESTS_VIEW, GUESTS_CHECK_IN}),
}

# What an API key may never do, whatever its role: keys are for integrations,
# not for managing people, keys or money.
NEVER_FOR_API_KEYS = frozenset({
    MEMBERS_MANAGE, OWNERSHIP_TRANSFER, API_KEYS_MANAGE, BILLING_MANAGE, WORKSPACE_DELETE,
})
API_KEY_ROLES = (ADMIN, STAFF)
API_KEY_PERMISSIONS: dict[str, frozenset[str]] = {
    role: ROLE_PERMISSIONS[role] - NEVER_FOR_API_KEYS for role in API_KEY_ROLES
}

# Operators' own pages (none yet). Platform admins get no access to tenants'
# data through their role: a workspace is seen only by its members.
PLATFORM_OPERATE = "platform.operate"

# Permissions a signed-in user keeps before accepting updated policies.
ALLOWED_BEFORE_POLICY_ACCEPTANCE = frozenset({ACCOUNT_BASICS})


def granted(identity, workspace_id) -> frozenset[str]:
    """What the caller may do in the workspace, from the same tables the
    workspace's ACL is built from."""
    table = ROLE_PERMISSIONS if identity.user is not None else API_KEY_PERMISSIONS
    return table.get(identity.roles.get(workspace_id), frozenset())


def member_principal(workspace_id, role: str) -> str:
    return f"workspace:{workspace_id}:{role}"


def api_key_principal(workspace_id, role: str) -> str:
    return f"workspace:{workspace_id}:key:{role}"


def workspace_acl(workspace_id) -> list[tuple]:
    """The ACL of one workspace, for its members' and keys' principals."""
    acl = [(Allow, member_principal(workspace_id, role), tuple(sorted(perms)))
           for role, perms in ROLE_PERMISSIONS.items()]
    acl += [(Allow, api_key_principal(workspace_id, role), tuple(sorted(perms)))
            for role, perms in API_KEY_PERMISSIONS.items()]
    return acl


class Root:
    """The root of the resource tree: any signed-in person may manage their
    own account and create workspaces; everything tenant-owned hangs from a
    workspace below."""

    __name__ = ""
    __parent__ = None
    __acl__: ClassVar[list[tuple]] = [
        (Allow, Authenticated, (ACCOUNT, ACCOUNT_BASICS, WORKSPACE_CREATE, WORKSPACES_LIST)),
        (Allow, API_KEY_PRINCIPAL, WORKSPACES_LIST),
        (Allow, "role:admin", PLATFORM_OPERATE),
    ]

    def __init__(self, request):
        self.request = request
