"""An import hangs below its event in the resource tree."""
from __future__ import annotations

from guestguard.events.resources import of_event
from guestguard.imports import services
from guestguard.workspaces.resources import tenant_factory


@tenant_factory
def import_factory(request):
    return of_event(request, services.find_import, "import_id")
