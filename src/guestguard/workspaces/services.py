"""Workspaces, memberships, invitations and API keys. Functions take the
request (database session, settings, enqueue, audit context) and plain values;
authorization happened before they are called (views declare permissions),
the rules about owners are enforced here."""
from __future__ import annotations

import datetime as dt
import re
import secrets
import unicodedata
import uuid
from typing import Any

from sqlalchemy import Select, and_, func, select, update

from guestguard import rls
from guestguard.accounts.models import User
from guestguard.accounts.tokens import hash_token, looks_like_token, matches, new_token
from guestguard.audit.services import record
from guestguard.db import lock_row, utcnow
from guestguard.errors import Refusal
from guestguard.notifications.services import queue_notification
from guestguard.permissions import ADMIN, OWNER, STAFF
from guestguard.workspaces.models import ApiKey, Invitation, Membership, Workspace

API_KEY_PREFIX = "ggk_"
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


class WorkspaceError(Refusal):
    """A refusal with a machine code; views turn it into a 4xx response."""



# --- workspaces --------------------------------------------------------------


def slugify(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:48] or "workspace"


def unique_slug(db, name: str) -> str:
    base = slugify(name)
    slug = base
    # Slugs are unique across every workspace, seen or not.
    with rls.as_system(db):
        while db.scalar(select(Workspace.id).where(Workspace.slug == slug)) is not None:
            slug = f"{base}-{secrets.token_hex(3)}"
    return slug


def create_workspace(ctx, user, name: str, *, personal: bool = False) -> Workspace:
    workspace = Workspace(id=uuid.uuid4(), name=name, slug=unique_slug(ctx.db, name), personal=personal)
    rls.open_workspace(ctx.db, workspace.id)  # its creator works in it from now on
    ctx.db.add(workspace)
    ctx.db.flush()
    ctx.db.add(Membership(workspace_id=workspace.id, user_id=user.id, role=OWNER))
    record(ctx, "workspace.created", actor_id=user.id, workspace_id=workspace.id,
           target_type="workspace", target_id=workspace.id)
    return workspace


def has_workspace(db, user_id) -> bool:
    return db.scalar(select(Membership.id).where(Membership.user_id == user_id).limit(1)) is not None


def create_personal_workspace(ctx, user) -> Workspace:
    """A workspace of one's own, as its owner: at signup, unless joining
    another workspace (then only if that invitation cannot be accepted)."""
    return create_workspace(ctx, user, f"{user.display_name}'s events"[:100], personal=True)


# A person's workspaces in the order menus show them: their personal one first, then by name.
WORKSPACE_ORDER = (Workspace.personal.desc(), Workspace.name)


def memberships_of(db, user_id: uuid.UUID) -> list[Membership]:
    return list(db.scalars(
        select(Membership).join(Workspace)
        .where(Membership.user_id == user_id, Workspace.deleted_at.is_(None))
        .order_by(*WORKSPACE_ORDER)))


def roles_of(db, user_id: uuid.UUID) -> dict[uuid.UUID, str]:
    """The person's role in each of their workspaces (deleted ones aside),
    as plain rows, in ``WORKSPACE_ORDER``."""
    return dict(db.execute(
        select(Membership.workspace_id, Membership.role).join(Workspace)
        .where(Membership.user_id == user_id, Workspace.deleted_at.is_(None))
        .order_by(*WORKSPACE_ORDER)).all())


def with_roles(query: Select, user_id: Any) -> Select:
    """``query`` (of one row) joined to the memberships of the person
    ``user_id`` (a column of it): a row per membership, or one row without
    any; ``roles_in`` reads them. On PostgreSQL the memberships are seen
    under that person's own id (``rls``), set before the statement runs."""
    return (query.add_columns(Membership.workspace_id, Membership.role, Workspace.id.label("live_workspace"))
            .outerjoin(Membership, Membership.user_id == user_id)
            .outerjoin(Workspace, and_(Workspace.id == Membership.workspace_id, Workspace.deleted_at.is_(None)))
            .order_by(*WORKSPACE_ORDER))


def roles_in(rows) -> dict[uuid.UUID, str]:
    """The roles of ``with_roles``' rows, as ``roles_of`` gives them."""
    return {row.workspace_id: row.role for row in rows if row.live_workspace is not None}


def find_workspace(db, workspace_id: uuid.UUID) -> Workspace | None:
    return db.scalar(select(Workspace).where(Workspace.id == workspace_id,
                                             Workspace.deleted_at.is_(None)))


def rename_workspace(ctx, workspace: Workspace, name: str) -> Workspace:
    if name != workspace.name:
        workspace.name = name
        record(ctx, "workspace.renamed", actor_id=ctx.actor_id, workspace_id=workspace.id,
               target_type="workspace", target_id=workspace.id)
    return workspace


def delete_workspace(ctx, workspace: Workspace) -> None:
    """Soft delete: members lose access at once; the data stays for the
    retention period."""
    workspace.deleted_at = utcnow()
    ctx.db.execute(update(ApiKey).where(ApiKey.workspace_id == workspace.id,
                                            ApiKey.revoked_at.is_(None))
                       .values(revoked_at=workspace.deleted_at)
                       .execution_options(synchronize_session=False))
    record(ctx, "workspace.deleted", actor_id=ctx.actor_id, workspace_id=workspace.id,
           target_type="workspace", target_id=workspace.id)


# --- members -----------------------------------------------------------------


def members(db, workspace_id: uuid.UUID) -> list[Membership]:
    return list(db.scalars(select(Membership).where(Membership.workspace_id == workspace_id)
                           .order_by(Membership.created_at)))


def membership_of(db, workspace_id: uuid.UUID, user_id: uuid.UUID) -> Membership | None:
    return db.scalar(select(Membership).where(Membership.workspace_id == workspace_id,
                                              Membership.user_id == user_id))


def find_membership(db, workspace_id: uuid.UUID, membership_id: uuid.UUID) -> Membership | None:
    return db.scalar(select(Membership).where(Membership.id == membership_id,
                                              Membership.workspace_id == workspace_id))


def owner_count(db, workspace_id: uuid.UUID) -> int:
    return db.scalar(select(func.count()).select_from(Membership)
                     .where(Membership.workspace_id == workspace_id, Membership.role == OWNER))


def _lock_owners(db, workspace_id: uuid.UUID) -> None:
    """Serialize changes to a workspace's owners, so two concurrent demotions
    cannot each see the other owner and leave none."""
    lock_row(db, Workspace, workspace_id)


def _lock_and_reread(ctx, membership: Membership, actor_id, actor_role: str) -> str:
    """Take the workspace's owner lock, then reread the target and the actor:
    what the route loaded may have changed (an ownership transfer committed
    in between). Returns the actor's current role."""
    _lock_owners(ctx.db, membership.workspace_id)
    ctx.db.refresh(membership)
    if actor_id is None:  # an API key: its role is fixed
        return actor_role
    current = ctx.db.scalar(select(Membership.role).where(
        Membership.workspace_id == membership.workspace_id, Membership.user_id == actor_id))
    if current is None:
        raise WorkspaceError(403, "forbidden", "You are no longer a member of this workspace.")
    return current


def _withdraw_delegations(ctx, membership: Membership, *, keys: bool, invitations: bool) -> None:
    """A member who leaves, or drops below admin, takes the API keys they
    created (and the invitations they sent) with them."""
    now = utcnow()
    if keys:
        revoked = ctx.db.execute(
            update(ApiKey).where(ApiKey.workspace_id == membership.workspace_id,
                                 ApiKey.created_by_id == membership.user_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=now).execution_options(synchronize_session=False)).rowcount
        if revoked:
            record(ctx, "api_key.revoked", workspace_id=membership.workspace_id,
                   target_type="membership", target_id=membership.id, reason="creator_left_or_demoted",
                   count=revoked)
    if invitations:
        ctx.db.execute(
            update(Invitation).where(Invitation.workspace_id == membership.workspace_id,
                                     Invitation.invited_by_id == membership.user_id,
                                     Invitation.accepted_at.is_(None), Invitation.revoked_at.is_(None))
            .values(revoked_at=now).execution_options(synchronize_session=False))


def change_role(ctx, actor_role: str, membership: Membership, role: str) -> Membership:
    """Admins manage admins and staff; only an owner touches an owner's role,
    and the last owner keeps it."""
    actor_role = _lock_and_reread(ctx, membership, ctx.actor_id, actor_role)
    if role == membership.role:
        return membership
    if OWNER in (role, membership.role) and actor_role != OWNER:
        raise WorkspaceError(403, "forbidden", "Only an owner can make or unmake owners.", "role")
    if actor_role not in (OWNER, ADMIN):
        raise WorkspaceError(403, "forbidden", "Your role cannot change members' roles.", "role")
    if membership.role == OWNER and owner_count(ctx.db, membership.workspace_id) <= 1:
        raise WorkspaceError(409, "last_owner",
                             "A workspace needs an owner: make someone else owner first.", "role")
    previous, membership.role = membership.role, role
    if role == STAFF:
        _withdraw_delegations(ctx, membership, keys=True, invitations=True)
    record(ctx, "member.role_changed", actor_id=ctx.actor_id, workspace_id=membership.workspace_id,
           target_type="membership", target_id=membership.id, user_id=str(membership.user_id),
           previous=previous, role=role)
    return membership


def remove_member(ctx, actor_role: str, membership: Membership) -> None:
    leaving = membership.user_id == ctx.actor_id
    actor_role = _lock_and_reread(ctx, membership, ctx.actor_id, actor_role)
    if membership.role == OWNER and not leaving and actor_role != OWNER:
        raise WorkspaceError(403, "forbidden", "Only an owner can remove an owner.")
    if not leaving and actor_role not in (OWNER, ADMIN):
        raise WorkspaceError(403, "forbidden", "Your role cannot remove members.")
    if membership.role == OWNER and owner_count(ctx.db, membership.workspace_id) <= 1:
        raise WorkspaceError(409, "last_owner",
                             "The last owner cannot leave: transfer ownership first.")
    _withdraw_delegations(ctx, membership, keys=True, invitations=True)
    ctx.db.delete(membership)
    record(ctx, "member.left" if leaving else "member.removed", actor_id=ctx.actor_id,
           workspace_id=membership.workspace_id, target_type="membership", target_id=membership.id,
           user_id=str(membership.user_id))


def transfer_ownership(ctx, actor_membership: Membership, target: Membership) -> None:
    """The target becomes owner; the current owner stays on as admin."""
    if target.id == actor_membership.id:
        raise WorkspaceError(409, "conflict", "You are already the owner.", "membership_id")
    _lock_owners(ctx.db, target.workspace_id)
    ctx.db.refresh(target)
    ctx.db.refresh(actor_membership)
    if actor_membership.role != OWNER:
        raise WorkspaceError(403, "forbidden", "Only an owner can transfer ownership.")
    target.role = OWNER
    actor_membership.role = ADMIN
    record(ctx, "workspace.ownership_transferred", actor_id=actor_membership.user_id,
           workspace_id=target.workspace_id, target_type="membership", target_id=target.id,
           user_id=str(target.user_id))


# --- invitations -------------------------------------------------------------


def invite(ctx, actor, workspace: Workspace, email: str, role: str) -> Invitation:
    db = ctx.db
    already = db.scalar(select(Membership.id).join(User, User.id == Membership.user_id)
                        .where(Membership.workspace_id == workspace.id, User.email == email))
    if already is not None:
        raise WorkspaceError(409, "already_member", "That person is already a member.", "email")
    now = utcnow()
    # A new invitation to the same address replaces a pending one.
    db.execute(update(Invitation)
               .where(Invitation.workspace_id == workspace.id, Invitation.email == email,
                      Invitation.accepted_at.is_(None), Invitation.revoked_at.is_(None))
               .values(revoked_at=now).execution_options(synchronize_session=False))
    raw, token_hash = new_token()
    days = ctx.settings["workspaces.invitation_ttl_days"]
    invitation = Invitation(workspace_id=workspace.id, email=email, role=role, token_hash=token_hash,
                            invited_by_id=actor.id, expires_at=now + dt.timedelta(days=days))
    db.add(invitation)
    db.flush()
    queue_notification(ctx, channel="email", recipient=email, template="workspace_invitation",
                       workspace_id=workspace.id,
                       context={"inviter": actor.display_name, "workspace": workspace.name,
                                "role": role, "days": days},
                       sealed={"accept_url": ctx.url("invitation", token=raw)})
    record(ctx, "invitation.created", actor_id=actor.id, workspace_id=workspace.id,
           target_type="invitation", target_id=invitation.id, role=role)
    return invitation


def pending_invitations(db, workspace_id: uuid.UUID) -> list[Invitation]:
    now = utcnow()
    return list(db.scalars(select(Invitation)
                           .where(Invitation.workspace_id == workspace_id,
                                  Invitation.accepted_at.is_(None), Invitation.revoked_at.is_(None),
                                  Invitation.expires_at > now)
                           .order_by(Invitation.created_at.desc())))


def find_invitation(db, workspace_id: uuid.UUID, invitation_id: uuid.UUID) -> Invitation | None:
    return db.scalar(select(Invitation).where(Invitation.id == invitation_id,
                                              Invitation.workspace_id == workspace_id))


def revoke_invitation(ctx, invitation: Invitation) -> None:
    if invitation.revoked_at is None and invitation.accepted_at is None:
        invitation.revoked_at = utcnow()
        record(ctx, "invitation.revoked", actor_id=ctx.actor_id, workspace_id=invitation.workspace_id,
               target_type="invitation", target_id=invitation.id)


INVALID_INVITATION = "This invitation is not valid. It may have expired, been used or been withdrawn."


def invitation_for_token(db, raw: str) -> Invitation:
    """The pending invitation behind an emailed token, or WorkspaceError 404."""
    if looks_like_token(raw):
        token_hash = hash_token(raw)
        rls.open_credential(db, Invitation.token_hash, token_hash)
        invitation = db.scalar(select(Invitation).where(Invitation.token_hash == token_hash))
        if (invitation is not None and invitation.is_pending(utcnow())
                and invitation.workspace.deleted_at is None):
            return invitation
    raise WorkspaceError(404, "invalid_invitation", INVALID_INVITATION)


# The browser session's key for the token of the invitation a signed-out
# browser opened (see ``joining``).
JOINING = "joining"


def joining(db, raw: str | None) -> Invitation | None:
    """The pending invitation a signed-out browser came from (its token
    kept in the browser's session), or None."""
    try:
        return invitation_for_token(db, raw) if raw else None
    except WorkspaceError:
        return None


def accept_invitation(ctx, user, raw: str) -> Membership:
    """Join the workspace: only the invited address may accept."""
    db = ctx.db
    invitation = invitation_for_token(db, raw)
    if invitation.email != user.email:
        record(ctx, "invitation.accepted", result="failure", actor_id=user.id,
               workspace_id=invitation.workspace_id, target_type="invitation",
               target_id=invitation.id, reason="email_mismatch")
        raise WorkspaceError(403, "invitation_email_mismatch",
                             "This invitation was sent to another email address. Sign in with "
                             "that address to accept it.")
    won = db.execute(update(Invitation)
                     .where(Invitation.id == invitation.id, Invitation.accepted_at.is_(None))
                     .values(accepted_at=utcnow(), accepted_by_id=user.id)
                     .execution_options(synchronize_session=False)).rowcount
    if won != 1:
        raise WorkspaceError(404, "invalid_invitation", INVALID_INVITATION)
    membership = db.scalar(select(Membership).where(Membership.workspace_id == invitation.workspace_id,
                                                    Membership.user_id == user.id))
    if membership is None:
        membership = Membership(workspace_id=invitation.workspace_id, user_id=user.id,
                                role=invitation.role)
        db.add(membership)
        db.flush()
    record(ctx, "invitation.accepted", actor_id=user.id, workspace_id=invitation.workspace_id,
           target_type="invitation", target_id=invitation.id, role=membership.role)
    return membership


# --- API keys ----------------------------------------------------------------


def create_api_key(ctx, workspace: Workspace, name: str, role: str) -> tuple[ApiKey, str]:
    """Returns the key and its full secret, which is shown this once."""
    lookup_id = secrets.token_hex(8)
    secret, secret_hash = new_token()
    key = ApiKey(workspace_id=workspace.id, name=name, role=role, lookup_id=lookup_id,
                 secret_hash=secret_hash, created_by_id=ctx.actor_id)
    ctx.db.add(key)
    ctx.db.flush()
    record(ctx, "api_key.created", actor_id=ctx.actor_id, workspace_id=workspace.id,
           target_type="api_key", target_id=key.id, role=role)
    return key, f"{API_KEY_PREFIX}{lookup_id}_{secret}"


# The same key asked for again within this long (a reloaded page resending
# its form, a double click) is the first one, not another.
REPEAT_WINDOW = dt.timedelta(seconds=60)


def just_created_key(db, workspace_id: uuid.UUID, actor_id: uuid.UUID | None, name: str) -> ApiKey | None:
    """A live key of this name the same person created moments ago."""
    return db.scalar(select(ApiKey).where(
        ApiKey.workspace_id == workspace_id, ApiKey.created_by_id == actor_id, ApiKey.name == name,
        ApiKey.revoked_at.is_(None), ApiKey.created_at > utcnow() - REPEAT_WINDOW).limit(1))


def api_keys(db, workspace_id: uuid.UUID) -> list[ApiKey]:
    return list(db.scalars(select(ApiKey).where(ApiKey.workspace_id == workspace_id,
                                                ApiKey.revoked_at.is_(None))
                           .order_by(ApiKey.created_at.desc())))


def find_api_key(db, workspace_id: uuid.UUID, key_id: uuid.UUID) -> ApiKey | None:
    return db.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.workspace_id == workspace_id))


def revoke_api_key(ctx, key: ApiKey) -> None:
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        record(ctx, "api_key.revoked", actor_id=ctx.actor_id, workspace_id=key.workspace_id,
               target_type="api_key", target_id=key.id)


def api_key_for(db, presented: str) -> ApiKey | None:
    """The live key a bearer value names, or None (garbage, unknown, revoked,
    wrong secret, deleted workspace: one answer)."""
    if not presented.startswith(API_KEY_PREFIX):
        return None
    lookup_id, _, secret = presented[len(API_KEY_PREFIX):].partition("_")
    if not re.fullmatch(r"[0-9a-f]{16}", lookup_id) or not looks_like_token(secret):
        return None
    rls.open_credential(db, ApiKey.lookup_id, lookup_id)
    key = db.scalar(select(ApiKey).where(ApiKey.lookup_id == lookup_id))
    if key is None or not matches(secret, key.secret_hash):
        return None
    if key.revoked_at is not None or key.workspace.deleted_at is not None:
        return None
    now = utcnow()
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        key.last_used_at = now
    return key
