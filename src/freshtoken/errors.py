"""One small exception hierarchy for every part of freshtoken.

Callers catch :class:`FreshtokenError` to handle anything we raise, or one of
the narrower classes when they care *why*: a client app shows "please log in
again" for :class:`SessionExpired` but retries later on :class:`RefreshFailed`.
"""

from __future__ import annotations


class FreshtokenError(Exception):
    """Base class of every error freshtoken raises on purpose."""


class ConfigurationError(FreshtokenError):
    """Bad use: a misconfigured URL, store, key or setting."""


# --- client side -----------------------------------------------------------


class NoTokens(FreshtokenError):
    """The store holds no tokens: the user has to log in first."""


class RefreshFailed(FreshtokenError):
    """A refresh failed transiently (network, 5xx, 429) and retries ran out.

    The tokens are kept: the session may still be alive on the server.
    """


class SessionExpired(FreshtokenError):
    """The server said the session is over (``invalid_grant``, 400/401).

    The store has been cleared and ``on_session_expired`` has been called.
    """

    def __init__(self, reason: str = "session expired") -> None:
        super().__init__(reason)
        self.reason = reason


class TokenStoreError(FreshtokenError):
    """Saving or loading tokens failed; we stop rather than lose a rotated token."""


class LoginFailed(FreshtokenError):
    """The login call was refused (bad credentials, unknown client, ...)."""


# --- resource-server side ----------------------------------------------------


class InvalidToken(FreshtokenError):
    """A bearer token was refused. ``code`` is machine-readable, ``str()`` is for humans.

    ``code`` is one of: ``malformed``, ``bad_signature``, ``unknown_key``,
    ``wrong_algorithm``, ``wrong_type``, ``expired``, ``not_yet_valid``,
    ``wrong_issuer``, ``wrong_audience``, ``missing_claim``, ``inactive``.
    """

    def __init__(self, code: str, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description


class InsufficientScope(FreshtokenError):
    """The token is valid but lacks a scope the resource requires (RFC 6750 §3.1)."""

    def __init__(self, required: frozenset[str] | set[str], granted: frozenset[str] | set[str]):
        missing = " ".join(sorted(set(required) - set(granted)))
        super().__init__(f"missing scope: {missing}")
        self.required = frozenset(required)
        self.granted = frozenset(granted)


__all__ = [
    "ConfigurationError",
    "FreshtokenError",
    "InsufficientScope",
    "InvalidToken",
    "LoginFailed",
    "NoTokens",
    "RefreshFailed",
    "SessionExpired",
    "TokenStoreError",
]
