"""Opaque refresh tokens and their derived successors (DESIGN §2, §3)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

REFRESH_TOKEN_PREFIX = "ftr_"
# prefix + 43 base64url characters = 256 bits. Secret scanners can match this.
REFRESH_TOKEN_PATTERN = re.compile(r"ftr_[A-Za-z0-9_-]{43}")


def new_refresh_token() -> str:
    """A fresh 256-bit token from the OS CSPRNG."""
    return REFRESH_TOKEN_PREFIX + secrets.token_urlsafe(32)


def looks_like_refresh_token(value: str) -> bool:
    """Cheap shape check so garbage never reaches the database."""
    return bool(REFRESH_TOKEN_PATTERN.fullmatch(value))


def hash_refresh_token(token: str) -> bytes:
    """What the database stores: SHA-256, enough for a 256-bit random secret."""
    return hashlib.sha256(token.encode("ascii")).digest()


class SuccessorDeriver:
    """successor = prefix + base64url(HMAC-SHA256(secret, presented)).

    Deriving the child from its parent lets the grace window answer *the same*
    successor to a retry without ever storing a token in the clear.
    """

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 32:
            raise ValueError("the successor secret must be at least 32 bytes")
        self._secret = secret

    def derive(self, presented: str) -> str:
        mac = hmac.digest(self._secret, presented.encode("ascii"), "sha256")
        return REFRESH_TOKEN_PREFIX + base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")
