"""Fixtures for the server tests: a service on a FakeClock (SQLite and PostgreSQL)
and real loopback servers sharing that clock."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from freshtoken.server.app import build_service
from freshtoken.server.service import TokenService
from freshtoken.testing import FakeClock, LiveServer

from .helpers import FAST_PASSWORDS, PASSWORD, T0, USERNAME, make_settings


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def service(database_url: str, clock: FakeClock) -> Iterator[TokenService]:
    """A bootstrapped service with user alice, on SQLite and on PostgreSQL."""
    svc = build_service(make_settings(database_url), clock)
    svc.bootstrap()
    svc.create_user(USERNAME, PASSWORD)
    try:
        yield svc
    finally:
        svc.db.close()


@pytest.fixture
def sqlite_service(tmp_path, clock: FakeClock) -> Iterator[TokenService]:
    """The same on SQLite only, for rules that do not depend on the backend."""
    svc = build_service(make_settings(f"sqlite:///{tmp_path / 'svc.db'}"), clock)
    svc.bootstrap()
    svc.create_user(USERNAME, PASSWORD)
    try:
        yield svc
    finally:
        svc.db.close()


@pytest.fixture
def live(clock: FakeClock) -> Iterator[LiveServer]:
    """A real server on loopback (SQLite), sharing the test's FakeClock, user alice."""
    with LiveServer(clock=clock, settings=dict(FAST_PASSWORDS)) as srv:
        srv.create_user(USERNAME, PASSWORD)
        yield srv


@pytest.fixture
def http(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=30) as client:
        yield client
