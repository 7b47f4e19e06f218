"""``Idempotency-Key`` on unsafe API calls: a retried POST, PUT, PATCH or
DELETE under /api/ gets the first answer again instead of doing the work twice
(as Stripe does, and the IETF draft "The Idempotency-Key HTTP Header Field"
describes).

- **Whose key.** A key belongs to its caller: the signed-in user, or the
  workspace API key; anyone else is known by their address and the path
  they call (an HMAC of both, so the table holds no address). Strangers
  sharing a key never see each other's answers.
- **Which request.** The first request fixes what the key means: an HMAC
  of its method, path, query string and body bytes. The same key with
  another request is refused (422 ``idempotency_key_reused``).
- **One transaction.** The record is inserted before the view runs, in
  the request's transaction, and completed with the answer when the view
  returns: it commits exactly when the view's work does. A view that raises
  leaves nothing (the key can be used again). The insert skips a conflicting
  row (``ON CONFLICT DO NOTHING``) rather than failing: on PostgreSQL a
  second request with the key waits there until the first commits, then
  replays its answer; after ``idempotency.wait_seconds`` it is told 409
  ``idempotency_key_in_use`` with ``Retry-After``.
- **What is kept.** The status, the body bytes and the headers that
  describe them (``KEPT_HEADERS``), for ``idempotency.ttl_hours``; a replay
  adds ``Idempotent-Replayed: true``. Answers of 500 and above are not kept.
  A view declaring ``shows_secret=True`` answers with a credential shown
  once (tokens, a key's secret): its success is recorded without the body,
  and a repeat is told 409 ``idempotency_answer_not_kept``.

The deriver sits outside ``rate_limit``, so a replay is not counted against
the view's limits, and outside the refusal deriver, so a refusal the view
answered with is the answer kept. Expired records are purged hourly."""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import uuid
from typing import Any

from huey import crontab
from pyramid.response import Response
from sqlalchemy import Index, LargeBinary, String, UniqueConstraint, delete, exc as sa_exc, select, text, update
from sqlalchemy.orm import Mapped, mapped_column

from guestguard.db import Base, IdMixin, utcnow
from guestguard.errors import APIError, is_api_request, raw_path
from guestguard.keys import derive_key

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_KEY_LENGTH = 255
KEY_PATTERN = "^[ -~]+$"  # printable ASCII, as the OpenAPI document says
VALID_KEY = re.compile(r"[ -~]{1,255}")
# The headers that describe a kept answer; never Set-Cookie.
KEPT_HEADERS = ("Content-Type", "Location", "Allow", "WWW-Authenticate")
RETRY_AFTER = 1
PURGE_BATCH = 1000

INVALID_KEY = "invalid_idempotency_key"
KEY_REUSED = "idempotency_key_reused"
KEY_IN_USE = "idempotency_key_in_use"
ANSWER_NOT_KEPT = "idempotency_answer_not_kept"


class IdempotencyRecord(IdMixin, Base):
    """The first answer to a caller's key. ``status`` is None until the view
    has answered (in the same transaction); ``body`` is None when the answer
    carried a secret."""

    __tablename__ = "idempotency_keys"

    # "user:<id>", "key:<id>", or "anon:<HMAC of address and path>".
    caller: Mapped[str] = mapped_column(String(80))
    key: Mapped[str] = mapped_column(String(MAX_KEY_LENGTH))
    fingerprint: Mapped[str] = mapped_column(String(64))
    status: Mapped[int | None] = mapped_column(default=None)
    headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    body: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    body_kept: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]

    __table_args__ = (UniqueConstraint("caller", "key"), Index("ix_idempotency_keys_expires_at", "expires_at"))


# --- the request --------------------------------------------------------------


def carries_key(request) -> bool:
    """Whether the request is an unsafe API call with an Idempotency-Key."""
    return HEADER in request.headers and request.method in UNSAFE_METHODS and is_api_request(request)


def presented_key(request) -> str:
    """The request's key; 400 naming the header when it is malformed."""
    key = request.headers[HEADER]
    if not VALID_KEY.fullmatch(key):
        raise APIError(400, INVALID_KEY, f"The {HEADER} header must be 1 to {MAX_KEY_LENGTH} printable ASCII "
                       "characters; a random UUID is a good key.",
                       fields={HEADER: f"must be 1 to {MAX_KEY_LENGTH} printable ASCII characters"})
    return key


def _digest(secret: bytes, *parts: bytes) -> str:
    """An HMAC of ``parts``, each length-prefixed so none can run into the next."""
    mac = hmac.new(secret, digestmod=hashlib.sha256)
    for part in parts:
        mac.update(len(part).to_bytes(8, "big"))
        mac.update(part)
    return mac.hexdigest()


def _raw(text_: str) -> bytes:
    return text_.encode("utf-8", "surrogatepass")


def caller_of(request, secret: bytes) -> str:
    """Whose key it is: the user, the API key, or an address and a path."""
    ctx = request.ctx
    identity = ctx.identity
    if identity is not None and identity.user is not None:
        return f"user:{identity.user.id}"
    if identity is not None and identity.api_key is not None:
        return f"key:{identity.api_key.id}"
    return "anon:" + _digest(secret, _raw(ctx.client_ip), _raw(raw_path(request)))


def fingerprint_of(request, secret: bytes) -> str:
    """What the key means: the method, path, query string and body bytes;
    for a multipart body, its parts (a client draws a new boundary for each
    attempt, so the same upload is never the same bytes twice)."""
    return _digest(secret, _raw(request.method), _raw(raw_path(request)),
                   _raw(request.environ.get("QUERY_STRING", "")), *_body_parts(request))


def _body_parts(request) -> list[bytes]:
    if request.content_type != "multipart/form-data":
        return [request.body]
    parts = []
    for name, value in sorted(request.POST.items(), key=lambda item: item[0]):
        parts.append(_raw(name))
        if isinstance(value, str):
            parts.append(_raw(value))
        else:
            parts.append(_raw(value.filename or ""))
            parts.append(value.file.read())
            value.file.seek(0)
    return parts


# --- the record ---------------------------------------------------------------


class KeyInUse(APIError):
    def __init__(self):
        super().__init__(409, KEY_IN_USE, f"A request with this {HEADER} is still being processed. Try again "
                         f"in {RETRY_AFTER} second{'s' if RETRY_AFTER != 1 else ''} to get its answer.",
                         retry_after=RETRY_AFTER)
        self.headers["Retry-After"] = str(RETRY_AFTER)


def _insert_unless_taken(db, values: dict[str, Any], wait: int) -> bool:
    """Insert the record unless the caller's key has one; on PostgreSQL,
    wait (up to ``wait`` seconds) for a transaction inserting it to end."""
    dialect = db.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = insert(IdempotencyRecord).values(**values).on_conflict_do_nothing(
        index_elements=["caller", "key"]).returning(IdempotencyRecord.id)
    if dialect != "postgresql":
        return db.execute(statement).first() is not None
    db.execute(text(f"SET LOCAL lock_timeout = '{int(wait)}s'"))
    try:
        inserted = db.execute(statement).first() is not None
    except sa_exc.OperationalError as error:
        if getattr(error.orig, "sqlstate", None) == "55P03":  # lock_not_available: still running
            raise KeyInUse() from None
        raise
    db.execute(text("SET LOCAL lock_timeout = DEFAULT"))
    return inserted


def claim(db, caller: str, key: str, fingerprint: str, ttl: dt.timedelta,
          wait: int) -> tuple[uuid.UUID | None, IdempotencyRecord | None]:
    """Record this request under the caller's key: (its id, None), or
    (None, the record another request made first). An expired record is
    replaced."""
    for _ in range(3):
        now = utcnow()
        record_id = uuid.uuid4()
        if _insert_unless_taken(db, {"id": record_id, "caller": caller, "key": key, "fingerprint": fingerprint,
                                     "headers": {}, "body_kept": True, "created_at": now,
                                     "expires_at": now + ttl}, wait):
            return record_id, None
        found = db.scalar(select(IdempotencyRecord).where(IdempotencyRecord.caller == caller,
                                                          IdempotencyRecord.key == key)
                          .execution_options(populate_existing=True))
        if found is not None and found.expires_at > now:
            return None, found
        if found is not None:
            db.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id == found.id))
    raise KeyInUse()  # others keep taking the key between our reads


def keep(db, record_id: uuid.UUID, response: Response, shows_secret: bool) -> None:
    """Complete the record with the view's answer; a 5xx is not an answer to keep."""
    status = response.status_code
    if status >= 500:
        db.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id == record_id))
        return
    secret = shows_secret and status < 400
    headers = {name: response.headers[name] for name in KEPT_HEADERS if name in response.headers}
    db.execute(update(IdempotencyRecord).where(IdempotencyRecord.id == record_id).values(
        status=status, headers=headers, body=None if secret else response.body, body_kept=not secret))


def replay(record: IdempotencyRecord, fingerprint: str) -> Response:
    """The kept answer for a repeat of the request that made ``record``."""
    if not hmac.compare_digest(record.fingerprint, fingerprint):
        raise APIError(422, KEY_REUSED, f"This {HEADER} was already used for another request (a different "
                       "method, path, query or body). Send a new key with a new request.")
    if record.status is None:
        raise KeyInUse()
    if not record.body_kept:
        raise APIError(409, ANSWER_NOT_KEPT, f"The first request with this {HEADER} succeeded, but its answer "
                       "carried a secret shown only once, so it was not kept and cannot be shown again. "
                       "Send a new key to ask for a new one.")
    response = Response(status=record.status, headerlist=list(record.headers.items()))
    if record.body:  # a 204 has no body, so no length either
        response.body = record.body
    response.headers[REPLAYED] = "true"
    return response


# --- the deriver --------------------------------------------------------------


def kept_answer(request, secret: bytes) -> Response | None:
    """The kept answer to this very request, if it has one."""
    key = request.headers[HEADER]
    if not VALID_KEY.fullmatch(key):
        return None
    found = request.ctx.db.scalar(select(IdempotencyRecord).where(
        IdempotencyRecord.caller == caller_of(request, secret), IdempotencyRecord.key == key,
        IdempotencyRecord.expires_at > utcnow(), IdempotencyRecord.status.is_not(None),
        IdempotencyRecord.body_kept.is_(True)))
    fingerprint = fingerprint_of(request, secret)
    if found is None or not hmac.compare_digest(found.fingerprint, fingerprint):
        return None
    return replay(found, fingerprint)


def idempotency_deriver(view, info):
    """Every view: an unsafe API call carrying ``Idempotency-Key`` runs once
    per caller and key; repeats get the first answer (see the module's
    docstring). ``shows_secret=True`` marks a view whose success carries a
    credential shown once."""
    secret = info.registry["idempotency.secret"]
    if info.exception_only:
        return gone_deriver(view, secret)
    shows_secret = bool(info.options.get("shows_secret"))
    settings = info.registry.settings
    ttl, wait = dt.timedelta(hours=settings["idempotency.ttl_hours"]), settings["idempotency.wait_seconds"]

    def idempotent(context, request):
        if not carries_key(request):
            return view(context, request)
        key = presented_key(request)
        fingerprint = fingerprint_of(request, secret)
        db = request.ctx.db
        record_id, found = claim(db, caller_of(request, secret), key, fingerprint, ttl, wait)
        if found is not None:
            return replay(found, fingerprint)
        response = view(context, request)
        keep(db, record_id, response, shows_secret)
        return response

    return idempotent


def gone_deriver(view, secret: bytes):
    """An error view: a repeat whose resource the first request removed
    (a DELETE retried) is not found before any view runs; its kept
    answer is the answer."""

    def answering(context, request):
        response = view(context, request)
        if response.status_code != 404 or not carries_key(request):
            return response
        try:
            return kept_answer(request, secret) or response
        except sa_exc.DBAPIError:  # a transaction that cannot read: the 404 stands
            return response

    return answering


idempotency_deriver.options = ("shows_secret",)


def purge_expired(request) -> int:
    """Periodic task: delete expired records, a batch per transaction."""
    cutoff = utcnow()
    total = 0
    while True:
        with request.tm:
            ids = list(request.db.scalars(select(IdempotencyRecord.id)
                                          .where(IdempotencyRecord.expires_at <= cutoff).limit(PURGE_BATCH)))
            if ids:
                request.db.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id.in_(ids)))
        total += len(ids)
        if len(ids) < PURGE_BATCH:
            return total


def includeme(config) -> None:
    config.registry["idempotency.secret"] = derive_key(config.get_settings(), "idempotency")
    config.add_view_deriver(idempotency_deriver, over=("rate_limit_deriver", "refusal_deriver", "rendered_view"))
    config.add_periodic_task(purge_expired, crontab(minute="23"), in_transaction=False)
