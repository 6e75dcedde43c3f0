"""Engine, migrations and the one-hop transaction runner.

Why a synchronous engine rather than an async driver: on this 2-core machine a
whole SQLite rotation in one call runs ~10x faster than aiosqlite's one thread
hop per statement (DESIGN §8). So every service method is one synchronous
transaction, reached from the async routes through :meth:`Database.run`:
on the event loop for SQLite (zero hops: its transactions are short local work,
and the ones that arrive together share one COMMIT, see :mod:`.group_commit`),
one thread hop for PostgreSQL (one thread per pooled connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from freshtoken.errors import ConfigurationError
from freshtoken.server.storage.group_commit import GroupCommit
from freshtoken.server.storage.pg_rotation import PgRotation

log = logging.getLogger("freshtoken.server")

P = ParamSpec("P")
T = TypeVar("T")

_MIGRATIONS = Path(__file__).with_name("migrations")
_PG_LOCK_ID = 0x66726573  # "fres": advisory lock that serializes migrations across workers


def normalize_database_url(url: str) -> str:
    """Map the spellings users write to the driver we ship (psycopg 3 for PostgreSQL)."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise ConfigurationError(f"FRESHTOKEN_DATABASE_URL is not a database URL: {exc}") from None
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        if parsed.drivername != "postgresql+psycopg":
            if parsed.drivername not in ("postgresql", "postgresql+asyncpg", "postgresql+psycopg2"):
                raise ConfigurationError(f"unsupported PostgreSQL driver {parsed.drivername!r}")
            parsed = parsed.set(drivername="postgresql+psycopg")
        return parsed.render_as_string(hide_password=False)
    if backend == "sqlite":
        if parsed.drivername not in ("sqlite", "sqlite+pysqlite"):
            raise ConfigurationError("use sqlite:///path/to/file.db for SQLite")
        return url
    raise ConfigurationError(f"unsupported database {backend!r}: use sqlite:/// or postgresql://")


def _is_retryable(exc: DBAPIError) -> bool:
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return code in ("40001", "40P01")  # serialization failure, deadlock detected


class Database:
    """Owns the engine and the threads transactions run on."""

    def __init__(self, url: str, *, pool_size: int = 8, asyncpg: bool = True) -> None:
        self.url = normalize_database_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        self.engine = self._create_engine(pool_size)
        # SQLite transactions run on the event loop, no thread hop: a whole refresh is
        # ~100 µs of local work, and the hop (DESIGN §8: 250-430 µs) made it ~1.5x
        # slower (bench/refresh.py: 1,376 -> 2,178 refreshes/s with 2 workers). Those
        # that arrive together share one COMMIT (group_commit.py). PostgreSQL waits on
        # the network: it hops.
        self._group = GroupCommit(self) if self.is_sqlite else None
        # PostgreSQL's refresh rotation on asyncpg, on the loop (pg_rotation.py).
        self.pg_rotation: PgRotation | None = None
        if not self.is_sqlite and asyncpg and importlib.util.find_spec("asyncpg") is not None:
            self.pg_rotation = PgRotation(self.url, pool_size=pool_size)
        workers = 1 if self.is_sqlite else pool_size
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="freshtoken-db")

    def _create_engine(self, pool_size: int) -> Engine:
        if self.is_sqlite:
            path = make_url(self.url).database
            if path and path != ":memory:":
                Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(
                self.url, connect_args={"check_same_thread": False, "timeout": 30}
            )
            event.listen(engine, "connect", _sqlite_on_connect)
            event.listen(engine, "begin", _sqlite_on_begin)
            return engine
        return create_engine(
            self.url,
            pool_size=pool_size,
            max_overflow=0,
            # No ping per checkout: it was a whole extra round trip per refresh (28 % of
            # a database thread's time under load). A connection that died (database
            # restart) fails on its first statement instead; SQLAlchemy then invalidates
            # the pool and call() retries once on a fresh connection.
            pool_pre_ping=False,
            pool_timeout=10,
            connect_args={"connect_timeout": 5},
        )

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction, committed on success, rolled back on any error.
        (Inside a SQLite commit group: a savepoint of the group's transaction.)"""
        if self._group is not None and self._group.active_here():
            with self._group.savepoint() as (conn, _):
                yield conn
            return
        with self.engine.begin() as conn:
            yield conn

    def raw_transaction(self) -> contextlib.AbstractContextManager[tuple[Connection, Any]]:
        """:meth:`transaction` plus a DB-API cursor on the same connection, for the
        refresh hot path: hand-written SQL runs without statement construction,
        cache-key generation or result wrapping (most of the Python cost of a
        Core statement). Driver errors come out as SQLAlchemy's, so the 503 mapping
        and the retry in :meth:`call` see one exception hierarchy."""
        if self._group is not None and self._group.active_here():
            return self._group.savepoint()
        return self._raw_transaction()

    @contextlib.contextmanager
    def _raw_transaction(self) -> Iterator[tuple[Connection, Any]]:
        dbapi_error: type[Exception] = self.engine.dialect.loaded_dbapi.Error
        with self.transaction() as conn:
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                yield conn, cursor
            except dbapi_error as exc:
                lost = self.engine.dialect.is_disconnect(exc, None, cursor)  # type: ignore[arg-type]
                if lost:
                    conn.invalidate(exc)
                raise DBAPIError.instance(
                    None, None, exc, dbapi_error, connection_invalidated=lost
                ) from exc
            finally:
                cursor.close()

    def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` here and now (sync callers: the CLI, tests), retrying PostgreSQL
        serialization failures and deadlocks a few times, and once a connection that
        turned out to be dead (the refresh is safe to retry even if the lost
        connection had committed: the retry meets the grace window)."""
        for attempt in range(5):
            try:
                return fn(*args, **kwargs)
            except DBAPIError as exc:
                stale = exc.connection_invalidated and attempt == 0
                if attempt == 4 or not (stale or _is_retryable(exc)):
                    raise
                time.sleep(0.005 * (2**attempt))
        raise AssertionError("unreachable")

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` (one whole transaction): on the loop in a commit group for
        SQLite, one hop for PostgreSQL."""
        if self._group is not None:
            call = functools.partial(fn, *args, **kwargs) if args or kwargs else fn
            result: T = await self._group.run(call)
            return result
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, functools.partial(self.call, fn, *args, **kwargs)
        )

    def checkpoint(self) -> None:
        """SQLite: copy the WAL into the database file without blocking writers
        (PASSIVE). The server does this every fraction of a second on a background
        thread, so the inline writers on the event loop rarely hit SQLite's own
        auto-checkpoint, which would stall every request for its duration."""
        if not self.is_sqlite:
            return
        raw = self.engine.raw_connection()
        try:
            raw.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")  # type: ignore[union-attr]
        finally:
            raw.close()

    async def checkpoint_forever(self, interval: float = 0.25) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            try:
                await loop.run_in_executor(self._executor, self.checkpoint)
            except Exception as exc:  # busy or locked: the next round will do it
                log.debug("background checkpoint skipped: %s", type(exc).__name__)

    def ping(self) -> None:
        with self.transaction() as conn:
            conn.execute(text("SELECT 1"))

    def migrate(self) -> None:
        """Bring the schema to the newest revision (idempotent, safe across workers)."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(_MIGRATIONS))
        cfg.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        with self.engine.begin() as conn:
            if not self.is_sqlite:
                conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_LOCK_ID})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    async def aclose(self) -> None:
        """What only a running loop can close (asyncpg's pool), then :meth:`close`."""
        if self.pg_rotation is not None:
            await self.pg_rotation.aclose()
        self.close()

    def close(self) -> None:
        if self._group is not None:
            self._group.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.engine.dispose()


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN IMMEDIATE itself: a deferred
    # transaction that later upgrades to a write lock can fail with SQLITE_BUSY
    # no matter how long busy_timeout is.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    # Checkpoint (the only fsync in WAL + NORMAL) every ~40 MB of WAL instead of ~4 MB:
    # fewer stalls of the one writer thread (bench: commit avg 360 -> 170 us).
    cur.execute("PRAGMA wal_autocheckpoint=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_on_begin(conn: Connection) -> None:
    # Straight to the driver: SQLAlchemy's exec_driver_sql costs ~45 µs here, a
    # sixth of a whole refresh. Errors still come out as SQLAlchemy's.
    driver = conn.connection.driver_connection
    if driver.in_transaction:  # type: ignore[union-attr]
        return  # a commit group's writer: it began the transaction itself
    try:
        driver.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]
    except sqlite3.Error as exc:
        raise DBAPIError.instance("BEGIN IMMEDIATE", None, exc, sqlite3.Error) from exc
