from __future__ import annotations

import re
import secrets
import unicodedata

from sqlalchemy import select

from guestguard.workspaces.models import Membership, Workspace


def slugify(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:48] or "workspace"


def unique_slug(db, name: str) -> str:
    base = slugify(name)
    slug = base
    while db.scalar(select(Workspace.id).where(Workspace.slug == slug)) is not None:
        slug = f"{base}-{secrets.token_hex(3)}"
    return slug


def create_personal_workspace(db, user) -> Workspace:
    """Every user gets a workspace of their own at signup, as its owner."""
    name = f"{user.display_name}'s events"
    workspace = Workspace(name=name[:100], slug=unique_slug(db, user.display_name), personal=True)
    db.add(workspace)
    db.flush()
    db.add(Membership(workspace_id=workspace.id, user_id=user.id, role="owner"))
    return workspace
