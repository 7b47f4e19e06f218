"""High-entropy tokens: 256 random bits shown once, stored as SHA-256."""
from __future__ import annotations

import hashlib
import hmac
import re
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


# What follows a token's prefix: 40 to 64 characters of URL-safe base64,
# ASCII only (``str.isalnum`` would let other scripts' letters and digits by).
TOKEN_BODY = re.compile(r"[A-Za-z0-9_-]{40,64}")


def looks_like_token(raw: object, prefix: str = "") -> bool:
    """Cheap shape check before any lookup: garbage never reaches the database."""
    return isinstance(raw, str) and raw.startswith(prefix) and TOKEN_BODY.fullmatch(raw, len(prefix)) is not None
