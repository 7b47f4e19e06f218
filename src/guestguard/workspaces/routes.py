"""Every route of the workspaces area: pages and API."""
from __future__ import annotations

from guestguard.workspaces.resources import api_key_factory, invitation_factory, member_factory, workspace_factory

WEB_ROUTES = (
    ("workspace_new", "/workspaces/new", None),
    ("workspace_home", "/workspaces/{workspace_id}", workspace_factory),
    ("workspace_settings", "/workspaces/{workspace_id}/settings", workspace_factory),
    ("workspace_leave", "/workspaces/{workspace_id}/leave", workspace_factory),
    ("workspace_transfer", "/workspaces/{workspace_id}/transfer-ownership", workspace_factory),
    ("workspace_delete", "/workspaces/{workspace_id}/delete", workspace_factory),
    ("workspace_members", "/workspaces/{workspace_id}/members", workspace_factory),
    ("workspace_member_role", "/workspaces/{workspace_id}/members/{member_id}/role", member_factory),
    ("workspace_member_remove", "/workspaces/{workspace_id}/members/{member_id}/remove",
     member_factory),
    ("workspace_invitations", "/workspaces/{workspace_id}/invitations", workspace_factory),
    ("workspace_invitation_revoke", "/workspaces/{workspace_id}/invitations/{invitation_id}/revoke",
     invitation_factory),
    ("workspace_api_keys", "/workspaces/{workspace_id}/api-keys", workspace_factory),
    ("workspace_api_key_revoke", "/workspaces/{workspace_id}/api-keys/{key_id}/revoke",
     api_key_factory),
    ("invitation", "/invitations/{token}", None),
)

API_ROUTES = (
    ("api_workspaces", "/api/v1/workspaces", None),
    ("api_workspace", "/api/v1/workspaces/{workspace_id}", workspace_factory),
    ("api_workspace_leave", "/api/v1/workspaces/{workspace_id}/leave", workspace_factory),
    ("api_workspace_transfer", "/api/v1/workspaces/{workspace_id}/transfer-ownership",
     workspace_factory),
    ("api_members", "/api/v1/workspaces/{workspace_id}/members", workspace_factory),
    ("api_member", "/api/v1/workspaces/{workspace_id}/members/{member_id}", member_factory),
    ("api_invitations", "/api/v1/workspaces/{workspace_id}/invitations", workspace_factory),
    ("api_invitation", "/api/v1/workspaces/{workspace_id}/invitations/{invitation_id}",
     invitation_factory),
    ("api_invitation_accept", "/api/v1/invitations/accept", None),
    ("api_api_keys", "/api/v1/workspaces/{workspace_id}/api-keys", workspace_factory),
    ("api_api_key", "/api/v1/workspaces/{workspace_id}/api-keys/{key_id}", api_key_factory),
)


def includeme(config) -> None:
    config.add_routes(WEB_ROUTES + API_ROUTES)
