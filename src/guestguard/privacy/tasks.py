"""The privacy area's tasks: building a data export, deleting spent files."""
from __future__ import annotations

import logging

from guestguard.accounts.models import User
from guestguard.context import context_of
from guestguard.db import utcnow
from guestguard.privacy import deletion, exports, retention
from guestguard.privacy.models import DataExport
from guestguard.tasks import claim_job, hold_lease

log = logging.getLogger(__name__)


def build_export(request, export_id) -> None:
    """Claim the export (transaction 1), write its archive while reading in
    one snapshot (transaction 2), then record it and mail the link
    (transaction 3); a failure is kept on the row and retried."""
    ctx = context_of(request)
    with ctx.tm:
        export = claim_job(ctx, DataExport, export_id)
        if export is None:
            return
        claimed_at, user_id = export.claimed_at, export.user_id
    final = exports.file_of(ctx.settings, export_id)
    # Each claim writes its own partial file: a run the reaper believed dead
    # cannot write into the file of the run that replaced it.
    partial = final.with_name(f"{final.name}.{claimed_at.timestamp():.0f}.part")
    with hold_lease(ctx, DataExport, export_id, claimed_at):
        permanent = False
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            with ctx.tm:
                user = ctx.db.get(User, user_id)
                if user is None:
                    permanent = True
                    raise LookupError("the account no longer exists")
                counts = exports.write_archive(ctx, user, partial, utcnow())
            partial.replace(final)
            with ctx.tm:
                if exports.mark_ready(ctx, export_id, claimed_at, counts, final.stat().st_size):
                    return
            return
        except Exception as exc:
            partial.unlink(missing_ok=True)
            # The archive holds people's data: the log names the row, the row says why.
            log.warning("data export %s: building failed (%s)", export_id, type(exc).__name__)
            error = f"{type(exc).__name__}: {exc}"
        with ctx.tm:
            exports.record_failure(ctx, export_id, claimed_at, error, permanent=permanent)


def purge_export_files(request) -> int:
    """Hourly: the files of downloaded and expired exports go."""
    ctx = context_of(request)
    with ctx.tm:
        deleted = exports.purge_files(ctx)
    if deleted:
        log.info("data exports: %d spent file(s) deleted", deleted)
    return deleted


ERASE_BATCH = 50


def erase_deleted_accounts(request, now=None) -> int:
    """Nightly: accounts deleted more than ``privacy.deletion_grace_days``
    ago are erased, one per transaction (an interrupted run leaves each
    account whole or gone, and the next run goes on). Returns how many."""
    ctx = context_of(request)
    now = now or utcnow()
    erased = 0
    while True:
        with ctx.tm:
            due = deletion.due_for_erasure(ctx.db, now, ctx.settings, ERASE_BATCH)
        for user_id in due:
            with ctx.tm:
                erased += deletion.erase_account(ctx, user_id, now)
        if len(due) < ERASE_BATCH:
            break
    if erased:
        log.info("accounts: %d deleted account(s) erased after their grace period", erased)
    return erased


def apply_retention(request, now=None) -> int:
    """Nightly: notices for what is anonymized soon, then every event past
    its retention anonymized, one per transaction. Returns events done."""
    ctx = context_of(request)
    now = now or utcnow()
    with ctx.tm:
        retention.send_notices(ctx, now)
        due = [item.event_id for item in retention.due_events(ctx.db, ctx.settings, now)]
    done = 0
    for event_id in due:
        with ctx.tm:
            retention.anonymize_event(ctx, event_id, now)
            done += 1
    if done:
        log.info("retention: %d event(s) anonymized", done)
    return done
