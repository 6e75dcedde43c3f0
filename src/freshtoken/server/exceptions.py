"""OAuth 2.0 errors the service raises and the routes turn into RFC 6749 §5.2 answers."""

from __future__ import annotations


class OAuthError(Exception):
    """``error`` is the RFC code; ``description`` is safe to show (never a token)."""

    status_code = 400

    def __init__(self, error: str, description: str, status_code: int | None = None) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        if status_code is not None:
            self.status_code = status_code


def invalid_request(description: str) -> OAuthError:
    return OAuthError("invalid_request", description)


def invalid_grant(description: str) -> OAuthError:
    return OAuthError("invalid_grant", description)


def invalid_client(description: str = "client authentication failed") -> OAuthError:
    return OAuthError("invalid_client", description, 401)


def invalid_scope(description: str) -> OAuthError:
    return OAuthError("invalid_scope", description)


def unauthorized_client(description: str) -> OAuthError:
    return OAuthError("unauthorized_client", description)
