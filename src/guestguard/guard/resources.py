"""Flags hang below their event in the resource tree."""
from __future__ import annotations

from guestguard.events.resources import RecordResource, of_event
from guestguard.guard import flags
from guestguard.workspaces.resources import tenant_factory


@tenant_factory
def flag_factory(request) -> RecordResource:
    return of_event(request, flags.find_flag, "flag_id")
