"""Purpose-bound keys derived from ``app.secret``, so one secret in the
environment serves cookies, sealed data and tokens without reusing a key.

Data is sealed with Fernet. cryptography is imported by the first seal made
or opened, not at startup: its Rust core is some 8 MiB in every process,
and a web worker serving pages and guests' links seals nothing."""
from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any


class Unreadable(Exception):
    """Sealed data that was not sealed with this purpose's key (forged,
    damaged, or sealed under another secret)."""


def derive_key(settings: Mapping[str, Any], purpose: str) -> bytes:
    return hmac.new(settings["app.secret"].encode(), purpose.encode(), hashlib.sha256).digest()


def _fernet_for(settings: Mapping[str, Any], purpose: str):
    from cryptography.fernet import Fernet

    return Fernet(base64.urlsafe_b64encode(derive_key(settings, purpose)))


def seal(settings: Mapping[str, Any], purpose: str, data: bytes) -> bytes:
    """``data`` encrypted and authenticated under the purpose's key (a Fernet token)."""
    return _fernet_for(settings, purpose).encrypt(data)


def open_sealed(settings: Mapping[str, Any], purpose: str, token: bytes | str) -> bytes:
    """What ``seal`` sealed for this purpose; Unreadable for anything else."""
    fernet = _fernet_for(settings, purpose)
    from cryptography.fernet import InvalidToken

    try:
        return fernet.decrypt(token)
    except (InvalidToken, ValueError):
        raise Unreadable(purpose) from None
