from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import StringConstraints

from guestguard.accounts.schemas import Email, Token
from guestguard.validation import Input

Name = Annotated[str, StringConstraints(min_length=1, max_length=100)]


class WorkspaceInput(Input):
    name: Name


class DeleteWorkspaceInput(Input):
    """The settings page's confirmation: the workspace's name, typed."""
    confirm_name: str


class RoleInput(Input):
    role: Literal["owner", "admin", "staff"]


class InvitationInput(Input):
    email: Email
    role: Literal["admin", "staff"]


class AcceptInvitationInput(Input):
    token: Token


class TransferInput(Input):
    member_id: uuid.UUID


class ApiKeyInput(Input):
    name: Name
    role: Literal["admin", "staff"]
