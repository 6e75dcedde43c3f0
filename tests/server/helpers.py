"""Shared helpers for the server tests (imported by conftest and the test modules)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import jwt
from sqlalchemy import select, text

from freshtoken.server.settings import Settings
from freshtoken.server.storage.database import Database
from freshtoken.server.storage.tables import audit_events, metadata, refresh_tokens

SECRET_KEY = "freshtoken-test-secret-" + "k" * 40
T0 = 1_700_000_000.0
USERNAME = "alice"
PASSWORD = "correct horse battery staple"
# argon2id at the library's lowest costs: logins cost ~5 ms instead of ~25 ms.
FAST_PASSWORDS: dict[str, Any] = {
    "password_time_cost": 1,
    "password_memory_kib": 8 * 1024,
    "password_parallelism": 1,
}


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "secret_key": SECRET_KEY,
        "issuer": "http://issuer.test",
        "ratelimit_enabled": False,
        **FAST_PASSWORDS,
    }
    values.update(overrides)
    return Settings(**values)


def live_tokens(db: Database, session_id: str) -> list[Any]:
    """Refresh tokens of a session that are neither used nor revoked (at most one, ever)."""
    with db.engine.connect() as conn:
        return list(
            conn.execute(
                select(refresh_tokens).where(
                    refresh_tokens.c.session_id == session_id,
                    refresh_tokens.c.used_at.is_(None),
                    refresh_tokens.c.revoked_at.is_(None),
                )
            ).all()
        )


def session_tokens(db: Database, session_id: str) -> list[Any]:
    with db.engine.connect() as conn:
        return list(
            conn.execute(
                select(refresh_tokens)
                .where(refresh_tokens.c.session_id == session_id)
                .order_by(refresh_tokens.c.id)
            ).all()
        )


def audit_rows(db: Database, event: str | None = None) -> list[Any]:
    query = select(audit_events).order_by(audit_events.c.id)
    if event is not None:
        query = query.where(audit_events.c.event == event)
    with db.engine.connect() as conn:
        return list(conn.execute(query).all())


def dump_database(db: Database) -> list[Any]:
    """Every value of every row of every table."""
    values: list[Any] = []
    with db.engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(select(table)).all():
                values.extend(row)
        version = conn.execute(text("SELECT version_num FROM alembic_version")).all()
        values.extend(v for (v,) in version)
    return values


def contains_anywhere(values: list[Any], needle: str) -> bool:
    raw = needle.encode()
    for value in values:
        if isinstance(value, str) and needle in value:
            return True
        if isinstance(value, bytes | bytearray | memoryview) and raw in bytes(value):
            return True
    return False


def claims_of(access_token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(access_token, options={"verify_signature": False})
    return claims


def assert_oauth_error(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    """The documented error shape (RFC 6749 §5.2), as JSON, with the expected code."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = json.loads(response.content)
    assert body["error"] == error, body
    assert isinstance(body.get("error_description", ""), str)
    return body


def password_grant(
    client: httpx.Client, username: str = USERNAME, password: str = PASSWORD, **extra: str
) -> httpx.Response:
    data = {
        "grant_type": "password",
        "username": username,
        "password": password,
        "client_id": "default",
    }
    data.update(extra)
    return client.post("/oauth/token", data=data)


def refresh_grant(client: httpx.Client, refresh_token: str, **extra: str) -> httpx.Response:
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": "default"}
    data.update(extra)
    return client.post("/oauth/token", data=data)
