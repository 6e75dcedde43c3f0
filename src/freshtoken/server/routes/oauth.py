"""RFC 6749 token endpoint, RFC 7009 revocation, RFC 7662 introspection."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response

from freshtoken.server.exceptions import OAuthError, invalid_request
from freshtoken.server.http import (
    client_credentials,
    client_ip,
    guarded,
    json_response,
    read_form,
    string_field,
)
from freshtoken.server.routes._context import Context, context
from freshtoken.server.service import IssuedTokens, RateLimited

GRANT_TYPES = ("password", "refresh_token", "client_credentials")


@guarded
async def token(request: Request) -> Response:
    ctx = context(request)
    form = await read_form(request, ctx.settings.max_body_bytes)
    grant_type = string_field(form, "grant_type")
    if grant_type not in GRANT_TYPES:
        raise OAuthError("unsupported_grant_type", f"grant_type {grant_type!r} is not supported")
    started = time.perf_counter()
    client_id, client_secret, _ = client_credentials(request, form)
    scope = string_field(form, "scope", required=False)
    ip = client_ip(request)
    try:
        issued = await _grant(ctx, grant_type, form, client_id, client_secret, scope, ip)
    except OAuthError as exc:
        ctx.metrics.count_token_request(grant_type, exc.error)
        if exc.error == "invalid_grant" and "already used" in exc.description:
            ctx.metrics.reuse_detected.inc()
        raise
    ctx.metrics.count_token_request(grant_type, issued.outcome)
    ctx.metrics.observe_token_latency(grant_type, time.perf_counter() - started)
    return json_response(issued.to_json())


async def _grant(
    ctx: Context,
    grant_type: str,
    form: dict[str, str],
    client_id: str | None,
    client_secret: str | None,
    scope: str | None,
    ip: str | None,
) -> IssuedTokens:
    service = ctx.service
    if grant_type == "refresh_token":
        refresh_token = string_field(form, "refresh_token", max_len=512)
        assert refresh_token is not None
        ctx.check_limit("refresh_ip", ip)
        return await service.refresh_async(
            refresh_token=refresh_token,
            client_id=client_id,
            client_secret=client_secret,
            scope=scope,
            ip=ip,
        )
    if grant_type == "password":
        username = string_field(form, "username", max_len=255)
        password = string_field(form, "password", max_len=1024)
        assert username is not None and password is not None
        ctx.check_limit("login_ip", ip)
        ctx.check_limit("login_username", username)
        return await ctx.run_slow(
            service.login,
            username=username,
            password=password,
            client_id=client_id,
            client_secret=client_secret,
            scope=scope,
            ip=ip,
        )
    return await ctx.db.run(
        service.client_credentials,
        client_id=client_id,
        client_secret=client_secret,
        scope=scope,
        ip=ip,
    )


@guarded
async def revoke(request: Request) -> Response:
    ctx = context(request)
    form = await read_form(request, ctx.settings.max_body_bytes)
    token_value = string_field(form, "token", max_len=16_384)
    assert token_value is not None
    hint = form.get("token_type_hint")
    if hint not in (None, "access_token", "refresh_token"):
        raise OAuthError("unsupported_token_type", f"token_type_hint {hint!r} is not supported")
    client_id, client_secret, _ = client_credentials(request, form)
    await ctx.db.run(
        ctx.service.revoke,
        token=token_value,
        client_id=client_id,
        client_secret=client_secret,
        ip=client_ip(request),
    )
    return json_response({})


@guarded
async def introspect(request: Request) -> Response:
    ctx = context(request)
    form = await read_form(request, ctx.settings.max_body_bytes)
    token_value = string_field(form, "token", max_len=16_384)
    assert token_value is not None
    client_id, client_secret, _ = client_credentials(request, form)
    if not client_secret:
        raise OAuthError("invalid_client", "introspection needs client authentication", 401)
    answer = await ctx.db.run(
        ctx.service.introspect, token=token_value, client_id=client_id, client_secret=client_secret
    )
    return json_response(answer)


__all__ = ["RateLimited", "introspect", "invalid_request", "revoke", "token"]
