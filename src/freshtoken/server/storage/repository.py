"""Every SQL statement the service runs. Functions take an open connection so the
service decides where each transaction begins and ends."""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from sqlalchemy import Connection, Row, delete, func, insert, select, update

from freshtoken.server.storage.tables import (
    audit_events,
    clients,
    refresh_tokens,
    sessions,
    users,
)


class RefreshTokenRecord(NamedTuple):
    """A refresh token joined with its session: everything step 1 of DESIGN §3 checks.
    (A NamedTuple: built from a result row on every refresh, 5x cheaper than a
    frozen dataclass.)"""

    id: int
    session_id: str
    parent_id: int | None
    expires_at: float
    used_at: float | None
    revoked_at: float | None
    user_id: str
    client_id: str
    scope: str
    absolute_expires_at: float
    session_revoked_at: float | None


# --- users --------------------------------------------------------------------


def find_user_by_name(conn: Connection, username: str) -> Row[Any] | None:
    return conn.execute(select(users).where(users.c.username == username)).first()


def find_user(conn: Connection, user_id: str) -> Row[Any] | None:
    return conn.execute(select(users).where(users.c.id == user_id)).first()


def insert_user(
    conn: Connection, *, user_id: str, username: str, password_hash: str, now: float
) -> None:
    conn.execute(
        insert(users).values(
            id=user_id,
            username=username,
            password_hash=password_hash,
            disabled=False,
            created_at=now,
        )
    )


def set_password(conn: Connection, username: str, password_hash: str) -> bool:
    res = conn.execute(
        update(users).where(users.c.username == username).values(password_hash=password_hash)
    )
    return res.rowcount == 1


def delete_user(conn: Connection, username: str) -> str | None:
    row = find_user_by_name(conn, username)
    if row is None:
        return None
    session_ids = select(sessions.c.id).where(sessions.c.user_id == row.id)
    conn.execute(delete(refresh_tokens).where(refresh_tokens.c.session_id.in_(session_ids)))
    conn.execute(delete(sessions).where(sessions.c.user_id == row.id))
    conn.execute(delete(users).where(users.c.id == row.id))
    return str(row.id)


def list_users(conn: Connection) -> list[Row[Any]]:
    return list(conn.execute(select(users).order_by(users.c.username)).all())


# --- clients ------------------------------------------------------------------


def find_client(conn: Connection, client_id: str) -> Row[Any] | None:
    return conn.execute(select(clients).where(clients.c.client_id == client_id)).first()


def insert_client(conn: Connection, **values: Any) -> None:
    conn.execute(insert(clients).values(**values))


def list_clients(conn: Connection) -> list[Row[Any]]:
    return list(conn.execute(select(clients).order_by(clients.c.client_id)).all())


# --- sessions and refresh tokens ----------------------------------------------


def insert_session(conn: Connection, **values: Any) -> None:
    conn.execute(insert(sessions).values(**values))


def insert_refresh_token(
    conn: Connection,
    *,
    token_hash: bytes,
    session_id: str,
    parent_id: int | None,
    issued_at: float,
    expires_at: float,
) -> None:
    conn.execute(
        insert(refresh_tokens).values(
            token_hash=token_hash,
            session_id=session_id,
            parent_id=parent_id,
            issued_at=issued_at,
            expires_at=expires_at,
        )
    )


_RECORD_COLUMNS = (
    refresh_tokens.c.id,
    refresh_tokens.c.session_id,
    refresh_tokens.c.parent_id,
    refresh_tokens.c.expires_at,
    refresh_tokens.c.used_at,
    refresh_tokens.c.revoked_at,
    sessions.c.user_id,
    sessions.c.client_id,
    sessions.c.scope,
    sessions.c.absolute_expires_at,
    sessions.c.revoked_at.label("session_revoked_at"),
)
_FIND_TOKEN = select(*_RECORD_COLUMNS).join_from(
    refresh_tokens, sessions, refresh_tokens.c.session_id == sessions.c.id
)


def find_refresh_token(conn: Connection, token_hash: bytes) -> RefreshTokenRecord | None:
    row = conn.execute(_FIND_TOKEN.where(refresh_tokens.c.token_hash == token_hash)).first()
    return None if row is None else RefreshTokenRecord(*row)


def mark_used(conn: Connection, token_id: int, now: float) -> bool:
    """The rotation's only arbiter: exactly one caller flips used_at from NULL."""
    res = conn.execute(
        update(refresh_tokens)
        .where(
            refresh_tokens.c.id == token_id,
            refresh_tokens.c.used_at.is_(None),
            refresh_tokens.c.revoked_at.is_(None),
        )
        .values(used_at=now)
    )
    return res.rowcount == 1


def used_at(conn: Connection, token_id: int) -> float | None:
    value = conn.execute(
        select(refresh_tokens.c.used_at).where(refresh_tokens.c.id == token_id)
    ).scalar()
    return None if value is None else float(value)


def has_live_child(conn: Connection, token_id: int, now: float) -> bool:
    """Is this token the direct parent of its session's live token?"""
    row = conn.execute(
        select(refresh_tokens.c.id).where(
            refresh_tokens.c.parent_id == token_id,
            refresh_tokens.c.used_at.is_(None),
            refresh_tokens.c.revoked_at.is_(None),
            refresh_tokens.c.expires_at > now,
        )
    ).first()
    return row is not None


# --- the refresh hot path -----------------------------------------------------
#
# find_refresh_token → lock the session → mark_used → insert_refresh_token → audit
# row, as hand-written SQL on a DB-API cursor (Database.raw_transaction): on
# PostgreSQL one statement (one round trip), on SQLite four plain statements under
# BEGIN IMMEDIATE. Same semantics as the Core functions above: the step-1 checks gate
# the writes, the session row is locked before the token row (PostgreSQL: SELECT …
# FOR UPDATE, the lock revoke_session's UPDATE also takes, so a refresh and a revoke
# of one session are ordered; SQLite: BEGIN IMMEDIATE already holds the database's
# one write lock), and the conditional UPDATE of used_at is the only arbiter.


class Rotation(NamedTuple):
    record: RefreshTokenRecord | None  # None: unknown token
    claimed: bool  # the session was live and its row is now ours (locked)
    won: bool  # this call flipped used_at and inserted the child and the audit row


_PG_ROTATE = """
WITH tok AS (
    SELECT t.id, t.session_id, t.parent_id, t.expires_at, t.used_at, t.revoked_at,
           s.user_id, s.client_id, s.scope, s.absolute_expires_at,
           s.revoked_at AS session_revoked_at
    FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id
    WHERE t.token_hash = %(token_hash)s
), ok AS (
    SELECT * FROM tok
    WHERE client_id = %(client_id)s AND revoked_at IS NULL AND session_revoked_at IS NULL
      AND %(now)s < absolute_expires_at AND %(now)s < expires_at
), claim AS (
    SELECT id FROM sessions
    WHERE id = (SELECT session_id FROM ok) AND revoked_at IS NULL
    FOR UPDATE
), used AS (
    UPDATE refresh_tokens SET used_at = %(now)s
    WHERE id = (SELECT id FROM ok) AND used_at IS NULL AND revoked_at IS NULL
      AND EXISTS (SELECT 1 FROM claim)
    RETURNING id
), child AS (
    INSERT INTO refresh_tokens (token_hash, session_id, parent_id, issued_at, expires_at)
    SELECT %(child_hash)s, ok.session_id, ok.id, %(now)s,
           LEAST(%(now)s + %(idle_ttl)s, ok.absolute_expires_at)
    FROM ok JOIN used ON used.id = ok.id
    RETURNING id
), audit AS (
    INSERT INTO audit_events (at, event, user_id, client_id, session_id, ip)
    SELECT %(now)s, %(event)s, ok.user_id, ok.client_id, ok.session_id, %(ip)s
    FROM ok JOIN child ON TRUE
)
SELECT tok.*, (SELECT count(*) FROM claim) AS claimed, (SELECT count(*) FROM child) AS won
FROM tok
"""
_PG_ROTATE_PARAMETERS = (
    "token_hash",
    "client_id",
    "now",
    "child_hash",
    "idle_ttl",
    "event",
    "ip",
)
# (In a data-modifying WITH every sub-statement sees the same snapshot; the order
# comes from the data flow: `used` cannot lock its row before `claim` has returned
# the session row, so the lock order is session → token, as in revoke_session.)

_SQLITE_FIND = (
    "SELECT t.id, t.session_id, t.parent_id, t.expires_at, t.used_at, t.revoked_at, "
    "s.user_id, s.client_id, s.scope, s.absolute_expires_at, s.revoked_at "
    "FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id WHERE t.token_hash = ?"
)
_SQLITE_MARK = (
    "UPDATE refresh_tokens SET used_at = ? WHERE id = ? AND used_at IS NULL AND revoked_at IS NULL"
)
_SQLITE_CHILD = (
    "INSERT INTO refresh_tokens (token_hash, session_id, parent_id, issued_at, expires_at) "
    "VALUES (?, ?, ?, ?, ?)"
)
_SQLITE_AUDIT = (
    "INSERT INTO audit_events (at, event, user_id, client_id, session_id, ip) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)


def presentable(record: RefreshTokenRecord, client_id: str, now: float) -> bool:
    """Step 1 of DESIGN §3 passed (the service words the refusal)."""
    return (
        record.client_id == client_id
        and record.revoked_at is None
        and record.session_revoked_at is None
        and now < record.absolute_expires_at
        and now < record.expires_at
    )


def rotate_refresh_token(
    cursor: Any,
    *,
    postgresql: bool,
    token_hash: bytes,
    client_id: str,
    child_hash: bytes,
    now: float,
    idle_ttl: float,
    event: str,
    ip: str | None,
) -> Rotation:
    """Steps 1-2 of DESIGN §3 in one go. The caller inspects the result inside the
    same transaction and raises (rolling everything back) on any refusal."""
    if postgresql:
        cursor.execute(
            _PG_ROTATE,
            {
                "token_hash": token_hash,
                "client_id": client_id,
                "now": float(now),
                "child_hash": child_hash,
                "idle_ttl": float(idle_ttl),
                "event": event,
                "ip": ip,
            },
        )
        row = cursor.fetchone()
        if row is None:
            return Rotation(None, False, False)
        return Rotation(RefreshTokenRecord(*row[:11]), row[11] == 1, row[12] == 1)
    row = cursor.execute(_SQLITE_FIND, (token_hash,)).fetchone()
    if row is None:
        return Rotation(None, False, False)
    record = RefreshTokenRecord(*row)
    if not presentable(record, client_id, now):
        return Rotation(record, False, False)
    # Presentable means the session is live, and under BEGIN IMMEDIATE nothing can
    # revoke it before we commit: it is claimed.
    if cursor.execute(_SQLITE_MARK, (now, record.id)).rowcount != 1:
        return Rotation(record, True, False)
    expires_at = min(now + idle_ttl, record.absolute_expires_at)
    cursor.execute(_SQLITE_CHILD, (child_hash, record.session_id, record.id, now, expires_at))
    cursor.execute(
        _SQLITE_AUDIT,
        (now, event, record.user_id, record.client_id, record.session_id, ip),
    )
    return Rotation(record, True, True)


def revoke_session(conn: Connection, session_id: str, now: float, reason: str) -> bool:
    """Session row first, then its tokens: the same lock order as a refresh."""
    res = conn.execute(
        update(sessions)
        .where(sessions.c.id == session_id, sessions.c.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason)
    )
    conn.execute(
        update(refresh_tokens)
        .where(refresh_tokens.c.session_id == session_id, refresh_tokens.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return res.rowcount == 1


def find_session(conn: Connection, session_id: str) -> Row[Any] | None:
    return conn.execute(select(sessions).where(sessions.c.id == session_id)).first()


def session_is_live(conn: Connection, session_id: str, now: float) -> bool:
    row = conn.execute(
        select(sessions.c.id).where(
            sessions.c.id == session_id,
            sessions.c.revoked_at.is_(None),
            sessions.c.absolute_expires_at > now,
        )
    ).first()
    return row is not None


def list_sessions(
    conn: Connection, *, username: str | None, include_ended: bool, now: float, limit: int
) -> list[Row[Any]]:
    query = (
        select(
            sessions,
            users.c.username,
        )
        .join_from(sessions, users, sessions.c.user_id == users.c.id)
        .order_by(sessions.c.created_at.desc())
        .limit(limit)
    )
    if username is not None:
        query = query.where(users.c.username == username)
    if not include_ended:
        query = query.where(sessions.c.revoked_at.is_(None), sessions.c.absolute_expires_at > now)
    return list(conn.execute(query).all())


def live_tokens(conn: Connection, session_id: str, now: float) -> list[Row[Any]]:
    """Live refresh tokens of a session (there must never be more than one)."""
    return list(
        conn.execute(
            select(refresh_tokens).where(
                refresh_tokens.c.session_id == session_id,
                refresh_tokens.c.used_at.is_(None),
                refresh_tokens.c.revoked_at.is_(None),
                refresh_tokens.c.expires_at > now,
            )
        ).all()
    )


def ended_session_ids(conn: Connection, *, ended_before: float, limit: int) -> list[str]:
    """Sessions revoked, or past their absolute lifetime, before ``ended_before``."""
    query = (
        select(sessions.c.id)
        .where(
            (sessions.c.revoked_at < ended_before) | (sessions.c.absolute_expires_at < ended_before)
        )
        .limit(limit)
    )
    return [row[0] for row in conn.execute(query)]


def delete_sessions(conn: Connection, session_ids: list[str]) -> int:
    """The sessions and every refresh token of theirs; returns the tokens deleted."""
    tokens = conn.execute(
        delete(refresh_tokens).where(refresh_tokens.c.session_id.in_(session_ids))
    ).rowcount
    conn.execute(delete(sessions).where(sessions.c.id.in_(session_ids)))
    return int(tokens)


# --- audit --------------------------------------------------------------------


def insert_audit_event(conn: Connection, *, at: float, event: str, **fields: Any) -> None:
    detail = fields.pop("detail", None)
    conn.execute(
        insert(audit_events).values(
            at=at,
            event=event,
            detail=None if detail is None else json.dumps(detail, sort_keys=True),
            **fields,
        )
    )


def tail_audit_events(conn: Connection, limit: int, event: str | None = None) -> list[Row[Any]]:
    query = select(audit_events).order_by(audit_events.c.id.desc()).limit(limit)
    if event:
        query = query.where(audit_events.c.event == event)
    return list(reversed(conn.execute(query).all()))


def delete_audit_events(conn: Connection, *, before: float, limit: int) -> int:
    oldest = (
        select(audit_events.c.id)
        .where(audit_events.c.at < before)
        .order_by(audit_events.c.id)
        .limit(limit)
    )
    return int(conn.execute(delete(audit_events).where(audit_events.c.id.in_(oldest))).rowcount)


def count_audit_events(conn: Connection, event: str) -> int:
    return int(
        conn.execute(
            select(func.count()).select_from(audit_events).where(audit_events.c.event == event)
        ).scalar_one()
    )
