"""A user's copy of their data: asked for (a row first), built by the worker
into a ZIP (one JSON file per area, written row by row, plus a manifest),
mailed as a single-use link valid ``privacy.export_link_days`` that only the
owner, signed in, can use; the file is deleted after its download or its
expiry.

Services take a context and plain values; the views authorized the caller.
"""
from __future__ import annotations

import datetime as dt
import io
import json
import logging
import uuid
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from guestguard.accounts.models import User
from guestguard.accounts.tokens import looks_like_token, matches, new_token
from guestguard.audit.services import record
from guestguard.db import lock_row, utcnow
from guestguard.errors import Refusal
from guestguard.notifications.services import queue_notification
from guestguard.privacy.models import DataExport
from guestguard.privacy.services import privacy_jobs
from guestguard.tasks import PENDING, RUNNING, enqueue_job, fail_job, finish_job, still_claimed, update_if

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
READY_TEMPLATE = "data_export_ready"
# Seconds before each retry of a build that failed; then it has failed.
RETRY_BACKOFF = (30, 300, 1800)
NOT_VALID = "This download link is not valid. Ask for a new copy of your data on your account page."


class ExportError(Refusal):
    """A refusal of the data export; views turn it into a 4xx answer."""


def export_dir(settings) -> Path:
    return Path(settings["privacy.export_dir"])


def file_of(settings, export_id: uuid.UUID) -> Path:
    return export_dir(settings) / f"{export_id}.zip"


# --- asking -------------------------------------------------------------------------


def latest_export(db, user_id: uuid.UUID) -> DataExport | None:
    return db.scalar(select(DataExport).where(DataExport.user_id == user_id)
                     .order_by(DataExport.created_at.desc(), DataExport.id.desc()).limit(1))


def request_export(ctx, user: User) -> tuple[DataExport, bool]:
    """The export being built for the user, or a new one queued: (export,
    whether it is new). A double click, a retried request or two at once
    leave one export and one email."""
    lock_row(ctx.db, User, user.id)
    current = ctx.db.scalar(select(DataExport).where(DataExport.user_id == user.id,
                                                     DataExport.status.in_((PENDING, RUNNING))))
    if current is not None:
        return current, False
    export = DataExport(id=uuid.uuid4(), user_id=user.id)
    ctx.db.add(export)
    ctx.db.flush()
    record(ctx, "data_export.requested", actor_id=user.id, target_type="data_export", target_id=export.id)
    enqueue_job(ctx, export)
    return export, True


# --- building -----------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """What json.dumps cannot write by itself: times, ids, bytes."""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    raise TypeError(f"cannot write {type(value).__name__} into an export")


def export_files(ctx, user: User) -> Iterable[tuple[str, Iterable[dict[str, Any]]]]:
    """(file name, rows) of every privacy job that exports a user's data."""
    seen: dict[str, str] = {}
    for job in privacy_jobs(ctx.registry):
        if job.export_user is None:
            continue
        for name, rows in job.export_user(ctx, user):
            if name in seen or name == MANIFEST:
                raise ValueError(f"privacy jobs {seen.get(name, 'core')!r} and {job.name!r} both export {name!r}")
            seen[name] = job.name
            yield name, rows


def write_archive(ctx, user: User, path: Path, generated_at: dt.datetime) -> dict[str, int]:
    """Write the user's archive to ``path``, one row at a time (nothing is
    held whole in memory); returns the rows per file."""
    counts: dict[str, int] = {}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, rows in export_files(ctx, user):
            with archive.open(name, "w", force_zip64=True) as raw:
                out = io.TextIOWrapper(raw, encoding="utf-8", newline="\n")
                written = 0
                out.write("[")
                for row in rows:
                    out.write(",\n" if written else "\n")
                    out.write(json.dumps(row, default=_plain, ensure_ascii=False))
                    written += 1
                out.write("\n]\n" if written else "]\n")
                out.flush()
                out.detach()
            counts[name] = written
        manifest = {"schema_version": SCHEMA_VERSION, "generated_at": generated_at.isoformat(),
                    "user_id": str(user.id), "files": counts}
        archive.writestr(MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return counts


def mark_ready(ctx, export_id: uuid.UUID, claimed_at: dt.datetime, counts: dict[str, int], size: int) -> bool:
    """Record the built file and mail its link; False when the claim was
    taken back meanwhile (the run that took it mails its own)."""
    export = ctx.db.get(DataExport, export_id, with_for_update=True, populate_existing=True)
    if export is None or not still_claimed(export, claimed_at):
        return False
    user = ctx.db.get(User, export.user_id)
    now = utcnow()
    raw, token_hash = new_token()
    finish_job(export)
    export.token_hash, export.ready_at, export.counts, export.size = token_hash, now, counts, size
    export.expires_at = now + dt.timedelta(days=ctx.settings["privacy.export_link_days"])
    queue_notification(ctx, channel="email", recipient=user.email, template=READY_TEMPLATE,
                       context={"display_name": user.display_name, "files": len(counts),
                                "expires_on": f"{export.expires_at.day} {export.expires_at:%B %Y, %H:%M}"},
                       sealed={"download_url": ctx.url("data_export_download", export_id=str(export.id),
                                                       token=raw)})
    record(ctx, "data_export.ready", actor_id=None, target_type="data_export", target_id=export.id,
           files=len(counts), size=size)
    return True


def record_failure(ctx, export_id: uuid.UUID, claimed_at: dt.datetime, error: str, *, permanent: bool) -> None:
    export = ctx.db.get(DataExport, export_id, with_for_update=True, populate_existing=True)
    if export is None or not still_claimed(export, claimed_at):
        return
    retry_at = fail_job(export, error, permanent=permanent, backoff=RETRY_BACKOFF)
    if retry_at is None:
        log.error("data export %s failed for good after %d attempts (see its last_error)", export.id,
                  export.attempts)
    else:
        enqueue_job(ctx, export, eta=retry_at)


# --- downloading --------------------------------------------------------------------


def take_download(ctx, user: User, export_id: str, raw_token: str) -> Path:
    """The file of the user's export, its link now used: 404 when the link
    is not theirs or not a link, 410 when it was used or has expired."""
    try:
        export_uuid = uuid.UUID(export_id)
    except ValueError:
        raise ExportError(404, "not_found", NOT_VALID) from None
    export = ctx.db.get(DataExport, export_uuid)
    # Someone else's link reads exactly like one that does not exist.
    if (export is None or export.user_id != user.id or export.token_hash is None
            or not looks_like_token(raw_token) or not matches(raw_token, export.token_hash)):
        raise ExportError(404, "not_found", NOT_VALID)
    now = utcnow()
    if export.downloaded_at is not None:
        raise ExportError(410, "export_link_used", "This download link was already used: each link works "
                          "once. Ask for a new copy of your data on your account page.")
    if export.file_deleted_at is not None or export.expires_at <= now:
        raise ExportError(410, "export_link_expired", "This download link has expired. Ask for a new copy "
                          "of your data on your account page.")
    path = file_of(ctx.settings, export.id)
    if not path.exists():
        log.error("data export %s: its file is missing from privacy.export_dir", export.id)
        raise ExportError(410, "export_link_expired", "This download is no longer available. Ask for a new "
                          "copy of your data on your account page.")
    if not update_if(ctx.db, DataExport, (DataExport.id == export.id, DataExport.downloaded_at.is_(None)),
                     downloaded_at=now):
        raise ExportError(410, "export_link_used", "This download link was already used.")
    record(ctx, "data_export.downloaded", actor_id=user.id, target_type="data_export", target_id=export.id)
    return path


def owner_being_deleted(ctx, export_id: str, raw_token: str) -> User | None:
    """The owner of the export the link names when their account is being
    deleted (they cannot sign in, and confirm with their password instead);
    None otherwise."""
    try:
        export = ctx.db.get(DataExport, uuid.UUID(export_id))
    except ValueError:
        return None
    if (export is None or export.token_hash is None or not looks_like_token(raw_token)
            or not matches(raw_token, export.token_hash)):
        return None
    user = ctx.db.get(User, export.user_id)
    return user if user is not None and user.deleted_at is not None else None


class FileThenDelete:
    """A response body that reads a file in chunks and deletes it when the
    server is done with it: an export is downloaded once."""

    CHUNK = 64 * 1024

    def __init__(self, path: Path):
        self.path = path
        self.file = path.open("rb")

    def __iter__(self):
        while chunk := self.file.read(self.CHUNK):
            yield chunk

    def close(self) -> None:
        self.file.close()
        self.path.unlink(missing_ok=True)


def purge_files(ctx, now: dt.datetime | None = None) -> int:
    """Delete the files of exports downloaded or expired (and half-built
    files of failed ones); their rows stay. Returns files deleted."""
    now = now or utcnow()
    done = ctx.db.scalars(select(DataExport).where(
        DataExport.file_deleted_at.is_(None), DataExport.ready_at.is_not(None),
        (DataExport.downloaded_at.is_not(None)) | (DataExport.expires_at <= now))).all()
    deleted = 0
    for export in done:
        file_of(ctx.settings, export.id).unlink(missing_ok=True)
        export.file_deleted_at = now
        deleted += 1
    failed = ctx.db.scalars(select(DataExport.id).where(DataExport.status == DataExport.failed_status)).all()
    for export_id in failed:
        for part in export_dir(ctx.settings).glob(f"{export_id}.zip*"):
            part.unlink(missing_ok=True)
    return deleted
