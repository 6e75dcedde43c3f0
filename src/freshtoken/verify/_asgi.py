"""Plain-ASGI bearer-token middleware answering RFC 6750 errors."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from freshtoken.errors import InsufficientScope, InvalidToken
from freshtoken.verify._bearer import parse_bearer
from freshtoken.verify._introspect import IntrospectionUnavailable
from freshtoken.verify._jwks import KeysUnavailable
from freshtoken.verify._verifier import Verifier

log = logging.getLogger("freshtoken.verify")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CLAIMS_SCOPE_KEY = "freshtoken.claims"
_MAX_DESCRIPTION = 200


def quote_param(text: str) -> str:
    """Make ``text`` safe inside a quoted auth-param (RFC 6750 §3: %x20-21 / %x23-5B / %x5D-7E).

    Drops ``"``, ``\\``, control and non-ASCII characters and caps the length, so
    nothing an attacker sent can break out of the ``WWW-Authenticate`` header.
    """
    cleaned = "".join(c for c in text if " " <= c <= "~" and c != '"' and c != "\\")
    return cleaned[:_MAX_DESCRIPTION]


def challenge(
    error: str | None = None,
    description: str | None = None,
    *,
    scope: Iterable[str] = (),
    realm: str | None = None,
) -> str:
    """Build a ``WWW-Authenticate: Bearer …`` value (RFC 6750 §3)."""
    params = []
    if realm:
        params.append(f'realm="{quote_param(realm)}"')
    if error:
        params.append(f'error="{quote_param(error)}"')
        if description:
            params.append(f'error_description="{quote_param(description)}"')
    scopes = " ".join(sorted(scope))
    if scopes:
        params.append(f'scope="{quote_param(scopes)}"')
    return "Bearer " + ", ".join(params) if params else "Bearer"


def error_for(exc: BaseException) -> tuple[int, str | None, str | None, frozenset[str]]:
    """Map a verification failure to ``(status, error, description, scope)``."""
    if isinstance(exc, InvalidToken):
        return 401, "invalid_token", exc.description, frozenset()
    if isinstance(exc, InsufficientScope):
        return 403, "insufficient_scope", str(exc), exc.required
    if isinstance(exc, KeysUnavailable | IntrospectionUnavailable):
        return 503, "temporarily_unavailable", "the token cannot be checked right now", frozenset()
    return 401, "invalid_token", "the token could not be verified", frozenset()


PathFilter = Callable[[str], bool] | Iterable[str] | None


def _path_predicate(paths: PathFilter) -> Callable[[str], bool] | None:
    if paths is None:
        return None
    if callable(paths):
        return paths
    prefixes = tuple(p.rstrip("/") for p in paths)

    def protects(path: str) -> bool:
        for prefix in prefixes:
            if path == prefix or path.startswith(prefix + "/") or not prefix:
                return True
        return False

    return protects


class BearerAuthMiddleware:
    """Requires a valid bearer access token on every (selected) HTTP/websocket request.

    * ``paths``: ``None`` (everything), an iterable of path prefixes
      (``["/api"]`` guards ``/api`` and ``/api/...``), or a predicate ``path -> bool``.
    * ``required_scopes``: scopes every guarded request needs (403 otherwise).

    On success the :class:`~freshtoken.verify.AccessTokenClaims` are stored in
    ``scope["freshtoken.claims"]`` and ``scope["state"]["claims"]`` (Starlette:
    ``request.state.claims``). On failure it answers RFC 6750: 401 with
    ``WWW-Authenticate: Bearer error="invalid_token", error_description="…"``, 403
    ``insufficient_scope``, a bare ``Bearer`` challenge when no token was sent,
    and 503 with ``Retry-After`` when keys or introspection are unavailable.
    Bodies are JSON ``{"error": …, "error_description": …}``.
    """

    def __init__(
        self,
        app: ASGIApp,
        verifier: Verifier,
        *,
        paths: PathFilter = None,
        required_scopes: Iterable[str] = (),
        realm: str | None = None,
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.required_scopes = frozenset(required_scopes)
        self.realm = realm
        self._protects = _path_predicate(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if (kind != "http" and kind != "websocket") or (
            self._protects is not None and not self._protects(scope["path"])
        ):
            await self.app(scope, receive, send)
            return
        header: bytes | None = None
        try:
            for name, value in scope["headers"]:
                if name == b"authorization":
                    if header is not None:
                        raise InvalidToken("malformed", "more than one Authorization header")
                    header = value
            token = parse_bearer(header)
            if token is None:
                await self._deny(scope, send, 401, None, None, frozenset())
                return
            claims = await self.verifier.averify(token, required_scopes=self.required_scopes)
        except Exception as exc:
            if not isinstance(
                exc, InvalidToken | InsufficientScope | KeysUnavailable | IntrospectionUnavailable
            ):
                log.exception("unexpected error while verifying a bearer token")
            await self._deny(scope, send, *error_for(exc))
            return
        scope[CLAIMS_SCOPE_KEY] = claims
        state = scope.get("state")
        if state is None:
            scope["state"] = {"claims": claims}
        else:
            state["claims"] = claims
        await self.app(scope, receive, send)

    async def _deny(
        self,
        scope: Scope,
        send: Send,
        status: int,
        error: str | None,
        description: str | None,
        needed: frozenset[str],
    ) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        if error is None:
            payload: dict[str, str] = {
                "error": "unauthorized",
                "error_description": "a bearer token is required",
            }
        else:
            payload = {"error": error, "error_description": description or error}
        body = json.dumps(payload).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ]
        if status == 503:
            headers.append((b"retry-after", b"5"))
        else:
            value = challenge(
                error,
                description,
                scope=needed if status == 403 else (),
                realm=self.realm,
            )
            headers.append((b"www-authenticate", value.encode("ascii")))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
