"""The real services the tests use (DESIGN §9), shared by every conftest.

PostgreSQL and Redis tests get their own throw-away database / DB number and
clean up. Where a service is missing they skip with a clear reason, except under
``CI=true`` (or ``FRESHTOKEN_REQUIRE_SERVICES=1``), where a missing service fails
the run instead: CI must never go green by skipping them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from collections.abc import Iterator

import pytest

PG_HOST = os.environ.get("FRESHTOKEN_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("FRESHTOKEN_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("FRESHTOKEN_TEST_PG_USER", "postgres")
REDIS_HOST = os.environ.get("FRESHTOKEN_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("FRESHTOKEN_TEST_REDIS_PORT", "6379"))


def services_required() -> bool:
    return os.environ.get("CI", "").lower() == "true" or os.environ.get(
        "FRESHTOKEN_REQUIRE_SERVICES", ""
    ) in ("1", "true")


def skip_or_fail(reason: str) -> None:
    if services_required():
        pytest.fail(f"{reason} (CI=true: a service test may not be skipped)", pytrace=False)
    pytest.skip(reason)


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_postgres() -> str:
    if not port_open(PG_HOST, PG_PORT):
        skip_or_fail(f"PostgreSQL is not reachable at {PG_HOST}:{PG_PORT}")
    return f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/postgres"


@contextlib.contextmanager
def temporary_postgres_database(prefix: str = "freshtoken_test") -> Iterator[str]:
    """A fresh, randomly named database, dropped afterwards (even if a test failed)."""
    import psycopg

    require_postgres()
    name = f"{prefix}_{secrets.token_hex(6)}"
    conninfo = f"host={PG_HOST} port={PG_PORT} user={PG_USER} dbname=postgres"
    try:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        skip_or_fail(f"cannot create a PostgreSQL test database: {exc}")
    try:
        yield f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def temporary_redis_database() -> Iterator[str]:
    """A Redis URL on a randomly chosen DB number (1-15), emptied before and after.
    Tests run one at a time, so no two tests share it at once."""
    if not port_open(REDIS_HOST, REDIS_PORT):
        skip_or_fail(f"Redis is not reachable at {REDIS_HOST}:{REDIS_PORT}")
    import redis

    db = 1 + secrets.randbelow(15)
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db)
    try:
        client.ping()
    except redis.RedisError as exc:
        skip_or_fail(f"Redis does not answer: {exc}")
    client.flushdb()
    try:
        yield f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"
    finally:
        client.flushdb()
        client.close()
