"""Privacy: the data map (``register_privacy_jobs``), forgetting a guest and
the user's data export. Its routes are declared in ``routes.py``."""
from __future__ import annotations

from huey import crontab

from guestguard.plugins import PrivacyJob, by_name, collect


def includeme(config) -> None:
    registry = config.registry
    jobs = by_name(collect(registry["plugins"].hook.register_privacy_jobs(settings=config.get_settings())),
                   PrivacyJob, "privacy job")
    registry["privacy.jobs"] = list(jobs.values())
    from guestguard.privacy.exports import RETRY_BACKOFF
    from guestguard.privacy.models import DataExport
    from guestguard.privacy.tasks import apply_retention, build_export, erase_deleted_accounts, purge_export_files

    config.add_task(build_export, in_transaction=False)
    config.add_durable_job(DataExport, build_export, max_attempts=len(RETRY_BACKOFF) + 1)
    config.add_periodic_task(purge_export_files, crontab(minute="23"), in_transaction=False)
    config.add_periodic_task(erase_deleted_accounts, crontab(minute="11", hour="2"), in_transaction=False)
    config.add_periodic_task(apply_retention, crontab(minute="31", hour="2"), in_transaction=False)
    config.include(".routes")
    config.scan(".api")
    config.scan(".views")
