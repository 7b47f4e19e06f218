"""The guard: every use of an invitation link logged, access rules scoring
those uses in the worker, and flags for the host to review. Its routes are
declared in ``routes.py``."""
from __future__ import annotations

from huey import crontab


def includeme(config) -> None:
    from guestguard.guard.access import purge
    from guestguard.guard.flags import evaluate_pending, sweep_pending
    from guestguard.guard.rules import access_rules, history_window
    from guestguard.guard.signals import signals_from

    settings = config.get_settings()
    config.registry["guard.signals"] = signals_from(settings)
    config.registry["guard.rules"] = access_rules(settings, config.registry["plugins"])
    config.registry["guard.history_window"] = history_window(settings)
    config.include(".routes")
    config.add_task(evaluate_pending)
    config.add_periodic_task(sweep_pending, crontab(minute="*"))
    config.add_periodic_task(purge, crontab(minute="17", hour="3"), in_transaction=False)
    config.scan(".api")
    config.scan(".views")
