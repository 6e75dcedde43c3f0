"""Events the client emits, and the ``freshtoken.client`` logger.

No token value ever reaches a log line or an event: events carry generation
numbers, counts, durations and reasons only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

logger = logging.getLogger("freshtoken.client")

EventKind = Literal[
    "refresh_started",
    "refresh_retrying",
    "refresh_succeeded",
    "refresh_failed",
    "tokens_adopted",
    "session_expired",
]


@dataclass(frozen=True, slots=True)
class RefreshEvent:
    """One thing that happened to a session.

    ``kind``
        ``refresh_started``, ``refresh_retrying`` (a transient failure, another
        attempt follows), ``refresh_succeeded``, ``refresh_failed`` (gave up, or a
        terminal answer), ``tokens_adopted`` (another process or a login had already
        stored newer tokens, so no refresh was sent), ``session_expired``.
    ``generation``
        The token generation the event is about (the new one for a success).
    ``waiters``
        How many other requests waited for this refresh instead of sending their own
        (the coalesced waiters).
    ``attempt``
        1 for the first try of a refresh, 2 for the first retry, ...
    ``reason``
        Why: ``expiring``, ``401``, ``invalid_grant: ...``, ``503``, ...
    ``duration``
        Seconds since the refresh started, for the ``succeeded``/``failed`` events.
    """

    kind: EventKind
    generation: int
    waiters: int = 0
    attempt: int = 0
    reason: str = ""
    duration: float | None = None


EventHook = Callable[[RefreshEvent], None]


def emit(hooks: tuple[EventHook, ...], event: RefreshEvent) -> None:
    """Log ``event`` and hand it to every hook; a failing hook is logged, not raised."""
    if event.kind in ("refresh_failed", "session_expired"):
        level = logging.WARNING
    elif event.kind == "refresh_retrying":
        level = logging.INFO
    else:
        level = logging.DEBUG
    if logger.isEnabledFor(level):
        parts = [f"{event.kind} generation={event.generation}"]
        if event.waiters:
            parts.append(f"waiters={event.waiters}")
        if event.attempt:
            parts.append(f"attempt={event.attempt}")
        if event.reason:
            parts.append(f"reason={event.reason}")
        if event.duration is not None:
            parts.append(f"duration={event.duration:.3f}s")
        logger.log(level, " ".join(parts))
    for hook in hooks:
        try:
            hook(event)
        except Exception:
            logger.exception("an event hook raised (ignored)")
