"""Resource-server side: verify freshtoken access tokens in any ASGI app.

>>> verifier = Verifier(issuer="https://auth.example.com", audience="https://api.example.com")
>>> claims = verifier.verify(token, required_scopes={"read"})  # doctest: +SKIP

See docs/verifier.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from freshtoken.errors import InsufficientScope, InvalidToken
from freshtoken.verify._asgi import BearerAuthMiddleware, challenge
from freshtoken.verify._bearer import parse_bearer
from freshtoken.verify._introspect import IntrospectionChecker, IntrospectionUnavailable
from freshtoken.verify._jwks import (
    DEFAULT_ALGORITHMS,
    SUPPORTED_ALGORITHMS,
    JWKSCache,
    JWKSError,
    KeySet,
    KeySource,
    KeysUnavailable,
    StaticKeys,
    VerificationKey,
)
from freshtoken.verify._verifier import AccessTokenClaims, Verifier

if TYPE_CHECKING:
    from freshtoken.verify._fastapi import require_scopes

__all__ = [
    "DEFAULT_ALGORITHMS",
    "SUPPORTED_ALGORITHMS",
    "AccessTokenClaims",
    "BearerAuthMiddleware",
    "InsufficientScope",
    "IntrospectionChecker",
    "IntrospectionUnavailable",
    "InvalidToken",
    "JWKSCache",
    "JWKSError",
    "KeySet",
    "KeySource",
    "KeysUnavailable",
    "StaticKeys",
    "VerificationKey",
    "Verifier",
    "challenge",
    "parse_bearer",
    "require_scopes",
]


def __getattr__(name: str) -> Any:
    # FastAPI is optional: import the dependency factory only when asked for.
    if name == "require_scopes":
        from freshtoken.verify._fastapi import require_scopes

        return require_scopes
    raise AttributeError(name)
