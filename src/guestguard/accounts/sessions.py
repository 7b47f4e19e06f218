"""Login sessions: web cookies, API access tokens (JWT) and rotating refresh
tokens. Every way in leads to one ``auth_sessions`` row; revoking the row
ends every credential that hangs from it at once."""
from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update

from guestguard.accounts.models import API, WEB, AuthSession, RefreshToken, User
from guestguard.accounts.tokens import hash_token, looks_like_token, new_token
from guestguard.db import utcnow
from guestguard.keys import derive_key

ACCESS_TYPE = "access"
ALGORITHMS = ["HS256"]
# Writing last_seen_at on every request would turn reads into writes.
LAST_SEEN_RESOLUTION = dt.timedelta(minutes=5)


class InvalidToken(Exception):
    """A token that is garbage, expired, used or revoked: callers answer the
    same way whichever it was."""


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    session_id: uuid.UUID


def _jwt():
    """PyJWT, imported by the first API token issued or read: it imports
    cryptography's Rust core whenever installed (some 10 MiB a process),
    though HS256 needs only hmac, and the web's pages and the guests'
    links use cookies and their own tokens."""
    import jwt

    return jwt


def _now() -> dt.datetime:
    return utcnow()


def start_session(db, settings: Mapping[str, Any], user: User, *, kind: str,
                  user_agent: str, ip: str | None) -> tuple[AuthSession, str | None]:
    """Create a session; for the web, also return the raw cookie token."""
    now = _now()
    raw_cookie, cookie_hash = new_token() if kind == WEB else (None, None)
    session = AuthSession(
        user_id=user.id, kind=kind, token_hash=cookie_hash, user_agent=(user_agent or "")[:512],
        ip=ip, created_at=now, last_seen_at=now,
        expires_at=now + dt.timedelta(days=settings["auth.session_ttl_days"]),
    )
    db.add(session)
    db.flush()
    return session, raw_cookie


def issue_tokens(db, settings: Mapping[str, Any], session: AuthSession) -> TokenPair:
    raw_refresh, refresh_hash = new_token()
    db.add(RefreshToken(session_id=session.id, token_hash=refresh_hash))
    return TokenPair(access_token=encode_access_token(settings, session),
                     refresh_token=raw_refresh,
                     expires_in=settings["auth.access_token_ttl"],
                     session_id=session.id)


def encode_access_token(settings: Mapping[str, Any], session: AuthSession) -> str:
    now = _now()
    claims = {
        "sub": str(session.user_id),
        "sid": str(session.id),
        "iat": int(now.timestamp()),
        "exp": int(now.timestamp()) + settings["auth.access_token_ttl"],
        "typ": ACCESS_TYPE,
        "aud": settings["auth.jwt_audience"],
    }
    jwt = _jwt()
    return jwt.encode(claims, derive_key(settings, "jwt-access"), algorithm="HS256")


def decode_access_token(settings: Mapping[str, Any], token: str) -> dict[str, Any]:
    jwt = _jwt()
    try:
        claims = jwt.decode(
            token, derive_key(settings, "jwt-access"), algorithms=ALGORITHMS,
            audience=settings["auth.jwt_audience"],
            options={"require": ["sub", "sid", "iat", "exp", "typ", "aud"]},
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken(str(exc)) from None
    if claims.get("typ") != ACCESS_TYPE:
        raise InvalidToken("not an access token")
    if not made_here(settings, claims):
        raise InvalidToken("malformed claims")
    return claims


def made_here(settings: Mapping[str, Any], claims: Mapping[str, Any]) -> bool:
    """Whether verified claims have the shape ``encode_access_token`` gives
    them: signed with our key does not make a token ours (a leaked key, a
    bug elsewhere), and every claim read later must be what it expects."""
    texts = all(isinstance(claims[name], str) for name in ("sub", "sid", "aud"))
    times = all(type(claims[name]) is int for name in ("iat", "exp"))
    return texts and times and claims["exp"] - claims["iat"] <= settings["auth.access_token_ttl"]


def access_token_names(settings: Mapping[str, Any], token: str) -> tuple[uuid.UUID, str]:
    """The session and the person (``sub``) a valid access token names;
    InvalidToken for any other token. Whether that session is still live is
    ``live_api_session``'s to say."""
    claims = decode_access_token(settings, token)
    try:
        return uuid.UUID(claims["sid"]), claims["sub"]
    except ValueError:
        raise InvalidToken("malformed sid") from None


def session_from_access_token(db, settings: Mapping[str, Any], token: str) -> AuthSession:
    session_id, subject = access_token_names(settings, token)
    return live_api_session(db, db.get(AuthSession, session_id), subject)


def live_api_session(db, session: AuthSession | None, subject: str) -> AuthSession:
    """``session``, found by the id an access token names, if it is that
    token's: an API session of the person ``subject``, live."""
    if session is None or session.kind != API or str(session.user_id) != subject:
        raise InvalidToken("unknown session")
    return _usable(db, session)


def session_from_cookie(db, raw: str) -> AuthSession:
    if not looks_like_token(raw):
        raise InvalidToken("malformed cookie")
    session = db.scalar(select(AuthSession).where(AuthSession.token_hash == hash_token(raw)))
    if session is None or session.kind != WEB:
        raise InvalidToken("unknown session")
    return _usable(db, session)


def _usable(db, session: AuthSession) -> AuthSession:
    now = _now()
    if not session.is_active(now) or session.user.deleted_at is not None:
        raise InvalidToken("session ended")
    if now - session.last_seen_at > LAST_SEEN_RESOLUTION:
        session.last_seen_at = now
    return session


def rotate_refresh_token(db, settings: Mapping[str, Any], raw: str) -> TokenPair:
    """Exchange a refresh token for a new pair. A token that was already
    rotated is a replay: the whole session is revoked."""
    if not looks_like_token(raw):
        raise InvalidToken("malformed refresh token")
    token = db.scalar(select(RefreshToken).where(RefreshToken.token_hash == hash_token(raw))
                      .with_for_update())
    if token is None:
        raise InvalidToken("unknown refresh token")
    session = db.get(AuthSession, token.session_id)
    now = _now()
    if token.rotated_at is not None:
        revoke(session, "refresh_token_replayed", now)
        raise RefreshReplay(session)
    if not session.is_active(now) or session.user.deleted_at is not None:
        raise InvalidToken("session ended")
    # Only one of two concurrent uses of the same token may win.
    won = db.execute(update(RefreshToken)
                     .where(RefreshToken.id == token.id, RefreshToken.rotated_at.is_(None))
                     .values(rotated_at=now)
                     .execution_options(synchronize_session=False)).rowcount
    if won != 1:
        revoke(session, "refresh_token_replayed", now)
        raise RefreshReplay(session)
    session.last_seen_at = now
    return issue_tokens(db, settings, session)


class RefreshReplay(InvalidToken):
    def __init__(self, session: AuthSession):
        super().__init__("refresh token replayed")
        self.session = session


def revoke(session: AuthSession, reason: str, now: dt.datetime | None = None) -> bool:
    if session.revoked_at is not None:
        return False
    session.revoked_at = now or _now()
    session.revoked_reason = reason
    return True


def revoke_all(db, user_id: uuid.UUID, reason: str, *, keep: uuid.UUID | None = None) -> int:
    """End every active session of a user (but ``keep``)."""
    query = (update(AuthSession)
             .where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None))
             .values(revoked_at=_now(), revoked_reason=reason)
             .execution_options(synchronize_session="fetch"))
    if keep is not None:
        query = query.where(AuthSession.id != keep)
    return db.execute(query).rowcount


def active_sessions(db, user_id: uuid.UUID) -> list[AuthSession]:
    now = _now()
    return list(db.scalars(
        select(AuthSession)
        .where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None),
               AuthSession.expires_at > now)
        .order_by(AuthSession.last_seen_at.desc())))
