"""The hosts' activity feed: what happened at an event, published live
after commit, followed through single-use stream tickets and Server-Sent
Events. Its routes are declared in ``routes.py``."""
from __future__ import annotations

from huey import crontab


def includeme(config) -> None:
    from guestguard.activity.live import make_broker
    from guestguard.activity.stream import purge_tickets

    config.registry["live.broker"] = make_broker(config.get_settings()["guard.stream.url"])
    config.include(".routes")
    config.add_periodic_task(purge_tickets, crontab(minute="17", hour="3"))
    config.scan(".api")
