"""drop sessions.last_refresh_at

Nothing read it, and writing it on every refresh cost a row version on
PostgreSQL and a dirty page per rotation on SQLite. A refresh now locks the
session row (PostgreSQL: SELECT … FOR UPDATE) instead of updating it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ALTER TABLE … DROP COLUMN (SQLite >= 3.35) rather than a batch table
    # copy: copying `sessions` would cascade-delete every refresh token on SQLite.
    op.drop_column("sessions", "last_refresh_at")


def downgrade() -> None:
    op.add_column("sessions", sa.Column("last_refresh_at", sa.Float, nullable=True))
