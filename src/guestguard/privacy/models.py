"""What the privacy area stores: data exports."""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from guestguard.db import Base, IdMixin, utcnow
from guestguard.tasks import DurableJobMixin


class DataExport(IdMixin, DurableJobMixin, Base):
    """One copy of a user's data asked for: a row (with a status) before the
    worker builds the file. Once built, the file waits under
    ``privacy.export_dir`` for one download through the emailed link (only
    the token's SHA-256 is stored) until ``expires_at``; then it is deleted
    (``file_deleted_at``) and the row stays as the record of the export."""

    __tablename__ = "data_exports"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # Set when the file is ready and the link mailed.
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    ready_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    expires_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    size: Mapped[int | None] = mapped_column(BigInteger, default=None)
    # Rows per file of the archive, as its manifest says.
    counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    downloaded_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    file_deleted_at: Mapped[dt.datetime | None] = mapped_column(default=None)
