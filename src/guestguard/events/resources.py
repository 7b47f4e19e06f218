"""Events and guests hang below their workspace in the resource tree."""
from __future__ import annotations

import uuid

from pyramid.httpexceptions import HTTPNotFound

from guestguard.events import flags, services
from guestguard.workspaces import services as workspaces
from guestguard.workspaces.resources import RecordResource, WorkspaceResource, parse_id, tenant_factory


def event_resource(request, event_id: uuid.UUID) -> RecordResource:
    """The event's resource; HTTPNotFound when it does not exist."""
    event = services.find_event(request.db, event_id)
    workspace = workspaces.find_workspace(request.db, event.workspace_id) if event else None
    if event is None or workspace is None:
        raise HTTPNotFound()
    resource = RecordResource(WorkspaceResource(request, workspace), event)
    resource.event = event
    return resource


def _event(request) -> RecordResource:
    return event_resource(request, parse_id(request, "event_id"))


@tenant_factory
def event_factory(request) -> RecordResource:
    return _event(request)


@tenant_factory
def guest_factory(request) -> RecordResource:
    parent = _event(request)
    guest = services.find_guest(request.db, parent.event.id, parse_id(request, "guest_id"))
    if guest is None:
        raise HTTPNotFound()
    resource = RecordResource(parent, guest)
    resource.event = parent.event
    return resource


@tenant_factory
def flag_factory(request) -> RecordResource:
    parent = _event(request)
    flag = flags.find_flag(request.db, parent.event.id, parse_id(request, "flag_id"))
    if flag is None:
        raise HTTPNotFound()
    resource = RecordResource(parent, flag)
    resource.event = parent.event
    return resource

