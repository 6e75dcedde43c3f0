"""Drill 3 (CI size): Redis for rate limits becomes unreachable. Documented
behaviour: per-process fallback with a warning (limits still hold), then back
to Redis. The long version: ``python -m drills redis_outage``."""

from __future__ import annotations

import pytest

from drills import redis_outage


@pytest.mark.slow
def test_redis_outage_falls_back_to_per_process_limits(redis_url: str) -> None:
    db = int(redis_url.rsplit("/", 1)[1])
    figures = redis_outage.run(db=db, per_username=5, retry_remote_after=0.5)
    print(figures)
    limited = [200] * 5 + [429]
    assert figures["redis up: logins"] == limited
    assert figures["redis up: counter keys in redis"] >= 1
    # Down: still serving (no 5xx, no hang), still limiting, and it says so.
    assert figures["redis down: logins"] == limited
    assert figures["redis down: 5xx answers"] == 0
    assert figures["redis down: answer time s (max)"] < 3
    assert figures["redis down: limiter degraded"] is True
    assert figures["redis down: warning logged"] is True
    # Back: Redis counts again.
    assert figures["redis back: logins"] == limited
    assert figures["redis back: limiter degraded"] is False
    assert figures["redis back: 'is back' logged"] is True
    assert figures["redis back: new counter keys in redis"] >= 1
