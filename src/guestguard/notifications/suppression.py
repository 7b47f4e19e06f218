"""The suppression list: addresses GuestGuard must not write to again.

A hard bounce, a complaint, a STOP text or an operator's decision stops
every message to the address on its channel; an unsubscribe stops only the
messages a workspace sends on a host's behalf to its guests (invitations,
reminders, confirmations), so a guest who leaves one host's list still gets
their own account's email. The list is read when a message is about to go
out, not when it is queued: an address suppressed in between still stops it.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.exc import IntegrityError

from guestguard.audit.services import record
from guestguard.errors import Refusal
from guestguard.notifications.models import Suppression
from guestguard.validation import normalize_email, normalize_phone

HARD_BOUNCE, COMPLAINT, UNSUBSCRIBE, STOP, OPERATOR = "hard_bounce", "complaint", "unsubscribe", "stop", "operator"
# Why, in words a host reads beside a message that was held back.
REASONS = {
    HARD_BOUNCE: "an earlier message to this address bounced (it does not exist or refuses mail)",
    COMPLAINT: "the recipient reported an earlier message as spam",
    UNSUBSCRIBE: "the recipient unsubscribed from this host's messages",
    STOP: "the recipient texted STOP",
    OPERATOR: "the platform's operator blocked the address",
}
# Scope of a suppression that stops every message to the address.
EVERYWHERE = "*"
# Messages a workspace sends to guests on a host's behalf; every other kind
# (verification, password reset, account notices) is the person's own.
GUEST_MESSAGE = "guest"
ACCOUNT_MESSAGE = "account"
MESSAGE_KINDS = (GUEST_MESSAGE, ACCOUNT_MESSAGE)


class AddressError(ValueError):
    """An address that cannot be on the list, with the reason in words."""


def normalize(channel: str, address: str) -> str:
    """The form an address is listed under; AddressError when it is not one."""
    value = (address or "").strip()
    if channel == "email":
        try:
            return normalize_email(value)
        except ValueError as exc:
            raise AddressError(f"{address!r} is not an email address: {exc}") from None
    if channel == "sms":
        try:
            return normalize_phone(value, None)
        except ValueError as exc:
            raise AddressError(f"{address!r} {exc}") from None
    raise AddressError(f"{channel!r} is not a channel with a suppression list (email or sms)")


def _scope(reason: str, workspace_id: uuid.UUID | None) -> str:
    if reason == UNSUBSCRIBE:
        if workspace_id is None:
            raise ValueError("an unsubscribe belongs to the workspace whose messages it stops")
        return str(workspace_id)
    return EVERYWHERE


def suppress(ctx, channel: str, address: str, reason: str, *, source: str,
             workspace_id: uuid.UUID | None = None) -> Suppression:
    """List the address (once: listing it again returns the row there is)."""
    if reason not in REASONS:
        raise ValueError(f"unknown suppression reason {reason!r}")
    values = {"channel": channel, "address": normalize(channel, address), "scope": _scope(reason, workspace_id)}
    existing = ctx.db.scalar(select(Suppression).filter_by(**values))
    if existing is not None:
        return existing
    row = Suppression(**values, reason=reason, source=source)
    try:
        with ctx.db.begin_nested():
            ctx.db.add(row)
    except IntegrityError:  # listed by someone else at the same moment
        return ctx.db.scalar(select(Suppression).filter_by(**values))
    record(ctx, "suppression.added", actor_id=ctx.actor_id, workspace_id=workspace_id,
           target_type="suppression", target_id=row.id, channel=channel, reason=reason, source=source)
    return row


def lift(ctx, channel: str, address: str, *, workspace_id: uuid.UUID | None = None,
         reason: str | None = None) -> int:
    """Take the address off the list (everywhere, or one workspace's
    unsubscribe); returns how many entries were lifted. With ``reason``, only
    an entry listed for that reason is lifted (a START text lifts a STOP, not
    an operator's block or a bounce)."""
    scope = str(workspace_id) if workspace_id else EVERYWHERE
    query = select(Suppression).filter_by(channel=channel, address=normalize(channel, address), scope=scope)
    if reason is not None:
        query = query.filter_by(reason=reason)
    rows = ctx.db.scalars(query).all()
    for row in rows:
        record(ctx, "suppression.lifted", actor_id=ctx.actor_id, workspace_id=workspace_id,
               target_type="suppression", target_id=row.id, channel=channel, reason=row.reason)
    if rows:
        ctx.db.execute(delete(Suppression).where(Suppression.id.in_([row.id for row in rows])))
    return len(rows)


@dataclass(frozen=True)
class Listed:
    reason: str
    text: str


def stopping(db, channel: str, recipient: str, *, kind: str,
             workspace_id: uuid.UUID | None) -> Listed | None:
    """Why a message of this kind to the recipient must not go out, or None."""
    try:
        address = normalize(channel, recipient)
    except AddressError:
        return None  # not a listable address (push tokens): nothing can stop it
    scopes = [EVERYWHERE]
    if kind == GUEST_MESSAGE and workspace_id is not None:
        scopes.append(str(workspace_id))
    row = db.scalars(select(Suppression).where(
        Suppression.channel == channel, Suppression.address == address,
        or_(*(Suppression.scope == scope for scope in scopes))).order_by(Suppression.created_at).limit(1)).first()
    return Listed(row.reason, REASONS.get(row.reason, row.reason)) if row is not None else None


def stopping_many(db, messages: list[tuple[Any, str, str, str, uuid.UUID | None]]) -> dict[Any, Listed]:
    """``stopping`` for many messages, (key, channel, recipient, kind,
    workspace id) each, in one query: the reason of each message that must
    not go out, by key."""
    wanted: dict[Any, tuple[str, str, list[str]]] = {}
    for key, channel, recipient, kind, workspace_id in messages:
        try:
            address = normalize(channel, recipient)
        except AddressError:
            continue
        scopes = [EVERYWHERE] + ([str(workspace_id)] if kind == GUEST_MESSAGE and workspace_id is not None else [])
        wanted[key] = (channel, address, scopes)
    if not wanted:
        return {}
    found: dict[tuple[str, str, str], Suppression] = {}
    for row in db.scalars(select(Suppression).where(
            Suppression.channel.in_(sorted({channel for channel, _, _ in wanted.values()})),
            Suppression.address.in_(sorted({address for _, address, _ in wanted.values()})))
            .order_by(Suppression.created_at)):
        found.setdefault((row.channel, row.address, row.scope), row)
    stopped = {}
    for key, (channel, address, scopes) in wanted.items():
        rows = [found[(channel, address, scope)] for scope in scopes if (channel, address, scope) in found]
        if rows:
            first = min(rows, key=lambda row: row.created_at)
            stopped[key] = Listed(first.reason, REASONS.get(first.reason, first.reason))
    return stopped


def listed(db, *, channel: str | None = None, address: str | None = None, limit: int = 100) -> list[Suppression]:
    query = select(Suppression).order_by(Suppression.created_at.desc(), Suppression.id).limit(limit)
    if channel:
        query = query.where(Suppression.channel == channel)
    if address:
        guessed = channel or ("sms" if address.strip().startswith("+") else "email")
        query = query.where(Suppression.address == normalize(guessed, address))
    return list(db.scalars(query))


# --- for operators (the JSON API; the command calls the same functions) -----


class SuppressionRefused(Refusal):
    pass


def _address(channel: str, address: str) -> str:
    try:
        return normalize(channel, address)
    except AddressError as exc:
        raise SuppressionRefused(422, "validation_failed", str(exc), field="address") from None


def operator_suppress(ctx, channel: str, address: str) -> tuple[Suppression, bool]:
    """An operator lists the address everywhere; (entry, whether it is new)."""
    _address(channel, address)
    before = ctx.db.scalar(select(Suppression.id).filter_by(
        channel=channel, address=normalize(channel, address), scope=EVERYWHERE))
    row = suppress(ctx, channel, address, OPERATOR, source="operator")
    return row, before is None


def operator_lift(ctx, channel: str, address: str, *, workspace_id: uuid.UUID | None = None) -> int:
    _address(channel, address)
    return lift(ctx, channel, address, workspace_id=workspace_id)


def operator_list(ctx, *, channel: str | None, address: str | None, limit: int) -> list[Suppression]:
    if address:
        _address(channel or ("sms" if address.startswith("+") else "email"), address)
    return listed(ctx.db, channel=channel, address=address, limit=limit)
