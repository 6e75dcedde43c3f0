"""Guards the server's own demo API with the same Verifier any resource server uses."""

from __future__ import annotations

from starlette.types import ASGIApp

from freshtoken.server.routes._context import Context
from freshtoken.verify import BearerAuthMiddleware, Verifier


def protect(app: ASGIApp, ctx: Context) -> ASGIApp:
    """Bearer-protect ``app``; keys come straight from the server's key ring (no HTTP)."""
    verifier = Verifier(
        issuer=ctx.settings.issuer,
        audience=ctx.settings.audience,
        keys=lambda: ctx.service.keyring.jwks(ctx.service.clock.now()),
        clock=ctx.service.clock,
        leeway=ctx.settings.leeway,
    )
    return BearerAuthMiddleware(app, verifier, realm="freshtoken")
