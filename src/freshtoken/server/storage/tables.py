"""The schema, as SQLAlchemy Core tables. Times are float seconds since the epoch.

Alembic migrations (``migrations/versions``) create exactly these tables;
``tests/server/test_migrations.py`` checks the two agree.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("username", String(255), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
)

clients = Table(
    "clients",
    metadata,
    Column("client_id", String(255), primary_key=True),
    Column("name", String(255), nullable=False, default=""),
    # argon2 hash of the client secret; NULL for public clients.
    Column("secret_hash", String(255), nullable=True),
    Column("grant_types", String(255), nullable=False),
    Column("scope", Text, nullable=False, default=""),
    Column("first_party", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("user_id", String(32), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("client_id", String(255), ForeignKey("clients.client_id"), nullable=False),
    Column("scope", Text, nullable=False, default=""),
    Column("created_at", Float, nullable=False),
    Column("absolute_expires_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
    Column("revoked_reason", String(64), nullable=True),
    Index("ix_sessions_user", "user_id"),
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # SHA-256 of the token; the token itself is never stored.
    Column("token_hash", LargeBinary(32), nullable=False, unique=True),
    Column("session_id", String(32), ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
    Column("parent_id", Integer, nullable=True),
    Column("issued_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("used_at", Float, nullable=True),
    Column("revoked_at", Float, nullable=True),
    Index("ix_refresh_tokens_session", "session_id"),
    Index("ix_refresh_tokens_parent", "parent_id"),
)

signing_keys = Table(
    "signing_keys",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("alg", String(16), nullable=False),
    # AES-GCM(nonce || ciphertext) of the PKCS#8 PEM, keyed from FRESHTOKEN_SECRET_KEY.
    Column("private_key_enc", LargeBinary, nullable=False),
    Column("public_jwk", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    # Stops signing at retired_at; leaves the JWKS at expires_at.
    Column("retired_at", Float, nullable=True),
    Column("expires_at", Float, nullable=True),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("event", String(64), nullable=False),
    Column("user_id", String(32), nullable=True),
    Column("client_id", String(255), nullable=True),
    Column("session_id", String(32), nullable=True),
    Column("ip", String(64), nullable=True),
    Column("detail", Text, nullable=True),
    Index("ix_audit_events_at", "at"),
)
