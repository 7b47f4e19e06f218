"""The resource tree below a workspace. Route factories look records up by
id and return resources whose ``__parent__`` chain reaches the workspace,
whose ``__acl__`` grants its members' and keys' roles.

A missing or malformed id is 404. Anonymous callers are refused before any
lookup, so they learn nothing about which ids exist; callers who are not
members are answered 404 by the forbidden view, with the very body of a
missing id."""
from __future__ import annotations

import uuid

from pyramid.httpexceptions import HTTPForbidden, HTTPNotFound

from guestguard.permissions import Root, workspace_acl
from guestguard.workspaces import services
from guestguard.workspaces.models import Workspace


class WorkspaceResource:
    def __init__(self, request, workspace: Workspace):
        self.__parent__ = Root(request)
        self.__name__ = str(workspace.id)
        self.workspace = workspace
        self.workspace_id = workspace.id
        self.__acl__ = workspace_acl(workspace.id)


class RecordResource:
    """A tenant-owned record under its workspace."""

    def __init__(self, parent: WorkspaceResource, record):
        self.__parent__ = parent
        self.__name__ = str(record.id)
        self.record = record
        self.workspace = parent.workspace
        self.workspace_id = parent.workspace_id


def parse_id(request, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(request.matchdict[name])
    except (KeyError, ValueError):
        raise HTTPNotFound() from None


def tenant_factory(func):
    """Mark a route factory as resolving a tenant-owned resource: the
    cross-tenant test finds such routes by this mark."""

    def factory(request):
        if request.identity is None:
            raise HTTPForbidden()
        return func(request)

    factory.tenant_owned = True
    factory.__name__ = func.__name__
    factory.__doc__ = func.__doc__
    return factory


def _workspace(request) -> WorkspaceResource:
    workspace = services.find_workspace(request.db, parse_id(request, "workspace_id"))
    if workspace is None:
        raise HTTPNotFound()
    return WorkspaceResource(request, workspace)


@tenant_factory
def workspace_factory(request) -> WorkspaceResource:
    return _workspace(request)


def _child(finder, id_name: str):
    @tenant_factory
    def factory(request) -> RecordResource:
        parent = _workspace(request)
        record = finder(request.db, parent.workspace_id, parse_id(request, id_name))
        if record is None:
            raise HTTPNotFound()
        return RecordResource(parent, record)

    return factory


member_factory = _child(services.find_membership, "member_id")
invitation_factory = _child(services.find_invitation, "invitation_id")
api_key_factory = _child(services.find_api_key, "key_id")
