"""SQLite group commit (storage/group_commit.py): callers that reach the loop together
share one COMMIT, yet each keeps the semantics of its own transaction."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import IntegrityError, OperationalError

from freshtoken.server.storage import group_commit
from freshtoken.server.storage.database import Database


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'group.db'}")
    with database.transaction() as conn:
        conn.execute(text("CREATE TABLE items (id INTEGER PRIMARY KEY)"))
    try:
        yield database
    finally:
        database.close()


def count_commits(db: Database) -> list[int]:
    commits = [0]

    def on_commit(conn: Any) -> None:
        commits[0] += 1

    event.listen(db.engine, "commit", on_commit)
    return commits


def insert(db: Database, item: int, *, fail: bool = False) -> int:
    with db.transaction() as conn:
        conn.execute(text("INSERT INTO items (id) VALUES (:id)"), {"id": item})
        if fail:
            raise ValueError(f"caller {item} changed its mind")
    return item


def stored(db: Database) -> list[int]:
    with db.engine.connect() as conn:
        return [row[0] for row in conn.execute(text("SELECT id FROM items ORDER BY id"))]


def test_callers_that_arrive_together_share_one_commit(db: Database) -> None:
    commits = count_commits(db)

    async def main() -> list[int]:
        return await asyncio.gather(*(db.run(insert, db, i) for i in range(20)))

    assert asyncio.run(main()) == list(range(20))
    assert commits[0] == 1
    assert stored(db) == list(range(20))


def test_a_caller_that_raises_rolls_back_only_its_own_writes(db: Database) -> None:
    async def main() -> list[Any]:
        calls = [db.run(insert, db, i, fail=(i == 3)) for i in range(6)]
        return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(main())
    assert isinstance(results[3], ValueError)
    assert [r for i, r in enumerate(results) if i != 3] == [0, 1, 2, 4, 5]
    assert stored(db) == [0, 1, 2, 4, 5]


def test_callers_in_one_group_see_each_others_writes_in_order(db: Database) -> None:
    def count(database: Database) -> int:
        with database.transaction() as conn:
            return int(conn.execute(text("SELECT count(*) FROM items")).scalar_one())

    async def main() -> list[Any]:
        return await asyncio.gather(
            db.run(insert, db, 1), db.run(count, db), db.run(insert, db, 2), db.run(count, db)
        )

    assert asyncio.run(main()) == [1, 1, 2, 2]


def test_a_database_error_reruns_every_caller_alone(db: Database) -> None:
    """A database-level failure rolls the group back; nobody's answer is lost: each
    caller runs again in its own transaction and only the culprit fails."""
    insert(db, 100)
    commits = count_commits(db)

    async def main() -> list[Any]:
        calls = [db.run(insert, db, 100 if i == 2 else i) for i in range(5)]
        return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(main())
    assert isinstance(results[2], IntegrityError)
    assert [r for i, r in enumerate(results) if i != 2] == [0, 1, 3, 4]
    assert stored(db) == [0, 1, 3, 4, 100]
    assert commits[0] == 4  # the group's was rolled back; four callers committed alone


def test_waits_for_another_writer_without_blocking_the_loop(db: Database, tmp_path: Path) -> None:
    other = sqlite3.connect(tmp_path / "group.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holding the write lock

    async def main() -> tuple[int, bool]:
        call = asyncio.ensure_future(db.run(insert, db, 7))
        ticks = 0
        deadline = time.monotonic() + 0.2
        while time.monotonic() < deadline:
            await asyncio.sleep(0.005)
            ticks += 1
        waited = not call.done()
        other.execute("COMMIT")
        assert await call == 7
        return ticks, waited

    ticks, waited = asyncio.run(main())
    other.close()
    assert waited
    assert ticks >= 20  # the loop kept running while the group waited for the lock
    assert stored(db) == [7]


def test_gives_up_with_an_operational_error_after_the_lock_timeout(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(group_commit, "LOCK_TIMEOUT_SECONDS", 0.05)
    other = sqlite3.connect(tmp_path / "group.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(OperationalError):
            asyncio.run(db.run(insert, db, 8))
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert stored(db) == []
    assert asyncio.run(db.run(insert, db, 9)) == 9  # and works again once the lock is free


def test_a_cancelled_caller_never_runs(db: Database) -> None:
    ran: list[int] = []

    def record(item: int) -> int:
        ran.append(item)
        return insert(db, item)

    async def main() -> None:
        first = asyncio.ensure_future(db.run(record, 1))
        second = asyncio.ensure_future(db.run(record, 2))
        await asyncio.sleep(0)  # both queued, the group not yet run
        first.cancel()
        assert await second == 2
        with pytest.raises(asyncio.CancelledError):
            await first

    asyncio.run(main())
    assert ran == [2]
    assert stored(db) == [2]


def test_more_callers_than_a_group_holds_are_all_served(db: Database) -> None:
    commits = count_commits(db)
    n = group_commit.MAX_GROUP * 2 + 5

    async def main() -> list[int]:
        return await asyncio.gather(*(db.run(insert, db, i) for i in range(n)))

    assert asyncio.run(main()) == list(range(n))
    assert commits[0] == 3
    assert stored(db) == list(range(n))
