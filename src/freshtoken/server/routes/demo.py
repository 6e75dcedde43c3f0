"""The demo page, and (demo mode only) an attacker button for it."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response

from freshtoken.server.exceptions import OAuthError
from freshtoken.server.http import guarded, json_response
from freshtoken.server.routes._context import context
from freshtoken.server.routes.auth import cookie_mode
from freshtoken.server.service import DEFAULT_CLIENT_ID

STATIC_DIR = Path(__file__).resolve().parents[2] / "web" / "static"


async def demo_page(request: Request) -> Response:
    page = STATIC_DIR / "demo" / "index.html"
    if not page.exists():
        return Response("demo page not installed", status_code=404)
    return FileResponse(page, media_type="text/html; charset=utf-8")


@guarded
async def replay_old_token(request: Request) -> Response:
    """Play the attacker who stole an old refresh token: rotate the session's live
    token twice (as its owner would over time), then present the old one. That is
    reuse, so the server revokes the whole session — the owner's next refresh fails."""
    ctx = context(request)
    if not ctx.settings.demo_mode:
        return json_response({"error": "not_found", "error_description": "demo mode is off"}, 404)
    if not cookie_mode(request, ctx, body_has_token=False):
        raise OAuthError("invalid_request", "send the X-Freshtoken-CSRF header")
    stolen = request.cookies.get(ctx.settings.cookie_name)
    if not stolen:
        raise OAuthError("invalid_grant", "no refresh token cookie: log in first")
    service = ctx.service
    child = await ctx.db.run(service.refresh, refresh_token=stolen, client_id=DEFAULT_CLIENT_ID)
    assert child.refresh_token is not None
    await ctx.db.run(
        service.refresh, refresh_token=child.refresh_token, client_id=DEFAULT_CLIENT_ID
    )
    try:
        await ctx.db.run(service.refresh, refresh_token=stolen, client_id=DEFAULT_CLIENT_ID)
    except OAuthError as exc:
        revoked = "already used" in exc.description
        return json_response({"reuse_detected": revoked, "session_revoked": revoked})
    return json_response({"reuse_detected": False, "session_revoked": False})
