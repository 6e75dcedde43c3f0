"""A FastAPI dependency that requires a valid bearer token with given scopes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from freshtoken.errors import ConfigurationError
from freshtoken.verify._asgi import CLAIMS_SCOPE_KEY, challenge, error_for
from freshtoken.verify._bearer import parse_bearer
from freshtoken.verify._verifier import AccessTokenClaims, Verifier

# Only for the OpenAPI document ("Authorize" button); the header is parsed by us.
_bearer_scheme = HTTPBearer(auto_error=False, description="freshtoken access token")


def require_scopes(
    *scopes: str, verifier: Verifier | None = None
) -> Callable[..., Awaitable[AccessTokenClaims]]:
    """A dependency returning the request's :class:`AccessTokenClaims`, requiring ``scopes``.

    Uses the claims :class:`BearerAuthMiddleware` already put in the scope when
    it guards the route; otherwise verifies the ``Authorization`` header with
    ``verifier`` (or ``app.state.freshtoken_verifier``). Failures raise
    ``HTTPException`` 401/403 with the RFC 6750 ``WWW-Authenticate`` header and
    ``detail={"error": …, "error_description": …}``; 503 when keys are unavailable.
    """
    needed = frozenset(scopes)

    async def freshtoken_claims(
        request: Request,
        _credentials: HTTPAuthorizationCredentials | None = Security(_bearer_scheme),
    ) -> AccessTokenClaims:
        claims = request.scope.get(CLAIMS_SCOPE_KEY)
        try:
            if not isinstance(claims, AccessTokenClaims):
                active = verifier or getattr(request.app.state, "freshtoken_verifier", None)
                if active is None:
                    raise ConfigurationError(
                        "require_scopes() needs verifier= or app.state.freshtoken_verifier"
                    )
                values = request.headers.getlist("authorization")
                token = parse_bearer(values[0] if len(values) == 1 else None)
                if len(values) > 1 or token is None:
                    if len(values) > 1:
                        raise _http(401, "invalid_token", "more than one Authorization header")
                    raise _http(401, None, "a bearer token is required")
                claims = await active.averify(token, required_scopes=needed)
            elif needed and not claims.scopes.issuperset(needed):
                Verifier._check_scopes(claims, needed)
        except HTTPException:
            raise
        except ConfigurationError:
            raise
        except Exception as exc:
            status, error, description, scope = error_for(exc)
            raise _http(status, error, description, scope) from None
        return claims

    return freshtoken_claims


def _http(
    status: int,
    error: str | None,
    description: str | None,
    scope: frozenset[str] = frozenset(),
) -> HTTPException:
    headers = {"Cache-Control": "no-store"}
    if status == 503:
        headers["Retry-After"] = "5"
    else:
        headers["WWW-Authenticate"] = challenge(error, description, scope=scope)
    detail = {"error": error or "unauthorized", "error_description": description or ""}
    return HTTPException(status_code=status, detail=detail, headers=headers)
