"""Input of the workspace API and forms, and the API's answers."""
from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import AliasPath, ConfigDict, Field, StringConstraints

from guestguard.accounts.schemas import Email, Token
from guestguard.contract import Moment, Out
from guestguard.validation import Input
from guestguard.workspaces.services import API_KEY_PREFIX

Name = Annotated[str, StringConstraints(min_length=1, max_length=100)]


class WorkspaceInput(Input):
    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "Gala team"}]})

    name: Name


class DeleteWorkspaceInput(Input):
    """The settings page's confirmation: the workspace's name, typed."""
    confirm_name: str


class RoleInput(Input):
    model_config = ConfigDict(json_schema_extra={"examples": [{"role": "admin"}]})

    role: Literal["owner", "admin", "staff"]


class InvitationInput(Input):
    model_config = ConfigDict(json_schema_extra={"examples": [{"email": "grace@example.com", "role": "staff"}]})

    email: Email
    role: Literal["admin", "staff"]


class AcceptInvitationInput(Input):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"token": "k3Jt9QwZ0bV7nR2yL5mX8cF1dH4gS6aP0eU9iO2wQzE"}]})

    token: Token


class TransferInput(Input):
    model_config = ConfigDict(json_schema_extra={"examples": [{"member_id": "9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d"}]})

    member_id: uuid.UUID


class ApiKeyInput(Input):
    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "Door app", "role": "staff"}]})

    name: Name
    role: Literal["admin", "staff"]


# --- answers -----------------------------------------------------------------


class WorkspaceOut(Out):
    """``role`` is the caller's."""

    id: uuid.UUID
    name: str
    slug: str
    personal: bool
    role: str | None
    created_at: Moment


class OneWorkspace(Out):
    workspace: WorkspaceOut


class WorkspaceList(Out):
    workspaces: list[WorkspaceOut]


class MemberOut(Out):
    id: uuid.UUID
    user_id: uuid.UUID
    email: str = Field(validation_alias=AliasPath("user", "email"))
    display_name: str = Field(validation_alias=AliasPath("user", "display_name"))
    role: str
    joined_at: Moment = Field(validation_alias="created_at")


class OneMember(Out):
    member: MemberOut


class MemberList(Out):
    members: list[MemberOut]


class InvitationOut(Out):
    id: uuid.UUID
    email: str
    role: str
    created_at: Moment
    expires_at: Moment


class OneInvitation(Out):
    invitation: InvitationOut


class InvitationList(Out):
    invitations: list[InvitationOut]


class ApiKeyOut(Out):
    """A key without its secret; ``prefix`` is how its secret starts."""

    id: uuid.UUID
    name: str
    role: str
    prefix: str
    created_at: Moment
    last_used_at: Moment | None

    @classmethod
    def of(cls, key: Any, **extra: Any):
        return super().of(key, prefix=f"{API_KEY_PREFIX}{key.lookup_id}", **extra)


class NewApiKeyOut(ApiKeyOut):
    secret: str


class ApiKeyCreated(Out):
    api_key: NewApiKeyOut
    message: str


class ApiKeyList(Out):
    api_keys: list[ApiKeyOut]
