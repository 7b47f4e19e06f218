"""The record of every guest-list import: made by its preview, completed
when the host imports it, and marked when it is undone."""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import ForeignKey, Index, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from guestguard.db import Base, IdMixin, utcnow

PREVIEWED, IMPORTED, UNDONE = "previewed", "imported", "undone"


class GuestImport(IdMixin, Base):
    """One file and how to read it (``mapping``, ``encoding``, ``delimiter``,
    ``duplicates``): its id pins exactly these, so importing a preview
    imports what the host saw. ``content`` (the file) is kept for
    ``imports.keep_hours`` to import a preview and to download its error
    rows, then dropped with the rows the preview checked (``checks``); the
counts stay. Guests added by the import carry its
    id (``guests.import_id``); ``updates`` keeps what the guests it updated
    held before, so an undo restores them."""

    __tablename__ = "guest_imports"

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    actor_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    status: Mapped[str] = mapped_column(String(16), default=PREVIEWED)
    file_name: Mapped[str] = mapped_column(String(255))
    file_size: Mapped[int]
    file_sha256: Mapped[str] = mapped_column(String(64))
    format: Mapped[str] = mapped_column(String(32))
    encoding: Mapped[str | None] = mapped_column(String(40), default=None)
    delimiter: Mapped[str | None] = mapped_column(String(4), default=None)
    mapping: Mapped[list[Any]] = mapped_column(default=list)
    duplicates: Mapped[str] = mapped_column(String(8), default="skip")
    content: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    added: Mapped[int] = mapped_column(default=0)
    updated: Mapped[int] = mapped_column(default=0)
    skipped: Mapped[int] = mapped_column(default=0)
    errors: Mapped[int] = mapped_column(default=0)
    updates: Mapped[list[Any]] = mapped_column(default=list)
    # The preview's checked rows (``services.keep_checks``), dropped with the
    # file: the import of this file re-checks only what can have changed
    # since (duplicates against the list), not every row's guest rules.
    checks: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    imported_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    undone_at: Mapped[dt.datetime | None] = mapped_column(default=None)

    __table_args__ = (Index("ix_guest_imports_event_created", "event_id", "created_at"),)
