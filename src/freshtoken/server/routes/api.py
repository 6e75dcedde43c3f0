"""The demo protected API: what a resource server behind freshtoken looks like."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response


async def me(request: Request) -> Response:
    claims: dict[str, Any] = dict(request.scope["freshtoken.claims"].raw)
    return JSONResponse(
        {
            "sub": claims.get("sub"),
            "client_id": claims.get("client_id"),
            "scope": claims.get("scope"),
            "sid": claims.get("sid"),
            "exp": claims.get("exp"),
            "claims": claims,
        }
    )
