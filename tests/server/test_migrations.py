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
