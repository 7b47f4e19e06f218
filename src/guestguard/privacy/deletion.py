"""Deleting one's account: at once a soft delete (logins refused, every
session and the keys of the workspaces going with the account revoked),
a copy of one's data mailed first, cancellable for
``privacy.deletion_grace_days`` by the emailed link; then the nightly job
erases it for good, leaving no row that points at it.

The workspaces the user alone owns go with them; a workspace with another
owner stays; the last owner of a workspace others belong to must hand it
over first (409 naming it).
"""
from __future__ import annotations

import datetime as dt
import logging
import uuid

from sqlalchemy import case, delete, func, select, update

from guestguard import rls
from guestguard.accounts import sessions
from guestguard.accounts.models import User, UserToken
from guestguard.accounts.services import passwords
from guestguard.accounts.tokens import hash_token, looks_like_token, new_token
from guestguard.audit.models import AuditEvent
from guestguard.audit.services import FAILURE, record
from guestguard.db import lock_row, utcnow
from guestguard.domain import DomainEventRow
from guestguard.errors import Refusal
from guestguard.notifications.models import DeliveryDay, Notification, Suppression
from guestguard.notifications.services import queue_notification
from guestguard.permissions import OWNER
from guestguard.privacy import exports
from guestguard.privacy.jobs import forget_reports
from guestguard.privacy.models import DataExport
from guestguard.privacy.services import purge_counters_after_commit
from guestguard.ratelimit.service import email_digest, person_keys
from guestguard.workspaces.models import ApiKey, Membership, Workspace

log = logging.getLogger(__name__)

CANCEL_PURPOSE = "cancel_deletion"
DELETED_TEMPLATE = "account_deletion"
NOT_VALID = "This link is not valid: it may have expired, been used already, or the account is not being deleted."


class DeletionError(Refusal):
    """A refusal of an account deletion; views turn it into a 4xx answer."""


def grace(settings) -> dt.timedelta:
    return dt.timedelta(days=settings["privacy.deletion_grace_days"])


def owned_workspaces(db, user_id: uuid.UUID, *, live_only: bool = True) -> list[tuple[Workspace, int, int]]:
    """(workspace, owners, members) of every workspace the user owns (the
    soft-deleted ones too unless ``live_only``)."""
    mine = select(Membership.workspace_id).where(Membership.user_id == user_id, Membership.role == OWNER)
    query = (select(Workspace, func.sum(case((Membership.role == OWNER, 1), else_=0)), func.count(Membership.id))
             .join(Membership, Membership.workspace_id == Workspace.id)
             .where(Workspace.id.in_(mine)).group_by(Workspace.id).order_by(Workspace.name))
    if live_only:
        query = query.where(Workspace.deleted_at.is_(None))
    return [(workspace, int(owners), int(members)) for workspace, owners, members in db.execute(query).all()]


def delete_account(ctx, user: User, password: str) -> User:
    """Soft-delete the account now; the nightly job erases it after the
    grace period. A wrong password is a 400 naming ``password``; the last
    owner of a workspace others belong to gets a 409 naming it. Deleting a
    deleted account again changes nothing."""
    if not passwords(ctx).verify(user.password_hash, password):
        record(ctx, "account.deletion_requested", result=FAILURE, actor_id=user.id, target_type="user",
               target_id=user.id, reason="wrong_password")
        raise DeletionError(400, "invalid_password", "The password is not right.", field="password")
    lock_row(ctx.db, User, user.id)
    ctx.db.refresh(user)
    if user.deleted_at is not None:
        return user
    owned = owned_workspaces(ctx.db, user.id)
    stuck = [workspace for workspace, owners, members in owned if owners == 1 and members > 1]
    if stuck:
        names = ", ".join(f"“{workspace.name}”" for workspace in stuck)
        raise DeletionError(409, "last_owner", f"You are the last owner of {names}, which other people belong "
                            "to: make one of them an owner (or transfer ownership) first.",
                            workspaces=[{"id": str(w.id), "name": w.name} for w in stuck])
    now = utcnow()
    # The export is asked for first, while the account is whole; the worker
    # builds it from what the deletion keeps until the erasure.
    exports.request_export(ctx, user)
    user.deleted_at = now
    going = [workspace for workspace, owners, _ in owned if owners == 1]
    for workspace in going:
        # Stamped with the account's own time: a cancel brings back exactly these.
        workspace.deleted_at = now
    if going:
        ctx.db.execute(update(ApiKey).where(ApiKey.workspace_id.in_([w.id for w in going]),
                                            ApiKey.revoked_at.is_(None))
                       .values(revoked_at=now).execution_options(synchronize_session=False))
    ended = sessions.revoke_all(ctx.db, user.id, "account_deleted")
    raw, token_hash = new_token()
    ctx.db.add(UserToken(user_id=user.id, purpose=CANCEL_PURPOSE, token_hash=token_hash,
                         expires_at=now + grace(ctx.settings)))
    erase_on = now + grace(ctx.settings)
    queue_notification(ctx, channel="email", recipient=user.email, template=DELETED_TEMPLATE,
                       context={"display_name": user.display_name,
                                "erase_on": f"{erase_on.day} {erase_on:%B %Y}",
                                "workspaces": [w.name for w in going]},
                       sealed={"cancel_url": ctx.url("account_deletion_cancel", token=raw)})
    record(ctx, "account.deletion_requested", actor_id=user.id, target_type="user", target_id=user.id,
           sessions_ended=ended, workspaces=[str(w.id) for w in going])
    return user


def cancel_deletion(ctx, raw_token: str) -> User:
    """The emailed link: the account and the workspaces that were going with
    it come back (API keys stay revoked; sign in again)."""
    now = utcnow()
    token = (ctx.db.scalar(select(UserToken).where(UserToken.token_hash == hash_token(raw_token),
                                                   UserToken.purpose == CANCEL_PURPOSE))
             if looks_like_token(raw_token) else None)
    if token is None or token.used_at is not None or token.expires_at <= now:
        raise DeletionError(404, "not_found", NOT_VALID)
    lock_row(ctx.db, User, token.user_id)
    user = ctx.db.get(User, token.user_id, populate_existing=True)
    won = ctx.db.execute(update(UserToken).where(UserToken.id == token.id, UserToken.used_at.is_(None))
                         .values(used_at=now).execution_options(synchronize_session=False)).rowcount
    if won != 1 or user is None or user.deleted_at is None:
        raise DeletionError(404, "not_found", NOT_VALID)
    rls.open_workspaces_of(ctx.db, user.id)  # the link's holder is the account's owner
    mine = select(Membership.workspace_id).where(Membership.user_id == user.id, Membership.role == OWNER)
    ctx.db.execute(update(Workspace).where(Workspace.id.in_(mine), Workspace.deleted_at == user.deleted_at)
                   .values(deleted_at=None).execution_options(synchronize_session=False))
    user.deleted_at = None
    record(ctx, "account.deletion_cancelled", actor_id=user.id, target_type="user", target_id=user.id)
    return user


def check_cancel_token(ctx, raw_token: str) -> bool:
    if not looks_like_token(raw_token):
        return False
    token = ctx.db.scalar(select(UserToken).where(UserToken.token_hash == hash_token(raw_token),
                                                  UserToken.purpose == CANCEL_PURPOSE))
    return token is not None and token.used_at is None and token.expires_at > utcnow()


# --- the erasure ------------------------------------------------------------------------


def forget_account_counters(ctx, user: User, going: list[uuid.UUID]) -> None:
    """Once the erasure commits, the limiter's buckets counting the account,
    its address (from any client), and the API keys and guests' links of
    the workspaces going with it are deleted."""
    from guestguard.events.models import InvitationLink

    keys = ctx.db.scalars(select(ApiKey.id).where(ApiKey.workspace_id.in_(going))).all() if going else []
    links = (ctx.db.scalars(select(InvitationLink.token_hash).where(InvitationLink.workspace_id.in_(going))).all()
             if going else [])
    purge_counters_after_commit(ctx, person_keys(user_ids=[user.id], api_key_ids=keys, token_hashes=links),
                                [email_digest(user.email)])


def due_for_erasure(db, now: dt.datetime, settings, limit: int) -> list[uuid.UUID]:
    cutoff = now - grace(settings)
    return list(db.scalars(select(User.id).where(User.deleted_at.is_not(None), User.deleted_at <= cutoff)
                           .order_by(User.deleted_at).limit(limit)))


def erase_account(ctx, user_id: uuid.UUID, now: dt.datetime | None = None) -> bool:
    """Erase one soft-deleted account past its grace period, in this
    transaction: the workspaces it alone owns (and everything in them), its
    exports' files, the addresses of its messages and audit rows, then the
    user row (memberships, sessions, tokens go with it; references to it
    elsewhere become null). False when it is no longer due (cancelled, or
    another run erased it)."""
    now = now or utcnow()
    lock_row(ctx.db, User, user_id)
    user = ctx.db.get(User, user_id, populate_existing=True)
    if user is None or user.deleted_at is None or user.deleted_at > now - grace(ctx.settings):
        return False
    going = [workspace.id for workspace, owners, _ in owned_workspaces(ctx.db, user.id, live_only=False) if owners == 1]
    forget_account_counters(ctx, user, going)
    forget_reports(ctx, select(Notification.id).where(
        Notification.workspace_id.in_(going) | (Notification.recipient == user.email)))
    if going:
        # Rows that name a workspace without a foreign key go by hand.
        ctx.db.execute(delete(Notification).where(Notification.workspace_id.in_(going))
                       .execution_options(synchronize_session=False))
        ctx.db.execute(delete(DomainEventRow).where(DomainEventRow.workspace_id.in_(going))
                       .execution_options(synchronize_session=False))
        ctx.db.execute(delete(AuditEvent).where(AuditEvent.workspace_id.in_(going))
                       .execution_options(synchronize_session=False))
        ctx.db.execute(delete(DeliveryDay).where(DeliveryDay.workspace_id.in_(going))
                       .execution_options(synchronize_session=False))
        ctx.db.execute(delete(Suppression).where(Suppression.scope.in_([str(w) for w in going]))
                       .execution_options(synchronize_session=False))
        ctx.db.execute(delete(Workspace).where(Workspace.id.in_(going))
                       .execution_options(synchronize_session=False))
    for export_id in ctx.db.scalars(select(DataExport.id).where(DataExport.user_id == user.id)):
        for path in exports.export_dir(ctx.settings).glob(f"{export_id}.zip*"):
            path.unlink(missing_ok=True)
    ctx.db.execute(update(Notification).where(Notification.recipient == user.email)
                   .values(recipient="", context={}, sealed_context=None)
                   .execution_options(synchronize_session=False))
    ctx.db.execute(update(AuditEvent).where(AuditEvent.actor_user_id == user.id)
                   .values(ip=None).execution_options(synchronize_session=False))
    ctx.db.execute(delete(User).where(User.id == user.id).execution_options(synchronize_session=False))
    ctx.db.expunge(user)
    # Ids only: that an account was erased, never whose.
    record(ctx, "account.erased", target_type="user", target_id=user_id, workspaces=len(going))
    return True
