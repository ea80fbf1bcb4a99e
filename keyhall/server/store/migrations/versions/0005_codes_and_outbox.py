"""verification codes, the message outbox, code settings on pools

Revision ID: 0005
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pools") as batch:
        batch.add_column(sa.Column("code_ttl_s", sa.Integer(), nullable=False, server_default="300"))
        batch.add_column(sa.Column("code_max_attempts", sa.Integer(), nullable=False, server_default="5"))
        batch.add_column(
            sa.Column("code_resend_interval_s", sa.Integer(), nullable=False, server_default="60")
        )
        batch.add_column(
            sa.Column("code_sends_per_ip_hour", sa.Integer(), nullable=False, server_default="30")
        )
        batch.add_column(
            sa.Column("require_verified_email", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_table(
        "verification_codes",
        sa.Column("lookup", sa.String(length=64), nullable=False),
        sa.Column("pool_id", sa.String(length=24), nullable=False),
        sa.Column("channel", sa.String(length=40), nullable=False),
        sa.Column("code_mac", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("max_failures", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["pool_id"], ["pools.id"], name=op.f("fk_verification_codes_pool_id_pools"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("lookup", name=op.f("pk_verification_codes")),
    )
    op.create_index(op.f("ix_verification_codes_pool_id"), "verification_codes", ["pool_id"], unique=False)
    op.create_index(
        op.f("ix_verification_codes_expires_at"), "verification_codes", ["expires_at"], unique=False
    )
    op.create_table(
        "outbox_messages",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("pool_id", sa.String(length=24), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("payload", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claim_token", sa.String(length=32), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["pool_id"], ["pools.id"], name=op.f("fk_outbox_messages_pool_id_pools"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_messages")),
    )
    op.create_index(
        "ix_outbox_messages_state_due", "outbox_messages", ["state", "next_attempt_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_messages_state_due", table_name="outbox_messages")
    op.drop_table("outbox_messages")
    op.drop_index(op.f("ix_verification_codes_expires_at"), table_name="verification_codes")
    op.drop_index(op.f("ix_verification_codes_pool_id"), table_name="verification_codes")
    op.drop_table("verification_codes")
    with op.batch_alter_table("pools") as batch:
        for column in (
            "require_verified_email",
            "code_sends_per_ip_hour",
            "code_resend_interval_s",
            "code_max_attempts",
            "code_ttl_s",
        ):
            batch.drop_column(column)
