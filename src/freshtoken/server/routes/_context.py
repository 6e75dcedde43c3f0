"""What every route needs, hung on ``app.state`` once at startup."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from starlette.requests import Request

from freshtoken.server.metrics import Metrics
from freshtoken.server.ratelimit import RateLimiter
from freshtoken.server.service import RateLimited, TokenService
from freshtoken.server.settings import Settings
from freshtoken.server.storage.database import Database

P = ParamSpec("P")
T = TypeVar("T")


@dataclass
class Context:
    settings: Settings
    service: TokenService
    db: Database
    limiter: RateLimiter
    metrics: Metrics
    # argon2 verification takes ~25 ms: it gets its own threads so it never
    # queues behind (or in front of) the one-hop database work.
    slow_executor: ThreadPoolExecutor

    def check_limit(self, kind: str, key: str | None) -> None:
        if key is None:
            return
        retry_after = self.limiter.hit(kind, key)
        if retry_after is not None:
            raise RateLimited(retry_after, self.limiter.limits[kind].name)

    async def run_slow(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.slow_executor, functools.partial(self.db.call, fn, *args, **kwargs)
        )


def context(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx
