"""sign-in and tokens: signing keys, refresh tokens, revoked access tokens, lifetimes and lockout settings

Revision ID: 0004
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0002"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("pools") as batch:
        batch.add_column(sa.Column("signin_max_failures", sa.Integer(), nullable=False, server_default="10"))
        batch.add_column(
            sa.Column("signin_failure_window_s", sa.Integer(), nullable=False, server_default="900")
        )
        batch.add_column(sa.Column("signin_lock_s", sa.Integer(), nullable=False, server_default="900"))
        batch.add_column(
            sa.Column("signin_max_failures_per_ip", sa.Integer(), nullable=False, server_default="100")
        )
    with op.batch_alter_table("applications") as batch:
        batch.add_column(sa.Column("access_token_ttl_s", sa.Integer(), nullable=False, server_default="7200"))
        batch.add_column(sa.Column("id_token_ttl_s", sa.Integer(), nullable=False, server_default="7200"))
        batch.add_column(
            sa.Column("refresh_token_ttl_s", sa.Integer(), nullable=False, server_default="2592000")
        )
    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("private_key", sa.Text(), nullable=False),
        sa.Column("public_jwk", _JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("verify_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_signing_keys")),
    )
    op.create_table(
        "refresh_tokens",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("family_id", sa.String(length=24), nullable=False),
        sa.Column("user_id", sa.String(length=24), nullable=False),
        sa.Column("app_id", sa.String(length=24), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_refresh_tokens_user_id_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["app_id"],
            ["applications.id"],
            name=op.f("fk_refresh_tokens_app_id_applications"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refresh_tokens")),
        sa.UniqueConstraint("token_sha256", name=op.f("uq_refresh_tokens_token_sha256")),
    )
    op.create_index(op.f("ix_refresh_tokens_family_id"), "refresh_tokens", ["family_id"], unique=False)
    op.create_index(op.f("ix_refresh_tokens_user_id"), "refresh_tokens", ["user_id"], unique=False)
    op.create_table(
        "revoked_access_tokens",
        sa.Column("jti", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_revoked_access_tokens")),
    )
    op.create_index(
        op.f("ix_revoked_access_tokens_expires_at"), "revoked_access_tokens", ["expires_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_revoked_access_tokens_expires_at"), table_name="revoked_access_tokens")
    op.drop_table("revoked_access_tokens")
    op.drop_index(op.f("ix_refresh_tokens_user_id"), table_name="refresh_tokens")
    op.drop_index(op.f("ix_refresh_tokens_family_id"), table_name="refresh_tokens")
    op.drop_table("refresh_tokens")
    op.drop_table("signing_keys")
    with op.batch_alter_table("applications") as batch:
        batch.drop_column("refresh_token_ttl_s")
        batch.drop_column("id_token_ttl_s")
        batch.drop_column("access_token_ttl_s")
    with op.batch_alter_table("pools") as batch:
        batch.drop_column("signin_max_failures_per_ip")
        batch.drop_column("signin_lock_s")
        batch.drop_column("signin_failure_window_s")
        batch.drop_column("signin_max_failures")
