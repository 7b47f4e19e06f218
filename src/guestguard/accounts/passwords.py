"""Password hashing (argon2id) and the password rules: 8 to 128 characters,
no composition rules, not one of the most common passwords."""
from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 8
MAX_LENGTH = 128
COMMON_PASSWORDS = Path(__file__).with_name("common-passwords.txt")

# OWASP ASVS 5.0 / Password Storage Cheat Sheet floor for argon2id.
MIN_MEMORY_KIB = 19 * 1024
MIN_TIME_COST = 2


@functools.cache
def common_passwords() -> frozenset[str]:
    return frozenset(line.strip() for line in COMMON_PASSWORDS.read_text().splitlines() if line.strip())


def password_problem(password: str, email: str = "") -> str | None:
    """Why ``password`` is not acceptable, or None."""
    if len(password) < MIN_LENGTH:
        return f"must be at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"must be at most {MAX_LENGTH} characters"
    if not password.strip():
        return "must not be only spaces"
    if password.lower() in common_passwords():
        return "is one of the most common passwords; choose another"
    if email and password.lower() == email.lower():
        return "must not be your email address"
    return None


class Passwords:
    def __init__(self, settings: Mapping[str, Any]):
        self.hasher = PasswordHasher(
            time_cost=settings["passwords.time_cost"],
            memory_cost=settings["passwords.memory_kib"],
            parallelism=settings["passwords.parallelism"],
            type=Type.ID,
        )

    @functools.cached_property
    def dummy_hash(self) -> str:
        """Checked against when no user matches, so an unknown email costs
        the same time as a wrong password."""
        return self.hasher.hash("no user has this password")

    def hash(self, password: str) -> str:
        return self.hasher.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        try:
            return self.hasher.verify(stored_hash or self.dummy_hash, password) and bool(stored_hash)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        return self.hasher.check_needs_rehash(stored_hash)
