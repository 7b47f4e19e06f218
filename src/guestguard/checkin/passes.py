"""Passes: what a guest who said yes shows at the door.

A pass has two faces: a QR code holding a secret of 128 bits, and a short
code of 8 characters for typing when a camera fails. The secret is derived
from the guest's invitation token with a key of ours (HMAC-SHA256), so the
guest's page, reached with that token, can show it again while the database
keeps only its SHA-256; it is never the invitation token and reveals nothing
of it. A new link (or a revoked one) ends the pass with it: the pass belongs
to its link, and the door reads the link's state.

The short code is random, unique within its event and stored as it is: it
only works at that event's door, in the hands of its signed-in staff, who can
find any guest by name anyway.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import io
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import select

from guestguard import rls
from guestguard.accounts.tokens import hash_token
from guestguard.checkin.models import GuestPass, PassSecret
from guestguard.db import insert_ignoring_conflict, utcnow
from guestguard.keys import derive_key

SECRET_PURPOSE = "checkin.pass-secret"
SECRET_BYTES = 16  # 128 bits: well over the 80 a pass needs
SECRET_LENGTH = 26  # base32 of 16 bytes, without padding
# No 0/O, 1/I/L or U: nothing a person misreads at a dark door.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 8
CODE_ATTEMPTS = 5


@dataclass(frozen=True)
class PassFaces:
    """What the guest is shown: the QR's content and the code to type."""

    secret: str
    code: str

    @property
    def code_display(self) -> str:
        return display_code(self.code)


def secret_for(settings, raw_token: str) -> str:
    digest = hmac.new(derive_key(settings, SECRET_PURPOSE), raw_token.encode(), hashlib.sha256).digest()
    return base64.b32encode(digest[:SECRET_BYTES]).decode().rstrip("=")


def new_secret() -> str:
    """A further secret for a pass (``PassSecret``): random, in the same form
    as the pass's own."""
    return base64.b32encode(secrets.token_bytes(SECRET_BYTES)).decode().rstrip("=")


def further_secrets(passes: list[tuple[uuid.UUID, uuid.UUID]]) -> tuple[dict[uuid.UUID, str], list[dict]]:
    """A new secret for each (pass id, workspace id): the secrets by pass id,
    and the ``pass_secrets`` rows that make them work (to insert together)."""
    made, rows = {}, []
    now = utcnow()
    for pass_id, workspace_id in passes:
        secret = made[pass_id] = new_secret()
        rows.append({"id": uuid.uuid4(), "workspace_id": workspace_id, "pass_id": pass_id,
                     "secret_hash": hash_token(secret), "created_at": now})
    return made, rows


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def display_code(code: str) -> str:
    return f"{code[:4]}-{code[4:]}"


def normalized_code(typed: str) -> str:
    """A typed code as stored: capitals, without the dash or spaces."""
    return "".join(typed.split()).replace("-", "").upper()


def looks_like_secret(value: str) -> bool:
    return len(value) == SECRET_LENGTH and all(c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567" for c in value)


def looks_like_code(value: str) -> bool:
    return len(value) == CODE_LENGTH and all(c in CODE_ALPHABET for c in value)


def ensure_pass(ctx, link, guest, raw_token: str, *, new: bool = False) -> PassFaces:
    """The pass of ``link``, made on first need: a yes (``new``: try making
    it first, one INSERT), or the page of a guest who said yes (read first,
    one SELECT, as it is usually there). Two requests at once make one."""
    db = ctx.db
    secret = secret_for(ctx.settings, raw_token)
    for attempt in range(CODE_ATTEMPTS):
        if attempt or not new:
            code = db.scalar(select(GuestPass.code).where(GuestPass.link_id == link.id))
            if code is not None:
                return PassFaces(secret, code)
        # Nothing goes in when another request made the link's pass meanwhile
        # or another pass of the event holds the code (1 in 30^8 per pass):
        # read again, with a new code.
        code = new_code()
        if insert_ignoring_conflict(db, GuestPass.__table__, {
                "id": uuid.uuid4(), "workspace_id": guest.workspace_id, "event_id": guest.event_id,
                "guest_id": guest.id, "link_id": link.id, "secret_hash": hash_token(secret), "code": code,
                "created_at": utcnow()}):
            return PassFaces(secret, code)
    raise RuntimeError("no free pass code after several attempts")  # 30^8 codes: never in practice


def find_by_secret(db, secret: str) -> GuestPass | None:
    """The pass whose own secret, or else one of whose further secrets (from
    reminders), this is; each by its unique index."""
    hashed = hash_token(secret)
    if rls.open_credential(db, GuestPass.secret_hash, hashed) is None:
        rls.open_credential(db, PassSecret.secret_hash, hashed)
    found = db.scalar(select(GuestPass).where(GuestPass.secret_hash == hashed))
    if found is None:
        found = db.scalar(select(GuestPass).join(PassSecret, PassSecret.pass_id == GuestPass.id)
                          .where(PassSecret.secret_hash == hashed))
    return found


def find_by_code(db, event_id: uuid.UUID, code: str) -> GuestPass | None:
    return db.scalar(select(GuestPass).where(GuestPass.event_id == event_id, GuestPass.code == code))


# A guest with a pass sees it at every visit to their page: drawing it costs
# some 2.5 ms of CPU (more than the rest of the page), keeping one 1.2 kB.
@functools.lru_cache(maxsize=1024)
def qr_svg(secret: str, *, scale: int = 6) -> str:
    """The QR code as an SVG element for a page (dark on light, with its
    quiet zone). segno is imported by the first pass shown: only a guest
    who has one sees it."""
    import segno

    qr = segno.make_qr(secret, error="m")
    buffer = io.BytesIO()
    qr.save(buffer, kind="svg", scale=scale, xmldecl=False, svgns=True, title="Your pass",
            dark="#111", light="#fff", border=4)
    return buffer.getvalue().decode()


def for_guest(ctx, link, guest, event, raw_token: str, *, new: bool = False) -> PassFaces | None:
    """The pass a guest's page and messages carry: for a yes that has a
    place, at an event still on. None otherwise. ``new``: the yes was just
    recorded."""
    if guest.response != "yes" or guest.waitlisted_at is not None or event.status == "cancelled":
        return None
    return ensure_pass(ctx, link, guest, raw_token, new=new)
