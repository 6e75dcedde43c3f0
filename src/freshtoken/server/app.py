"""``create_app``: wires settings, storage, keys, service and routes into one ASGI app.

A request flows route → service → repository. The app object carries one
:class:`Context` on ``app.state.ctx``; nothing else is global, so a test can run
several servers (with their own clocks) in one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from freshtoken._clock import SYSTEM_CLOCK, Clock
from freshtoken.errors import ConfigurationError
from freshtoken.server.keys import KeyRing, load_secret, subkey
from freshtoken.server.metrics import Metrics
from freshtoken.server.passwords import Passwords
from freshtoken.server.ratelimit import RateLimiter
from freshtoken.server.routes import api, auth, demo, oauth, ops, wellknown
from freshtoken.server.routes._context import Context
from freshtoken.server.service import TokenService
from freshtoken.server.settings import Settings
from freshtoken.server.storage.database import Database
from freshtoken.server.tokens import SuccessorDeriver

log = logging.getLogger("freshtoken.server")

KEY_RELOAD_SECONDS = 10.0  # the default of FRESHTOKEN_KEY_RELOAD_SECONDS
DEMO_USER = ("demo", "demo")


def build_service(settings: Settings, clock: Clock = SYSTEM_CLOCK) -> TokenService:
    """Everything but HTTP: also what the CLI uses."""
    secret = load_secret(settings.secret_key, settings.secret_key_file, settings.database_url)
    db = Database(
        settings.database_url, pool_size=settings.db_pool_size, asyncpg=settings.db_asyncpg
    )
    return TokenService(
        db=db,
        settings=settings,
        clock=clock,
        keyring=KeyRing(secret),
        passwords=Passwords(
            time_cost=settings.password_time_cost,
            memory_kib=settings.password_memory_kib,
            parallelism=settings.password_parallelism,
        ),
        deriver=SuccessorDeriver(subkey(secret, "freshtoken refresh-token successor")),
    )


def create_app(settings: Settings | None = None, *, clock: Clock = SYSTEM_CLOCK) -> Starlette:
    settings = settings or Settings()
    _validate(settings)
    if os.environ.get("FRESHTOKEN_CONFIGURE_LOGGING") == "1":
        _configure_logging(settings.log_level)
    service = build_service(settings, clock)
    service.bootstrap()
    limiter = RateLimiter(settings)
    service.session_limiter = lambda session_id: limiter.hit("refresh_session", session_id)
    if settings.demo_mode:
        _ensure_demo_user(service)
    ctx = Context(
        settings=settings,
        service=service,
        db=service.db,
        limiter=limiter,
        metrics=Metrics(),
        slow_executor=ThreadPoolExecutor(max_workers=4, thread_name_prefix="freshtoken-slow"),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if settings.gc_freeze:
            _freeze_startup_objects()
        tasks = [asyncio.create_task(_reload_keys_forever(ctx))]
        if service.db.is_sqlite:
            tasks.append(asyncio.create_task(service.db.checkpoint_forever()))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            ctx.slow_executor.shutdown(wait=False)
            await service.db.aclose()

    middleware = [Middleware(SecurityHeadersMiddleware)]
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_origins,
                allow_credentials=True,
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type", "X-Freshtoken-CSRF"],
                max_age=600,
            )
        )
    app = Starlette(
        routes=_routes(ctx),
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error},
    )
    app.state.ctx = ctx
    app.state.service = service
    app.state.metrics = ctx.metrics
    return app


def _routes(ctx: Context) -> list[BaseRoute]:
    from freshtoken.server.openapi import openapi_route

    return [
        Route("/oauth/token", oauth.token, methods=["POST"]),
        Route("/oauth/revoke", oauth.revoke, methods=["POST"]),
        Route("/oauth/introspect", oauth.introspect, methods=["POST"]),
        Route("/auth/login", auth.login, methods=["POST"]),
        Route("/auth/refresh", auth.refresh, methods=["POST"]),
        Route("/auth/logout", auth.logout, methods=["POST"]),
        Route("/.well-known/jwks.json", wellknown.jwks, methods=["GET"]),
        Route("/.well-known/oauth-authorization-server", wellknown.metadata, methods=["GET"]),
        Route("/openapi.json", openapi_route, methods=["GET"]),
        Mount("/api", app=_protected_api(ctx)),
        Route("/metrics", ops.metrics, methods=["GET"]),
        Route("/healthz", ops.healthz, methods=["GET"]),
        Route("/readyz", ops.readyz, methods=["GET"]),
        Route("/demo", demo.demo_page, methods=["GET"]),
        # Under /auth because that is the refresh cookie's Path.
        Route("/auth/demo/replay-old-token", demo.replay_old_token, methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=demo.STATIC_DIR, check_dir=False)),
    ]


async def _http_error(request: Request, exc: Exception) -> Response:
    """404/405 and friends in the one documented error shape (docs/http-api.md)."""
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    return JSONResponse(
        {"error": codes.get(exc.status_code, "invalid_request"), "error_description": exc.detail},
        status_code=exc.status_code,
        headers=exc.headers,
    )


def _protected_api(ctx: Context) -> ASGIApp:
    from freshtoken.server.resource import protect

    return protect(Starlette(routes=[Route("/me", api.me, methods=["GET"])]), ctx)


async def _reload_keys_forever(ctx: Context) -> None:
    """Pick up keys rotated by the CLI or another replica."""
    while True:
        await asyncio.sleep(ctx.settings.key_reload_seconds)
        try:
            await ctx.db.run(ctx.service.reload_keys)
        except Exception as exc:  # keep the keys we have while the database is away
            log.warning("could not reload signing keys: %s", type(exc).__name__)


def _freeze_startup_objects() -> None:
    """Move everything startup created (modules, SQLAlchemy's and Starlette's machinery,
    keys: ~10^5 long-lived objects) out of the cyclic collector's reach, so its full
    collections walk only what requests allocate (the gc.freeze technique Instagram
    published). bench/refresh.py, SQLite, 1 worker: p99 37 -> 15 ms and 167 -> 150 µs
    of server CPU per refresh. Freed by reference counting as before; only cycles
    among the frozen objects would outlive their use, and startup objects live as long
    as the process anyway."""
    gc.collect()
    gc.freeze()


def _configure_logging(level: str) -> None:
    """One line per event on stderr (audit events are JSON), for `freshtoken serve`."""
    logger = logging.getLogger("freshtoken")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(level.upper())
        logger.propagate = False


def _validate(settings: Settings) -> None:
    if "*" in settings.cors_origins:
        raise ConfigurationError("FRESHTOKEN_CORS_ORIGINS must list origins; '*' is refused")
    if settings.session_max_ttl < settings.access_token_ttl:
        raise ConfigurationError("FRESHTOKEN_SESSION_MAX_TTL is shorter than the access-token TTL")


def _ensure_demo_user(service: TokenService) -> None:
    from freshtoken.server.exceptions import OAuthError

    with contextlib.suppress(OAuthError):
        service.create_user(*DEMO_USER)


CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)


class SecurityHeadersMiddleware:
    """nosniff and no-referrer everywhere; a strict CSP on the pages."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        is_page = path == "/demo" or path.startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[Any] = list(message.get("headers", []))
                headers.append((b"x-content-type-options", b"nosniff"))
                headers.append((b"referrer-policy", b"no-referrer"))
                if is_page:
                    headers.append((b"content-security-policy", CSP.encode()))
                    headers.append((b"x-frame-options", b"DENY"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
