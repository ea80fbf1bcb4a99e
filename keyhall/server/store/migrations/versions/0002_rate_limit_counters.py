"""rate-limit counters shared by all server processes

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_limit_counters",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("window_ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_rate_limit_counters")),
    )
    op.create_index(
        op.f("ix_rate_limit_counters_window_ends_at"), "rate_limit_counters", ["window_ends_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_rate_limit_counters_window_ends_at"), table_name="rate_limit_counters")
    op.drop_table("rate_limit_counters")
