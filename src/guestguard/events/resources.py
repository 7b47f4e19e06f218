"""Events and guests hang below their workspace in the resource tree."""
from __future__ import annotations

import uuid

from pyramid.httpexceptions import HTTPNotFound

from guestguard.events import services
from guestguard.workspaces.resources import RecordResource, WorkspaceResource, parse_id, tenant_factory


def event_resource(request, event_id: uuid.UUID) -> RecordResource:
    """The event's resource; HTTPNotFound when it, or its workspace, does
    not exist (one query for both)."""
    found = services.find_event_and_workspace(request.db, event_id)
    if found is None:
        raise HTTPNotFound()
    event, workspace = found
    resource = RecordResource(WorkspaceResource(request, workspace), event)
    resource.event = event
    return resource


def _event(request) -> RecordResource:
    return event_resource(request, parse_id(request, "event_id"))


@tenant_factory
def event_factory(request) -> RecordResource:
    return _event(request)


def of_event(request, find, id_name: str) -> RecordResource:
    """A record of the event in the route (``find(db, event_id, id)``)."""
    parent = _event(request)
    record = find(request.db, parent.event.id, parse_id(request, id_name))
    if record is None:
        raise HTTPNotFound()
    resource = RecordResource(parent, record)
    resource.event = parent.event
    return resource


@tenant_factory
def guest_factory(request) -> RecordResource:
    return of_event(request, services.find_guest, "guest_id")
