"""Discovery: JWKS and RFC 8414 authorization-server metadata."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from freshtoken.server.routes._context import context


async def jwks(request: Request) -> Response:
    ctx = context(request)
    body = ctx.service.keyring.jwks(ctx.service.clock.now())
    # Short public caching: verifiers refetch on an unknown kid anyway.
    return JSONResponse(body, headers={"Cache-Control": "public, max-age=60"})


async def metadata(request: Request) -> Response:
    ctx = context(request)
    issuer = ctx.settings.issuer
    return JSONResponse(
        {
            "issuer": issuer,
            "token_endpoint": f"{issuer}/oauth/token",
            "revocation_endpoint": f"{issuer}/oauth/revoke",
            "introspection_endpoint": f"{issuer}/oauth/introspect",
            "jwks_uri": f"{issuer}/.well-known/jwks.json",
            "grant_types_supported": ["password", "refresh_token", "client_credentials"],
            "response_types_supported": [],
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
                "none",
            ],
            "revocation_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
                "none",
            ],
            "introspection_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
            ],
            "scopes_supported": ["openid", "profile", "read", "write"],
        },
        headers={"Cache-Control": "public, max-age=300"},
    )
