"""Parsing the ``Authorization`` request header (RFC 6750 §2.1, RFC 7235 §2.1)."""

from __future__ import annotations

from freshtoken.errors import InvalidToken

MAX_HEADER_LENGTH = 16 * 1024
"""An ``Authorization`` value longer than this is refused without looking at it."""

_WHITESPACE = " \t"


def parse_bearer(value: str | bytes | None) -> str | None:
    """Extract the bearer token from an ``Authorization`` header value.

    Returns ``None`` when the request carries no bearer credentials at all (no
    header, an empty one, or another scheme such as ``Basic``): per RFC 6750 §3.1
    such a request is answered 401 *without* an ``error`` attribute. Raises
    :class:`~freshtoken.errors.InvalidToken` (``malformed``) when the header says
    ``Bearer`` but what follows is not one token68 value.

    The scheme is matched case-insensitively (RFC 7235 §2.1); runs of spaces or
    tabs around and after it are tolerated.
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        if len(value) > MAX_HEADER_LENGTH:
            raise InvalidToken("malformed", "the Authorization header is too long")
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            raise InvalidToken("malformed", "the Authorization header is not ASCII") from None
    elif len(value) > MAX_HEADER_LENGTH:
        raise InvalidToken("malformed", "the Authorization header is too long")
    value = value.strip(_WHITESPACE)
    if not value:
        return None
    # Fast path: the overwhelmingly common "Bearer <token>".
    if value.startswith("Bearer ") and value.find(" ", 7) < 0 and "\t" not in value:
        token = value[7:]
        if token:
            return token
    scheme, _, rest = value.replace("\t", " ").partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = rest.strip(" ")
    if not token:
        raise InvalidToken("malformed", "the Bearer credentials are empty")
    if " " in token or not token.isprintable() or not token.isascii():
        raise InvalidToken("malformed", "the Bearer credentials are not a single token")
    return token
