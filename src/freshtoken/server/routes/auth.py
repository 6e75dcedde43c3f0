"""``/auth/*``: the JSON API for first-party apps, with cookie delivery for browsers.

A request carrying ``X-Freshtoken-CSRF`` (which a cross-site form cannot send and
which forces a CORS preflight) from an allowed ``Origin`` uses *cookie delivery*:
the refresh token travels only in an HttpOnly cookie scoped to ``/auth``. Every
other request is plain JSON with the token in the body.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from freshtoken.server.exceptions import OAuthError
from freshtoken.server.http import client_ip, guarded, json_response, read_json_object, string_field
from freshtoken.server.routes._context import Context, context
from freshtoken.server.service import DEFAULT_CLIENT_ID, IssuedTokens

CSRF_HEADER = "x-freshtoken-csrf"
COOKIE_PATH = "/auth"


class CsrfRejected(OAuthError):
    status_code = 403

    def __init__(self, description: str) -> None:
        super().__init__("csrf_rejected", description)


def allowed_origins(request: Request, ctx: Context) -> set[str]:
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    return {own, *ctx.settings.cors_origins}


def cookie_mode(request: Request, ctx: Context, body_has_token: bool) -> bool:
    """True for cookie delivery; raises 403 for a cookie request that fails CSRF checks."""
    if request.headers.get(CSRF_HEADER) is not None:
        origin = request.headers.get("origin")
        if origin is None:
            raise CsrfRejected("cookie requests must carry an Origin header")
        if origin.rstrip("/") not in allowed_origins(request, ctx):
            raise CsrfRejected(f"origin {origin[:100]!r} is not allowed")
        return True
    if ctx.settings.cookie_name in request.cookies and not body_has_token:
        raise CsrfRejected(
            "cookie-authenticated requests need the X-Freshtoken-CSRF header and an allowed Origin"
        )
    return False


def set_refresh_cookie(response: Response, ctx: Context, issued: IssuedTokens) -> None:
    assert issued.refresh_token is not None and issued.session_expires_at is not None
    max_age = max(0, int(issued.session_expires_at - ctx.service.clock.now()))
    response.set_cookie(
        ctx.settings.cookie_name,
        issued.refresh_token,
        max_age=max_age,
        path=COOKIE_PATH,
        secure=ctx.settings.cookie_secure,
        httponly=True,
        samesite="strict",
    )


def clear_refresh_cookie(response: Response, ctx: Context) -> None:
    response.delete_cookie(
        ctx.settings.cookie_name,
        path=COOKIE_PATH,
        secure=ctx.settings.cookie_secure,
        httponly=True,
        samesite="strict",
    )


def token_answer(ctx: Context, issued: IssuedTokens, use_cookie: bool) -> Response:
    response = json_response(issued.to_json(include_refresh_token=not use_cookie))
    if use_cookie:
        set_refresh_cookie(response, ctx, issued)
    return response


@guarded
async def login(request: Request) -> Response:
    ctx = context(request)
    use_cookie = cookie_mode(request, ctx, body_has_token=True)
    data = await read_json_object(request, ctx.settings.max_body_bytes)
    username = string_field(data, "username", max_len=255)
    password = string_field(data, "password", max_len=1024)
    client_id = string_field(data, "client_id", required=False) or DEFAULT_CLIENT_ID
    scope = string_field(data, "scope", required=False)
    assert username is not None and password is not None
    ip = client_ip(request)
    ctx.check_limit("login_ip", ip)
    ctx.check_limit("login_username", username)
    issued = await ctx.run_slow(
        ctx.service.login,
        username=username,
        password=password,
        client_id=client_id,
        scope=scope,
        ip=ip,
    )
    ctx.metrics.count_token_request("auth_login", issued.outcome)
    return token_answer(ctx, issued, use_cookie)


async def _token_from(request: Request, ctx: Context) -> tuple[dict[str, Any], str | None, bool]:
    data = await read_json_object(request, ctx.settings.max_body_bytes, allow_empty=True)
    body_token = string_field(data, "refresh_token", required=False, max_len=512)
    use_cookie = cookie_mode(request, ctx, body_has_token=body_token is not None)
    if use_cookie:
        return data, request.cookies.get(ctx.settings.cookie_name), True
    if body_token is None:
        raise OAuthError("invalid_request", "missing parameter: refresh_token")
    return data, body_token, False


@guarded
async def refresh(request: Request) -> Response:
    ctx = context(request)
    data, refresh_token, use_cookie = await _token_from(request, ctx)
    client_id = string_field(data, "client_id", required=False) or DEFAULT_CLIENT_ID
    scope = string_field(data, "scope", required=False)
    ip = client_ip(request)
    ctx.check_limit("refresh_ip", ip)
    try:
        if not refresh_token:
            raise OAuthError("invalid_grant", "no refresh token cookie: log in first")
        issued = await ctx.service.refresh_async(
            refresh_token=refresh_token,
            client_id=client_id,
            scope=scope,
            ip=ip,
        )
    except OAuthError as exc:
        ctx.metrics.count_token_request("auth_refresh", exc.error)
        if exc.error == "invalid_grant" and "already used" in exc.description:
            ctx.metrics.reuse_detected.inc()  # as /oauth/token does
        if exc.error != "invalid_grant" or not use_cookie:
            raise
        response = json_response({"error": exc.error, "error_description": exc.description}, 400)
        clear_refresh_cookie(response, ctx)
        return response
    ctx.metrics.count_token_request("auth_refresh", issued.outcome)
    return token_answer(ctx, issued, use_cookie)


@guarded
async def logout(request: Request) -> Response:
    ctx = context(request)
    data, refresh_token, use_cookie = await _token_from(request, ctx)
    client_id = string_field(data, "client_id", required=False) or DEFAULT_CLIENT_ID
    if refresh_token:
        await ctx.db.run(
            ctx.service.logout,
            refresh_token=refresh_token,
            client_id=client_id,
            ip=client_ip(request),
        )
    response = json_response({"status": "logged_out"})
    if use_cookie:
        clear_refresh_cookie(response, ctx)
    return response
