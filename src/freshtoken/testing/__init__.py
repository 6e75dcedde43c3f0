"""Helpers for your own tests: a fake clock, a real server on a loopback port,
and an in-process fake token server.

The heavy parts import lazily so that ``from freshtoken.testing import FakeClock``
works in a client-only install.
"""

from __future__ import annotations

from typing import Any

from freshtoken.testing._clock import FakeClock

__all__ = ["FakeClock", "FakeTokenServer", "FaultProxy", "LiveServer"]


def __getattr__(name: str) -> Any:
    if name == "LiveServer":
        from freshtoken.testing._live import LiveServer

        return LiveServer
    if name == "FaultProxy":
        from freshtoken.testing._proxy import FaultProxy

        return FaultProxy
    if name == "FakeTokenServer":
        from freshtoken.testing._fake_server import FakeTokenServer

        return FakeTokenServer
    raise AttributeError(name)
