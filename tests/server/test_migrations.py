"""Alembic: the migrated schema is exactly tables.py, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from freshtoken.server.storage import database as database_module
from freshtoken.server.storage.database import Database
from freshtoken.server.storage.tables import metadata


def head_revision() -> str:
    cfg = Config()
    cfg.set_main_option("script_location", str(database_module._MIGRATIONS))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head


def test_migrated_schema_matches_the_tables(database_url: str) -> None:
    db = Database(database_url)
    try:
        db.migrate()
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
            tables = set(inspect(conn).get_table_names())
        assert diff == []
        assert version == head_revision()
        assert tables == set(metadata.tables) | {"alembic_version"}
    finally:
        db.close()


def test_migrate_is_idempotent(database_url: str) -> None:
    db = Database(database_url)
    try:
        db.migrate()
        db.migrate()
        with db.engine.connect() as conn:
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).all()
        assert [v for (v,) in versions] == [head_revision()]
    finally:
        db.close()


def test_compare_would_notice_a_drift(tmp_path) -> None:
    """The check above is not vacuous: a missing column is reported."""
    db = Database(f"sqlite:///{tmp_path}/drift.db")
    try:
        db.migrate()
        with db.engine.begin() as conn:
            conn.execute(text("ALTER TABLE sessions DROP COLUMN revoked_reason"))
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert any(d[0] == "add_column" and d[3].name == "revoked_reason" for d in diff)
    finally:
        db.close()


def test_upgrade_from_0001_keeps_sessions_and_tokens(database_url: str) -> None:
    """0002 drops a column of `sessions`; on SQLite a table copy would have
    cascade-deleted every refresh token. Data written under 0001 must survive."""
    from alembic import command

    db = Database(database_url)
    try:
        cfg = Config()
        cfg.set_main_option("script_location", str(database_module._MIGRATIONS))
        with db.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0001")
        with db.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO users (id, username, password_hash, disabled, created_at) "
                    "VALUES ('u1', 'alice', 'x', false, 1)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO clients (client_id, name, grant_types, scope, first_party, "
                    "created_at) VALUES ('c1', '', 'refresh_token', '', true, 1)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO sessions (id, user_id, client_id, scope, created_at, "
                    "absolute_expires_at, last_refresh_at) VALUES ('s1', 'u1', 'c1', '', 1, 9, 2)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO refresh_tokens (token_hash, session_id, issued_at, expires_at) "
                    "VALUES (:h, 's1', 1, 9)"
                ),
                {"h": b"\x01" * 32},
            )
        db.migrate()
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM sessions")).scalar_one() == 1
            assert conn.execute(text("SELECT count(*) FROM refresh_tokens")).scalar_one() == 1
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == []
    finally:
        db.close()
