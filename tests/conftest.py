"""Fixtures for the real services (DESIGN §9); the plumbing is in service_fixtures.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from service_fixtures import (
    require_postgres,
    temporary_postgres_database,
    temporary_redis_database,
)


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    return require_postgres()


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh, randomly named database, dropped afterwards."""
    with temporary_postgres_database() as url:
        yield url


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis URL on its own DB number, emptied before and after."""
    with temporary_redis_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """Parametrises a test over both storage backends."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'freshtoken.db'}"
    return str(request.getfixturevalue("postgres_url"))
