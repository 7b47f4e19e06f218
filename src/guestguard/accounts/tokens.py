"""High-entropy tokens: 256 random bits shown once, stored as SHA-256."""
from __future__ import annotations

import hashlib
import hmac
import secrets

TOKEN_BYTES = 32


def new_token(prefix: str = "") -> tuple[str, str]:
    """Return (raw token for the user, hash to store)."""
    raw = prefix + secrets.token_urlsafe(TOKEN_BYTES)
    return raw, hash_token(raw)


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def matches(raw: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_token(raw), stored_hash)


def looks_like_token(raw: object, prefix: str = "") -> bool:
    """Cheap shape check before any lookup: garbage never reaches the database."""
    return (isinstance(raw, str) and raw.startswith(prefix)
            and 40 <= len(raw) - len(prefix) <= 64
            and all(c.isalnum() or c in "-_" for c in raw[len(prefix):]))
