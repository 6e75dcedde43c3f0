"""Drill 3 — Redis outage for rate limits.

Documented behaviour (README, SECURITY.md): when the Redis that holds the rate
limit counters is unreachable, the server keeps serving, falls back to
per-process limits (so limits still hold, counted per process) and logs a
warning; when Redis answers again it goes back to it (retried every 5 s).
Redis is reached through a FaultProxy the drill cuts and restores.
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

import httpx2

from drills._common import REDIS, print_figures
from freshtoken.server import ratelimit
from freshtoken.testing import LiveServer
from freshtoken.testing._proxy import FaultProxy


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def run(*, db: int = 14, per_username: int = 5, retry_remote_after: float = 1.0) -> dict[str, Any]:
    import redis

    warnings = _Warnings()
    logger = logging.getLogger("freshtoken.server.ratelimit")
    logger.addHandler(warnings)
    saved_retry = ratelimit._RETRY_REMOTE_AFTER
    ratelimit._RETRY_REMOTE_AFTER = retry_remote_after
    direct = redis.Redis(host=REDIS[0], port=REDIS[1], db=db)
    direct.flushdb()
    figures: dict[str, Any] = {}
    try:
        with (
            FaultProxy(*REDIS) as proxy,
            LiveServer(
                settings={
                    "ratelimit_enabled": True,
                    "ratelimit_storage_url": f"redis://{proxy.host}:{proxy.port}/{db}",
                    "ratelimit_login_per_username": f"{per_username}/minute",
                    "ratelimit_login_per_ip": "1000/minute",
                    "password_time_cost": 1,
                    "password_memory_kib": 8 * 1024,
                }
            ) as srv,
            httpx2.Client(base_url=srv.url, timeout=10) as http,
        ):
            for name in ("before", "during", "after"):
                srv.create_user(name, "pw")
            limiter = srv.app.state.ctx.limiter

            def logins(username: str, n: int) -> list[int]:
                form = {"grant_type": "password", "username": username, "client_id": "default"}
                return [
                    http.post("/oauth/token", data={**form, "password": "pw"}).status_code
                    for _ in range(n)
                ]

            before = logins("before", per_username + 1)
            figures["redis up: logins"] = before
            figures["redis up: counter keys in redis"] = len(direct.keys("*"))

            proxy.cut()
            t0 = time.monotonic()
            during = logins("during", per_username + 1)
            figures["redis down: logins"] = during
            figures["redis down: answer time s (max)"] = round(time.monotonic() - t0, 3)
            figures["redis down: limiter degraded"] = limiter.degraded
            figures["redis down: warning logged"] = any(
                "falling back to per-process limits" in m for m in warnings.messages
            )
            figures["redis down: 5xx answers"] = sum(s >= 500 for s in during)

            proxy.restore()
            time.sleep(retry_remote_after + 0.2)
            keys_before = len(direct.keys("*"))
            after = logins("after", per_username + 1)
            figures["redis back: logins"] = after
            figures["redis back: limiter degraded"] = limiter.degraded
            figures["redis back: 'is back' logged"] = any(
                "storage is back" in m for m in warnings.messages
            )
            figures["redis back: new counter keys in redis"] = len(direct.keys("*")) - keys_before
            figures["outages ridden out"] = 1
    finally:
        ratelimit._RETRY_REMOTE_AFTER = saved_retry
        logger.removeHandler(warnings)
        direct.flushdb()
        direct.close()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drills redis_outage", description=__doc__)
    parser.add_argument("--db", type=int, default=14, help="Redis DB number to use (flushed)")
    args = parser.parse_args(argv)
    figures = run(db=args.db)
    print_figures("redis outage (rate limits)", figures)
    expected = [200] * 5 + [429]
    ok = (
        figures["redis down: logins"] == expected
        and figures["redis back: logins"] == expected
        and figures["redis down: 5xx answers"] == 0
    )
    return 0 if ok else 1
