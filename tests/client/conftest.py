"""Fixtures for the client tests: a real freshtoken server on loopback (with the
fault-injecting middleware of client_helpers in front) and the library matrix."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from client_helpers import ASYNC_LIBS, SYNC_LIBS, Faults, Server

from freshtoken.testing import LiveServer


@pytest.fixture
def make_server() -> Iterator[Callable[..., Server]]:
    started: list[LiveServer] = []

    def make(**kw: Any) -> Server:
        faults = Faults()
        settings = {"password_time_cost": 1, "password_memory_kib": 8 * 1024}
        settings.update(kw.pop("settings", {}))
        srv = LiveServer(settings=settings, app_wrapper=faults.wrap, **kw).start()
        faults.srv = srv
        started.append(srv)
        srv.create_user("alice", "pw")
        return Server(srv, faults)

    yield make
    for srv in started:
        srv.stop()


@pytest.fixture
def server(make_server: Callable[..., Server]) -> Server:
    return make_server()


@pytest.fixture(params=SYNC_LIBS)
def lib(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=ASYNC_LIBS)
def alib(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def client_redis_url(request: pytest.FixtureRequest) -> str:
    """The lead's ``redis_url`` fixture (a flushed DB number) — skips without Redis."""
    return str(request.getfixturevalue("redis_url"))
