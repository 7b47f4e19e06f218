"""Feature flags per workspace: ``flags.defaults`` names those on
everywhere; a workspace's own row overrides the default either way, so a
feature (billing) can be opened to some workspaces first."""
from __future__ import annotations

import re
import uuid

from sqlalchemy import select

from guestguard.audit.services import record
from guestguard.billing.models import FeatureFlag
from guestguard.db import utcnow
from guestguard.errors import Refusal

NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise ValueError(f"a flag name is 1 to 64 lowercase letters, digits, '.', '_' or '-', got {name!r}")
    return name


def enabled(ctx, name: str, workspace_id: uuid.UUID) -> bool:
    row = ctx.db.scalar(select(FeatureFlag.enabled).where(FeatureFlag.name == name,
                                                          FeatureFlag.workspace_id == workspace_id))
    return row if row is not None else name in ctx.settings["flags.defaults"]


def require(ctx, name: str, workspace_id: uuid.UUID) -> None:
    """Refuse (403 ``feature_disabled``, naming the flag) unless ``name`` is
    on for the workspace: services call this, so a flagged-off feature is
    refused on every route, not only hidden on the page."""
    if not enabled(ctx, name, workspace_id):
        raise Refusal(403, "feature_disabled",
                      f"The {name!r} feature is not open to this workspace yet; nothing was changed.", feature=name)


def set_flag(ctx, name: str, workspace_id: uuid.UUID, on: bool | None) -> None:
    """Switch ``name`` on or off for the workspace; None returns it to the default."""
    check_name(name)
    row = ctx.db.scalar(select(FeatureFlag).where(FeatureFlag.name == name, FeatureFlag.workspace_id == workspace_id))
    if on is None:
        if row is not None:
            ctx.db.delete(row)
    elif row is None:
        ctx.db.add(FeatureFlag(name=name, workspace_id=workspace_id, enabled=on, updated_at=utcnow()))
    else:
        row.enabled, row.updated_at = on, utcnow()
    record(ctx, "flag.changed", workspace_id=workspace_id, target_type="flag", target_id=name,
           state={True: "on", False: "off", None: "default"}[on])


def listing(ctx, workspace_id: uuid.UUID | None = None) -> list[FeatureFlag]:
    query = select(FeatureFlag).order_by(FeatureFlag.name, FeatureFlag.workspace_id)
    if workspace_id is not None:
        query = query.where(FeatureFlag.workspace_id == workspace_id)
    return list(ctx.db.scalars(query))
