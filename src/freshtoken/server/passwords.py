"""Password hashing with argon2id (argon2-cffi).

Defaults follow OWASP's Password Storage Cheat Sheet minimum for argon2id:
m=19 MiB, t=2, p=1 (about 25 ms here, so a core verifies ~40 logins/s).
"""

from __future__ import annotations

import hashlib
import hmac

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


class Passwords:
    def __init__(self, *, time_cost: int = 2, memory_kib: int = 19 * 1024, parallelism: int = 1):
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID
        )
        # Verified against when the user does not exist, so both failures cost the same.
        self._dummy = self._hasher.hash("freshtoken-dummy-password")

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        """Constant work whether or not the user exists."""
        try:
            return self._hasher.verify(stored_hash or self._dummy, password) and bool(stored_hash)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._hasher.check_needs_rehash(stored_hash)


def hash_client_secret(secret: str) -> str:
    """Client secrets are generated with 256 bits of entropy, so SHA-256 suffices
    (argon2 on every confidential-client request would cost ~25 ms)."""
    return "sha256:" + hashlib.sha256(secret.encode("utf-8")).hexdigest()


def verify_client_secret(stored: str | None, presented: str | None) -> bool:
    if not stored or presented is None:
        return False
    return hmac.compare_digest(stored.encode(), hash_client_secret(presented).encode())
