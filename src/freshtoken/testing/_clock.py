"""A clock tests can move by hand."""

from __future__ import annotations

import threading
import time


class FakeClock:
    """Starts at ``start`` (default: the real time now) and moves only when told.

    Thread-safe, so a server running in another thread and the test that
    drives it can share one.
    """

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move forward by ``seconds``; returns the new time."""
        if seconds < 0:
            raise ValueError("a FakeClock only moves forward")
        with self._lock:
            self._now += seconds
            return self._now

    def set(self, when: float) -> None:
        with self._lock:
            self._now = float(when)
