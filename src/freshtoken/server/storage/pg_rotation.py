"""PostgreSQL: the refresh rotation on asyncpg, on the event loop.

Why a second driver for one statement: through psycopg on a thread pool a refresh
cost ~400 µs of server CPU, most of it outside Python: a thread hop each way, the
GIL handed between the loop and eight database threads, BEGIN and COMMIT as extra
round trips through a blocking socket. On asyncpg (the driver DESIGN §5 names) the
same BEGIN, rotation statement, COMMIT runs as three awaits on the loop's own
sockets. The statement is repository._PG_ROTATE, only re-spelt with $n parameters,
so both paths share one definition of the rotation.

Only the common case runs here: a rotation that won, or a refusal that wrote
nothing. Everything else (the grace window, reuse detection, any driver error)
goes back to the synchronous path (TokenService.refresh), which decides it afresh
in its own transaction; see TokenService.refresh_async.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy.engine import make_url

from freshtoken.server.storage.repository import (
    _PG_ROTATE,
    _PG_ROTATE_PARAMETERS,
    RefreshTokenRecord,
    Rotation,
)

CONNECT_TIMEOUT = 5.0
ACQUIRE_TIMEOUT = 10.0  # as the synchronous pool's pool_timeout


def _numbered(sql: str, names: tuple[str, ...]) -> str:
    return re.sub(r"%\((\w+)\)s", lambda m: f"${names.index(m.group(1)) + 1}", sql)


_ROTATE = _numbered(_PG_ROTATE, _PG_ROTATE_PARAMETERS)


def asyncpg_dsn(sqlalchemy_url: str) -> str:
    """``postgresql+psycopg://u:p@h:5432/db?sslmode=…`` → ``postgresql://u:p@h:5432/db?…``."""
    url = make_url(sqlalchemy_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


async def _end_transaction(conn: Any) -> None:
    """What a connection needs before it goes back to the pool. asyncpg's default
    reset also runs RESET ALL, UNLISTEN, CLOSE ALL and an advisory-unlock: a fourth
    round trip per refresh, for session state this module never creates."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


class PgRotation:
    """A small asyncpg pool, created on first use in the running loop."""

    def __init__(self, url: str, *, pool_size: int) -> None:
        self._dsn = asyncpg_dsn(url)
        self._pool_size = pool_size
        self._pool: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._creating: asyncio.Lock | None = None

    async def _get_pool(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._pool is not None and self._loop is loop:
            return self._pool
        if self._creating is None or self._loop is not loop:
            if self._pool is not None:  # the previous loop's pool: its sockets are dead here
                with contextlib.suppress(Exception):
                    self._pool.terminate()
            self._creating, self._loop, self._pool = asyncio.Lock(), loop, None
        async with self._creating:
            if self._pool is None:
                import asyncpg

                self._pool = await asyncpg.create_pool(
                    self._dsn,
                    min_size=1,
                    max_size=self._pool_size,
                    timeout=CONNECT_TIMEOUT,
                    reset=_end_transaction,
                    # Statements are prepared once per connection (asyncpg's cache).
                    max_inactive_connection_lifetime=300,
                )
        return self._pool

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        """One connection in one transaction: committed if the block returns,
        rolled back if it raises."""
        pool = await self._get_pool()
        async with pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn, conn.transaction():
            yield conn

    @staticmethod
    async def rotate(conn: Any, **params: Any) -> Rotation:
        """repository.rotate_refresh_token's PostgreSQL branch, on asyncpg."""
        row = await conn.fetchrow(_ROTATE, *(params[name] for name in _PG_ROTATE_PARAMETERS))
        if row is None:
            return Rotation(None, False, False)
        return Rotation(RefreshTokenRecord(*tuple(row)[:11]), row[11] == 1, row[12] == 1)

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pool.close(), 5)
