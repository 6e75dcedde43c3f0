"""Operations: Prometheus metrics, liveness, readiness."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from freshtoken.server.routes._context import context


async def metrics(request: Request) -> Response:
    return Response(
        context(request).metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
    )


async def healthz(request: Request) -> Response:
    """Alive: the process answers. Never touches the database."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready: the database answers."""
    ctx = context(request)
    try:
        await ctx.db.run(ctx.db.ping)
    except Exception as exc:
        return JSONResponse(
            {"status": "unavailable", "reason": f"database: {type(exc).__name__}"},
            status_code=503,
            headers={"Retry-After": "5"},
        )
    return JSONResponse({"status": "ready"})
