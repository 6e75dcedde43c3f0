"""TokenService.refresh_async on PostgreSQL: the rotation on asyncpg, on the event
loop (storage/pg_rotation.py), and its hand-over to the thread path."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from freshtoken.server.exceptions import OAuthError
from freshtoken.server.service import IssuedTokens, RateLimited, TokenService
from freshtoken.server.storage.pg_rotation import asyncpg_dsn
from freshtoken.testing import FakeClock

from .helpers import PASSWORD, USERNAME, audit_rows, live_tokens, session_tokens


class ThreadPathSpy:
    """Counts the refreshes that went to the thread path (Database.run)."""

    def __init__(self, service: TokenService, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real_run = service.db.run

        async def run(fn: Any, *args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return await real_run(fn, *args, **kwargs)

        monkeypatch.setattr(service.db, "run", run)


def login(service: TokenService) -> IssuedTokens:
    issued = service.login(username=USERNAME, password=PASSWORD)
    assert issued.refresh_token
    return issued


async def test_a_winning_rotation_stays_on_the_loop(
    pg_service: TokenService, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert pg_service.db.pg_rotation is not None
    spy = ThreadPathSpy(pg_service, monkeypatch)
    first = login(pg_service)
    issued = await pg_service.refresh_async(refresh_token=first.refresh_token or "", ip="10.0.0.7")
    assert spy.calls == 0
    assert issued.outcome == "refresh_rotated"
    assert issued.refresh_token == pg_service.deriver.derive(first.refresh_token or "")
    assert issued.session_id == first.session_id
    (live,) = live_tokens(pg_service.db, first.session_id or "")
    parent, child = session_tokens(pg_service.db, first.session_id or "")
    assert parent.used_at is not None and child.id == live.id and child.parent_id == parent.id
    (row,) = audit_rows(pg_service.db, "refresh_rotated")
    assert row.session_id == first.session_id and row.ip == "10.0.0.7"


async def test_a_replay_goes_to_the_thread_path_grace_then_reuse(
    pg_service: TokenService, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = ThreadPathSpy(pg_service, monkeypatch)
    first = login(pg_service)
    token = first.refresh_token or ""
    rotated = await pg_service.refresh_async(refresh_token=token)
    replay = await pg_service.refresh_async(refresh_token=token)
    assert spy.calls == 1
    assert replay.outcome == "refresh_grace"
    assert replay.refresh_token == rotated.refresh_token
    clock.advance(60)  # past the 10 s grace window
    with pytest.raises(OAuthError) as err:
        await pg_service.refresh_async(refresh_token=token)
    assert "already used" in err.value.description
    assert live_tokens(pg_service.db, first.session_id or "") == []
    assert len(audit_rows(pg_service.db, "refresh_token_reuse_detected")) == 1


async def test_refusals_that_write_nothing_are_answered_on_the_loop(
    pg_service: TokenService, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = ThreadPathSpy(pg_service, monkeypatch)
    with pytest.raises(OAuthError, match="unknown refresh token"):
        await pg_service.refresh_async(refresh_token="ftr_" + "A" * 43)
    revoked = login(pg_service)
    pg_service.revoke_session(revoked.session_id or "")
    with pytest.raises(OAuthError, match="revoked"):
        await pg_service.refresh_async(refresh_token=revoked.refresh_token or "")
    assert spy.calls == 0


async def test_a_refusal_after_the_rotation_rolls_it_back(pg_service: TokenService) -> None:
    """A scope wider than the session's, or the per-session limit, is refused inside
    the transaction: the presented token stays valid."""
    first = login(pg_service)
    token = first.refresh_token or ""
    with pytest.raises(OAuthError) as err:
        await pg_service.refresh_async(refresh_token=token, scope="read admin")
    assert err.value.error == "invalid_scope"
    pg_service.session_limiter = lambda session_id: 30
    with pytest.raises(RateLimited):
        await pg_service.refresh_async(refresh_token=token)
    pg_service.session_limiter = None
    assert len(live_tokens(pg_service.db, first.session_id or "")) == 1
    assert len(session_tokens(pg_service.db, first.session_id or "")) == 1
    narrowed = await pg_service.refresh_async(refresh_token=token, scope="read")
    assert narrowed.outcome == "refresh_rotated" and narrowed.scope == "read"
    assert audit_rows(pg_service.db, "refresh_rotated")[-1].session_id == first.session_id


async def test_a_driver_failure_falls_back_to_the_thread_path(
    pg_service: TokenService, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = ThreadPathSpy(pg_service, monkeypatch)
    rotator = pg_service.db.pg_rotation
    assert rotator is not None

    async def connection_lost(conn: Any, **params: Any) -> Any:
        raise asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")

    monkeypatch.setattr(rotator, "rotate", connection_lost)
    first = login(pg_service)
    issued = await pg_service.refresh_async(refresh_token=first.refresh_token or "")
    assert spy.calls == 1
    assert issued.outcome == "refresh_rotated"
    assert len(live_tokens(pg_service.db, first.session_id or "")) == 1


async def test_many_concurrent_refreshes_of_one_token(pg_service: TokenService) -> None:
    first = login(pg_service)
    token = first.refresh_token or ""
    answers = await asyncio.gather(
        *(pg_service.refresh_async(refresh_token=token) for _ in range(40))
    )
    outcomes = [a.outcome for a in answers]
    assert outcomes.count("refresh_rotated") == 1
    assert outcomes.count("refresh_grace") == 39
    assert {a.refresh_token for a in answers} == {pg_service.deriver.derive(token)}
    assert len(live_tokens(pg_service.db, first.session_id or "")) == 1


async def test_sqlite_has_no_asyncpg_path(sqlite_service: TokenService) -> None:
    assert sqlite_service.db.pg_rotation is None
    first = login(sqlite_service)
    issued = await sqlite_service.refresh_async(refresh_token=first.refresh_token or "")
    assert issued.outcome == "refresh_rotated"


def test_asyncpg_dsn_keeps_credentials_and_options() -> None:
    dsn = asyncpg_dsn("postgresql+psycopg://u:p%40ss@db.internal:6543/auth?sslmode=require")
    assert dsn == "postgresql://u:p%40ss@db.internal:6543/auth?sslmode=require"


async def test_connections_go_back_to_the_pool_outside_any_transaction(postgres_url: str) -> None:
    """The pool's reset is ours (one ROLLBACK if needed, no RESET ALL round trip):
    a connection left inside a transaction, e.g. by a cancelled request, is ended."""
    from freshtoken.server.storage import pg_rotation
    from freshtoken.server.storage.database import normalize_database_url

    conn = await asyncpg.connect(asyncpg_dsn(normalize_database_url(postgres_url)))
    try:
        await conn.transaction().start()
        await conn.execute("CREATE TEMP TABLE scratch (x int)")
        assert conn.is_in_transaction()
        await pg_rotation._end_transaction(conn)
        assert not conn.is_in_transaction()
        assert await conn.fetchval("SELECT to_regclass('scratch') IS NULL")  # rolled back
        await pg_rotation._end_transaction(conn)  # and a no-op when idle
    finally:
        await conn.close()


def test_a_new_event_loop_gets_a_new_pool_and_the_old_one_is_closed(
    pg_service_sync: TokenService,
) -> None:
    rotator = pg_service_sync.db.pg_rotation
    assert rotator is not None

    async def refresh_once() -> Any:
        first = login(pg_service_sync)
        await pg_service_sync.refresh_async(refresh_token=first.refresh_token or "")
        return rotator._pool

    old = asyncio.run(refresh_once())
    new = asyncio.run(refresh_once())  # a second loop, as after a server restart in-process
    assert new is not old
    assert old._closed
    asyncio.run(rotator.aclose())
