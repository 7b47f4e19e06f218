"""Privacy: forgetting a guest through every area's privacy job.

Services take a context (``guestguard.context``) and plain values; the
views authorized the caller.
"""
from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence

from sqlalchemy import select

from guestguard.audit.services import record
from guestguard.db import lock_row, utcnow
from guestguard.events.models import Guest, InvitationLink
from guestguard.plugins import PrivacyJob

log = logging.getLogger(__name__)


def privacy_jobs(registry) -> Sequence[PrivacyJob]:
    """The data map: every area's and plugin's privacy jobs."""
    return registry["privacy.jobs"]


def forget_guest(ctx, guest_id: uuid.UUID) -> Guest:
    """Erase what every area holds about the guest, in this transaction,
    keeping the row as the tally of their answer so the event's counts stay
    exact. Forgetting a forgotten guest again changes nothing and records
    nothing; two at once: the row lock lets one through, the other finds it
    forgotten."""
    lock_links(ctx.db, InvitationLink.guest_id == guest_id)
    lock_row(ctx.db, Guest, guest_id)
    guest = ctx.db.scalar(select(Guest).where(Guest.id == guest_id).execution_options(populate_existing=True))
    if guest.forgotten_at is not None:
        return guest
    erase_guest(ctx, guest)
    # Ids only: the audit trail says that the guest was forgotten, never who.
    record(ctx, "guest.forgotten", actor_id=ctx.actor_id, workspace_id=guest.workspace_id,
           target_type="guest", target_id=guest.id, event_id=str(guest.event_id))
    ctx.emit("guest.forgotten", {"event_id": str(guest.event_id), "guest_id": str(guest.id)},
             guest.workspace_id)
    return guest


def lock_links(db, where) -> None:
    """Hold the invitation links ``where`` picks, FOR UPDATE, before any
    guest's row: the order a use of a link takes them (the link FOR KEY
    SHARE, then the guest), so a forget and an answer wait for each other
    instead of deadlocking, and the answer that waited finds no link."""
    db.execute(select(InvitationLink.id).where(where).order_by(InvitationLink.id).with_for_update())


def erase_guest(ctx, guest: Guest) -> None:
    """Every privacy job's part of forgetting the (locked) guest; the row
    stays, marked. No audit row: the caller records what it did."""
    for job in privacy_jobs(ctx.registry):
        if job.forget_guest is not None:
            job.forget_guest(ctx, guest)
    guest.forgotten_at = utcnow()


# --- what Redis holds about the people erased ------------------------------------


class CounterPurge:
    """The rate-limit buckets that count the people a transaction erased
    (by account, API key, invitation link or email address), deleted from
    the limiter's store once it commits (never for one that rolls back).
    One per transaction, however many guests it forgets: one pass over
    the store's keys."""

    def __init__(self, limiter):
        self.limiter = limiter
        self.identifiers: set[str] = set()
        self.email_digests: set[str] = set()

    def __call__(self, committed: bool) -> None:
        if not committed:
            return
        try:
            purged = self.limiter.forget(self.identifiers, self.email_digests)
        except Exception as exc:  # the store is away: the buckets expire with their window
            log.warning("privacy: the rate-limit counters of erased people could not be deleted (%s); "
                        "they expire with their window", type(exc).__name__)
            return
        if purged:
            log.info("privacy: %d rate-limit counter(s) of erased people deleted", purged)


def purge_counters_after_commit(ctx, identifiers: Iterable[str] = (), email_digests: Iterable[str] = ()) -> None:
    """Delete, once this transaction commits, the limiter's buckets counting
    ``identifiers`` (``guestguard.ratelimit.service.person_keys``) or the
    addresses of ``email_digests``."""
    transaction = ctx.tm.get()
    try:
        purge = transaction.data(CounterPurge)
    except KeyError:
        purge = CounterPurge(ctx.registry["ratelimit"])
        transaction.set_data(CounterPurge, purge)
        transaction.addAfterCommitHook(purge)
    purge.identifiers.update(identifiers)
    purge.email_digests.update(email_digests)
