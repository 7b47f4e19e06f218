"""Events, guest lists, personal invitation links, RSVPs and the guest's
pages. Its routes are declared in ``routes.py``."""
from __future__ import annotations

from huey import crontab


def includeme(config) -> None:
    from guestguard.events.alerts import send_digests
    from guestguard.events.removals import purge_removed

    config.include(".routes")
    config.scan(".api")
    config.scan(".views")
    config.scan(".links_api")
    config.scan(".guest_views")
    config.add_periodic_task(send_digests, crontab(minute="5"), in_transaction=False)
    # Every minute: a removed guest's data outlives the undo window by a minute at most.
    config.add_periodic_task(purge_removed, crontab(minute="*"), in_transaction=False)
