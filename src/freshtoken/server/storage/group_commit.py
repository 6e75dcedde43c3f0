"""Group commit for SQLite: the transactions that reach one event loop together
share one ``BEGIN IMMEDIATE … COMMIT``, each inside its own SAVEPOINT.

Why: on SQLite the COMMIT (writing every dirty page to the WAL) was the largest
single cost of a refresh (~50 µs of ~210 µs in process), and BEGIN IMMEDIATE plus
SQLAlchemy's per-transaction bookkeeping another ~40 µs. Under load many refreshes
are waiting at once; committing them together amortises both. Semantics do not
change: every caller's transaction is a savepoint that is rolled back alone if the
caller raises, callers run one after another in arrival order and see each other's
writes (as serial transactions would), and no caller is answered before the COMMIT
that makes its writes durable has returned. If anything fails at the database level
(an I/O error, a failed COMMIT) the whole group is rolled back and every caller is
run again alone, in its own transaction, so one failure never takes its neighbours'
answers with it and nothing is ever reported done that was not committed.

The write lock is taken without blocking the event loop: the writer connection has
``busy_timeout=0`` and, while another process holds the lock, the group retries
every millisecond on the loop's timer, gathering more callers meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

if TYPE_CHECKING:
    from freshtoken.server.storage.database import Database

MAX_GROUP = 64  # callers per COMMIT; more wait for the next round of the loop
LOCK_RETRY_SECONDS = 0.001
LOCK_TIMEOUT_SECONDS = 30.0  # the same patience as the pool connections' busy_timeout


@dataclass
class _Caller:
    fn: Callable[[], Any]
    future: asyncio.Future[Any]


@dataclass
class GroupCommit:
    db: Database
    _queue: list[_Caller] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _scheduled: bool = False
    _waiting_since: float | None = None
    _writer: Connection | None = None
    _thread: int | None = None  # the thread inside a group, while one runs
    _depth: int = 0

    # --- callers -------------------------------------------------------------------

    async def run(self, fn: Callable[[], Any]) -> Any:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._queue or self._scheduled:  # a group pending on another loop
                return self.db.call(fn)
            self._loop = loop  # the first loop, or the previous one has finished
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append(_Caller(fn, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def active_here(self) -> bool:
        return self._thread is not None and self._thread == threading.get_ident()

    # --- inside a group: each caller's transaction is a savepoint -------------------

    def savepoint(self) -> _Savepoint:
        """(connection, cursor) of a savepoint; driver errors come out as SQLAlchemy's."""
        return _Savepoint(self)

    # --- the group -----------------------------------------------------------------

    def _flush(self) -> None:
        self._scheduled = False
        callers = [c for c in self._queue[:MAX_GROUP] if not c.future.cancelled()]
        rest = self._queue[MAX_GROUP:]
        self._queue = []
        if not callers:
            self._queue = rest
            self._reschedule(rest, soon=True)
            return
        try:
            began = self._begin()
        except DBAPIError as exc:
            self._waiting_since = None
            for caller in callers:
                _settle(caller, False, exc)
            self._queue = rest
            self._reschedule(rest, soon=True)
            return
        if not began:  # another process holds the write lock: try again shortly
            self._queue = callers + rest
            self._reschedule(self._queue, soon=False)
            return
        self._waiting_since = None
        outcomes = self._run_group(callers)
        if outcomes is None:  # the group failed as a whole: each caller alone
            outcomes = [self._run_alone(caller) for caller in callers]
        for caller, (ok, value) in zip(callers, outcomes, strict=True):
            _settle(caller, ok, value)
        self._queue = rest + self._queue
        self._reschedule(self._queue, soon=True)

    def _reschedule(self, pending: list[_Caller], *, soon: bool) -> None:
        if not pending or self._scheduled or self._loop is None:
            return
        self._scheduled = True
        if soon:
            self._loop.call_soon(self._flush)
        else:
            self._loop.call_later(LOCK_RETRY_SECONDS, self._flush)

    def _begin(self) -> bool:
        """BEGIN IMMEDIATE without waiting: False while another process writes."""
        try:
            driver = self._driver()
            driver.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if _busy(exc):
                now = time.monotonic()
                if self._waiting_since is None:
                    self._waiting_since = now
                if now - self._waiting_since < LOCK_TIMEOUT_SECONDS:
                    return False
            self._drop_writer()
            raise DBAPIError.instance("BEGIN IMMEDIATE", None, exc, sqlite3.Error) from exc
        except sqlite3.Error as exc:
            self._drop_writer()
            raise DBAPIError.instance("BEGIN IMMEDIATE", None, exc, sqlite3.Error) from exc
        return True

    def _run_group(self, callers: list[_Caller]) -> list[tuple[bool, Any]] | None:
        """Every caller in one transaction; None if it had to be rolled back."""
        assert self._writer is not None
        writer = self._writer
        outcomes: list[tuple[bool, Any]] = []
        self._thread = threading.get_ident()
        try:
            transaction = writer.begin()  # the driver is already in BEGIN IMMEDIATE
            for caller in callers:
                try:
                    outcomes.append((True, caller.fn()))
                except DBAPIError:
                    raise
                except Exception as exc:
                    outcomes.append((False, exc))
            transaction.commit()
            return outcomes
        except DBAPIError:
            self._rollback()
            return None
        finally:
            self._thread = None
            self._depth = 0

    def _run_alone(self, caller: _Caller) -> tuple[bool, Any]:
        try:
            return True, self.db.call(caller.fn)
        except Exception as exc:
            return False, exc

    def _rollback(self) -> None:
        writer = self._writer
        if writer is None:
            return
        try:
            writer.rollback()
            driver = writer.connection.driver_connection
            if driver is not None and driver.in_transaction:
                driver.rollback()
        except Exception:
            self._drop_writer()

    # --- the writer connection ------------------------------------------------------

    def _driver(self) -> Any:
        if self._writer is None:
            writer = self.db.engine.connect()
            driver = writer.connection.driver_connection
            assert driver is not None
            driver.execute("PRAGMA busy_timeout=0")
            self._writer = writer
        return self._writer.connection.driver_connection

    def _drop_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.invalidate()
                writer.close()

    def close(self) -> None:
        for caller in self._queue:
            if not caller.future.done():
                caller.future.cancel()
        self._queue = []
        self._drop_writer()


class _Savepoint:
    """One caller's transaction inside the group: (writer, cursor) on enter; RELEASE
    on success, ROLLBACK TO on any error. A class, not a generator context manager:
    it is entered once per refresh."""

    __slots__ = ("cursor", "driver", "group", "name")

    def __init__(self, group: GroupCommit) -> None:
        self.group = group

    def __enter__(self) -> tuple[Connection, Any]:
        group = self.group
        assert group._writer is not None
        self.driver = group._driver()
        self.name = f"ft{group._depth}"
        group._depth += 1
        _execute(self.driver, "SAVEPOINT " + self.name)
        self.cursor = self.driver.cursor()
        return group._writer, self.cursor

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.group._depth -= 1
        self.cursor.close()
        if exc is None:
            _execute(self.driver, "RELEASE " + self.name)
            return
        _execute(self.driver, "ROLLBACK TO " + self.name)
        _execute(self.driver, "RELEASE " + self.name)
        if isinstance(exc, sqlite3.Error):
            raise DBAPIError.instance(None, None, exc, sqlite3.Error) from exc


def _execute(driver: Any, sql: str) -> None:
    try:
        driver.execute(sql)
    except sqlite3.Error as exc:
        raise DBAPIError.instance(sql, None, exc, sqlite3.Error) from exc


def _busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return bool(code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED))
    return "locked" in str(exc) or "busy" in str(exc)


def _settle(caller: _Caller, ok: bool, value: Any) -> None:
    if caller.future.done():
        return
    if ok:
        caller.future.set_result(value)
    else:
        caller.future.set_exception(value)


__all__ = ["GroupCommit"]
