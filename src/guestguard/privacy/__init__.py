"""Privacy: the data map (``register_privacy_jobs``) and forgetting a guest.
Its routes are declared in ``routes.py``."""
from __future__ import annotations

from guestguard.plugins import PrivacyJob, by_name, collect


def includeme(config) -> None:
    registry = config.registry
    jobs = by_name(collect(registry["plugins"].hook.register_privacy_jobs(settings=config.get_settings())),
                   PrivacyJob, "privacy job")
    registry["privacy.jobs"] = list(jobs.values())
    config.include(".routes")
    config.scan(".api")
