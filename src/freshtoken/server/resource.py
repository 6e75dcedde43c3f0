"""Guards the server's own demo API with bearer tokens (RFC 6750)."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

from freshtoken.server.routes._context import Context


def protect(app: ASGIApp, ctx: Context) -> ASGIApp:
    return _InterimBearer(app, ctx)


class _InterimBearer:
    def __init__(self, app: ASGIApp, ctx: Context) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = ""
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value.decode("latin-1")
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            await _deny(send, 'Bearer realm="freshtoken"', "missing bearer token")
            return
        claims = self.ctx.service.decode_access_token(token.strip())
        if claims is None:
            await _deny(
                send,
                'Bearer realm="freshtoken", error="invalid_token", '
                'error_description="the access token is invalid or expired"',
                "the access token is invalid or expired",
            )
            return
        scope["freshtoken.claims"] = claims
        await self.app(scope, receive, send)


async def _deny(send: Send, challenge: str, description: str) -> None:
    body = json.dumps({"error": "invalid_token", "error_description": description}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"www-authenticate", challenge.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
