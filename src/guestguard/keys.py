"""Purpose-bound keys derived from ``app.secret``, so one secret in the
environment serves cookies, sealed data and tokens without reusing a key."""
from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from cryptography.fernet import Fernet


def derive_key(settings: Mapping[str, Any], purpose: str) -> bytes:
    return hmac.new(settings["app.secret"].encode(), purpose.encode(), hashlib.sha256).digest()


def fernet_for(settings: Mapping[str, Any], purpose: str) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(derive_key(settings, purpose)))
