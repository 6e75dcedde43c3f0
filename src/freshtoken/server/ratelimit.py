"""Rate limits on login and refresh, with the ``limits`` library.

``memory://`` (per process) by default; ``redis://…`` shares the counters across
processes and machines. If Redis becomes unreachable we do not fail logins or
refreshes: we fall back to per-process limits, log a warning, and go back to
Redis on its own once it answers again (documented in the README).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.storage import Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter

from freshtoken.errors import ConfigurationError
from freshtoken.server.settings import Settings

log = logging.getLogger("freshtoken.server.ratelimit")

_RETRY_REMOTE_AFTER = 5.0  # seconds in memory-fallback before trying Redis again


@dataclass(frozen=True)
class Limit:
    name: str
    item: RateLimitItem


class RateLimiter:
    def __init__(self, settings: Settings, *, key_prefix: str = "freshtoken") -> None:
        self.enabled = settings.ratelimit_enabled
        try:
            self.limits = {
                "login_username": Limit(
                    "login per username", parse(settings.ratelimit_login_per_username)
                ),
                "login_ip": Limit("login per IP", parse(settings.ratelimit_login_per_ip)),
                "refresh_session": Limit(
                    "refresh per session", parse(settings.ratelimit_refresh_per_session)
                ),
                "refresh_ip": Limit("refresh per IP", parse(settings.ratelimit_refresh_per_ip)),
            }
        except ValueError as exc:
            raise ConfigurationError(f"bad rate limit setting: {exc}") from None
        url = settings.ratelimit_storage_url
        self._remote_url = None if url.startswith("memory://") else url
        options = {} if self._remote_url is None else {"key_prefix": key_prefix}
        try:
            storage = storage_from_string(url, **options)
        except Exception as exc:
            raise ConfigurationError(f"FRESHTOKEN_RATELIMIT_STORAGE_URL: {exc}") from None
        if not isinstance(storage, Storage):
            raise ConfigurationError("use a synchronous storage URL (memory://, redis://)")
        self._primary = FixedWindowRateLimiter(storage)
        self._fallback = FixedWindowRateLimiter(storage_from_string("memory://"))
        self._degraded_until = 0.0
        self._lock = threading.Lock()
        self.degraded = False

    def hit(self, kind: str, key: str) -> int | None:
        """Count one attempt; ``None`` if allowed, else seconds until it may retry."""
        if not self.enabled:
            return None
        limit = self.limits[kind].item
        limiter = self._limiter()
        try:
            allowed = limiter.hit(limit, kind, key)
            stats = None if allowed else limiter.get_window_stats(limit, kind, key)
        except Exception as exc:  # Redis down: keep serving, limit per process.
            self._degrade(exc)
            allowed = self._fallback.hit(limit, kind, key)
            stats = None if allowed else self._fallback.get_window_stats(limit, kind, key)
        if allowed:
            return None
        assert stats is not None
        return max(1, math.ceil(stats.reset_time - time.time()))

    def _limiter(self) -> FixedWindowRateLimiter:
        if self._remote_url is None or not self.degraded:
            return self._primary
        if time.monotonic() >= self._degraded_until:
            with self._lock:
                self.degraded = False
            log.warning("rate-limit storage is back: using %s again", _redact(self._remote_url))
            return self._primary
        return self._fallback

    def _degrade(self, exc: Exception) -> None:
        with self._lock:
            if not self.degraded:
                log.warning(
                    "rate-limit storage %s unreachable (%s): falling back to per-process limits",
                    _redact(self._remote_url or ""),
                    type(exc).__name__,
                )
            self.degraded = True
            self._degraded_until = time.monotonic() + _RETRY_REMOTE_AFTER


def _redact(url: str) -> str:
    if "@" in url:
        scheme, _, rest = url.partition("://")
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
