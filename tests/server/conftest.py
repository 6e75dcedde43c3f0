"""Fixtures for the server tests: a service on a FakeClock (SQLite and PostgreSQL)
and real loopback servers sharing that clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from freshtoken.server.app import build_service
from freshtoken.server.service import TokenService
from freshtoken.testing import FakeClock, LiveServer

from .helpers import FAST_PASSWORDS, PASSWORD, T0, USERNAME, make_settings


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


def bootstrapped_service(database_url: str, clock: FakeClock) -> TokenService:
    """A bootstrapped service with user alice (the caller closes its database)."""
    svc = build_service(make_settings(database_url), clock)
    svc.bootstrap()
    svc.create_user(USERNAME, PASSWORD)
    return svc


@pytest.fixture
def service(database_url: str, clock: FakeClock) -> Iterator[TokenService]:
    """A bootstrapped service with user alice, on SQLite and on PostgreSQL."""
    svc = bootstrapped_service(database_url, clock)
    try:
        yield svc
    finally:
        svc.db.close()


@pytest.fixture
def sqlite_service(tmp_path, clock: FakeClock) -> Iterator[TokenService]:
    """The same on SQLite only, for rules that do not depend on the backend."""
    svc = bootstrapped_service(f"sqlite:///{tmp_path / 'svc.db'}", clock)
    try:
        yield svc
    finally:
        svc.db.close()


@pytest.fixture
def pg_service_sync(postgres_url: str, clock: FakeClock) -> Iterator[TokenService]:
    """The same on PostgreSQL, for tests that run event loops of their own."""
    svc = bootstrapped_service(postgres_url, clock)
    try:
        yield svc
    finally:
        svc.db.close()


@pytest.fixture
async def pg_service(postgres_url: str, clock: FakeClock) -> AsyncIterator[TokenService]:
    """The same on PostgreSQL only, closed from its event loop (asyncpg's pool)."""
    svc = bootstrapped_service(postgres_url, clock)
    try:
        yield svc
    finally:
        await svc.db.aclose()


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
